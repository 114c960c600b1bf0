#!/usr/bin/env bash
# The real deployment's alert quality: `trainer run`, two `scorer run` and
# `generator --truth` with their default flags, on a real Apache Kafka
# (scripts/kafka.sh) and redis-server of its own, then precision and recall
# of the alerts against the generator's truth, read back with kcat. The
# demo (`go run ./cmd/demo`) reports the same two figures in process.
#
#   scripts/deployment-quality.sh [SECONDS]   # default 240
#   TRAINER_ARGS="--every 30s" scripts/deployment-quality.sh   # extra trainer flags
#
# Needs Go, Java 17 and Maven (for the broker), redis-server, kcat, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-240}
work=$(mktemp -d)
kport=29192
rport=26479
brokers=127.0.0.1:$kport
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	scripts/kafka.sh stop "$work/kafka" >/dev/null 2>&1 || true
	redis-cli -p "$rport" shutdown nosave >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT

for c in trainer scorer generator; do go build -o "$work/$c" "./cmd/$c"; done
redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes --logfile "$work/redis.log"
scripts/kafka.sh start "$work/kafka" "$kport" >/dev/null

# Default flags, but for the addresses, distinct metrics ports on one host,
# and --create-topics (topics are not created implicitly).
"$work/generator" --brokers "$brokers" --truth "$work/truth.csv" >"$work/generator.log" 2>&1 &
pids+=($!)
sleep 2 # the generator creates the transactions topic (6 partitions)
for i in 1 2; do
	"$work/scorer" run --brokers "$brokers" --redis 127.0.0.1:$rport --create-topics --metrics-addr 127.0.0.1:$((29200 + i)) >"$work/scorer-$i.log" 2>&1 &
	pids+=($!)
done
# shellcheck disable=SC2086 # TRAINER_ARGS is a list of flags
"$work/trainer" run --brokers "$brokers" --redis 127.0.0.1:$rport --metrics-addr 127.0.0.1:29203 ${TRAINER_ARGS:-} >"$work/trainer.log" 2>&1 &
pids+=($!)
echo "running for ${secs}s ..." >&2
sleep "$secs"
kill "${pids[0]}" # the generator; let the scorers catch up
sleep 10
kcat -b "$brokers" -C -t scores -o beginning -e -q -f '%s\n' >"$work/scores.jsonl"
python3 - "$work/truth.csv" "$work/scores.jsonl" <<'PY'
import csv, json, sys
truth = {r[0]: r[1] for r in csv.reader(open(sys.argv[1])) if r and r[0] != "tx_id"}
seen = {}
for line in open(sys.argv[2]):
    d = json.loads(line)
    seen.setdefault(d["id"], d)  # the first decision of a transaction counts
fraud = [i for i in seen if truth.get(i)]
alerts = [i for i, d in seen.items() if d["alert"]]
tp = sum(1 for i in alerts if truth.get(i))
print(f"decided {len(seen)} of {len(truth)} transactions, {len(fraud)} fraudulent; "
      f"alerts {len(alerts)} ({100*len(alerts)/max(len(seen),1):.2f}%); "
      f"precision {tp/max(len(alerts),1):.2f} recall {tp/max(len(fraud),1):.2f}")
PY
grep -h '"training round"' "$work/trainer.log" | tail -3 >&2 || true
