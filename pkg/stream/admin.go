package stream

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
)

// adminTimeout bounds every request an Admin sends.
const adminTimeout = 15 * time.Second

// Admin is a long-lived client for topic metadata, offsets, consumer-group
// lag, topic creation and window reads. It holds one kafka-go transport
// (its connections and a metadata-refresh goroutine) for its whole life, so
// that callers such as a metrics collector do not build one per call; Close
// releases it. An Admin is safe for concurrent use.
//
// Nothing an Admin does creates a topic implicitly: its metadata requests
// have auto-creation off, so only EnsureTopics creates topics. Metadata comes
// from any of the brokers given, refreshed every few seconds by kafka-go; a
// topic created elsewhere may take that long to be seen.
type Admin struct {
	cfg Config
	tr  *kafka.Transport
	cl  *kafka.Client
}

// NewAdmin returns an Admin for the brokers in cfg. It connects lazily, on
// the first request.
func NewAdmin(cfg Config) (*Admin, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	tr := cfg.transport()
	return &Admin{cfg: cfg, tr: tr, cl: &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Transport: tr, Timeout: adminTimeout}}, nil
}

// Close releases the Admin's connections and goroutines. Requests in flight
// finish first; the Admin must not be used afterwards.
func (a *Admin) Close() error {
	a.tr.CloseIdleConnections()
	return nil
}

// MissingTopicsError says which topics do not exist and how to create them.
type MissingTopicsError struct {
	Topics  []string
	Brokers []string
}

func (e *MissingTopicsError) Error() string {
	what, it, topic := "topic "+e.Topics[0]+" does not exist", "it", e.Topics[0]
	if len(e.Topics) > 1 {
		what, it, topic = "topics "+strings.Join(e.Topics, ", ")+" do not exist", "each", "NAME"
	}
	return fmt.Sprintf("stream: %s; create %s (kafka-topics.sh --bootstrap-server %s --create --topic %s --partitions N --replication-factor N --config min.insync.replicas=N) or run with --create-topics",
		what, it, strings.Join(e.Brokers, ","), topic)
}

// topicState asks for the metadata of names (auto-creation off) and returns
// the partition ids of each existing topic and the names that do not exist.
func (a *Admin) topicState(ctx context.Context, names []string) (map[string][]int, []string, error) {
	md, err := retry(ctx, func() (*kafka.MetadataResponse, error) {
		md, err := a.cl.Metadata(ctx, &kafka.MetadataRequest{Topics: names})
		if err != nil {
			return nil, fmt.Errorf("stream: metadata of %s: %w", strings.Join(names, ", "), err)
		}
		for _, t := range md.Topics {
			if t.Error != nil && !errors.Is(t.Error, kafka.UnknownTopicOrPartition) && slices.Contains(names, t.Name) {
				return nil, fmt.Errorf("stream: metadata of topic %s: %w", t.Name, t.Error)
			}
		}
		return md, nil
	})
	if err != nil {
		return nil, nil, err
	}
	found := map[string][]int{}
	for _, t := range md.Topics {
		if t.Error != nil || !slices.Contains(names, t.Name) {
			continue // an unknown topic is missing; other errors were returned above
		}
		ids := make([]int, 0, len(t.Partitions))
		for _, p := range t.Partitions {
			ids = append(ids, p.ID)
		}
		slices.Sort(ids)
		found[t.Name] = ids
	}
	var missing []string
	for _, n := range names {
		if _, ok := found[n]; !ok && !slices.Contains(missing, n) {
			missing = append(missing, n)
		}
	}
	return found, missing, nil
}

// Partitions returns the partition ids of topic in ascending order, or a
// *MissingTopicsError when it does not exist. Asking never creates it.
func (a *Admin) Partitions(ctx context.Context, topic string) ([]int, error) {
	found, missing, err := a.topicState(ctx, []string{topic})
	if err != nil {
		return nil, err
	}
	if len(missing) > 0 {
		return nil, &MissingTopicsError{Topics: missing, Brokers: a.cfg.Brokers}
	}
	return found[topic], nil
}

// CheckTopics returns a *MissingTopicsError naming every topic of names that
// does not exist, or nil when all exist. It needs only permission to describe
// the topics, not to create them.
func (a *Admin) CheckTopics(ctx context.Context, names ...string) error {
	_, missing, err := a.topicState(ctx, names)
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		return &MissingTopicsError{Topics: missing, Brokers: a.cfg.Brokers}
	}
	return nil
}

