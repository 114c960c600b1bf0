package ops

import (
	"io"
	"log/slog"
	"time"
)

// NewLogger returns the JSON logger every long-running command uses. Durations
// are written as Go duration strings ("1.5s"), not slog's default integer
// nanoseconds, so that an operator reading a log line can tell "retry_in"
// 100ms from 100s.
func NewLogger(w io.Writer) *slog.Logger { return NewLevelLogger(w, slog.LevelInfo) }

// NewLevelLogger is NewLogger writing records at level and above (debug
// shows the Kafka client's own errors, for diagnosing an outage).
func NewLevelLogger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level, ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Value.Kind() == slog.KindDuration {
			return slog.String(a.Key, a.Value.Duration().Round(time.Millisecond).String())
		}
		return a
	}}))
}
