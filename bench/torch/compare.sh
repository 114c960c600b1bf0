#!/usr/bin/env bash
# Go against PyTorch, one at a time, alternately (Go, PyTorch, Go, ...),
# ROUNDS times each; prints each measurement, the medians and their ratio.
#
# MODE=score (default): pkg/ae's BenchmarkScoreBatch30 (score pre-encoded
# batches of 1024, 30 numeric fields, network 30-64-16-64-30) and score.py
# (the same work in PyTorch, one thread), both pinned to CPU (default 1)
# with taskset.
#
# MODE=train: pkg/ae's BenchmarkTrain100k (100,000 x 30, 20 epochs, batch
# 256) on CPUS (default 0,1) with GOMAXPROCS=2, and train.py (the same fit
# in PyTorch) with TORCH_THREADS threads (default 1, PyTorch's fastest
# here) pinned to TORCH_CPUS (default CPU; give two CPUs for two threads);
# the ratio is PyTorch's seconds over Go's.
#
# MODE=one: pkg/model's BenchmarkJSONOneAtATime (one message at a time,
# JSON bytes to a score and its top three reasons) and score.py --batch 1
# (PyTorch's forward and error for one already-encoded record: no JSON,
# no encoding, no reasons, so PyTorch's side does less work), pinned to CPU.
#
#   bench/torch/compare.sh            # from the repository root
#   ROUNDS=5 CPU=0 SECONDS_EACH=3 bench/torch/compare.sh
#   MODE=train ROUNDS=3 bench/torch/compare.sh
#   MODE=one bench/torch/compare.sh
#
# AE_TEST and MODEL_TEST name prebuilt test binaries of pkg/ae and pkg/model
# (go test -c) to run instead of building them, for a machine without Go
# (bench/torch/device.sh); GO_VERSION then labels the output.
#
# Needs PyTorch for $PYTHON (Debian: apt-get install python3-torch, whose
# interpreter is /usr/bin/python3) and, for a fair figure, OpenBLAS behind
# it (apt-get install libopenblas0-pthread; with only Debian's reference
# libblas3, PyTorch is about 10x slower here). The BLAS in use is printed.
# Nothing else should run on those CPUs while it measures.
set -euo pipefail
cd "$(dirname "$0")/../.."

rounds=${ROUNDS:-3}
cpu=${CPU:-1}
secs=${SECONDS_EACH:-2}
python=${PYTHON:-/usr/bin/python3}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
ae_test=${AE_TEST:-}
model_test=${MODEL_TEST:-}
if [ -z "$ae_test" ]; then
	ae_test=$work/ae.test
	go test -c -o "$ae_test" ./pkg/ae
fi
if [ "${MODE:-score}" = one ] && [ -z "$model_test" ]; then
	model_test=$work/model.test
	go test -c -o "$model_test" ./pkg/model
fi
"$python" -c 'import torch' 2>/dev/null || { echo "no PyTorch for $python (apt-get install python3-torch)"; exit 1; }
echo "cpu $cpu, $rounds rounds, ${secs}s each; Go ${GO_VERSION:-$(go env GOVERSION)}; $("$python" bench/torch/score.py --info)"

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2 }'; }

if [ "${MODE:-score}" = train ]; then
	cpus=${CPUS:-0,1}
	threads=${TORCH_THREADS:-1}
	torch_cpus=${TORCH_CPUS:-$cpu}
	echo "training: go on cpus $cpus (GOMAXPROCS=2), torch with $threads thread(s) on cpus $torch_cpus"
	go_runs=() torch_runs=()
	for i in $(seq "$rounds"); do
		g=$(GOMAXPROCS=2 taskset -c "$cpus" "$ae_test" -test.run '^$' -test.bench '^BenchmarkTrain100k$' \
			-test.benchtime 1x | awk '/^BenchmarkTrain100k/ { for (i = 1; i < NF; i++) if ($(i+1) == "s/fit") print $i }')
		echo "round $i  go    $g s"
		t=$(OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads MKL_NUM_THREADS=$threads taskset -c "$torch_cpus" "$python" bench/torch/train.py --threads "$threads" | awk '/^torch/ { print $2 }')
		echo "round $i  torch $t s"
		go_runs+=("$g") torch_runs+=("$t")
	done
	gm=$(median "${go_runs[@]}")
	tm=$(median "${torch_runs[@]}")
	echo "median go $gm s, torch $tm s"
	awk -v g="$gm" -v t="$tm" 'BEGIN { printf "torch / go = %.2f (Go is that many times faster)\n", t / g }'
	exit 0
fi

if [ "${MODE:-score}" = one ]; then
	go_runs=() torch_runs=()
	for i in $(seq "$rounds"); do
		g=$(GOMAXPROCS=1 taskset -c "$cpu" "$model_test" -test.run '^$' -test.bench '^BenchmarkJSONOneAtATime$' \
			-test.benchtime "${secs}s" | awk '/^BenchmarkJSONOneAtATime/ { for (i = 1; i < NF; i++) if ($(i+1) == "records/s") print $i }')
		echo "round $i  go    $g records/s (JSON to score and reasons)"
		t=$(OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 taskset -c "$cpu" "$python" bench/torch/score.py --batch 1 --seconds "$secs" | awk '/^torch/ { print $2 }')
		echo "round $i  torch $t records/s (forward and error of one encoded record)"
		go_runs+=("$g") torch_runs+=("$t")
	done
	gm=$(median "${go_runs[@]}")
	tm=$(median "${torch_runs[@]}")
	echo "median go $gm, torch $tm records/s, one at a time"
	awk -v g="$gm" -v t="$tm" 'BEGIN { printf "go / torch = %.2f\n", g / t }'
	exit 0
fi

go_runs=() torch_runs=()
for i in $(seq "$rounds"); do
	g=$(GOMAXPROCS=1 taskset -c "$cpu" "$ae_test" -test.run '^$' -test.bench '^BenchmarkScoreBatch30$' \
		-test.benchtime "${secs}s" | awk '/^BenchmarkScoreBatch30/ { for (i = 1; i < NF; i++) if ($(i+1) == "records/s") print $i }')
	echo "round $i  go    $g records/s"
	t=$(OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 taskset -c "$cpu" "$python" bench/torch/score.py --seconds "$secs" | awk '/^torch/ { print $2 }')
	echo "round $i  torch $t records/s"
	go_runs+=("$g") torch_runs+=("$t")
done

gm=$(median "${go_runs[@]}")
tm=$(median "${torch_runs[@]}")
echo "median go $gm, torch $tm records/s"
awk -v g="$gm" -v t="$tm" 'BEGIN { printf "go / torch = %.2f\n", g / t }'
for i in $(seq 0 $((rounds - 1))); do
	awk -v r=$((i + 1)) -v g="${go_runs[$i]}" -v t="${torch_runs[$i]}" 'BEGIN { printf "round %d ratio %.2f\n", r, g / t }'
done
