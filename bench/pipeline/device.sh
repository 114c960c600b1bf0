#!/usr/bin/env bash
# The pipeline's figures on a quiet machine without Go: a prebuilt
# loadtest binary, pinned to two physical cores (the shape the README's
# figures have: embedded broker, two scorer workers, one process).
#
#   go build -o .devbench/loadtest ./cmd/loadtest
#   cp -L "$(command -v redis-server)" .devbench/  # optional: the entity runs,
#   # with the libraries ldd lists beyond libc in .devbench/lib
#   OUT=results BIN=.devbench ROUNDS=3 bench/pipeline/device.sh
#
# Each round: drain 2M without entities; drain 2M with card_id and
# merchant_id (states in a redis-server pinned to the same two cores) when
# a redis-server runs there; then, in the last round only, latency at
# 20,000 tx/s for 30 s without and with entities. BATCH (default the load
# test's 4096) sets the scorers' batch size. OUT receives machine.txt and
# runs.txt.
set -uo pipefail
bin=$(cd "${BIN:-.devbench}" && pwd)
out=${OUT:?set OUT to a folder for the results}
rounds=${ROUNDS:-3}
mkdir -p "$out"
PYTHON=$(command -v python3)
# No util-linux: bench/shim/taskset stands in for "taskset -c LIST command...".
command -v taskset >/dev/null || export PATH="$(cd "$(dirname "$0")/.." && pwd)/shim:$PATH"
# Two physical cores, not CPU 0 and not each other's hyperthreads.
pair=${CPUS:-$("$PYTHON" -c '
import os
def cpus(path):
    out = set()
    for part in open(path).read().strip().split(","):
        lo, _, hi = part.partition("-")
        out |= set(range(int(lo), int(hi or lo) + 1))
    return out
pick = []
for c in sorted(os.sched_getaffinity(0)):
    if c == 0 or any(c in cpus(f"/sys/devices/system/cpu/cpu{p}/topology/thread_siblings_list") for p in pick):
        continue
    pick.append(c)
    if len(pick) == 2:
        break
print(",".join(map(str, pick)))
')}
{
	echo "date: $(date -u +%FT%TZ)"
	echo "pinned to cpus $pair"
	lscpu 2>/dev/null | head -20 || grep -m1 'model name' /proc/cpuinfo
	cat /proc/loadavg
} >"$out/machine.txt" 2>&1
cat "$out/machine.txt"

redis=""
if [ -x "$bin/redis-server" ] || command -v redis-server >/dev/null; then
	rs=$([ -x "$bin/redis-server" ] && echo "$bin/redis-server" || command -v redis-server)
	if LD_LIBRARY_PATH="$bin/lib" taskset -c "$pair" "$rs" --port 16379 --bind 127.0.0.1 --save "" --appendonly no --daemonize yes --logfile "$out/redis.log"; then
		sleep 1
		redis="127.0.0.1:16379"
	fi
fi
echo "redis: ${redis:-none}" | tee -a "$out/machine.txt"

lt() { # command flags...
	local cmd=$1
	shift
	echo "## $cmd --batch ${BATCH:-4096} $*" | tee -a "$out/runs.txt"
	taskset -c "$pair" "$bin/loadtest" "$cmd" --batch "${BATCH:-4096}" "$@" 2>&1 | tail -2 | tee -a "$out/runs.txt"
}
for r in $(seq "$rounds"); do
	lt drain --messages 2000000
	[ -n "$redis" ] && lt drain --messages 2000000 --entities card_id,merchant_id --redis "$redis"
done
lt latency --rate 20000 --duration 30s
[ -n "$redis" ] && lt latency --rate 20000 --duration 30s --entities card_id,merchant_id --redis "$redis"
[ -n "$redis" ] && pkill -f "redis-server 127.0.0.1:16379"
exit 0
