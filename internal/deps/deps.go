//go:build deps

// Package deps pins the versions of the libraries the streaming pipeline is
// built on (see ../shared/DESIGN.md) before the code that uses them lands,
// so that go.mod records them and `go mod tidy` keeps them. It is never
// built: the build tag keeps it out of every binary and test.
package deps

import (
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/redis/go-redis/v9"
	_ "github.com/segmentio/kafka-go"
	_ "gonum.org/v1/gonum/mat"
)
