#!/usr/bin/env bash
# Fleet mode (issue 11): how long a write through host A takes to be served by host B.
#
#   scripts/bench-fleet.sh                 # 300 writes
#   WRITES=1000 scripts/bench-fleet.sh
#
# Method: one etcd member (Debian's etcd-server, fsync on, data dir on the local disk) and two
# release azimds (--features fleet) on loopback, host names a and b, source-address mode. VM
# `v` is assigned to b and calls from 127.0.0.1. Each round PATCHes v's compute.name through
# A's control API (sequential, one connection each) and then asks B's guest listener for the
# name until it is the new one; the time from sending the PATCH to B's first answer with the
# new name is one sample (it includes the PATCH's etcd commit, ~0.5 ms fsync'd, and A's own
# watch wait, which the PATCH returns after). Also the PATCH's own latency. Reports p50, p90,
# p99 and max. The driver is bench_fleet.py; output on stdout and target/bench-fleet/.
set -euo pipefail
WRITES=${WRITES:-300}
OUT=target/bench-fleet
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
cargo build --release --quiet --features fleet --bin azimds
python3 scripts/bench_fleet.py target/release/azimds "$WRITES" | tee "$OUT/summary.txt"
