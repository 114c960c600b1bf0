#!/usr/bin/env bash
# Rebuilds the profile that `go build` uses for profile-guided optimisation of
# the scorer (cmd/scorer/default.pgo, copied to cmd/loadtest so that the load
# test measures the same build). Go picks a main package's default.pgo up by
# itself (-pgo=auto); this is only needed when the hot path changes.
#
#   scripts/pgo.sh
#
# The profile is the scorer's work: a drain of 2,000,000 generated
# transactions through two scorers on the embedded broker (kafka-go's fetch
# and parse, JSON decoding, batch scoring, deciding, alert writes), plus the
# message path one record at a time and in batches (BenchmarkJSONOneAtATime,
# BenchmarkEncodeScoreBatch), merged. It takes about a minute.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp" cmd/scorer/default.pgo.tmp cmd/loadtest/default.pgo.tmp' EXIT
go build -pgo=off -o "$tmp/loadtest" ./cmd/loadtest
(cd "$tmp" && ./loadtest drain --messages 2000000 --cpuprofile "$tmp/drain.prof" >/dev/null)
go test -pgo=off -c -o "$tmp/model.test" ./pkg/model
for b in JSONOneAtATime EncodeScoreBatch; do
	GOMAXPROCS=1 "$tmp/model.test" -test.run '^$' -test.bench "^Benchmark$b\$" -test.benchtime 4s \
		-test.cpuprofile "$tmp/$b.prof" >/dev/null
done
go tool pprof -proto "$tmp/drain.prof" "$tmp/JSONOneAtATime.prof" "$tmp/EncodeScoreBatch.prof" >"$tmp/merged.pgo"
# go build reads default.pgo by itself, so a truncated one would break every
# build: each is written beside itself, then both are renamed into place.
cp "$tmp/merged.pgo" cmd/scorer/default.pgo.tmp
cp "$tmp/merged.pgo" cmd/loadtest/default.pgo.tmp
mv cmd/scorer/default.pgo.tmp cmd/scorer/default.pgo
mv cmd/loadtest/default.pgo.tmp cmd/loadtest/default.pgo
ls -l cmd/scorer/default.pgo cmd/loadtest/default.pgo
