#!/usr/bin/env bash
# Managed-identity benchmark: token requests served from the cache against the instance
# endpoint on the same server, and the cost of cold issuance (one RS256 signature per token).
#
#   scripts/bench-identity.sh            # ROUNDS=3 DURATION=10s CONNECTIONS=64
#
# Method (results and discussion: bench/identity.md):
#   * azimds (release) with one tokio worker (AZIMDS_WORKERS=1) pinned to CPU 0, wrk pinned
#     to CPU 1, loopback only; every limit off (--rate-limit 0 --identity-rate-limit 0
#     --identity-concurrency 0) so the server, not the throttle, is measured. Keys and state
#     in a temporary data directory, removed at the end.
#   * Throughput: `wrk -t1 -cCONNECTIONS -dDURATION` with `Metadata: true`, ROUNDS rounds; in
#     each round the instance URL (/metadata/instance?api-version=2021-02-01) and the token
#     URL (warm: its token is cached before the round) alternate, order flipped each round.
#   * Cold issuance: every request names a resource never asked before (a wrk Lua script
#     numbers them), so every request is a cache miss and signs a new token (signing runs on
#     tokio's blocking pool, which the pinning also keeps on CPU 0). Not bypass_cache=true:
#     concurrent bypass requests rightly share one signature (single-flight).
#   * The ratio that matters on a shared machine is server CPU per request (throughput of a
#     CPU-bound server is its inverse); req/s is reported too but moves with other load.
#     Server CPU per request = (utime+stime delta from /proc/PID/stat) / requests.
# Output: a table on stdout; raw wrk output in target/bench-identity/.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
COLD_CONNECTIONS=${COLD_CONNECTIONS:-8}
PORT=${PORT:-18090}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
SKIP_BUILD=${SKIP_BUILD:-0}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
OUT=$ROOT/target/bench-identity
mkdir -p "$OUT"
BIN=${AZIMDS_BIN:-$ROOT/target/release/azimds}
CLK_TCK=$(getconf CLK_TCK)
log() { printf '[bench-identity %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

command -v wrk >/dev/null || { log "installing wrk"; apt-get install -y wrk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y wrk >/dev/null; }; }
command -v curl >/dev/null || apt-get install -y curl >/dev/null
[ "$SKIP_BUILD" = 1 ] || cargo build --release --bin azimds 2>&1 | tail -n 1 >&2

DATA=$(mktemp -d)
PID=""
cleanup() {
  if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then kill "$PID"; wait "$PID" 2>/dev/null || true; fi
  rm -rf "$DATA"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

VMS=$DATA/vms.yaml
cat >"$VMS" <<'YAML'
vms:
  - instance:
      compute: {name: bench-vm, vmId: 0b4a8b3e-58a5-4d62-9f6b-7f1c3b0c2f11, location: westeurope}
    identities:
      tenantId: 72f988bf-86f1-41af-91ab-2d7cd011db47
      systemAssigned: {}
YAML

AZIMDS_WORKERS=1 taskset -c "$SERVER_CPU" "$BIN" serve --listen "127.0.0.1:$PORT" \
  --control "unix:$DATA/control.sock" --data "$DATA/state" --vms "$VMS" \
  --rate-limit 0 --identity-rate-limit 0 --identity-concurrency 0 \
  >"$OUT/azimds.log" 2>&1 &
PID=$!
for _ in $(seq 1 200); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.05; done

BASE=http://127.0.0.1:$PORT
INSTANCE="$BASE/metadata/instance?api-version=2021-02-01"
TOKEN="$BASE/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fmanagement.azure.com%2F"
COLD="$BASE/metadata/identity/oauth2/token"
cat >"$OUT/cold.lua" <<'LUA'
-- A new resource per request: every request is a cache miss.
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://cold-" .. n .. ".example/", { ["Metadata"] = "true" })
end
LUA
curl -sf -H 'Metadata: true' "$TOKEN" >/dev/null   # the warm runs serve this cached token

cpu() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$PID/stat"; }
run() { # name url connections round [wrk args...]
  local c0 c1 out reqs rps name=$1 url=$2 conns=$3 round=$4
  shift 4
  out=$OUT/$name-$round.txt
  c0=$(cpu)
  taskset -c "$CLIENT_CPU" wrk -t1 -c"$conns" -d"$DURATION" -H 'Metadata: true' "$@" "$url" >"$out"
  c1=$(cpu)
  reqs=$(awk '/requests in/ { print $1 }' "$out")
  rps=$(awk '/Requests\/sec/ { print $2 }' "$out")
  non2xx=$(awk '/Non-2xx/ { print $NF }' "$out")
  awk -v n="$name" -v r="$round" -v rps="$rps" -v reqs="$reqs" -v t=$((c1 - c0)) -v hz="$CLK_TCK" -v bad="${non2xx:-0}" \
    'BEGIN { printf "%-9s round %d: %9.0f req/s  %7.1f us CPU/req  non-2xx %s\n", n, r, rps, t / hz * 1e6 / reqs, bad }'
  printf '%s %s %s %s\n' "$name" "$round" "$rps" "$(awk -v t=$((c1 - c0)) -v hz="$CLK_TCK" -v reqs="$reqs" 'BEGIN { printf "%.2f", t / hz * 1e6 / reqs }')" >>"$OUT/results.txt"
}

: >"$OUT/results.txt"
for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then run instance "$INSTANCE" "$CONNECTIONS" "$r"; run token "$TOKEN" "$CONNECTIONS" "$r"
  else run token "$TOKEN" "$CONNECTIONS" "$r"; run instance "$INSTANCE" "$CONNECTIONS" "$r"; fi
done
for r in $(seq 1 "$ROUNDS"); do run cold "$COLD" "$COLD_CONNECTIONS" "$r" -s "$OUT/cold.lua"; done

python3 - "$OUT/results.txt" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
by = {}
for name, _, rps, cpu in rows:
    by.setdefault(name, []).append((float(rps), float(cpu)))
med = {n: (statistics.median(r for r, _ in v), statistics.median(c for _, c in v)) for n, v in by.items()}
print()
for n, (rps, cpu) in med.items():
    print(f"median {n:9s} {rps:9.0f} req/s  {cpu:7.1f} us server CPU per request")
print(f"token (cached) / instance: {med['instance'][1] / med['token'][1]:.2f} by server CPU per request, "
      f"{med['token'][0] / med['instance'][0]:.2f} by req/s")
print(f"cold issuance: {med['cold'][1]:.0f} us server CPU per token, {med['cold'][0]:.0f} tokens/s on one pinned core")
PY
