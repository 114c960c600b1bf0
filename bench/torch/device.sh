#!/usr/bin/env bash
# All of the speed figures in one run on a quiet machine that has PyTorch
# but no Go: prebuilt test binaries of two commits, timed alternately, then
# compare.sh's side-by-side with PyTorch.
#
#  1. old and new alternately (old first in odd rounds, new first in even
#     ones), COUNT rounds, GOMAXPROCS=1 pinned to CPU: BenchmarkScoreBatch30,
#     EncodeScoreBatch, EncodeScoreBatchNumeric30, JSONOneAtATime and
#     RowDecoder; benchstat old.txt new.txt.
#  2. compare.sh with the new binaries: MODE=score, MODE=one, and MODE=train
#     (Go on two cores against PyTorch with one thread, then two threads on
#     the same two cores).
#
# BIN holds {old,new}-{ae,model,features}.test (go test -c) and benchstat:
#
#   git worktree add --detach ../old OLDCOMMIT
#   for v in old new; do for p in ae model features; do
#     (cd <v's tree> && go test -c -ldflags='-s -w' -o $BIN/$v-$p.test ./pkg/$p); done; done
#   cp $(go env GOPATH)/bin/benchstat $BIN/
#   OUT=results BIN=$BIN bench/torch/device.sh
#
# OUT receives machine.txt, old.txt, new.txt, benchstat.txt and torch.txt.
# TORCH=0 stops after the benchstat part (a short check of one change).
# CPU (default 2) times the one-core work; a second CPU on another physical
# core is chosen for the two-core work (CPUS overrides the pair).
set -uo pipefail
cd "$(dirname "$0")/../.."

bin=$(cd "${BIN:-.devbench}" && pwd)
out=${OUT:?set OUT to a folder for the results}
count=${COUNT:-10}
benchtime=${BENCHTIME:-1s}
rounds=${ROUNDS:-3}
export PYTHON=${PYTHON:-$(command -v python3)}
mkdir -p "$out"
# No util-linux: bench/shim/taskset stands in for "taskset -c LIST command...".
command -v taskset >/dev/null || export PATH="$PWD/bench/shim:$PATH" # the cd above: the repository root

cpu=${CPU:-2}
pair=${CPUS:-}
if [ -z "$pair" ]; then
	# Another physical core for the two-core work: not cpu's hyperthread
	# sibling, not CPU 0 (interrupts).
	pair=$("$PYTHON" -c '
import os, sys
a = int(sys.argv[1])
def cpus(path):
    out = set()
    for part in open(path).read().strip().split(","):
        lo, _, hi = part.partition("-")
        out |= set(range(int(lo), int(hi or lo) + 1))
    return out
sib = cpus(f"/sys/devices/system/cpu/cpu{a}/topology/thread_siblings_list")
other = [c for c in sorted(os.sched_getaffinity(0)) if c != 0 and c not in sib]
print(f"{a},{other[0]}" if other else f"{a}")
' "$cpu")
fi

{
	echo "date: $(date -u +%FT%TZ)"
	echo "one-core work on cpu $cpu; two-core work on cpus $pair"
	lscpu 2>/dev/null || grep -m1 'model name' /proc/cpuinfo
	grep -m1 -o 'avx512[a-z]*' /proc/cpuinfo | head -1 | sed 's/^/first AVX-512 flag: /'
	"$PYTHON" bench/torch/score.py --info
	"$PYTHON" -c 'import torch; print("torch threads", torch.get_num_threads(), torch.__config__.parallel_info())' 2>&1 | head -20
	cat /proc/loadavg
} >"$out/machine.txt" 2>&1
cat "$out/machine.txt" | head -30

: >"$out/old.txt"
: >"$out/new.txt"
run() { # version
	local v=$1
	GOMAXPROCS=1 taskset -c "$cpu" "$bin/$v-ae.test" -test.run '^$' -test.bench '^BenchmarkScoreBatch30$' \
		-test.benchtime "$benchtime" >>"$out/$v.txt"
	GOMAXPROCS=1 taskset -c "$cpu" "$bin/$v-model.test" -test.run '^$' \
		-test.bench '^Benchmark(EncodeScoreBatch|EncodeScoreBatchNumeric30|JSONOneAtATime)$' \
		-test.benchtime "$benchtime" >>"$out/$v.txt"
	GOMAXPROCS=1 taskset -c "$cpu" "$bin/$v-features.test" -test.run '^$' -test.bench '^BenchmarkRowDecoder$' \
		-test.benchtime "$benchtime" >>"$out/$v.txt"
}
for i in $(seq "$count"); do
	if [ $((i % 2)) = 1 ]; then run old; run new; else run new; run old; fi
	echo "round $i of $count done ($(date -u +%T))"
done
"$bin/benchstat" "$out/old.txt" "$out/new.txt" >"$out/benchstat.txt" 2>&1
cat "$out/benchstat.txt"
[ "${TORCH:-1}" = 0 ] && exit 0

export AE_TEST=$bin/new-ae.test MODEL_TEST=$bin/new-model.test GO_VERSION=${GO_VERSION:-prebuilt}
{
	echo "== MODE=score"
	CPU=$cpu ROUNDS=$rounds bench/torch/compare.sh
	echo "== MODE=one"
	MODE=one CPU=$cpu ROUNDS=$rounds bench/torch/compare.sh
	echo "== MODE=train, PyTorch 1 thread"
	MODE=train CPU=$cpu CPUS=$pair ROUNDS=$rounds TORCH_THREADS=1 bench/torch/compare.sh
	echo "== MODE=train, PyTorch 2 threads"
	MODE=train CPU=$cpu CPUS=$pair ROUNDS=$rounds TORCH_THREADS=2 TORCH_CPUS=$pair bench/torch/compare.sh
} 2>&1 | tee "$out/torch.txt"
