#!/usr/bin/env bash
# A scorer's resident memory over a long run: one `scorer run` deciding a
# steady stream from `generator` on a real Apache Kafka (scripts/kafka.sh)
# and redis-server of its own, its VmRSS sampled every 30 s. Prints the
# samples, then the spread after the warm-up.
#
#   scripts/scorer-rss.sh [MINUTES] [RATE]   # defaults: 10 minutes after a 2-minute warm-up, 10000 tx/s
#
# Needs Go, Java 17 and Maven (for the broker), redis-server.
set -euo pipefail
cd "$(dirname "$0")/.."
mins=${1:-10}
rate=${2:-10000}
work=$(mktemp -d)
kport=29292
rport=26579
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
"$work/generator" --brokers "$brokers" --rate "$rate" >"$work/generator.log" 2>&1 &
pids+=($!)
sleep 5
"$work/trainer" run --once --brokers "$brokers" --redis 127.0.0.1:$rport --min-rows 20000 >"$work/trainer.log" 2>&1
"$work/scorer" run --brokers "$brokers" --redis 127.0.0.1:$rport --create-topics --metrics-addr 127.0.0.1:29301 >"$work/scorer.log" 2>&1 &
scorer=$!
pids+=($scorer)
rss() { awk '/VmRSS/ {print $2}' "/proc/$scorer/status"; }
decided() { curl -s 127.0.0.1:29301/metrics | awk '/^fraudstream_records_total/ {n += $2} END {print n+0}'; }
echo "warm-up: 2 minutes" >&2
sleep 120
samples=()
for ((i = 0; i <= mins * 2; i++)); do
	r=$(rss)
	samples+=("$r")
	printf '%5ds  rss %7d KiB  decided %d\n' $((i * 30)) "$r" "$(decided)"
	[ "$i" -lt $((mins * 2)) ] && sleep 30
done
printf '%s\n' "${samples[@]}" | sort -n | awk 'NR==1 {lo=$1} {hi=$1} END {printf "after warm-up: min %d KiB, max %d KiB, spread %.1f%% of the min\n", lo, hi, 100*(hi-lo)/lo}'
