#!/usr/bin/env bash
# Guest-plane benchmark: azimds against a raw-hyper ceiling serving the same bytes.
#
#   scripts/bench.sh                 # 3 rounds x 2 URLs x 2 servers x 10 s, then latency at half rate
#   ROUNDS=5 DURATION=10s scripts/bench.sh
#
# Method (see bench/BENCHMARKS.draft.md):
#   * Both servers run one tokio worker (AZIMDS_WORKERS / WORKERS) pinned to CPU 0;
#     the load generator runs pinned to CPU 1. Loopback only; every run is time-bounded.
#   * The ceiling (examples/ceiling.rs) serves the exact bytes azimds returned,
#     fetched with curl at the start, with the same headers check and response headers.
#   * Throughput: `wrk -t1 -c64 -d10s --latency`, ROUNDS rounds; within a round the two
#     servers alternate (order flips every round) so machine noise hits both.
#     Per run: req/s, p50, p99, server CPU (utime+stime from /proc/PID/stat) -> us CPU/req,
#     VmRSS before the run and VmHWM (peak) after it.
#   * Latency at fixed rate: wrk cannot pace requests (wrk2 is not in Debian), so this
#     uses oha `-q RATE --latency-correction` (coordinated-omission corrected), at half of
#     azimds' median saturating rate, against both servers at the same absolute rate.
#     oha is installed with `cargo install oha --locked` if missing (~3.5 min), unless
#     LATENCY=0. The achieved rate is recorded and checked against the target.
#
# Env knobs (defaults): ROUNDS=3 DURATION=10s CONNECTIONS=64 WARMUP=2s AZIMDS_WORKERS=1
#   SERVER_CPU=0 CLIENT_CPU=1 AZ_PORT=18080 CEIL_PORT=18081 LATENCY=1 LAT_DURATION=10s
#   LAT_FRACTION=0.5 SKIP_BUILD=0 OUT=target/bench API_VERSION=2025-04-07
# Output: a summary table on stdout, target/bench/results.json, raw tool output in
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
LAT_FRACTION=${LAT_FRACTION:-0.5}
SKIP_BUILD=${SKIP_BUILD:-0}
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
PAGE_KB=$(( $(getconf PAGESIZE) / 1024 ))
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
  cargo build --release --bins --examples 2>&1 | tail -n 3 >&2
fi
[ -x "$AZIMDS_BIN" ] || die "$AZIMDS_BIN not found"
[ -x "$CEIL_BIN" ] || die "$CEIL_BIN not found"

# ---------------------------------------------------------------- helpers
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() { # port pid
  local i
  for i in $(seq 1 200); do
    port_open "$1" && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }  # utime+stime
status_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }       # VmRSS / VmHWM in kB
threads() { awk '$1 == "Threads:" { print $2 }' "/proc/$1/status"; }
to_ms() { # wrk latency token like 256.00us / 1.23ms / 1.02s
  awk -v v="$1" 'BEGIN { n = v + 0; u = v; sub(/^[0-9.]+/, "", u);
    if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000;
    printf "%.4f", n }'
}

for p in "$AZ_PORT" "$CEIL_PORT"; do port_open "$p" && die "port $p is already in use (set AZ_PORT / CEIL_PORT)"; done

# ---------------------------------------------------------------- start azimds
log "starting azimds (AZIMDS_WORKERS=$AZIMDS_WORKERS, CPU $SERVER_CPU) on 127.0.0.1:$AZ_PORT"
AZIMDS_WORKERS=$AZIMDS_WORKERS taskset -c "$SERVER_CPU" "$AZIMDS_BIN" serve \
  --listen "127.0.0.1:$AZ_PORT" --rate-limit 0 >"$RAW/azimds.stdout" 2>"$RAW/azimds.stderr" &
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

server_pid() { case $1 in azimds) echo "$AZ_PID" ;; ceiling) echo "$CEIL_PID" ;; esac; }
server_base() { case $1 in azimds) echo "$AZ_BASE" ;; ceiling) echo "$CEIL_BASE" ;; esac; }
url_path() { case $1 in json) echo "$PATH_JSON" ;; text) echo "$PATH_TEXT" ;; esac; }

