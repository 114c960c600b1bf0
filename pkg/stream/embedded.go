package stream

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Embedded is an in-process Kafka-protocol broker (franz-go's kfake) for
// the local mode and tests. It speaks the real protocol, so kafka-go, kcat
// and the Java tools can connect to it; it keeps everything in memory.
type Embedded struct {
	c *kfake.Cluster
}

// StartEmbedded listens on 127.0.0.1:port (0 picks a free port) and lets
// clients create topics.
func StartEmbedded(port int) (*Embedded, error) {
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.AllowAutoTopicCreation()}
	if port > 0 {
		opts = append(opts, kfake.Ports(port))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("stream: embedded broker: %w", err)
	}
	return &Embedded{c: c}, nil
}

// Addrs returns the broker addresses.
func (e *Embedded) Addrs() []string { return e.c.ListenAddrs() }

// Config returns a client configuration for this broker.
func (e *Embedded) Config() Config { return Config{Brokers: e.Addrs()} }

// Close stops the broker.
func (e *Embedded) Close() { e.c.Close() }