// Topic describes a topic to create.
type Topic struct {
	Name string
	// Partitions; default 1.
	Partitions int
	// Replication factor; 0 leaves it to the broker (default.replication.factor).
	Replication int
	// MinISR sets min.insync.replicas, the replicas that must hold a write
	// acknowledged to an acks=all producer; 0 leaves it to the broker.
	MinISR int
}

// EnsureTopics creates those of topics that do not exist yet; existing
// topics are left exactly as they are (their partition count included). It
// first asks which exist, so a deployment whose topics exist needs no
// permission to create topics. It returns once the topics it created have
// a leader for every partition (at most 30 s), so a write right after it
// is not refused.
func EnsureTopics(ctx context.Context, cfg Config, topics ...Topic) error {
	a, err := NewAdmin(cfg)
	if err != nil {
		return err
	}
	defer a.Close()
	return a.EnsureTopics(ctx, topics...)
}

// EnsureTopics creates those of topics that do not exist yet; see the
// package-level EnsureTopics.
func (a *Admin) EnsureTopics(ctx context.Context, topics ...Topic) error {
	if len(topics) == 0 {
		return nil
	}
	names := make([]string, len(topics))
	for i, t := range topics {
		if t.Name == "" {
			return errors.New("stream: a topic to create has no name")
		}
		if t.Replication > 0 && t.MinISR > t.Replication {
			return fmt.Errorf("stream: topic %s: min.insync.replicas %d exceeds its replication factor %d: every acks=all write would fail",
				t.Name, t.MinISR, t.Replication)
		}
		names[i] = t.Name
	}
	_, missing, err := a.topicState(ctx, names)
	if err != nil {
		return err
	}
	if len(missing) == 0 {
		return nil
	}
	req := &kafka.CreateTopicsRequest{}
	for _, t := range topics {
		if !slices.Contains(missing, t.Name) {
			continue
		}
		missing = slices.DeleteFunc(missing, func(n string) bool { return n == t.Name }) // a name given twice is created once
		tc := kafka.TopicConfig{Topic: t.Name, NumPartitions: max(t.Partitions, 1), ReplicationFactor: -1}
		if t.Replication > 0 {
			tc.ReplicationFactor = t.Replication
		}
		if t.MinISR > 0 {
			tc.ConfigEntries = []kafka.ConfigEntry{{ConfigName: "min.insync.replicas", ConfigValue: strconv.Itoa(t.MinISR)}}
		}
		req.Topics = append(req.Topics, tc)
	}
	res, err := a.cl.CreateTopics(ctx, req)
	if err != nil {
		return fmt.Errorf("stream: create topics: %w", err)
	}
	created := make([]string, 0, len(req.Topics))
	for _, tc := range req.Topics {
		// Another process may have created it since we looked.
		if e := res.Errors[tc.Topic]; e != nil && !errors.Is(e, kafka.TopicAlreadyExists) {
			return fmt.Errorf("stream: create topic %s (partitions %d, replication %d): %w", tc.Topic, tc.NumPartitions, tc.ReplicationFactor, e)
		}
		created = append(created, tc.Topic)
	}
	return a.waitLeaders(ctx, created)
}

// leaderWait bounds how long EnsureTopics waits for new topics' leaders.
const leaderWait = 30 * time.Second