# ---------------------------------------------------------------- throughput runs
run_wrk() { # server urlkind round duration record(0/1)
  local srv=$1 kind=$2 round=$3 dur=$4 record=$5
  local pid url f c0 c1 rss0 hwm t0 t1 load
  pid=$(server_pid "$srv"); url="$(server_base "$srv")$(url_path "$kind")"
  f="$RAW/wrk-$srv-$kind-r$round.txt"
  kill -0 "$pid" 2>/dev/null || die "$srv (pid $pid) has exited"
  load=$(cut -d' ' -f1 /proc/loadavg)
  rss0=$(status_kb "$pid" VmRSS); c0=$(cpu_ticks "$pid"); t0=$(date +%s.%N)
  taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNECTIONS" -d"$dur" --latency -H 'Metadata: true' "$url" >"$f" 2>&1 \
    || die "wrk failed: $(tail -n 3 "$f")"
  t1=$(date +%s.%N); c1=$(cpu_ticks "$pid"); hwm=$(status_kb "$pid" VmHWM)
  [ "$record" = 1 ] || return 0
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
    "$rss0" "$hwm" "$non2xx" "$sockerr" "$t0" "$t1" "$load" >>"$OUT/runs.jsonl" <<'PY'
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
}))
PY
  log "$(printf '%-7s %-4s r%s  %10s req/s  p50 %s ms  p99 %s ms  cpu %s s' "$srv" "$kind" "$round" "$rps" "$p50" "$p99" "$(awk -v t=$((c1 - c0)) -v h="$CLK_TCK" 'BEGIN{printf "%.2f", t/h}')")"
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
  "$OHA" --help >"$RAW/oha-help.txt" 2>&1 || true
  for kind in json text; do
    rate=$(python3 - "$OUT/runs.jsonl" "$kind" "$LAT_FRACTION" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
r = [x["rps"] for x in runs if x["server"] == "azimds" and x["url"] == sys.argv[2]]
print(int(statistics.median(r) * float(sys.argv[3])))
PY
)
    for srv in azimds ceiling; do
      pid=$(server_pid "$srv"); url="$(server_base "$srv")$(url_path "$kind")"
      f="$RAW/oha-$srv-$kind.json"
      c0=$(cpu_ticks "$pid")
      taskset -c "$CLIENT_CPU" "$OHA" --no-tui --output-format json -z "$LAT_DURATION" -c "$CONNECTIONS" \
        -q "$rate" --latency-correction -H 'Metadata: true' "$url" >"$f" 2>"$RAW/oha-$srv-$kind.stderr" \
        || die "oha failed: $(tail -n 3 "$RAW/oha-$srv-$kind.stderr")"
      c1=$(cpu_ticks "$pid")
      python3 - "$f" "$srv" "$kind" "$rate" "$((c1 - c0))" "$CLK_TCK" >>"$OUT/latency.jsonl" <<'PY'
import json, sys
f, srv, kind, rate, ticks, tck = sys.argv[1:]
d = json.load(open(f))
s, p = d.get("summary", {}), d.get("latencyPercentiles", {})
codes = d.get("statusCodeDistribution", {})
ok = sum(v for k, v in codes.items() if str(k).startswith("2"))
total = sum(codes.values())
ms = lambda v: None if v is None else v * 1000.0
print(json.dumps({
    "server": srv, "url": kind, "target_rps": int(rate),
    "achieved_rps": s.get("requestsPerSec"), "requests": total, "non2xx": total - ok,
    "p50_ms": ms(p.get("p50")), "p90_ms": ms(p.get("p90")), "p99_ms": ms(p.get("p99")),
    "p99_9_ms": ms(p.get("p99.9")), "max_ms": ms(s.get("slowest")),
    "server_cpu_s": int(ticks) / int(tck),
    "errors": d.get("errorDistribution", {}),
}))
PY
      log "latency $srv $kind @ $rate req/s: $(tail -n 1 "$OUT/latency.jsonl")"
    done
  done
fi

AZ_FINAL_HWM=$(status_kb "$AZ_PID" VmHWM); CEIL_FINAL_HWM=$(status_kb "$CEIL_PID" VmHWM)
AZ_FINAL_RSS=$(status_kb "$AZ_PID" VmRSS)

# ---------------------------------------------------------------- summary + results.json
T_END=$(date +%s)
python3 - "$OUT" <<PY
import json, os, platform, statistics, subprocess, sys
out = sys.argv[1]
runs = [json.loads(l) for l in open(os.path.join(out, "runs.jsonl"))]
lat = [json.loads(l) for l in open(os.path.join(out, "latency.jsonl"))]
def sh(cmd):
    try: return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()
    except Exception: return None
med = statistics.median
summary = {}
for kind in ("json", "text"):
    summary[kind] = {}
    for srv in ("azimds", "ceiling"):
        r = [x for x in runs if x["server"] == srv and x["url"] == kind]
        if not r: continue
        summary[kind][srv] = {
            "runs": len(r),
            "rps_median": med(x["rps"] for x in r), "rps_min": min(x["rps"] for x in r), "rps_max": max(x["rps"] for x in r),
            "p50_ms_median": med(x["p50_ms"] for x in r), "p99_ms_median": med(x["p99_ms"] for x in r),
            "p99_ms_max": max(x["p99_ms"] for x in r),
            "cpu_us_per_req_median": med(x["cpu_us_per_req"] for x in r),
            "hwm_kb_max": max(x["hwm_after_kb"] for x in r),
        }
    a, c = summary[kind].get("azimds"), summary[kind].get("ceiling")
    if a and c:
        summary[kind]["ratio_rps_azimds_over_ceiling"] = a["rps_median"] / c["rps_median"]
        summary[kind]["ratio_cpu_per_req_azimds_over_ceiling"] = a["cpu_us_per_req_median"] / c["cpu_us_per_req_median"]
