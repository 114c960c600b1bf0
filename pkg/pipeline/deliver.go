package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/fraudstream/fraudstream/pkg/stream"
)

// errShutdown marks a batch abandoned because the drain deadline passed
// after shutdown began; its offsets are not committed, so it is redelivered.
var errShutdown = errors.New("pipeline: shutdown deadline passed before the batch was written and committed; it will be redelivered")

// drainContext is the context a batch is written and committed under: it
// outlives ctx by at most DrainTimeout, so a batch fetched just before
// shutdown is finished when the broker answers, and shutdown is bounded
// when it does not (a coordinator that is down must not hang SIGTERM until
// SIGKILL).
func (p *Pipeline) drainContext(ctx context.Context) (context.Context, context.CancelFunc) {
	pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(p.cfg.DrainTimeout, cancel)
		context.AfterFunc(pctx, func() { t.Stop() })
	})
	return pctx, func() { stop(); cancel() }
}

// perRecord reports whether err condemns one message rather than the
// attempt: the broker refused that record and would refuse it again.
func perRecord(err error) bool {
	var ke kafka.Error
	if errors.As(err, &ke) {
		switch ke {
		case kafka.MessageSizeTooLarge, kafka.InvalidRecord, kafka.InvalidTimestamp, kafka.RecordListTooLarge:
			return true
		}
	}
	return false
}

// sleep waits d or until ctx ends; it reports whether ctx is still alive.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// deliver writes p.out, retrying what failed until it is acknowledged:
// transient failures (a broker down, a leader moving, a timeout) are
// retried with backoff, never fatal, so a broker outage does not turn into
// a rebalance storm of exiting workers; a record the broker refuses for
// itself (too large, invalid) is replaced by a dead letter of its source
// record, so one bad record cannot block its partition. It returns
// errShutdown (wrapped) only when ctx's drain deadline passes.
func (p *Pipeline) deliver(ctx context.Context, msgs []kafka.Message) error {
	pending, origin := p.out, p.origin
	backoff := p.cfg.RetryMin
	for attempt := 1; ; attempt++ {
		err := p.cfg.Sink.Write(ctx, pending...)
		if err == nil {
			return nil
		}
		p.m.failures.Inc()
		if ctx.Err() != nil {
			return fmt.Errorf("%w: last write error: %v", errShutdown, err)
		}
		pending, origin = p.reroute(pending, origin, msgs, err)
		if len(pending) == 0 {
			return nil
		}
		p.warnEvery("write", "writing outputs failed; retrying", "records", len(pending), "attempt", attempt, "retry_in", backoff, "err", err)
		if !sleep(ctx, backoff) {
			return fmt.Errorf("%w: last write error: %v", errShutdown, err)
		}
		backoff = min(2*backoff, p.cfg.RetryMax)
	}
}

// reroute returns the messages to write again after a failed write of
// pending: acknowledged ones are dropped, refused ones are replaced by dead
// letters, the rest are kept.
func (p *Pipeline) reroute(pending []kafka.Message, origin []int32, msgs []kafka.Message, err error) ([]kafka.Message, []int32) {
	var tooLarge kafka.MessageTooLargeError
	var werrs kafka.WriteErrors
	switch {
	case errors.As(err, &werrs) && len(werrs) == len(pending):
		keepM, keepO := make([]kafka.Message, 0, werrs.Count()), make([]int32, 0, werrs.Count())
		for i, e := range werrs {
			switch {
			case e == nil:
			case perRecord(e):
				if m, ok := p.refused(pending[i], msgs[origin[i]], e); ok {
					keepM, keepO = append(keepM, m), append(keepO, origin[i])
				}
			default:
				keepM, keepO = append(keepM, pending[i]), append(keepO, origin[i])
			}
		}
		return keepM, keepO
	case errors.As(err, &tooLarge):
		// The writer refused the whole call before sending anything,
		// naming the first message over its batch limit.
		for i := range pending {
			if sameMessage(pending[i], tooLarge.Message) {
				keepM, keepO := append([]kafka.Message(nil), pending...), append([]int32(nil), origin...)
				if m, ok := p.refused(pending[i], msgs[origin[i]], tooLarge); ok {
					keepM[i] = m
				} else {
					keepM, keepO = append(keepM[:i], keepM[i+1:]...), append(keepO[:i], keepO[i+1:]...)
				}
				return keepM, keepO
			}
		}
	}
	return pending, origin
}

func sameMessage(a, b kafka.Message) bool {
	return a.Topic == b.Topic && len(a.Value) == len(b.Value) && (len(a.Value) == 0 || &a.Value[0] == &b.Value[0])
}

