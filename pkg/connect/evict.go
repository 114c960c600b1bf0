package connect

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Eviction reads Redis's memory limit and eviction policy from INFO memory
// (within 5s): INFO is in the ACL user's +@all -@admin, where CONFIG GET
// is not (and could show settings the programs have no business reading).
// A Redis that does not report them says so in the error.
func (r *Redis) Eviction(ctx context.Context, c redis.UniversalClient) (maxmemory int64, policy string, err error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	info, err := c.Info(ctx, "memory").Result()
	if err != nil {
		return 0, "", fmt.Errorf("redis %s: INFO memory: %w", r, err)
	}
	maxmem := ""
	for _, l := range strings.Split(info, "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(l), ":")
		switch k {
		case "maxmemory":
			maxmem = v
		case "maxmemory_policy":
			policy = v
		}
	}
	if maxmem == "" || policy == "" {
		return 0, "", fmt.Errorf("redis %s: INFO memory gives no maxmemory and maxmemory_policy", r)
	}
	if maxmemory, err = strconv.ParseInt(maxmem, 10, 64); err != nil {
		return 0, "", fmt.Errorf("redis %s: maxmemory %q: %w", r, maxmem, err)
	}
	return maxmemory, policy, nil
}

// EvictionRisk says what Redis's memory limit and eviction policy mean for
// the keys this project keeps there. Without a limit, or with noeviction
// (writes fail when Redis is full, and every writer here retries them),
// nothing is lost: ok. A volatile-* policy evicts the keys with an expiry,
// which are not only caches: entity states (begin afresh; the next
// promotion seeds their history back), the review service's label tallies
// and look-alike sets (cases similar to confirmed fraud are raised less,
// and with --reranker-blend the scorers' blended scores move), the scorers' shared
// alert-budget windows (briefly, the budget counts fewer workers), the
// trainer's and review service's leader locks (a second leader may start
// while the first still works), and analysts' sessions and sign-in
// lockouts: a warning. An allkeys-* policy may evict any key, the model
// registry's and the review queue's included, and the queue is rebuilt
// from the topics only when Redis has lost everything: an error. For both
// the advice is the same: noeviction, and memory enough.
func EvictionRisk(maxmemory int64, policy string) (level slog.Level, msg string, ok bool) {
	switch {
	case maxmemory == 0 || policy == "noeviction":
		return slog.LevelInfo, "", true
	case strings.HasPrefix(policy, "volatile-"):
		return slog.LevelWarn, "Redis evicts keys with an expiry when it reaches maxmemory: entity states begin afresh, label tallies and look-alike sets go (similar cases raised less, blended scores move), the scorers' shared alert budget briefly counts fewer workers, a second trainer or review leader may start, analysts may be signed out; set maxmemory-policy noeviction (writes then fail and are retried) and give Redis the memory it needs", false
	default:
		return slog.LevelError, "Redis may evict any key when it reaches maxmemory (the model registry, thresholds and review queue included; the queue is rebuilt only after a total loss): set maxmemory-policy noeviction (writes then fail and are retried) and give Redis the memory it needs", false
	}
}

// LogEviction logs Redis's eviction settings once at start: what
// EvictionRisk says of them, or that they could not be read.
func (r *Redis) LogEviction(ctx context.Context, log *slog.Logger, c redis.UniversalClient) {
	maxmemory, policy, err := r.Eviction(ctx, c)
	if err != nil {
		log.Info("redis eviction policy not checked; see the README's Redis section", "err", err)
		return
	}
	level, msg, ok := EvictionRisk(maxmemory, policy)
	if ok {
		log.Info("redis eviction", "maxmemory", maxmemory, "policy", policy)
		return
	}
	log.Log(ctx, level, msg, "maxmemory", maxmemory, "policy", policy)
}