res = {
    "schema": "azimds-bench/1",
    "started_unix": $T_START, "finished_unix": $T_END, "elapsed_s": $T_END - $T_START,
    "config": {"rounds": $ROUNDS, "duration": "$DURATION", "connections": $CONNECTIONS, "warmup": "$WARMUP",
               "workers": $AZIMDS_WORKERS, "server_cpu": "$SERVER_CPU", "client_cpu": "$CLIENT_CPU",
               "api_version": "$API_VERSION", "latency_fraction": $LAT_FRACTION, "latency_duration": "$LAT_DURATION",
               "urls": {"json": "$PATH_JSON", "text": "$PATH_TEXT"}},
    "machine": {"cpu": sh("lscpu | sed -n 's/^Model name: *//p' | head -1"), "nproc": os.cpu_count(),
                "kernel": platform.release(), "rustc": sh("rustc --version"),
                "wrk": sh("wrk -v 2>&1 | head -1"), "oha": sh("'${OHA:-oha}' --version 2>/dev/null") if "$OHA" else None,
                "git": sh("git -C '$ROOT' rev-parse --short HEAD 2>/dev/null") or None,
                "git_dirty": bool(sh("git -C '$ROOT' status --porcelain 2>/dev/null"))},
    "bodies": {"json_bytes": $JSON_BYTES, "text_bytes": $TEXT_BYTES,
               "azimds_json_header_bytes": $AZ_HDR_JSON, "ceiling_json_header_bytes": $CEIL_HDR_JSON},
    "memory": {"azimds_idle_rss_kb_after_start": $AZ_IDLE_RSS_KB, "azimds_threads_after_start": $AZ_THREADS,
               "azimds_hwm_kb_end": $AZ_FINAL_HWM, "azimds_rss_kb_end": $AZ_FINAL_RSS,
               "ceiling_idle_rss_kb_after_start": $CEIL_IDLE_RSS_KB, "ceiling_threads_after_start": $CEIL_THREADS,
               "ceiling_hwm_kb_end": $CEIL_FINAL_HWM},
    "summary": summary, "runs": runs, "latency": lat,
}
json.dump(res, open(os.path.join(out, "results.json"), "w"), indent=2)

def f(v, spec): return "-" if v is None else format(v, spec)
print()
print(f"azimds guest-plane benchmark: {res['config']['rounds']} rounds x {res['config']['duration']}, "
      f"wrk -t1 -c{res['config']['connections']} on CPU {res['config']['client_cpu']}, "
      f"servers on CPU {res['config']['server_cpu']} with {res['config']['workers']} worker(s)")
print(f"bodies: instance {$JSON_BYTES} B, vmId {$TEXT_BYTES} B")
print()
hdr = "| URL | server | req/s median (min-max) | ratio az/ceil | p50 ms | p99 ms (max) | CPU us/req | ratio | peak RSS MB |"
print(hdr); print("|" + "---|" * (hdr.count("|") - 1))
for kind, label in (("json", "/metadata/instance"), ("text", "compute/vmId?format=text")):
    for srv in ("azimds", "ceiling"):
        s = summary[kind].get(srv)
        if not s: continue
        ra = summary[kind].get("ratio_rps_azimds_over_ceiling") if srv == "azimds" else None
        rc = summary[kind].get("ratio_cpu_per_req_azimds_over_ceiling") if srv == "azimds" else None
        print(f"| {label} | {srv} | {s['rps_median']:,.0f} ({s['rps_min']:,.0f}-{s['rps_max']:,.0f}) | {f(ra, '.3f')} | "
              f"{s['p50_ms_median']:.3f} | {s['p99_ms_median']:.3f} ({s['p99_ms_max']:.3f}) | "
              f"{s['cpu_us_per_req_median']:.2f} | {f(rc, '.3f')} | {s['hwm_kb_max']/1024:.1f} |")
m = res["memory"]
print()
print(f"azimds idle RSS right after start: {m['azimds_idle_rss_kb_after_start']/1024:.1f} MB "
      f"({m['azimds_threads_after_start']} threads); peak {m['azimds_hwm_kb_end']/1024:.1f} MB; "
      f"ceiling idle {m['ceiling_idle_rss_kb_after_start']/1024:.1f} MB, peak {m['ceiling_hwm_kb_end']/1024:.1f} MB")
if lat:
    print()
    print("| URL | server | target req/s | achieved req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | non-2xx |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for x in lat:
        print(f"| {x['url']} | {x['server']} | {x['target_rps']:,} | {f(x['achieved_rps'], ',.0f')} | {f(x['p50_ms'], '.3f')} | "
              f"{f(x['p90_ms'], '.3f')} | {f(x['p99_ms'], '.3f')} | {f(x['p99_9_ms'], '.3f')} | {f(x['max_ms'], '.3f')} | {x['non2xx']} |")
        if x["achieved_rps"] and x["achieved_rps"] < 0.97 * x["target_rps"]:
            print(f"  WARNING: {x['server']} {x['url']}: achieved rate is {x['achieved_rps']/x['target_rps']:.1%} of target")
print()
print(f"results: {os.path.join(out, 'results.json')}  (elapsed {res['elapsed_s']} s)")
PY
