package main

import (
	"bytes"
	"fmt"
	"os"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fraudstream/fraudstream/pkg/fleet"
)

// minFleetSecret is the shortest fleet secret accepted: a MAC over windows
// anyone with Redis read access sees is only as strong as its key, and a
// short one can be guessed offline.
const minFleetSecret = 16

// readFleetSecret reads the fleet's HMAC secret from path. Surrounding
// whitespace (the newline an editor or `openssl rand -hex 32 > FILE`
// leaves) is not part of it, so workers agree whichever way the file was
// written. Errors name the file, never its content.
func readFleetSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--fleet-secret-file: %w", err)
	}
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return nil, fmt.Errorf("--fleet-secret-file %s is empty", path)
	}
	if len(b) < minFleetSecret {
		return nil, fmt.Errorf("--fleet-secret-file %s holds %d bytes; a fleet secret needs at least %d (e.g. openssl rand -hex 32)", path, len(b), minFleetSecret)
	}
	return b, nil
}

// fleetRejected exports the exchange's rejected peer windows, one series
// per reason from the start.
func fleetRejected(x *fleet.Exchange) []prometheus.Collector {
	var out []prometheus.Collector
	for _, r := range fleet.RejectReasons {
		out = append(out, prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "fraudstream_fleet_peers_rejected_total",
			Help:        "Peer windows ignored by this worker's fleet budget, by reason (unsigned, bad_mac: not authenticated by the fleet secret; malformed; over_bound: counts more than a window holds), one per peer per sync.",
			ConstLabels: prometheus.Labels{"reason": r}},
			func() float64 { return float64(x.Rejected()[r]) }))
	}
	return out
}