// waitLeaders returns once every partition of topics has a leader in the
// metadata: a broker answers CreateTopics before its partitions have
// leaders, and a write in that gap fails with NOT_LEADER_OR_FOLLOWER.
func (a *Admin) waitLeaders(ctx context.Context, topics []string) error {
	if len(topics) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, leaderWait)
	defer cancel()
	wait := 20 * time.Millisecond
	for {
		pending := ""
		md, err := a.cl.Metadata(ctx, &kafka.MetadataRequest{Topics: topics})
		if err != nil {
			pending = err.Error()
		} else {
			pending = leaderless(md, topics)
		}
		if pending == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("stream: created %s, but %s after %s", strings.Join(topics, ", "), pending, leaderWait)
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

// leaderless describes the first of topics that lacks a leader for some
// partition, or returns "".
func leaderless(md *kafka.MetadataResponse, topics []string) string {
	for _, name := range topics {
		i := slices.IndexFunc(md.Topics, func(t kafka.Topic) bool { return t.Name == name })
		switch {
		case i < 0 || md.Topics[i].Error != nil || len(md.Topics[i].Partitions) == 0:
			return "topic " + name + " is not in the metadata yet"
		}
		for _, p := range md.Topics[i].Partitions {
			if p.Error != nil || p.Leader.ID < 0 || p.Leader.Host == "" {
				return fmt.Sprintf("partition %d of %s has no leader yet", p.ID, name)
			}
		}
	}
	return ""
}

// GroupLag returns, per partition of topic, how many messages the consumer
// group has not committed yet; see (*Admin).GroupLag. It opens and closes
// its own connections: a caller that asks repeatedly (a metrics collector)
// should hold an Admin instead.
func GroupLag(ctx context.Context, cfg Config, group, topic string) (map[int]int64, error) {
	a, err := NewAdmin(cfg)
	if err != nil {
		return nil, err
	}
	defer a.Close()
	return a.GroupLag(ctx, group, topic)
}

// GroupLag returns, per partition of topic, how many messages the consumer
// group has not committed yet (end offset minus committed offset; the whole
// partition when the group has committed nothing there).
func (a *Admin) GroupLag(ctx context.Context, group, topic string) (map[int]int64, error) {
	return retry(ctx, func() (map[int]int64, error) { return a.groupLag(ctx, group, topic) })
}

func (a *Admin) groupLag(ctx context.Context, group, topic string) (map[int]int64, error) {
	ids, err := a.Partitions(ctx, topic)
	if err != nil {
		return nil, err
	}
	req := &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{}}
	for _, id := range ids {
		req.Topics[topic] = append(req.Topics[topic], kafka.LastOffsetOf(id), kafka.FirstOffsetOf(id))
	}
	ends, err := a.cl.ListOffsets(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("stream: end offsets of %s: %w", topic, err)
	}
	committed, err := a.cl.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: ids}})
	if err != nil {
		return nil, fmt.Errorf("stream: offsets of group %s: %w", group, err)
	}
	done := map[int]int64{}
	switch {
	case errors.Is(committed.Error, kafka.GroupIdNotFound):
		// A group that never committed: everything is lag.
	case committed.Error != nil:
		return nil, fmt.Errorf("stream: offsets of group %s: %w", group, committed.Error)
	default:
		for _, p := range committed.Topics[topic] {
			done[p.Partition] = p.CommittedOffset
		}
	}
	lag := map[int]int64{}
	for _, p := range ends.Topics[topic] {
		if p.Error != nil {
			return nil, fmt.Errorf("stream: end offset of %s/%d: %w", topic, p.Partition, p.Error)
		}
		c, ok := done[p.Partition]
		if !ok || c < 0 {
			c = p.FirstOffset
		}
		lag[p.Partition] = max(0, p.LastOffset-c)
	}
	return lag, nil
}

// retry calls f until it succeeds or fails with an error other than a
// transient Kafka one (a leader or group coordinator moving or loading, a
// topic just created), at most 5 times, 100ms, 200ms, 400ms, 800ms apart.
func retry[T any](ctx context.Context, f func() (T, error)) (T, error) {
	wait := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		v, err := f()
		var ke kafka.Error
		if err == nil || attempt == 5 || !errors.As(err, &ke) || !ke.Temporary() {
			return v, err
		}
		select {
		case <-ctx.Done():
			return v, err
		case <-time.After(wait):
		}
		wait *= 2
	}
}

// MemberLag returns the partitions of topic that the group has assigned to
// the member whose client id is clientID, and the group's uncommitted
// messages on them: the work waiting for that member. A member not in the
// group (not joined yet, or between generations) has none. Client ids are
// how members are told apart, so give each worker its own.
func (a *Admin) MemberLag(ctx context.Context, group, topic, clientID string) ([]int, int64, error) {
	res, err := a.cl.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{group}})
	if err != nil {
		return nil, 0, fmt.Errorf("stream: describe group %s: %w", group, err)
	}
	var mine []int
	for _, g := range res.Groups {
		if g.Error != nil {
			return nil, 0, fmt.Errorf("stream: describe group %s: %w", group, g.Error)
		}
		for _, m := range g.Members {
			if m.ClientID != clientID {
				continue
			}
			for _, t := range m.MemberAssignments.Topics {
				if t.Topic == topic {
					mine = append(mine, t.Partitions...)
				}
			}
		}
	}
	if len(mine) == 0 {
		return nil, 0, nil
	}
	lag, err := a.GroupLag(ctx, group, topic)
	if err != nil {
		return nil, 0, err
	}
	var total int64
	for _, p := range mine {
		total += lag[p]
	}
	slices.Sort(mine)
	return mine, total, nil
}

// IsMember reports whether the group lists a member with client id clientID.
func (a *Admin) IsMember(ctx context.Context, group, clientID string) (bool, error) {
	res, err := a.cl.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{group}})
	if err != nil {
		return false, fmt.Errorf("stream: describe group %s: %w", group, err)
	}
	for _, g := range res.Groups {
		for _, m := range g.Members {
			if m.ClientID == clientID {
				return true, nil
			}
		}
	}
	return false, nil
}
