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
# Then (FAULTS=1, the default) the cost of fault rules on other VMs: two VMs in source-address
# mode, VM b's /metadata/instance measured with no rule, with a rule on VM a, and VM a's own
# requests under a rule for its token endpoint (a rule that does not match the path).
# Env (defaults): WARMUP=200 N=5000 API_VERSION=2021-02-01 AZIMDS_BIN=target/release/azimds
#   CEILING_BIN=target/release/examples/ceiling SKIP_BUILD=0 OUT=target/bench-instructions
#   FAULTS=1
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

# Sends N keep-alive GETs with Metadata: true to 127.0.0.1:PORT (from SOURCE, default
# 127.0.0.1); checks every status is 200.
client() {
  python3 - "$1" "$2" "$3" "${4:-127.0.0.1}" <<'EOF'
import http.client, sys
port, path, n, source = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120, source_address=(source, 0))
for _ in range(n):
    conn.request("GET", path, headers={"Metadata": "true"})
    response = conn.getresponse()
    response.read()
    if response.status != 200:
        sys.exit(f"status {response.status} for {path}")
EOF
}

# A port nothing listens on (another server on a shared machine would be measured instead).
free_port() {
  local port
  while :; do
    port=$((20000 + RANDOM % 20000))
    ss -ltn | grep -q ":$port " || { echo "$port"; return; }
  done
}

# Waits until the server PID logged that it listens on PORT (azimds: listen=ADDR; the
# ceiling: "listening on ADDR"), up to 5 minutes (start-up under valgrind is slow).
wait_listening() {
  local log=$1 port=$2 pid=$3
  for _ in $(seq 1 3000); do
    grep -qE "(listen=|listening on )127\.0\.0\.1:$port( |$)" "$log" && return
    kill -0 "$pid" 2>/dev/null || { echo "the server exited: $(tail -n 3 "$log")" >&2; exit 1; }
    sleep 0.1
  done
  echo "the server did not start" >&2; exit 1
}

# Runs one server under callgrind; prints the instructions of N requests to PATH.
count() {
  local name=$1 path=$2 n=$3 port out
  port=$(free_port)
  out="$OUT/$name-$(echo "$path" | md5sum | cut -c1-6).callgrind"
  rm -f "$out" "$out".*
  local data
  data=$(mktemp -d)
  if [ "$name" = azimds ]; then
    AZIMDS_WORKERS=1 valgrind --tool=callgrind --callgrind-out-file="$out" -q \
      "$AZIMDS_BIN" serve --listen "127.0.0.1:$port" --control 127.0.0.1:0 --rate-limit 0 \
      --data "$data" >"$OUT/$name.stdout" 2>"$OUT/$name.stderr" &
  else
    WORKERS=1 valgrind --tool=callgrind --callgrind-out-file="$out" -q \
      "$CEILING_BIN" --listen "127.0.0.1:$port" --body-json "$OUT/instance.json" \
      --body-text "$OUT/vmid.txt" >"$OUT/$name.stderr" 2>&1 &
  fi
  local pid=$!
  wait_listening "$OUT/$name.stderr" "$port" "$pid"
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
  local port data
  port=$(free_port)
  data=$(mktemp -d)
  "$AZIMDS_BIN" serve --listen "127.0.0.1:$port" --control 127.0.0.1:0 --rate-limit 0 --data "$data" >/dev/null 2>&1 &
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

[ "${FAULTS:-1}" = 1 ] || exit 0

# Two VMs, a (127.0.0.2) and b (127.0.0.1); prints the instructions per request of N requests
# from SOURCE after RULE (a fault rule's JSON, or "none") was added through the control API.
count_vms() {
  local source=$1 rule=$2 n=$3 port cport out data pid
  port=$(free_port); cport=$(free_port)
  out="$OUT/azimds-vms-$(echo "$source$rule" | md5sum | cut -c1-6).callgrind"
  rm -f "$out" "$out".*
  data=$(mktemp -d)
  printf '%s' '{"vms":[{"id":"a","callers":["127.0.0.2"],"instance":{"compute":{"name":"a"}},"identities":{"systemAssigned":{}}},{"id":"b","callers":["127.0.0.1"],"instance":{"compute":{"name":"b"}}}]}' >"$OUT/two-vms.json"
  AZIMDS_WORKERS=1 valgrind --tool=callgrind --callgrind-out-file="$out" -q \
    "$AZIMDS_BIN" serve --listen "127.0.0.1:$port" --control "127.0.0.1:$cport" --rate-limit 0 \
    --callers source-address --vms "$OUT/two-vms.json" --data "$data" >"$OUT/azimds-vms.stdout" \
    2>"$OUT/azimds-vms.stderr" &
  pid=$!
  wait_listening "$OUT/azimds-vms.stderr" "$port" "$pid"
  if [ "$rule" != none ]; then
    curl -sf -o /dev/null -H "Authorization: Bearer $(cat "$data/control-token")" \
      -H 'Content-Type: application/json' -d "$rule" "http://127.0.0.1:$cport/v1/faults"
  fi
  client "$port" "$INSTANCE" "$WARMUP" "$source"
  callgrind_control -z "$pid" >/dev/null 2>&1
  client "$port" "$INSTANCE" "$n" "$source"
  callgrind_control -d "$pid" >/dev/null 2>&1
  kill -INT "$pid"; wait "$pid" || true
  rm -rf "$data"
  local dump
  dump=$(ls "$out".* 2>/dev/null | sort -t. -k3 -n | head -n 1)
  awk -v n="$n" '/^(summary|totals):/ {print int($2 / n); exit}' "$dump"
}

printf '\n| %s, two VMs | instructions per request |\n|---|---|\n' "$INSTANCE"
printf '| VM b, no fault rule | %s |\n' "$(count_vms 127.0.0.1 none "$N")"
printf '| VM b, a rule on VM a (503 on every endpoint) | %s |\n' "$(count_vms 127.0.0.1 '{"vm":"a","status":503}' "$N")"
printf '| VM a itself, its rule on the token endpoint only | %s |\n' "$(count_vms 127.0.0.2 '{"vm":"a","endpoint":"token","status":503}' "$N")"
