#!/usr/bin/env bash
# Fleet mode at scale (issue 11): a host's cold start from an etcd holding COUNT VMs, and its
# guest throughput with etcd up against etcd down.
#
#   scripts/bench-fleet-scale.sh                  # COUNT=100000, SERVED="1000 all"; ~15 min
#   COUNT=2000 SERVED="100 all" ROUNDS=1 DURATION=2s scripts/bench-fleet-scale.sh   # smoke run, ~1 min
#   OUTAGE=stop scripts/bench-fleet-scale.sh      # etcd frozen (SIGSTOP) instead of killed
#   OUTAGE=none COUNT=2000 SERVED=1000 STARTS=1 ROUNDS=8 scripts/bench-fleet-scale.sh
#                                                 # a control: etcd stays up in the "down" runs,
#                                                 # to see how far paired ratios stray by noise alone
#
# Method (the driver is scripts/bench_fleet_scale.py):
#   1. examples/scale_vms.rs writes COUNT realistic VMs plus `vm-local` (caller 127.0.0.1), the
#      same 3.9 KB documents as scripts/bench-scale.sh.
#   2. For each layout of SERVED (a number N: vm-local and N-1 VMs evenly spread through the
#      file are assigned to host `bench-host`, every other VM to one of 99 other host names by its
#      entry's `host`; `all`: every VM to bench-host), a new single-member etcd (Debian's, fsync
#      on, --quota-backend-bytes QUOTA_BYTES, default 8 GiB) is loaded with
#      `azimds store import --store etcd://… --etcd-prefix /bench/` from an export file (JSON
#      lines, docs/fleet.md "Moving between stores"; one transaction per VM). Reported: the
#      import's wall, CPU and peak RSS, and etcd's dbSize (`etcdctl endpoint status`).
#   3. STARTS+1 starts of `azimds serve --store etcd://… --host-name bench-host` (unpinned, new
#      process each): spawn -> its ready line (the log line with ` listen=`) and -> the first
#      guest 200 for vm-local (GET /metadata/instance from 127.0.0.1, polled every 10 ms from
#      spawn, scripts/bench_start.py's probe); CPU seconds; VmRSS at the first 200 and SETTLE s
#      later; VmHWM; /v1/status's VM count (must be the layout's served count). The first
#      start makes the signing keys and is reported apart; the median of the other STARTS.
#   4. Outage (layouts with N, ROUNDS > 0): one host pinned to SERVER_CPU with --workers 1 (as
#      scripts/bench-scale.sh's throughput step), wrk pinned to CLIENT_CPU with the flags of
#      scripts/bench.sh (`wrk -t1 -cCONNECTIONS -dDURATION --latency`, GET /metadata/instance
#      as vm-local). ROUNDS rounds, each one run with etcd up and one with etcd down, the order
#      flipping every round. Down: etcd SIGKILLed (OUTAGE=kill; restarted on its data after the
#      run) or SIGSTOPped (OUTAGE=stop; SIGCONT after), OUTAGE_SETTLE s before the run; /readyz
#      is recorded before and after each run (503 shows the host noticed). Reported: medians of
#      req/s up and down, their ratio, the median of the per-round ratios, non-2xx answers.
#   Load averages are recorded with every figure: the machine may be shared.
#
# Knobs (defaults): COUNT=100000 SERVED="1000 all" STARTS=3 SETTLE=1 ROUNDS=3 DURATION=10s
#   WARMUP=2s CONNECTIONS=64 OUTAGE=kill OUTAGE_SETTLE=3 SERVER_CPU=0 CLIENT_CPU=1
#   PORT_BASE=18700 QUOTA_BYTES=8589934592 SKIP_BUILD=0 OUT=target/bench-fleet-scale
#   TMPDIR_BASE= (where etcd's data goes; default $TMPDIR or /tmp; ~2.5 GB at 100k VMs)
# Output: the summary on stdout and in $OUT/summary.txt, every record in $OUT/records.jsonl,
#   wrk's output and the servers' logs in $OUT/raw/.
# Needs: etcd and etcdctl (Debian etcd-server, etcd-client), wrk, taskset, python3.
set -euo pipefail
COUNT=${COUNT:-100000}
SKIP_BUILD=${SKIP_BUILD:-0}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
OUT=${OUT:-$ROOT/target/bench-fleet-scale}
for tool in etcd etcdctl wrk taskset python3; do
  command -v "$tool" >/dev/null || { echo "$tool is required" >&2; exit 1; }
done
mkdir -p "$OUT/raw" "$OUT/bin"
rm -f "$OUT"/raw/* "$OUT/records.jsonl" "$OUT/summary.txt"
if [ "$SKIP_BUILD" != 1 ]; then
  CARGO_INCREMENTAL=0 cargo build --release --quiet --features fleet --bin azimds --example scale_vms
fi
# Private copies: a rebuild of target/release during the run must not change what is measured.
cp target/release/azimds target/release/examples/scale_vms "$OUT/bin/"
"$OUT/bin/azimds" store import --help | grep -q -- --etcd-prefix || { echo "azimds was built without --features fleet" >&2; exit 1; }
echo "[bench-fleet-scale] git $(git rev-parse --short HEAD)$(git status --porcelain -- src | grep -q . && echo ' (src/ modified)'), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
"$OUT/bin/scale_vms" "$COUNT" "$OUT/vms.json"
trap 'rm -f "$OUT/vms.json"' EXIT
python3 scripts/bench_fleet_scale.py "$OUT/bin/azimds" "$OUT/vms.json" "$OUT" | tee "$OUT/summary.txt"
