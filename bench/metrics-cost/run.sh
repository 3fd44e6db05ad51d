#!/usr/bin/env bash
# Counted with callgrind: total instructions of N iterations minus those of 0, over N.
# Each iteration counts one request (a counter indexed or labeled by endpoint/status/version)
# and observes one latency. metrics-* include rendering the accumulated histogram samples,
# since its exporter buffers them until upkeep or a scrape.
set -euo pipefail
cd "$(dirname "$0")"
N=${N:-100000}
command -v valgrind >/dev/null || { apt-get install -y valgrind >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y valgrind >/dev/null; }; }
CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target} cargo build --release --quiet
BIN=${CARGO_TARGET_DIR:-target}/release/metrics-cost
count() { valgrind --tool=callgrind --callgrind-out-file=/dev/null "$BIN" "$1" "$2" 2>&1 | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'; }
printf '| way | instructions per request |\n|---|---|\n'
for mode in plain pc-handles pc-family metrics-handles metrics-macro; do
  zero=$(count "$mode" 0); full=$(count "$mode" "$N")
  printf '| %s | %s |\n' "$mode" $(( (full - zero) / N ))
done
