#!/usr/bin/env bash
# Scale benchmark (issues #3 and #16): azimds with COUNT VMs (default 100,000) on one host.
#
#   scripts/bench-scale.sh                      # COUNT=100000, every figure; ~12 min on a quiet machine
#   COUNT=2000 scripts/bench-scale.sh           # smoke run, 1-1.5 min (short defaults below 50k VMs)
#   ROUNDS=0 TOUCH=0 scripts/bench-scale.sh     # start and import figures only (~4 min at 100k)
#   AZIMDS_BIN=/tmp/glibc/azimds MAIN_LABEL=glibc \
#   AZIMDS_BIN_ALT=/tmp/mimalloc/azimds ALT_LABEL=mimalloc SKIP_BUILD=1 scripts/bench-scale.sh
#                                               # allocator comparison: import, start, idle and
#                                               # touch figures for both binaries, side by side
#   python3 scripts/bench_scale_summary.py target/bench-scale   # reprint the summary of a run
#
# Steps (each binary: AZIMDS_BIN, and AZIMDS_BIN_ALT if given, alternating within a step):
#   1. Generate (examples/scale_vms.rs) COUNT realistic VMs plus `vm-local` (caller 127.0.0.1) as
#      JSON and as block-style YAML; a bad file (the same VMs without the last one, VM COUNT/2's
#      compute.zone a number); the one-VM file (vm-local only).
#   2. Import JSON: a new data directory, initialised by one start without --vms (keys and token
#      made; that start is timed and reported apart), then `serve --vms FILE`: the import into an
#      empty store; spawn -> first guest 200 (a client
#      polling GET /metadata/instance from 127.0.0.1 every 10 ms from process start,
#      scripts/bench_start.py), the process's CPU seconds, VmHWM (peak RSS) and VmRSS.
#   3. Re-import: a restart with the same --vms on that data directory: wall to first 200, and
#      the server's log must say the file was not parsed again (or written=0 deleted=0).
#   4. Import YAML: the same as 2 with the YAML file.
#   5. Bad entry (AZIMDS_BIN only): on the JSON store, `serve --vms BAD`; the server must exit
#      non-zero with a message naming the file, `VM <index>` and the JSON path
#      `vms[<index>].instance.compute.zone`; before and after, a restart without --vms reports
#      the VM count and the ETags of VM COUNT/2 and VM COUNT (absent from the bad file): unchanged.
#   6. Start from the store: STARTS restarts without --vms (median reported), wall to first 200,
#      CPU seconds, RSS after start (VmRSS at the first 200 and SETTLE s later, the larger).
#   7. Idle RSS: a fresh data directory, no --vms (the built-in demo VM), --callers single
#      --workers 1; RSS at the first 200 and SETTLE s later.
#   8. Guest throughput (ROUNDS > 0, AZIMDS_BIN only): the COUNT-VM store ("big"), the one-VM store
#      ("one") and, with CEILING=1, the raw-hyper ceiling (examples/ceiling.rs) serving the bytes
#      `one` serves; azimds with `--callers source-address --rate-limit 0 --workers 1`, every
#      server pinned to SERVER_CPU, `wrk -t1 -cCONNECTIONS --latency -d DURATION` pinned to
#      CLIENT_CPU; ROUNDS rounds over the whole document and compute/vmId?format=text, the
#      servers' order rotating every round (--max-connections-per-caller is raised above
#      CONNECTIONS: wrk's connections all come from one caller). Noisy runs (foreign CPU > NOISE_LIMIT CPU-s per s)
#      are re-run up to NOISY_RETRIES times, then kept and flagged. Reported: the median of the
#      per-round ratios big/one and one/ceiling.
#   9. Write-to-visible (SAMPLES > 0): examples/write_visible.rs on big and one: PUT vm-local
#      through the control API, poll the guest until served; PUT -> visible and ack -> visible.
#  10. Every VM fetched once (TOUCH=1, root): in a network namespace of the script's own where
#      10.0.0.0/8 is local, the store's server on 169.254.169.254:80, examples/touch_all.rs
#      fetching each VM's whole document from its own caller address; RSS before and after.
#   Summary (scripts/bench_scale_summary.py): figure | target | previous | now | met? on stdout
#   and in $OUT/summary.md; the previous figures are hard-coded there with their commit and date.
#
# Knobs (defaults for COUNT >= 50000; smaller counts get the values in brackets):
#   COUNT=100000 STARTS=5 SETTLE=1 ROUNDS=6 [1] DURATION=10s [2s] WARMUP=2s [1s] CONNECTIONS=64
#   SAMPLES=500 [100] QUIET_WAIT=60 [0] NOISY_RETRIES=2 [0] CEILING=1 TOUCH=1 SERVER_CPU=0 CLIENT_CPU=1
#   START_CPU= (unpinned: the import checks entries on every core) PORT_BASE=18600
#   NOISE_LIMIT=0.05 SKIP_BUILD=0 CLEAN=1 (delete the generated files and stores at
#   the end) OUT=target/bench-scale AZIMDS_BIN=target/release/azimds MAIN_LABEL=azimds
#   AZIMDS_BIN_ALT= ALT_LABEL=alt
# Output: the summary, $OUT/summary.md, $OUT/results.json, every record in $OUT/*.jsonl and every
# raw output and server log in $OUT/raw/.
# Needs: wrk, curl, taskset, python3, ip (touch step); at 100k VMs about 4 GB of free memory and
# 4 GB of disk per binary (2 stores of ~1.1 GB, the files ~1.4 GB); loopback only.
set -euo pipefail

