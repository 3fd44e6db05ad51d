#!/usr/bin/env bash
# Instructions per guest request, azimds against the raw-hyper ceiling, counted (not sampled)
# with valgrind's callgrind: noise-free, so it compares builds on a shared machine.
#
#   scripts/bench-instructions.sh                 # both URLs, 2,000 and 7,000 requests
#   AZIMDS_BIN=/other/azimds scripts/bench-instructions.sh   # another build
#
# Method: each server runs under `valgrind --tool=callgrind` with one tokio worker; a
# keep-alive client (one connection, Python's http.client) sends WARMUP requests, the
# counters are zeroed (callgrind_control -z), N more requests are sent, and the counters are
# dumped (callgrind_control -d): instructions per request = the dump's total / N, with
# start-up (key generation, store creation) left out. The ceiling serves the same bytes
# azimds returned.
# Env (defaults): WARMUP=200 N=5000 API_VERSION=2021-02-01 AZIMDS_BIN=target/release/azimds
#   CEILING_BIN=target/release/examples/ceiling SKIP_BUILD=0 OUT=target/bench-instructions
set -euo pipefail
cd "$(dirname "$0")/.."

WARMUP=${WARMUP:-200}
N=${N:-5000}
API_VERSION=${API_VERSION:-2021-02-01}
AZIMDS_BIN=${AZIMDS_BIN:-target/release/azimds}
CEILING_BIN=${CEILING_BIN:-target/release/examples/ceiling}
OUT=${OUT:-target/bench-instructions}
mkdir -p "$OUT"
command -v valgrind >/dev/null || { apt-get install -y valgrind >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y valgrind >/dev/null; }; }
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  cargo build --release --bins --examples >"$OUT/build.log" 2>&1 || { tail -n 30 "$OUT/build.log" >&2; exit 1; }
fi

INSTANCE="/metadata/instance?api-version=$API_VERSION"
TEXT="/metadata/instance/compute/vmId?api-version=$API_VERSION&format=text"

# Sends N keep-alive GETs with Metadata: true to 127.0.0.1:PORT; checks every status is 200.
client() {
  python3 - "$1" "$2" "$3" <<'EOF'
import http.client, sys
port, path, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
for _ in range(n):
    conn.request("GET", path, headers={"Metadata": "true"})
    response = conn.getresponse()
    response.read()
    if response.status != 200:
        sys.exit(f"status {response.status} for {path}")
EOF
}

# Runs one server under callgrind; prints the instructions of N requests to PATH.
count() {
  local name=$1 path=$2 n=$3 port out
  port=$((20000 + RANDOM % 20000))
  out="$OUT/$name-$(echo "$path" | md5sum | cut -c1-6).callgrind"
  rm -f "$out" "$out".*
  local data
  data=$(mktemp -d)
  if [ "$name" = azimds ]; then
    AZIMDS_WORKERS=1 valgrind --tool=callgrind --callgrind-out-file="$out" -q \
      "$AZIMDS_BIN" serve --listen "127.0.0.1:$port" --control 127.0.0.1:0 --rate-limit 0 \
      --data "$data" 2>"$OUT/$name.stderr" &
  else
    WORKERS=1 valgrind --tool=callgrind --callgrind-out-file="$out" -q \
      "$CEILING_BIN" --listen "127.0.0.1:$port" --body-json "$OUT/instance.json" \
      --body-text "$OUT/vmid.txt" 2>"$OUT/$name.stderr" >/dev/null &
  fi
  local pid=$!
  for _ in $(seq 1 3000); do
    curl -sf -o /dev/null -H 'Metadata: true' "http://127.0.0.1:$port$path" && break
    sleep 0.1
  done
  client "$port" "$path" "$WARMUP"
  callgrind_control -z "$pid" >/dev/null 2>&1
  client "$port" "$path" "$n"
  callgrind_control -d "$pid" >/dev/null 2>&1
  # azimds stops cleanly on SIGINT; the ceiling has no handler (and a background job of a
  # script ignores SIGINT), so it gets SIGTERM, whose default action valgrind reports too.
  if [ "$name" = azimds ]; then kill -INT "$pid"; else kill -TERM "$pid"; fi
  wait "$pid" || true
  rm -rf "$data"
  # The dump after the zeroing holds exactly the measured requests: its "summary:" line.
  local dump
  dump=$(ls "$out".* 2>/dev/null | sort -t. -k3 -n | head -n 1)
  awk '/^(summary|totals):/ {print $2; exit}' "$dump"
}

# The ceiling serves azimds' bytes: fetch them once from a plain azimds.
fetch_bodies() {
  local port=$((20000 + RANDOM % 20000)) data
  data=$(mktemp -d)
  "$AZIMDS_BIN" serve --listen "127.0.0.1:$port" --control 127.0.0.1:0 --rate-limit 0 --data "$data" 2>/dev/null &
  local pid=$!
  for _ in $(seq 1 100); do curl -sf -o /dev/null -H 'Metadata: true' "http://127.0.0.1:$port$INSTANCE" && break; sleep 0.1; done
  curl -sf -H 'Metadata: true' "http://127.0.0.1:$port$INSTANCE" >"$OUT/instance.json"
  curl -sf -H 'Metadata: true' "http://127.0.0.1:$port$TEXT" >"$OUT/vmid.txt"
  kill "$pid"; wait "$pid" || true
  rm -rf "$data"
}

fetch_bodies
printf '| URL | server | instructions per request | ratio to ceiling |\n|---|---|---|---|\n'
for url in "$INSTANCE" "$TEXT"; do
  declare -A per
  for name in azimds ceiling; do
    total=$(count "$name" "$url" "$N")
    per[$name]=$(( total / N ))
  done
  ratio=$(awk -v a="${per[azimds]}" -v c="${per[ceiling]}" 'BEGIN {printf "%.2f", a / c}')
  printf '| %s | azimds | %s | %s |\n' "$url" "${per[azimds]}" "$ratio"
  printf '| %s | ceiling | %s | 1.00 |\n' "$url" "${per[ceiling]}"
  unset per
done