// Headers on a dead letter whose value was cut.
const (
	HeaderTruncated    = "fraudstream-truncated"     // "true" when the value was cut
	HeaderOriginalSize = "fraudstream-original-size" // the original value's length in bytes
)

// refused handles an output the broker refused for itself: an alert or
// decision becomes a dead letter of its source record; a dead letter is cut
// to deadLetterCut bytes, then to nothing. ok is false when nothing is left
// to try (the loss is logged and counted).
func (p *Pipeline) refused(out, src kafka.Message, err error) (kafka.Message, bool) {
	if out.Topic != p.cfg.Dead {
		p.m.records.WithLabelValues("dead_letter").Inc()
		return p.deadLetter(src, fmt.Errorf("output to %s refused by the broker: %w", out.Topic, err)), true
	}
	if len(out.Value) > 0 {
		cut := deadLetterCut
		if len(out.Value) <= deadLetterCut {
			cut = 0 // already short and still refused: keep only the headers
		}
		return truncate(out, cut, len(src.Value)), true
	}
	p.m.lost.Inc()
	p.log.Error("dead letter refused by the broker even without its value; record dropped",
		"topic", src.Topic, "partition", src.Partition, "offset", src.Offset, "err", err)
	return kafka.Message{}, false
}

// deadLetterCut is how much of a refused dead letter's value is kept on the
// second try.
const deadLetterCut = 1024

// truncate cuts m's value to n bytes and says so in its headers.
func truncate(m kafka.Message, n, original int) kafka.Message {
	if len(m.Value) > n {
		m.Value = m.Value[:n]
	}
	h := make([]kafka.Header, 0, len(m.Headers)+2)
	for _, x := range m.Headers {
		if x.Key != HeaderTruncated && x.Key != HeaderOriginalSize {
			h = append(h, x)
		}
	}
	m.Headers = append(h, kafka.Header{Key: HeaderTruncated, Value: []byte("true")},
		kafka.Header{Key: HeaderOriginalSize, Value: []byte(strconv.Itoa(original))})
	return m
}

// deadLetter wraps src for the dead-letter topic with reason, its value cut
// to MaxRecordBytes (outputs stay under the broker's limits).
func (p *Pipeline) deadLetter(src kafka.Message, reason error) kafka.Message {
	d := stream.DeadLetter(p.cfg.Dead, src, reason)
	if len(d.Value) > p.cfg.MaxRecordBytes {
		d = truncate(d, p.cfg.MaxRecordBytes, len(src.Value))
	}
	return d
}

// commitAttempts and Config.CommitTimeout bound how long a batch waits for
// its commit. kafka-go's commit waits for the group's current generation;
// while the coordinator is down or the group is rejoining there is none,
// and an unbounded commit blocked the worker for good after a broker
// restart.
const commitAttempts = 3

// commit commits msgs, retrying transient failures with backoff, each
// attempt bounded. A commit that still fails is given up, not fatal: the
// outputs are written, the next batch's commit covers these offsets (a
// commit names the next offset to read per partition), and if the worker
// dies first the records are decided again, with the same decision ids. A
// commit the group refuses (the partitions moved in a rebalance) is given
// up at once: the new owner decides those records again.
func (p *Pipeline) commit(ctx context.Context, msgs []kafka.Message) error {
	backoff := p.cfg.RetryMin
	var err error
	for attempt := 1; attempt <= commitAttempts; attempt++ {
		actx, cancel := context.WithTimeout(ctx, p.cfg.CommitTimeout)
		err = p.cfg.Source.Commit(actx, msgs...)
		cancel()
		if err == nil {
			return nil
		}
		p.m.commitFailures.Inc()
		var ke kafka.Error
		switch {
		case ctx.Err() != nil:
			return fmt.Errorf("%w: last commit error: %v", errShutdown, err)
		case errors.Is(err, io.ErrClosedPipe):
			return fmt.Errorf("pipeline: commit after the consumer closed: %w", err)
		case errors.As(err, &ke) && !ke.Temporary():
			p.log.Warn("commit refused by the group; these records will be decided again by their new owner",
				"records", len(msgs), "err", err)
			return nil
		}
		if attempt < commitAttempts && !sleep(ctx, backoff) {
			return fmt.Errorf("%w: last commit error: %v", errShutdown, err)
		}
		backoff = min(2*backoff, p.cfg.RetryMax)
	}
	p.warnEvery("commit", "offsets not committed; the next batch's commit covers them", "records", len(msgs), "attempts", commitAttempts, "err", err)
	return nil
}