COUNT=${COUNT:-100000}
small() { [ "$COUNT" -lt 50000 ]; }
STARTS=${STARTS:-5}
SETTLE=${SETTLE:-1}
ROUNDS=${ROUNDS:-$(small && echo 1 || echo 6)}
DURATION=${DURATION:-$(small && echo 2s || echo 10s)}
WARMUP=${WARMUP:-$(small && echo 1s || echo 2s)}
CONNECTIONS=${CONNECTIONS:-64}
SAMPLES=${SAMPLES:-$(small && echo 100 || echo 500)}
QUIET_WAIT=${QUIET_WAIT:-$(small && echo 0 || echo 60)}
CEILING=${CEILING:-1}
TOUCH=${TOUCH:-1}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
START_CPU=${START_CPU:-}
PORT_BASE=${PORT_BASE:-18600}
NOISE_LIMIT=${NOISE_LIMIT:-0.05}
NOISY_RETRIES=${NOISY_RETRIES:-$(small && echo 0 || echo 2)}
SKIP_BUILD=${SKIP_BUILD:-0}
CLEAN=${CLEAN:-1}
MAIN_LABEL=${MAIN_LABEL:-azimds}
ALT_LABEL=${ALT_LABEL:-alt}
API_VERSION=${API_VERSION:-2025-04-07}
[ "$COUNT" -ge 2 ] || { echo "COUNT must be at least 2" >&2; exit 2; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
OUT=${OUT:-$ROOT/target/bench-scale}
RAW=$OUT/raw
AZIMDS_BIN=${AZIMDS_BIN:-$ROOT/target/release/azimds}
AZIMDS_BIN_ALT=${AZIMDS_BIN_ALT:-}
EXAMPLES=$ROOT/target/release/examples
CLK_TCK=$(getconf CLK_TCK)
T_START=$(date +%s)

# The servers of steps 8-9 ("big": COUNT VMs, "one": vm-local only), each with a guest and a
# control port; the ceiling; the port pair of the timed starts (scripts/bench_start.py).
declare -A GPORT=([big]=$PORT_BASE [one]=$((PORT_BASE + 2)) [ceiling]=$((PORT_BASE + 4)))
declare -A CPORT=([big]=$((PORT_BASE + 1)) [one]=$((PORT_BASE + 3)))
START_PORT=$((PORT_BASE + 10))
declare -A PID=()
LABELS=("$MAIN_LABEL")
declare -A BIN_OF=([$MAIN_LABEL]=$AZIMDS_BIN)
if [ -n "$AZIMDS_BIN_ALT" ]; then
  [ "$ALT_LABEL" != "$MAIN_LABEL" ] || { echo "ALT_LABEL must differ from MAIN_LABEL" >&2; exit 2; }
  LABELS+=("$ALT_LABEL"); BIN_OF[$ALT_LABEL]=$AZIMDS_BIN_ALT
fi
FILE_JSON=$OUT/vms.json FILE_YAML=$OUT/vms.yaml FILE_BAD=$OUT/vms-bad.json FILE_ONE=$OUT/vms-one.json
BAD_INDEX=$((COUNT / 2))
BAD_ID=$(printf 'vm-%06d' "$BAD_INDEX") LAST_ID=$(printf 'vm-%06d' "$COUNT")

log() { printf '[bench-scale %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

NETNS=""
cleanup() {
  local name p
  for name in "${!PID[@]}"; do
    p=${PID[$name]}
    if kill -0 "$p" 2>/dev/null; then kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; fi
  done
  if [ -n "$NETNS" ]; then
    for p in $(ip netns pids "$NETNS" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
    ip netns del "$NETNS" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- prerequisites
for tool in curl taskset python3; do command -v "$tool" >/dev/null || die "$tool is required"; done
[ "$ROUNDS" = 0 ] || command -v wrk >/dev/null || die "wrk is required for the throughput step (apt-get install wrk, or ROUNDS=0)"
[ "$(nproc)" -ge 2 ] || log "WARNING: fewer than 2 CPUs; server and client cannot be pinned apart"
for p in "${GPORT[@]}" "${CPORT[@]}" "$START_PORT" $((START_PORT + 1)); do
  (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && die "port $p is in use (set PORT_BASE)"
done
mkdir -p "$RAW"
rm -f "$RAW"/* "$OUT"/*.jsonl "$OUT/results.json" "$OUT/summary.md"
if [ "$SKIP_BUILD" != 1 ]; then
  log "cargo build --release --bin azimds --example scale_vms --example write_visible --example touch_all --example ceiling"
  CARGO_INCREMENTAL=0 cargo build --release --bin azimds --example scale_vms --example write_visible \
    --example touch_all --example ceiling 2>&1 | tail -n 2 >&2
fi
# Private copies: a rebuild of target/release during the run must not change what is measured.
mkdir -p "$OUT/bin"
for b in scale_vms write_visible touch_all ceiling; do
  [ -x "$EXAMPLES/$b" ] || die "$EXAMPLES/$b not found (cargo build --release --example $b)"
  cp "$EXAMPLES/$b" "$OUT/bin/"
done
for label in "${LABELS[@]}"; do
  [ -x "${BIN_OF[$label]}" ] || die "${BIN_OF[$label]} not found"
  cp "${BIN_OF[$label]}" "$OUT/bin/azimds-$label"
  log "binary $label: ${BIN_OF[$label]} ($("${BIN_OF[$label]}" --version), built $(date -r "${BIN_OF[$label]}" +%FT%T))"
  BIN_OF[$label]=$OUT/bin/azimds-$label
done
GEN_BIN=$OUT/bin/scale_vms WV_BIN=$OUT/bin/write_visible TOUCH_BIN=$OUT/bin/touch_all CEIL_BIN=$OUT/bin/ceiling
GIT_START=$(git rev-parse --short HEAD)
GIT_DIRTY_START=$(git status --porcelain -- src Cargo.toml Cargo.lock | grep -q . && echo true || echo false)
log "tree at $GIT_START$([ "$GIT_DIRTY_START" = true ] && echo ' (src/ has uncommitted changes)')"
avail_mb=$(awk '$1 == "MemAvailable:" { print int($2 / 1024) }' /proc/meminfo)
need_mb=$((COUNT / 25))   # ~40 KB per VM: the largest peak (YAML import) with room to spare
[ "$avail_mb" -ge "$need_mb" ] || log "WARNING: $avail_mb MB of memory available; COUNT=$COUNT may need about $need_mb MB"
disk_mb=$(df -Pm "$OUT" | awk 'NR == 2 { print $4 }')
need_disk_mb=$((COUNT * (14 + 25 * ${#LABELS[@]}) / 1000))
[ "$disk_mb" -ge "$need_disk_mb" ] || die "$disk_mb MB free under $OUT; COUNT=$COUNT needs about $need_disk_mb MB"

# ---------------------------------------------------------------- helpers
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }   # utime+stime
status_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }        # VmRSS, VmHWM, RssAnon
sys_busy_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }
now() { date +%s.%N; }
busy_1s() {
  local b0 b1; b0=$(sys_busy_ticks); sleep 1; b1=$(sys_busy_ticks)
  awk -v b=$((b1 - b0)) -v h="$CLK_TCK" 'BEGIN { printf "%.2f", b / h }'
}
wait_quiet() { # up to QUIET_WAIT s for < 0.10 CPU-s/s of load on the machine (our servers idle)
  local b=0
  for _ in $(seq 1 "$QUIET_WAIT"); do
    b=$(busy_1s)
    awk -v b="$b" 'BEGIN { exit !(b <= 0.10) }' && return 0
  done
  [ "$QUIET_WAIT" = 0 ] || log "WARNING: machine still busy (${b} CPU-s/s) after ${QUIET_WAIT} s; going on"
}
to_ms() { # wrk latency token (256.00us, 1.23ms, 1.02s) -> ms
  awk -v v="$1" 'BEGIN { n = v + 0; u = v; sub(/^[0-9.]+/, "", u);
    if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000;
    printf "%.4f", n }'
}
record() { python3 -c 'import json,sys; print(json.dumps(json.loads(sys.argv[1])))' "$1" >>"$OUT/$2.jsonl"; }
mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# timed_start LABEL PHASE DATA [bench_start options --] [serve args...]: one start timed by
# scripts/bench_start.py, recorded in starts.jsonl with binary and phase; prints the record.
timed_start() {
  local label=$1 phase=$2 data=$3; shift 3
  local opts=() line
  while [ $# -gt 0 ] && [ "$1" != -- ]; do opts+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  wait_quiet
  line=$(python3 "$ROOT/scripts/bench_start.py" --port "$START_PORT" --log "$RAW/$label-$phase.stderr" \
    --settle "$SETTLE" ${START_CPU:+--cpu "$START_CPU"} ${opts[@]+"${opts[@]}"} "${BIN_OF[$label]}" "$data" "$phase" "$@") || {
    [ -n "$line" ] && echo "$line" >"$RAW/$label-$phase.json"
    tail -n 20 "$RAW/$label-$phase.stderr" >&2
    return 1
  }
  line=$(python3 -c 'import json,os,sys; d=json.loads(sys.argv[1]); store=os.path.join(sys.argv[4], "azimds.redb")
d.update(binary=sys.argv[2], phase=sys.argv[3], data=os.path.basename(sys.argv[4]), store_bytes=os.path.getsize(store) if os.path.exists(store) else None)
print(json.dumps(d))' "$line" "$label" "$phase" "$data")
  echo "$line" >>"$OUT/starts.jsonl"
  echo "$line"
}
describe() { # a starts.jsonl record -> one log line
  python3 - "$1" "$SETTLE" <<'PY'
import json, sys
d = json.loads(sys.argv[1])
if "ready_s" in d:
    said = " (log: not parsed again)" if d.get("not_parsed_again") else (
        f" (log: written={d['written']} deleted={d['deleted']} unchanged={d['unchanged']})" if d.get("written") is not None else "")
    print(f"{d['binary']:>9} {d['phase']:<22} first 200 after {d['ready_s']:7.2f} s  CPU {d['cpu_s']:6.2f} s  "
          f"RSS {d['VmRSS']:7.1f} MB ({d['VmRSS_settled']:.1f} MB {sys.argv[2]} s later)  peak {d['VmHWM']:7.1f} MB  "
          f"load_ms {d['load_ms']}{said}")
else:
    print(f"{d.get('binary')} {d.get('phase')}: exited {d.get('exit_code')} after {d.get('exit_s')} s")
PY
}

# start_server NAME LABEL DATA [serve args]: steps 8-9's servers; waits for /readyz; sets PID[NAME].
start_server() {
  local name=$1 label=$2 data=$3; shift 3
  local log_file="$RAW/server-$name-$label.stderr" code pid t0
  t0=$(now)
  taskset -c "$SERVER_CPU" "${BIN_OF[$MAIN_LABEL]}" serve --listen "127.0.0.1:${GPORT[$name]}" \
    --control "127.0.0.1:${CPORT[$name]}" --data "$data" --callers source-address \
    --rate-limit 0 --workers 1 ${PER_CALLER[@]+"${PER_CALLER[@]}"} "$@" >/dev/null 2>"$log_file" &
  pid=$!
  PID[$name]=$pid
  while :; do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:${CPORT[$name]}/readyz" || true)
    [ "$code" = 200 ] && break
    kill -0 "$pid" 2>/dev/null || { tail -n 20 "$log_file" >&2; die "$name server exited during start"; }
    sleep 0.01
  done
  log "$(printf '%-7s %-7s ready in %6.2f s, RSS %s MB' "$name" "$label" "$(awk -v a="$t0" -v b="$(now)" 'BEGIN { print b - a }')" \
    "$(mb "$(status_kb "$pid" VmRSS)")")"
}
stop_server() {
  local name=$1 pid=${PID[$1]}
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  unset "PID[$name]"
}
memory() { # name phase: RSS now
  local pid=${PID[$1]}
  record "{\"server\": \"$1\", \"phase\": \"$2\", \"rss_kb\": $(status_kb "$pid" VmRSS), \"hwm_kb\": $(status_kb "$pid" VmHWM), \"rss_anon_kb\": $(status_kb "$pid" RssAnon)}" memory
}

# wrk's CONNECTIONS all come from 127.0.0.1, one caller: lift the per-caller cap (issue #13,
# default 32) above them where the binary has it, so every connection is served.
PER_CALLER=()
"${BIN_OF[$MAIN_LABEL]}" serve --help | grep -q -- --max-connections-per-caller \
  && PER_CALLER=(--max-connections-per-caller $((CONNECTIONS + 16)))

# ---------------------------------------------------------------- 1. generate
log "generating $COUNT VMs (+ vm-local) as JSON and YAML, the bad file (VM $BAD_INDEX broken, $LAST_ID left out) and the one-VM file"
t0=$(now)
"$GEN_BIN" "$COUNT" "$FILE_JSON"
"$GEN_BIN" "$COUNT" "$FILE_YAML" --yaml
"$GEN_BIN" $((COUNT - 1)) "$FILE_BAD" --bad "$BAD_INDEX"
"$GEN_BIN" 0 "$FILE_ONE"
log "files: JSON $(stat -c %s "$FILE_JSON") B, YAML $(stat -c %s "$FILE_YAML") B for $((COUNT + 1)) VMs ($(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }') s)"
record "{\"count\": $COUNT, \"json_bytes\": $(stat -c %s "$FILE_JSON"), \"yaml_bytes\": $(stat -c %s "$FILE_YAML"), \"bad_index\": $BAD_INDEX}" files

# ---------------------------------------------------------------- 2-4. import, re-import
# init_data LABEL DIR: a new data directory, initialised by one start with no --vms (its keys and
# token are made; ~0.7 CPU s, apart from the import), so the import is timed on an empty store.
init_data() {
  local line
  rm -rf "$2"
  line=$(timed_start "$1" "init-$(basename "$2")" "$2" --ready-control --) || die "$1: initialising $2 failed"
  log "$(describe "$line")"
}
for label in "${LABELS[@]}"; do
  init_data "$label" "$OUT/data-json-$label"
  line=$(timed_start "$label" import-json "$OUT/data-json-$label" -- --vms "$FILE_JSON") || die "$label: JSON import failed"
  log "$(describe "$line")"
done
for label in "${LABELS[@]}"; do
  line=$(timed_start "$label" reimport "$OUT/data-json-$label" -- --vms "$FILE_JSON") || die "$label: re-import failed"
  log "$(describe "$line")"
  python3 -c 'import json,sys; d=json.loads(sys.argv[1]); sys.exit(0 if d["not_parsed_again"] or (d.get("written") == 0 and d.get("deleted") == 0) else 1)' "$line" \
    && log "$label re-import: $(grep -ho 'not parsed again\|VM definitions file applied.*' "$RAW/$label-reimport.stderr" | head -n 1)" \
    || log "WARNING: $label re-import parsed or wrote: $(grep -h 'VM definitions' "$RAW/$label-reimport.stderr" | tail -n 1)"
done
for label in "${LABELS[@]}"; do
  init_data "$label" "$OUT/data-yaml-$label"
  line=$(timed_start "$label" import-yaml "$OUT/data-yaml-$label" -- --vms "$FILE_YAML") || die "$label: YAML import failed"
  log "$(describe "$line")"
  rm -rf "$OUT/data-yaml-$label"   # nothing else reads it; frees ~11 KB per VM of disk
done

# ---------------------------------------------------------------- 5. bad entry
GETS=(--control-get /v1/status --control-get "/v1/vms/$BAD_ID" --control-get "/v1/vms/$LAST_ID")
line=$(timed_start "$MAIN_LABEL" bad-before "$OUT/data-json-$MAIN_LABEL" "${GETS[@]}" --) || die "start before the bad file failed"
log "$(describe "$line")"
wait_quiet
python3 "$ROOT/scripts/bench_start.py" --port "$START_PORT" --log "$RAW/$MAIN_LABEL-bad.stderr" --expect-exit \
  "${BIN_OF[$MAIN_LABEL]}" "$OUT/data-json-$MAIN_LABEL" bad --vms "$FILE_BAD" >"$RAW/bad.json" \
  || log "WARNING: the server did not exit non-zero on the bad file: $(head -c 300 "$RAW/bad.json")"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); d.update(binary=sys.argv[2], phase="bad", file=sys.argv[3]); print(json.dumps(d))' \
  "$RAW/bad.json" "$MAIN_LABEL" "$FILE_BAD" >"$OUT/bad.jsonl"
log "bad file: exit $(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d.get("exit_code"), "after", d.get("exit_s"), "s")' "$RAW/bad.json"); message:"
grep -v '^\s*$' "$RAW/$MAIN_LABEL-bad.stderr" | tail -n 4 | sed 's/^/    /' >&2
line=$(timed_start "$MAIN_LABEL" bad-after "$OUT/data-json-$MAIN_LABEL" "${GETS[@]}" --) || die "start after the bad file failed"
log "$(describe "$line")"

# ---------------------------------------------------------------- 6. start from the store
for s in $(seq 1 "$STARTS"); do
  for label in "${LABELS[@]}"; do
    line=$(timed_start "$label" "start$s" "$OUT/data-json-$label") || die "$label: start $s failed"
    log "$(describe "$line")"
  done
done

# ---------------------------------------------------------------- 7. idle RSS, demo VM only
for label in "${LABELS[@]}"; do
  rm -rf "$OUT/data-idle-$label"
  line=$(timed_start "$label" idle "$OUT/data-idle-$label" -- --callers single --workers 1) || die "$label: idle start failed"
  log "$(describe "$line")"
done

# ---------------------------------------------------------------- 8. throughput
PATH_JSON="/metadata/instance?api-version=$API_VERSION"
PATH_TEXT="/metadata/instance/compute/vmId?api-version=$API_VERSION&format=text"
url() { # name kind
  if [ "$2" = json ]; then echo "http://127.0.0.1:${GPORT[$1]}$PATH_JSON"; else echo "http://127.0.0.1:${GPORT[$1]}$PATH_TEXT"; fi
}
run_wrk() { # name kind round duration record attempt -> 1 if noisy and not final
  local name=$1 kind=$2 round=$3 dur=$4 rec=$5 attempt=$6
  local pid=${PID[$1]} f="$RAW/wrk-$1-$2-r$3.txt" c0 c1 s0 s1 t0 t1 client other noisy=0
  c0=$(cpu_ticks "$pid"); s0=$(sys_busy_ticks); t0=$(now)
  { TIMEFORMAT='%U %S'; time taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNECTIONS" -d"$dur" --latency \
      -H 'Metadata: true' "$(url "$name" "$kind")" >"$f" 2>&1; } 2>"$f.time" || die "wrk failed: $(tail -n 3 "$f")"
  t1=$(now); c1=$(cpu_ticks "$pid"); s1=$(sys_busy_ticks)
  [ "$rec" = 1 ] || return 0
  client=$(awk '{ printf "%.2f", $1 + $2 }' "$f.time")
  other=$(awk -v s=$((s1 - s0)) -v c=$((c1 - c0)) -v h="$CLK_TCK" -v w="$client" \
    'BEGIN { o = (s - c) / h - w; printf "%.2f", o < 0 ? 0 : o }')
  awk -v o="$other" -v a="$t0" -v b="$t1" -v l="$NOISE_LIMIT" 'BEGIN { exit !(o > l * (b - a)) }' && noisy=1
  local rps reqs p50 p99 non2xx
  rps=$(awk '/^Requests\/sec:/ { print $2 }' "$f")
  if [ "$noisy" = 1 ] && [ "$attempt" != final ]; then
    log "$(printf '%-7s %-4s r%s %10s req/s (noisy: foreign CPU %s s; discarded)' "$name" "$kind" "$round" "$rps" "$other")"
    mv "$f" "$f.noisy-$attempt"; return 1
  fi
  reqs=$(awk '/requests in/ { print $1 }' "$f")
  p50=$(to_ms "$(awk '$1 == "50%" { print $2 }' "$f")")
  p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$f")")
  non2xx=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$f"); non2xx=${non2xx:-0}
  [ "$non2xx" = 0 ] || die "$name $kind: $non2xx non-2xx responses"
  grep -q 'Socket errors' "$f" && log "WARNING: $name $kind r$round: $(grep 'Socket errors' "$f")"
  record "{\"server\": \"$name\", \"url\": \"$kind\", \"round\": $round, \"rps\": $rps, \"requests\": $reqs,
    \"p50_ms\": $p50, \"p99_ms\": $p99, \"server_cpu_s\": $(awk -v t=$((c1 - c0)) -v h="$CLK_TCK" 'BEGIN { print t / h }'),
    \"client_cpu_s\": $client, \"foreign_cpu_s\": $other, \"noisy\": $([ "$noisy" = 1 ] && echo true || echo false),
    \"wall_s\": $(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')}" runs
  log "$(printf '%-7s %-4s r%s %10s req/s  p50 %s ms  p99 %s ms  server CPU %s s  foreign %s s' "$name" "$kind" "$round" \
    "$rps" "$p50" "$p99" "$(awk -v t=$((c1 - c0)) -v h="$CLK_TCK" 'BEGIN { printf "%.2f", t / h }')" "$other")"
}
measure() { # name kind round
  local attempt
  for attempt in $(seq 0 $((NOISY_RETRIES - 1))); do
    wait_quiet
    run_wrk "$1" "$2" "$3" "$DURATION" 1 "$attempt" && return 0
  done
  wait_quiet
  run_wrk "$1" "$2" "$3" "$DURATION" 1 final
}

if [ "$ROUNDS" -gt 0 ] || [ "$SAMPLES" -gt 0 ]; then
  rm -rf "$OUT/data-one"
  start_server one import "$OUT/data-one" --vms "$FILE_ONE"
  start_server big store "$OUT/data-json-$MAIN_LABEL"
  SERVERS="big one"
  for kind in json text; do # both stores serve vm-local the same bytes (but Date / request id)
    curl -sS -H 'Metadata: true' "$(url big "$kind")" -o "$RAW/body-big-$kind"
    curl -sS -H 'Metadata: true' "$(url one "$kind")" -o "$RAW/body-one-$kind"
    cmp -s "$RAW/body-big-$kind" "$RAW/body-one-$kind" || die "the two stores serve different $kind bodies for vm-local"
  done
  if [ "$CEILING" = 1 ] && [ "$ROUNDS" -gt 0 ]; then
    WORKERS=1 taskset -c "$SERVER_CPU" "$CEIL_BIN" --listen "127.0.0.1:${GPORT[ceiling]}" \
      --body-json "$RAW/body-one-json" --body-text "$RAW/body-one-text" >"$RAW/ceiling.stdout" 2>"$RAW/ceiling.stderr" &
    PID[ceiling]=$!
    for _ in $(seq 1 500); do grep -q 'listening' "$RAW/ceiling.stdout" 2>/dev/null && break; sleep 0.01; done
    for kind in json text; do
      curl -sS -H 'Metadata: true' "$(url ceiling "$kind")" -o "$RAW/body-ceiling-$kind"
      cmp -s "$RAW/body-one-$kind" "$RAW/body-ceiling-$kind" || die "the ceiling serves a different $kind body"
    done
    SERVERS="big one ceiling"
  fi
  log "bodies: whole document $(stat -c %s "$RAW/body-one-json") B, vmId $(stat -c %s "$RAW/body-one-text") B, identical on: $SERVERS"
fi
if [ "$ROUNDS" -gt 0 ]; then
  log "warm-up: $WARMUP per server and URL"
  for name in $SERVERS; do for kind in json text; do run_wrk "$name" "$kind" 0 "$WARMUP" 0 0; done; done
  memory big after-warmup
  memory one after-warmup
  read -ra order <<<"$SERVERS"
  for round in $(seq 1 "$ROUNDS"); do
    for kind in json text; do
      for name in "${order[@]}"; do measure "$name" "$kind" "$round"; done
    done
    order=("${order[@]:1}" "${order[0]}")   # rotate: each server leads in turn
  done
  memory big after-throughput
  memory one after-throughput
fi

# ---------------------------------------------------------------- 9. write-to-visible latency
if [ "$SAMPLES" -gt 0 ]; then
  for name in big one; do
    wait_quiet
    log "write-to-visible: $SAMPLES samples on $name"
    data=$OUT/data-json-$MAIN_LABEL; [ "$name" = one ] && data=$OUT/data-one
    taskset -c "$CLIENT_CPU" "$WV_BIN" --control "127.0.0.1:${CPORT[$name]}" --data "$data" \
      --guest "127.0.0.1:${GPORT[$name]}" --vm vm-local --samples "$SAMPLES" >"$RAW/write-visible-$name.json"
    python3 - "$name" "$RAW/write-visible-$name.json" >>"$OUT/latency.jsonl" <<'PY'
import json, sys
d = json.load(open(sys.argv[2]))
raw = d.pop("raw")
total = sorted(a + v for a, v in zip(raw["ack_ms"], raw["visible_after_ack_ms"]))
pick = lambda q: total[min(len(total) - 1, int(q * len(total)))]
d["put_to_visible_ms"] = {"p50": pick(0.50), "p99": pick(0.99), "max": total[-1]}
d["server"] = sys.argv[1]
print(json.dumps(d))
PY
    log "$name: $(python3 -c 'import json,sys; d=[json.loads(l) for l in open(sys.argv[1])][-1]; a,v,t=d["ack_ms"],d["visible_after_ack_ms"],d["put_to_visible_ms"]
print("PUT -> ack p50 %.3f p99 %.3f ms; ack -> visible p50 %.3f p99 %.3f ms; PUT -> visible p99 %.3f ms" % (a["p50"], a["p99"], v["p50"], v["p99"], t["p99"]))' "$OUT/latency.jsonl")"
  done
  memory big after-writes
fi
for name in ceiling one big; do
  if [ -n "${PID[$name]:-}" ]; then stop_server "$name"; fi
done

# ---------------------------------------------------------------- 10. every VM fetched once
# In a network namespace of its own where 10.0.0.0/8 is local, so a client can bind each VM's
# caller address: each binary's store served on 169.254.169.254:80, every VM reads its whole
# document once (examples/touch_all.rs checks each is served as itself). RSS before and after.
if [ "$TOUCH" = 1 ] && [ "$EUID" = 0 ]; then
  NETNS=azimds-bench-scale-$$
  ip netns add "$NETNS"
  ip -n "$NETNS" link set lo up
  ip -n "$NETNS" addr add 169.254.169.254/32 dev lo
  ip -n "$NETNS" route add local 10.0.0.0/8 dev lo
  for label in "${LABELS[@]}"; do
    wait_quiet
    sock=$OUT/touch-control.sock
    rm -f "$sock"
    t0=$(now)
    ip netns exec "$NETNS" taskset -c "$SERVER_CPU" "${BIN_OF[$label]}" serve --listen 169.254.169.254:80 \
      --control "unix:$sock" --data "$OUT/data-json-$label" --callers source-address --rate-limit 0 --workers 1 \
      >/dev/null 2>"$RAW/$label-touch.stderr" &
    PID[touch]=$!
    until [ "$(curl -s -o /dev/null -w '%{http_code}' --unix-socket "$sock" http://azimds/readyz || true)" = 200 ]; do
      kill -0 "${PID[touch]}" 2>/dev/null || { tail -n 20 "$RAW/$label-touch.stderr" >&2; die "$label server exited in the namespace"; }
      sleep 0.01
    done
    pid=${PID[touch]}
    before=$(status_kb "$pid" VmRSS) before_anon=$(status_kb "$pid" RssAnon)
    log "$label server in $NETNS ready in $(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }') s, RSS $(mb "$before") MB"
    c0=$(cpu_ticks "$pid")
    ip netns exec "$NETNS" taskset -c "$CLIENT_CPU" "$TOUCH_BIN" --guest 169.254.169.254:80 --count "$COUNT" \
      >"$RAW/touch-$label.json" || die "touch_all failed: $(cat "$RAW/touch-$label.json")"
    c1=$(cpu_ticks "$pid")
    sleep "$SETTLE"
    after=$(status_kb "$pid" VmRSS) after_anon=$(status_kb "$pid" RssAnon) hwm=$(status_kb "$pid" VmHWM)
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); d.update(binary=sys.argv[2], server_cpu_s=int(sys.argv[3]) / int(sys.argv[4]),
rss_before_kb=int(sys.argv[5]), rss_anon_before_kb=int(sys.argv[6]), rss_after_kb=int(sys.argv[7]), rss_anon_after_kb=int(sys.argv[8]), hwm_kb=int(sys.argv[9])); print(json.dumps(d))' \
      "$RAW/touch-$label.json" "$label" $((c1 - c0)) "$CLK_TCK" "$before" "$before_anon" "$after" "$after_anon" "$hwm" >>"$OUT/touch.jsonl"
    log "$label: every VM fetched once: $(cat "$RAW/touch-$label.json"); RSS $(mb "$before") -> $(mb "$after") MB, server CPU $(awk -v t=$((c1 - c0)) -v h="$CLK_TCK" 'BEGIN { printf "%.2f", t / h }') s"
    stop_server touch
  done
elif [ "$TOUCH" = 1 ]; then
  log "WARNING: not root: skipping step 10 (every VM fetched once needs a network namespace)"
fi

# ---------------------------------------------------------------- summary
T_END=$(date +%s)
python3 - "$OUT/run.json" <<PY
import json, os, platform, subprocess, sys
sh = lambda c: subprocess.run(c, shell=True, capture_output=True, text=True).stdout.strip()
json.dump({"count": $COUNT, "starts": $STARTS, "rounds": $ROUNDS, "duration": "$DURATION", "connections": $CONNECTIONS,
           "samples": $SAMPLES, "ceiling": $CEILING == 1, "labels": "${LABELS[*]}".split(), "elapsed_s": $T_END - $T_START,
           "git_at_start": "$GIT_START", "src_dirty_at_start": "$GIT_DIRTY_START" == "true",
           "machine": {"cpu": sh("lscpu | sed -n 's/^Model name: *//p' | head -1"), "nproc": os.cpu_count(),
                       "kernel": platform.release(), "mem_total_mb": int(sh("awk '/MemTotal/ {print int(\$2/1024)}' /proc/meminfo"))}},
          open(sys.argv[1], "w"), indent=1)
PY
python3 "$ROOT/scripts/bench_scale_summary.py" "$OUT"
if [ "$CLEAN" = 1 ]; then
  rm -rf "$OUT"/data-* "$FILE_JSON" "$FILE_YAML" "$FILE_BAD" "$FILE_ONE" "$OUT/bin"
fi
