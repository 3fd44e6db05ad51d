#!/usr/bin/env bash
# Guest-plane benchmark: azimds against a raw-hyper ceiling serving the same bytes.
#
#   scripts/bench.sh                 # 3 rounds x 2 URLs x 2 servers x 10 s, then latency at half rate
#   ROUNDS=5 DURATION=10s scripts/bench.sh
#
# Method (see bench/BENCHMARKS.draft.md):
#   * Both servers run one tokio worker (AZIMDS_WORKERS / WORKERS) pinned to CPU 0;
#     the load generator runs pinned to CPU 1. Loopback only; every run is time-bounded.
#   * The ceiling (examples/ceiling.rs) serves the exact body bytes azimds returned,
#     fetched with curl at the start (checked byte-equal), with the same Metadata-header
#     check and the same Content-Type/Server/Content-Length/Date headers (azimds' extra
#     response headers, e.g. x-ms-request-id, are recorded in raw/*.headers).
#   * Throughput: `wrk -t1 -c64 -d10s --latency`, ROUNDS rounds; within a round the two
#     servers alternate (order flips every round) so machine noise hits both.
#     Per run: req/s, p50, p99, server CPU (utime+stime from /proc/PID/stat) -> us CPU/req,
#     VmRSS before the run and VmHWM (peak) after it.
#   * Latency at fixed rate: wrk cannot pace requests (wrk2 is not in Debian), so this
#     uses oha `-q RATE --latency-correction` (open loop; queueing delay in the client is
#     counted), at each point of LAT_POINTS: 1000 req/s (near-idle floor) and half of
#     azimds' median saturating rate, against both servers at the same absolute rate.
#     Caveat: oha paces with tokio's 1 ms timer, so at high rates it releases requests in
#     bursts of RATE/1000 per millisecond; the latency includes draining that burst
#     (pessimistic vs smooth arrivals, equally for both servers).
#     oha is installed with `cargo install oha --locked` if missing (~3.5-4.5 min), unless
#     LATENCY=0. The achieved rate is recorded and checked against the target.
#   * Noise: the machine may be shared. Before each measured run the script waits (up to
#     QUIET_WAIT s) for the machine to be idle, and after it computes "foreign" CPU
#     (all-CPU busy time from /proc/stat minus server and client CPU). A run with more
#     than NOISE_LIMIT (LAT_NOISE_LIMIT for oha runs) foreign CPU-s per second is discarded
#     and repeated (NOISY_RETRIES), then kept but flagged "noisy" in results.json; if the
#     machine stays busy for QUIET_WAIT s, the run is made once and flagged.
#
# Env knobs (defaults): ROUNDS=3 DURATION=10s CONNECTIONS=64 WARMUP=2s AZIMDS_WORKERS=1
#   SERVER_CPU=0 CLIENT_CPU=1 AZ_PORT=18080 CEIL_PORT=18081 LATENCY=1 LAT_DURATION=10s
#   LAT_POINTS="1000 0.5" SKIP_BUILD=0 OUT=target/bench API_VERSION=2025-04-07
#   AZIMDS_BIN=target/release/azimds NOISE_LIMIT=0.05 LAT_NOISE_LIMIT=0.10 NOISY_RETRIES=2
#   QUIET_WAIT=30
# Output: a summary table on stdout (scripts/bench_summary.py; rerun it on a results.json
#   to reprint, or on several to pool them), target/bench/results.json, raw tool output in
#   target/bench/raw/.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
WARMUP=${WARMUP:-2s}
AZIMDS_WORKERS=${AZIMDS_WORKERS:-1}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
AZ_PORT=${AZ_PORT:-18080}
CEIL_PORT=${CEIL_PORT:-18081}
LATENCY=${LATENCY:-1}
LAT_DURATION=${LAT_DURATION:-10s}
LAT_POINTS=${LAT_POINTS:-1000 0.5}   # <1: fraction of azimds median req/s; >=1: absolute req/s
SKIP_BUILD=${SKIP_BUILD:-0}
NOISE_LIMIT=${NOISE_LIMIT:-0.05}     # foreign CPU-s per wall-s above which a run counts as noisy
NOISY_RETRIES=${NOISY_RETRIES:-2}   # re-runs of a noisy throughput run before keeping it (flagged)
QUIET_WAIT=${QUIET_WAIT:-30}        # max seconds to wait for the machine to go quiet before a run
# Below saturation some loopback softirq work is charged to no process and shows up as
# "foreign" (~0.02-0.03 CPU-s/s at 60 k req/s), so the fixed-rate runs get a looser limit.
LAT_NOISE_LIMIT=${LAT_NOISE_LIMIT:-0.10}
API_VERSION=${API_VERSION:-2025-04-07}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
OUT=${OUT:-$ROOT/target/bench}
RAW=$OUT/raw
mkdir -p "$RAW"
rm -f "$RAW"/* "$OUT/runs.jsonl" "$OUT/latency.jsonl" "$OUT/results.json"

AZIMDS_BIN=${AZIMDS_BIN:-$ROOT/target/release/azimds}   # overridable, e.g. to compare two builds
CEIL_BIN=$ROOT/target/release/examples/ceiling
CLK_TCK=$(getconf CLK_TCK)
T_START=$(date +%s)

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do
    if kill -0 "$p" 2>/dev/null; then kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; fi
  done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- prerequisites
[ "$(nproc)" -ge 2 ] || log "WARNING: fewer than 2 CPUs; pinning server and client apart is impossible"
command -v taskset >/dev/null || die "taskset (util-linux) is required"
command -v python3 >/dev/null || die "python3 is required for the summary"
if ! command -v wrk >/dev/null; then
  log "installing wrk (apt)"
  apt-get install -y wrk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y wrk >/dev/null; }
fi
if ! command -v curl >/dev/null; then apt-get install -y curl >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y curl >/dev/null; }; fi
OHA=""
if [ "$LATENCY" = 1 ]; then
  OHA=$(command -v oha || true)
  [ -z "$OHA" ] && [ -x "$HOME/.cargo/bin/oha" ] && OHA=$HOME/.cargo/bin/oha
  if [ -z "$OHA" ]; then
    log "installing oha (cargo install oha --locked; takes about 3.5 min on 2 cores)"
    cargo install oha --locked >"$RAW/oha-install.log" 2>&1 || die "cargo install oha failed, see $RAW/oha-install.log (or run with LATENCY=0)"
    OHA=$HOME/.cargo/bin/oha
  fi
fi

if [ "$SKIP_BUILD" != 1 ]; then
  log "cargo build --release --bins --examples"
  cargo build --release --bins --examples >"$RAW/build.log" 2>&1 || { tail -n 30 "$RAW/build.log" >&2; die "build failed"; }
  tail -n 1 "$RAW/build.log" >&2
fi
[ -x "$AZIMDS_BIN" ] || die "$AZIMDS_BIN not found"
[ -x "$CEIL_BIN" ] || die "$CEIL_BIN not found"

# ---------------------------------------------------------------- helpers
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() { # port pid
  local _
  for _ in $(seq 1 200); do
    port_open "$1" && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }  # utime+stime
status_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }       # VmRSS / VmHWM in kB
sys_busy_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }  # all CPUs, non-idle
threads() { awk '$1 == "Threads:" { print $2 }' "/proc/$1/status"; }
to_ms() { # wrk latency token like 256.00us / 1.23ms / 1.02s
  awk -v v="$1" 'BEGIN { n = v + 0; u = v; sub(/^[0-9.]+/, "", u);
    if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000;
    printf "%.4f", n }'
}

busy_1s() { local b0 b1; b0=$(sys_busy_ticks); sleep 1; b1=$(sys_busy_ticks); awk -v b=$((b1 - b0)) -v h="$CLK_TCK" 'BEGIN { printf "%.2f", b / h }'; }
wait_quiet() { # wait up to QUIET_WAIT s for < 0.10 CPU-s/s of background load (our servers idle)
  local b
  for _ in $(seq 1 "$QUIET_WAIT"); do
    b=$(busy_1s)
    awk -v b="$b" 'BEGIN { exit !(b <= 0.10) }' && return 0
  done
  log "WARNING: machine still busy (${b} CPU-s/s) after ${QUIET_WAIT} s; going on"
  return 1
}
IDLE_BUSY=$(busy_1s)
log "machine CPU busy before start: ${IDLE_BUSY} CPU-s per s (load avg $(cut -d' ' -f1-3 /proc/loadavg))"
if awk -v b="$IDLE_BUSY" 'BEGIN { exit !(b > 0.10) }'; then
  log "the machine is not idle; waiting up to ${QUIET_WAIT} s"; wait_quiet || true; IDLE_BUSY=$(busy_1s)
fi

for p in "$AZ_PORT" "$CEIL_PORT"; do port_open "$p" && die "port $p is already in use (set AZ_PORT / CEIL_PORT)"; done

# ---------------------------------------------------------------- start azimds
log "starting azimds (AZIMDS_WORKERS=$AZIMDS_WORKERS, CPU $SERVER_CPU) on 127.0.0.1:$AZ_PORT"
# Its state goes to a scratch directory under $OUT, not the user's ~/.local/state.
mkdir -p "$OUT/azimds-data"
AZIMDS_DATA=${AZIMDS_DATA:-$OUT/azimds-data} AZIMDS_WORKERS=$AZIMDS_WORKERS taskset -c "$SERVER_CPU" "$AZIMDS_BIN" serve \
  --listen "127.0.0.1:$AZ_PORT" --control 127.0.0.1:0 --rate-limit 0 >"$RAW/azimds.stdout" 2>"$RAW/azimds.stderr" &
AZ_PID=$!
PIDS+=("$AZ_PID")
wait_port "$AZ_PORT" "$AZ_PID" || { tail -n 20 "$RAW/azimds.stderr" >&2; die "azimds did not start"; }
sleep 0.2
AZ_IDLE_RSS_KB=$(status_kb "$AZ_PID" VmRSS)
AZ_THREADS=$(threads "$AZ_PID")
log "azimds idle RSS right after start: ${AZ_IDLE_RSS_KB} kB, threads: $AZ_THREADS"

AZ_BASE=http://127.0.0.1:$AZ_PORT
CEIL_BASE=http://127.0.0.1:$CEIL_PORT
PATH_JSON="/metadata/instance?api-version=$API_VERSION"
PATH_TEXT="/metadata/instance/compute/vmId?api-version=$API_VERSION&format=text"

fetch() { # url outfile headersfile
  local code
  code=$(curl -sS -o "$2" -D "$3" -w '%{http_code}' -H 'Metadata: true' "$1") || die "curl $1 failed"
  [ "$code" = 200 ] || { cat "$2" >&2; die "GET $1 -> HTTP $code"; }
  [ -s "$2" ] || die "GET $1 returned an empty body"
  grep -qi '^content-length:' "$3" || log "WARNING: $1 has no Content-Length (chunked?)"
}
fetch "$AZ_BASE$PATH_JSON" "$OUT/instance.json" "$RAW/azimds-json.headers"
fetch "$AZ_BASE$PATH_TEXT" "$OUT/vmid.txt" "$RAW/azimds-text.headers"
JSON_BYTES=$(stat -c %s "$OUT/instance.json")
TEXT_BYTES=$(stat -c %s "$OUT/vmid.txt")
python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$OUT/instance.json" || die "instance body is not valid JSON"
log "bodies: instance $JSON_BYTES B, vmId $TEXT_BYTES B"
code=$(curl -s -o /dev/null -w '%{http_code}' "$AZ_BASE$PATH_JSON")
[ "$code" = 400 ] || log "WARNING: azimds answered HTTP $code without the Metadata header (expected 400)"

# ---------------------------------------------------------------- start ceiling
log "starting ceiling (WORKERS=$AZIMDS_WORKERS, CPU $SERVER_CPU) on 127.0.0.1:$CEIL_PORT"
WORKERS=$AZIMDS_WORKERS taskset -c "$SERVER_CPU" "$CEIL_BIN" --listen "127.0.0.1:$CEIL_PORT" \
  --body-json "$OUT/instance.json" --body-text "$OUT/vmid.txt" >"$RAW/ceiling.stdout" 2>"$RAW/ceiling.stderr" &
CEIL_PID=$!
PIDS+=("$CEIL_PID")
wait_port "$CEIL_PORT" "$CEIL_PID" || { tail -n 20 "$RAW/ceiling.stderr" >&2; die "ceiling did not start"; }
sleep 0.2
CEIL_IDLE_RSS_KB=$(status_kb "$CEIL_PID" VmRSS)
CEIL_THREADS=$(threads "$CEIL_PID")
fetch "$CEIL_BASE$PATH_JSON" "$RAW/ceiling-instance.json" "$RAW/ceiling-json.headers"
fetch "$CEIL_BASE$PATH_TEXT" "$RAW/ceiling-vmid.txt" "$RAW/ceiling-text.headers"
cmp -s "$OUT/instance.json" "$RAW/ceiling-instance.json" || die "ceiling JSON body differs from azimds'"
cmp -s "$OUT/vmid.txt" "$RAW/ceiling-vmid.txt" || die "ceiling text body differs from azimds'"
# Response header sizes, for the record (the wire bytes differ by these).
AZ_HDR_JSON=$(wc -c <"$RAW/azimds-json.headers"); CEIL_HDR_JSON=$(wc -c <"$RAW/ceiling-json.headers")
AZ_HDR_TEXT=$(wc -c <"$RAW/azimds-text.headers"); CEIL_HDR_TEXT=$(wc -c <"$RAW/ceiling-text.headers")

server_pid() { case $1 in azimds) echo "$AZ_PID" ;; ceiling) echo "$CEIL_PID" ;; esac; }
server_base() { case $1 in azimds) echo "$AZ_BASE" ;; ceiling) echo "$CEIL_BASE" ;; esac; }
url_path() { case $1 in json) echo "$PATH_JSON" ;; text) echo "$PATH_TEXT" ;; esac; }

# ---------------------------------------------------------------- throughput runs
run_wrk() { # server urlkind round duration record(0/1)
  local attempt
  [ "$5" = 1 ] || { run_wrk_once "$@" 0; return 0; }
  # Retries only help against bursts: when the machine stays busy, measure once and flag it.
  for attempt in $(seq 0 "$NOISY_RETRIES"); do
    if ! wait_quiet || [ "$attempt" = "$NOISY_RETRIES" ]; then FINAL_ATTEMPT=$attempt; run_wrk_once "$@" final; return 0; fi
    run_wrk_once "$@" "$attempt" && return 0
    log "re-running $1 $2 round $3 after foreign CPU load (retry $((attempt + 1)) of $NOISY_RETRIES)"
  done
}
run_wrk_once() { # server urlkind round duration record(0/1) attempt -> 1 if noisy (and not recorded)
  local srv=$1 kind=$2 round=$3 dur=$4 record=$5 attempt=$6
  local pid url f c0 c1 rss0 hwm t0 t1 load s0 s1
  pid=$(server_pid "$srv"); url="$(server_base "$srv")$(url_path "$kind")"
  f="$RAW/wrk-$srv-$kind-r$round.txt"
  kill -0 "$pid" 2>/dev/null || die "$srv (pid $pid) has exited"
  load=$(cut -d' ' -f1 /proc/loadavg)
  rss0=$(status_kb "$pid" VmRSS); c0=$(cpu_ticks "$pid"); s0=$(sys_busy_ticks); t0=$(date +%s.%N)
  # bash's `time` gives the client's own CPU; machine busy - server - client = foreign load.
  { TIMEFORMAT='%U %S'; time taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNECTIONS" -d"$dur" --latency \
      -H 'Metadata: true' "$url" >"$f" 2>&1; } 2>"$f.time" || die "wrk failed: $(tail -n 3 "$f")"
  t1=$(date +%s.%N); c1=$(cpu_ticks "$pid"); s1=$(sys_busy_ticks); hwm=$(status_kb "$pid" VmHWM)
  [ "$record" = 1 ] || return 0
  local client_cpu other_cpu noisy=0
  client_cpu=$(awk '{ printf "%.2f", $1 + $2 }' "$f.time")
  other_cpu=$(awk -v s=$((s1 - s0)) -v c=$((c1 - c0)) -v h="$CLK_TCK" -v w="$client_cpu" \
    'BEGIN { o = (s - c) / h - w; printf "%.2f", o < 0 ? 0 : o }')
  # Foreign CPU above NOISE_LIMIT (fraction of the run's wall time) means another process
  # competed for the two cores; such a run is retried (NOISY_RETRIES) before being kept.
  awk -v o="$other_cpu" -v t0="$t0" -v t1="$t1" -v l="$NOISE_LIMIT" 'BEGIN { exit !(o > l * (t1 - t0)) }' && noisy=1
  if [ "$noisy" = 1 ] && [ "$attempt" != final ]; then
    log "$(printf '%-7s %-4s r%s  %10s req/s  (noisy: foreign CPU %s s, discarded)' "$srv" "$kind" "$round" \
      "$(awk '/^Requests\/sec:/ { print $2 }' "$f")" "$other_cpu")"
    mv "$f" "$f.noisy-$attempt"; return 1
  fi
  local retries=$attempt; [ "$attempt" = final ] && retries=$FINAL_ATTEMPT
  local rps p50 p99 reqs non2xx sockerr
  rps=$(awk '/^Requests\/sec:/ { print $2 }' "$f")
  reqs=$(awk '/requests in/ { print $1 }' "$f")
  p50=$(to_ms "$(awk '$1 == "50%" { print $2 }' "$f")")
  p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$f")")
  non2xx=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$f"); non2xx=${non2xx:-0}
  sockerr=$(grep -c 'Socket errors' "$f" || true)
  [ -n "$rps" ] && [ -n "$reqs" ] || die "could not parse $f"
  [ "$non2xx" = 0 ] || log "WARNING: $srv $kind round $round: $non2xx non-2xx responses"
  python3 - "$srv" "$kind" "$round" "$rps" "$reqs" "$p50" "$p99" "$((c1 - c0))" "$CLK_TCK" \
    "$rss0" "$hwm" "$non2xx" "$sockerr" "$t0" "$t1" "$load" "$client_cpu" "$other_cpu" "$noisy" "$retries" \
    >>"$OUT/runs.jsonl" <<'PY'
import json, sys
a = sys.argv[1:]
ticks, tck, reqs = int(a[7]), int(a[8]), int(a[4])
cpu_s = ticks / tck
print(json.dumps({
    "server": a[0], "url": a[1], "round": int(a[2]),
    "rps": float(a[3]), "requests": reqs,
    "p50_ms": float(a[5]), "p99_ms": float(a[6]),
    "server_cpu_s": cpu_s, "wall_s": round(float(a[14]) - float(a[13]), 3),
    "cpu_us_per_req": cpu_s * 1e6 / reqs if reqs else None,
    "rss_before_kb": int(a[9]), "hwm_after_kb": int(a[10]),
    "non2xx": int(a[11]), "socket_error_lines": int(a[12]), "loadavg1_before": float(a[15]),
    "client_cpu_s": float(a[16]), "foreign_cpu_s": float(a[17]),
    "noisy": a[18] == "1", "noisy_retries": int(a[19]),
}))
PY
  log "$(printf '%-7s %-4s r%s  %10s req/s  p50 %s ms  p99 %s ms  cpu server %s s, client %s s, foreign %s s' \
    "$srv" "$kind" "$round" "$rps" "$p50" "$p99" "$(awk -v t=$((c1 - c0)) -v h="$CLK_TCK" 'BEGIN{printf "%.2f", t/h}')" \
    "$client_cpu" "$other_cpu")"
  [ "$noisy" = 1 ] && log "WARNING: keeping a noisy run (foreign CPU ${other_cpu} s) after $retries retries; flagged in results.json"
  return 0
}

log "warm-up: $WARMUP per server and URL (not recorded)"
for kind in json text; do for srv in azimds ceiling; do run_wrk "$srv" "$kind" 0 "$WARMUP" 0; done; done

for round in $(seq 1 "$ROUNDS"); do
  if [ $((round % 2)) = 1 ]; then order="azimds ceiling"; else order="ceiling azimds"; fi
  for kind in json text; do
    for srv in $order; do run_wrk "$srv" "$kind" "$round" "$DURATION" 1; done
  done
done

# ---------------------------------------------------------------- fixed-rate latency runs
touch "$OUT/latency.jsonl"
if [ "$LATENCY" = 1 ]; then
  "$OHA" --version >"$RAW/oha-version.txt" 2>&1 || true
  for point in $LAT_POINTS; do
    for kind in json text; do
      rate=$(python3 - "$OUT/runs.jsonl" "$kind" "$point" <<'PY'
import json, statistics, sys
point = float(sys.argv[3])
if point >= 1:          # an absolute rate
    print(int(point))
else:                   # a fraction of azimds' median saturating rate for this URL
    runs = [json.loads(l) for l in open(sys.argv[1])]
    r = [x["rps"] for x in runs if x["server"] == "azimds" and x["url"] == sys.argv[2]]
    print(max(1, int(statistics.median(r) * point)))
PY
)
      for srv in azimds ceiling; do
       for attempt in $(seq 0 "$NOISY_RETRIES"); do
        pid=$(server_pid "$srv"); url="$(server_base "$srv")$(url_path "$kind")"
        f="$RAW/oha-$srv-$kind-$point.json"
        kill -0 "$pid" 2>/dev/null || die "$srv (pid $pid) has exited"
        busy=0; wait_quiet || busy=1
        t0=$(date +%s.%N); c0=$(cpu_ticks "$pid"); s0=$(sys_busy_ticks)
        { TIMEFORMAT='%U %S'; time taskset -c "$CLIENT_CPU" "$OHA" --no-tui --worker-threads 1 --output-format json \
            -z "$LAT_DURATION" -c "$CONNECTIONS" -q "$rate" --latency-correction -H 'Metadata: true' "$url" \
            >"$f" 2>"${f%.json}.stderr"; } 2>"$f.time" || die "oha failed: $(tail -n 3 "${f%.json}.stderr")"
        c1=$(cpu_ticks "$pid"); s1=$(sys_busy_ticks); t1=$(date +%s.%N)
        python3 - "$f" "$srv" "$kind" "$point" "$rate" "$((c1 - c0))" "$CLK_TCK" "$((s1 - s0))" "$f.time" \
          "$t0" "$t1" "$LAT_NOISE_LIMIT" "$attempt" >"$RAW/lat-record.json" <<'PY'
import json, sys
f, srv, kind, point, rate, ticks, tck, busy, tf, t0, t1, limit, attempt = sys.argv[1:]
u, sy = open(tf).read().split()[:2]
client = float(u) + float(sy)
d = json.load(open(f))
s, p = d.get("summary", {}), d.get("latencyPercentiles", {})
codes = d.get("statusCodeDistribution", {})
ok = sum(v for k, v in codes.items() if str(k).startswith("2"))
total = sum(codes.values())
errors = d.get("errorDistribution", {})
ms = lambda v: None if v is None else v * 1000.0
print(json.dumps({
    "server": srv, "url": kind, "point": point, "target_rps": int(rate),
    "achieved_rps": s.get("requestsPerSec"), "requests": total, "non2xx": total - ok,
    "p50_ms": ms(p.get("p50")), "p90_ms": ms(p.get("p90")), "p99_ms": ms(p.get("p99")),
    "p99_9_ms": ms(p.get("p99.9")), "max_ms": ms(s.get("slowest")),
    "server_cpu_s": int(ticks) / int(tck), "client_cpu_s": round(client, 2),
    "foreign_cpu_s": round(max(0.0, (int(busy) - int(ticks)) / int(tck) - client), 2),
    # oha aborts the requests in flight at the deadline; those are not failures.
    "errors": {k: v for k, v in errors.items() if k != "aborted due to deadline"},
    "aborted_at_deadline": errors.get("aborted due to deadline", 0),
    "noisy": max(0.0, (int(busy) - int(ticks)) / int(tck) - client) > float(limit) * (float(t1) - float(t0)),
    "noisy_retries": int(attempt),
}))
PY
        line=$(cat "$RAW/lat-record.json")
        msg=$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print("achieved %.0f  p50 %.3f  p99 %.3f  p99.9 %.3f ms  foreign CPU %.2f s" % (d["achieved_rps"], d["p50_ms"], d["p99_ms"], d["p99_9_ms"], d["foreign_cpu_s"]))' "$line")
        if [[ $line == *'"noisy": true'* ]] && [ "$attempt" -lt "$NOISY_RETRIES" ] && [ "$busy" = 0 ]; then
          log "latency $srv $kind @ $rate req/s: noisy ($msg), discarded; re-running"
          mv "$f" "$f.noisy-$attempt"; continue
        fi
        echo "$line" >>"$OUT/latency.jsonl"
        log "latency $srv $kind @ $rate req/s: $msg"
        break
       done
      done
    done
  done
fi

AZ_FINAL_HWM=$(status_kb "$AZ_PID" VmHWM); CEIL_FINAL_HWM=$(status_kb "$CEIL_PID" VmHWM)
AZ_FINAL_RSS=$(status_kb "$AZ_PID" VmRSS)

# ---------------------------------------------------------------- summary + results.json
T_END=$(date +%s)
python3 - "$OUT" <<PY
import json, os, platform, subprocess, sys
out = sys.argv[1]
runs = [json.loads(l) for l in open(os.path.join(out, "runs.jsonl"))]
lat = [json.loads(l) for l in open(os.path.join(out, "latency.jsonl"))]
def sh(cmd):
    try: return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()
    except Exception: return None
res = {
    "schema": "azimds-bench/1",
    "started_unix": $T_START, "finished_unix": $T_END, "elapsed_s": $T_END - $T_START,
    "config": {"rounds": $ROUNDS, "duration": "$DURATION", "connections": $CONNECTIONS, "warmup": "$WARMUP",
               "workers": $AZIMDS_WORKERS, "server_cpu": "$SERVER_CPU", "client_cpu": "$CLIENT_CPU",
               "api_version": "$API_VERSION", "noise_limit": $NOISE_LIMIT, "lat_noise_limit": $LAT_NOISE_LIMIT, "latency_points": "$LAT_POINTS", "latency_duration": "$LAT_DURATION",
               "urls": {"json": "$PATH_JSON", "text": "$PATH_TEXT"}},
    "machine": {"cpu": sh("lscpu | sed -n 's/^Model name: *//p' | head -1"), "nproc": os.cpu_count(),
                "kernel": platform.release(), "rustc": sh("rustc --version"),
                "wrk": sh("wrk -v 2>&1 | head -1"), "oha": sh("'${OHA:-oha}' --version 2>/dev/null") if "$OHA" else None,
                "azimds": sh("'$AZIMDS_BIN' --version 2>/dev/null"),
                "git": sh("git -C '$ROOT' rev-parse --short HEAD 2>/dev/null") or None,
                "git_dirty": bool(sh("git -C '$ROOT' status --porcelain 2>/dev/null"))},
    "bodies": {"json_bytes": $JSON_BYTES, "text_bytes": $TEXT_BYTES,
               "azimds_json_header_bytes": $AZ_HDR_JSON, "ceiling_json_header_bytes": $CEIL_HDR_JSON,
               "azimds_text_header_bytes": $AZ_HDR_TEXT, "ceiling_text_header_bytes": $CEIL_HDR_TEXT},
    "machine_busy_cpu_s_per_s_before": $IDLE_BUSY,
    "memory": {"azimds_idle_rss_kb_after_start": $AZ_IDLE_RSS_KB, "azimds_threads_after_start": $AZ_THREADS,
               "azimds_hwm_kb_end": $AZ_FINAL_HWM, "azimds_rss_kb_end": $AZ_FINAL_RSS,
               "ceiling_idle_rss_kb_after_start": $CEIL_IDLE_RSS_KB, "ceiling_threads_after_start": $CEIL_THREADS,
               "ceiling_hwm_kb_end": $CEIL_FINAL_HWM},
    "runs": runs, "latency": lat,
}
json.dump(res, open(os.path.join(out, "results.json"), "w"), indent=2)
PY
python3 "$ROOT/scripts/bench_summary.py" "$OUT/results.json"
