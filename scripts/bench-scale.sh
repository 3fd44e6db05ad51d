#!/usr/bin/env bash
# Scale benchmark (issue 3, item 8): azimds with 100,000 VMs against the same server with one VM.
#
#   scripts/bench-scale.sh                  # COUNT=100000 ROUNDS=6, about 7 minutes
#   COUNT=20000 ROUNDS=3 scripts/bench-scale.sh
#
# What it measures (method and results: bench/scale.md):
#   1. Import: a fresh data directory, `serve --vms FILE` with COUNT realistic VMs (plus
#      `vm-local`, caller 127.0.0.1) from examples/scale_vms.rs: time from spawn to /readyz 200,
#      the `load_ms` of the server's "listening" log line, VmRSS when ready and VmHWM (peak).
#   2. Startup from the store: STARTS restarts on that data directory without --vms: time to
#      /readyz, load_ms, VmRSS when ready, VmHWM. The last start stays up for 3 and 4.
#      The same for the one-VM store (COUNT=0: only vm-local), for reference.
#   3. Guest throughput: both servers `--callers source-address --rate-limit 0 --workers 1`,
#      pinned with `taskset -c SERVER_CPU`; `wrk -t1 -c64 --latency -d DURATION` pinned to
#      CLIENT_CPU, from 127.0.0.1, so it is served as vm-local in both stores. ROUNDS rounds
#      over two URLs (the whole instance document and compute/vmId?format=text); within a round
#      the 100k and the one-VM server alternate, the order flipping every round. Per run: req/s,
#      p50, p99, server CPU per request, foreign CPU (other processes on the machine; a run with
#      more than NOISE_LIMIT foreign CPU-s per wall-s is re-run up to NOISY_RETRIES times and
#      flagged if kept). Medians and the 100k/1-VM ratio per URL.
#   4. Write-to-visible latency on the 100k server: examples/write_visible.rs (pinned to
#      CLIENT_CPU) PUTs a changed vm-local through the control API, then polls the guest plane
#      until the change is served; SAMPLES samples after 20 warm-up ones. Same on the one-VM
#      server for reference.
#   5. Every VM served once (TOUCH=1, needs root): in a network namespace of the script's own
#      where 10.0.0.0/8 is local, the 100k server restarted on 169.254.169.254:80 and
#      examples/touch_all.rs fetching each VM's whole document from that VM's caller address
#      (checking each is served as itself); RSS before and after. The namespace is deleted on exit.
#   RSS of both servers is recorded after each step.
#
# Knobs (defaults): COUNT=100000 ROUNDS=6 DURATION=10s WARMUP=2s CONNECTIONS=64 STARTS=3
#   SAMPLES=500 SERVER_CPU=0 CLIENT_CPU=1 PORT_BASE=18390 NOISE_LIMIT=0.05 NOISY_RETRIES=2
#   QUIET_WAIT=60 SKIP_BUILD=0 TOUCH=1 KINDS="json text" OUT=target/bench-scale AZIMDS_BIN=target/release/azimds
# Output: a summary on stdout, $OUT/results.json, every raw output in $OUT/raw/.
# Needs: wrk, curl, taskset, python3; about 15 GB of free memory for COUNT=100000 (the import
# peak measured here); loopback only.
set -euo pipefail

COUNT=${COUNT:-100000}
ROUNDS=${ROUNDS:-6}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONNECTIONS=${CONNECTIONS:-64}
STARTS=${STARTS:-3}
SAMPLES=${SAMPLES:-500}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
PORT_BASE=${PORT_BASE:-18390}
NOISE_LIMIT=${NOISE_LIMIT:-0.05}
NOISY_RETRIES=${NOISY_RETRIES:-2}
QUIET_WAIT=${QUIET_WAIT:-60}
SKIP_BUILD=${SKIP_BUILD:-0}
TOUCH=${TOUCH:-1}
KINDS=${KINDS:-json text}              # guest URLs measured in step 3
API_VERSION=${API_VERSION:-2025-04-07}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
OUT=${OUT:-$ROOT/target/bench-scale}
RAW=$OUT/raw
AZIMDS_BIN=${AZIMDS_BIN:-$ROOT/target/release/azimds}
GEN_BIN=$ROOT/target/release/examples/scale_vms
WV_BIN=$ROOT/target/release/examples/write_visible
TOUCH_BIN=$ROOT/target/release/examples/touch_all
CLK_TCK=$(getconf CLK_TCK)
T_START=$(date +%s)

# Two servers: "big" (COUNT VMs) and "one" (vm-local only), each with a guest and a control port.
declare -A GPORT=([big]=$PORT_BASE [one]=$((PORT_BASE + 2)))
declare -A CPORT=([big]=$((PORT_BASE + 1)) [one]=$((PORT_BASE + 3)))
declare -A DATA=([big]=$OUT/data-big [one]=$OUT/data-one)
declare -A VMS_FILE=([big]=$OUT/vms-big.json [one]=$OUT/vms-one.json)
declare -A PID=()

log() { printf '[bench-scale %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

NETNS=""
cleanup() {
  local name
  for name in "${!PID[@]}"; do
    local p=${PID[$name]}
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
for tool in wrk curl taskset python3; do command -v "$tool" >/dev/null || die "$tool is required"; done
[ "$(nproc)" -ge 2 ] || log "WARNING: fewer than 2 CPUs; server and client cannot be pinned apart"
for p in "${GPORT[@]}" "${CPORT[@]}"; do
  (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && die "port $p is in use (set PORT_BASE)"
done
mkdir -p "$RAW"
rm -f "$RAW"/* "$OUT"/*.jsonl "$OUT/results.json"
if [ "$SKIP_BUILD" != 1 ]; then
  log "cargo build --release --bin azimds --example scale_vms --example write_visible --example touch_all"
  cargo build --release --bin azimds --example scale_vms --example write_visible --example touch_all 2>&1 | tail -n 2 >&2
fi
for b in "$AZIMDS_BIN" "$GEN_BIN" "$WV_BIN" "$TOUCH_BIN"; do [ -x "$b" ] || die "$b not found"; done
# Private copies: a rebuild of target/release during the run (other work in the tree) must not
# change the binary between the starts of this run.
mkdir -p "$OUT/bin"
cp "$AZIMDS_BIN" "$OUT/bin/azimds"; cp "$GEN_BIN" "$WV_BIN" "$TOUCH_BIN" "$OUT/bin/"
AZIMDS_BIN=$OUT/bin/azimds GEN_BIN=$OUT/bin/scale_vms WV_BIN=$OUT/bin/write_visible TOUCH_BIN=$OUT/bin/touch_all
GIT_START=$(git rev-parse --short HEAD)
GIT_DIRTY_START=$(git status --porcelain -- src Cargo.toml Cargo.lock | grep -q . && echo true || echo false)
log "azimds $("$AZIMDS_BIN" --version) at $GIT_START$([ "$GIT_DIRTY_START" = true ] && echo ' (working tree has changes in src/)'), binary built $(date -r "$AZIMDS_BIN" +%FT%T)"

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
  log "WARNING: machine still busy (${b} CPU-s/s) after ${QUIET_WAIT} s; going on"
}
to_ms() { # wrk latency token (256.00us, 1.23ms, 1.02s) -> ms
  awk -v v="$1" 'BEGIN { n = v + 0; u = v; sub(/^[0-9.]+/, "", u);
    if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000;
    printf "%.4f", n }'
}
record() { python3 -c 'import json,sys; print(json.dumps(json.loads(sys.argv[1])))' "$1" >>"$OUT/$2.jsonl"; }

# start_server NAME LABEL [--vms FILE]: starts, waits for /readyz, records the start; sets PID[NAME].
start_server() {
  local name=$1 label=$2; shift 2
  local log_file="$RAW/$name-$label.stderr" t0 t1 code pid load_ms rss hwm anon
  wait_quiet
  t0=$(now)
  taskset -c "$SERVER_CPU" "$AZIMDS_BIN" serve --listen "127.0.0.1:${GPORT[$name]}" \
    --control "127.0.0.1:${CPORT[$name]}" --data "${DATA[$name]}" --callers source-address \
    --rate-limit 0 --workers 1 "$@" >/dev/null 2>"$log_file" &
  pid=$!
  PID[$name]=$pid
  while :; do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:${CPORT[$name]}/readyz" || true)
    [ "$code" = 200 ] && break
    kill -0 "$pid" 2>/dev/null || { tail -n 20 "$log_file" >&2; die "$name server exited during start"; }
    sleep 0.01
  done
  t1=$(now)
  for _ in $(seq 1 100); do grep -q 'load_ms=' "$log_file" && break; sleep 0.01; done
  load_ms=$(sed -n 's/.* load_ms=\([0-9]*\).*/\1/p' "$log_file" | tail -n 1)
  rss=$(status_kb "$pid" VmRSS); hwm=$(status_kb "$pid" VmHWM); anon=$(status_kb "$pid" RssAnon)
  record "{\"server\": \"$name\", \"phase\": \"$label\", \"ready_s\": $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }'),
    \"load_ms\": ${load_ms:-null}, \"rss_kb\": $rss, \"hwm_kb\": $hwm, \"rss_anon_kb\": $anon,
    \"store_bytes\": $(stat -c %s "${DATA[$name]}/azimds.redb")}" starts
  log "$(printf '%-3s %-7s ready in %6.2f s  load_ms %7s  RSS %8.1f MB  peak %8.1f MB' "$name" "$label" \
    "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" "${load_ms:-?}" \
    "$(awk -v k="$rss" 'BEGIN { print k / 1024 }')" "$(awk -v k="$hwm" 'BEGIN { print k / 1024 }')")"
}

stop_server() {
  local name=$1 pid=${PID[$1]}
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  unset "PID[$name]"
}

memory() { # name label: RSS now
  local pid=${PID[$1]}
  record "{\"server\": \"$1\", \"phase\": \"$2\", \"rss_kb\": $(status_kb "$pid" VmRSS), \"hwm_kb\": $(status_kb "$pid" VmHWM), \"rss_anon_kb\": $(status_kb "$pid" RssAnon)}" memory
}

# ---------------------------------------------------------------- 1. generate and import
log "generating $COUNT VMs (+ vm-local) and the one-VM file"
"$GEN_BIN" "$COUNT" "${VMS_FILE[big]}"
"$GEN_BIN" 0 "${VMS_FILE[one]}"
log "definitions: $(stat -c %s "${VMS_FILE[big]}") bytes for $((COUNT + 1)) VMs"
for name in big one; do
  rm -rf "${DATA[$name]}"
  start_server "$name" import --vms "${VMS_FILE[$name]}"
  stop_server "$name"
done

# ---------------------------------------------------------------- 2. startup from the store
for name in one big; do
  for s in $(seq 1 "$STARTS"); do
    start_server "$name" "start$s"
    [ "$s" = "$STARTS" ] || stop_server "$name"
  done
done
for name in big one; do
  n=$(curl -s "http://127.0.0.1:${CPORT[$name]}/v1/status" -H "Authorization: Bearer $(cat "${DATA[$name]}/control-token")" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["vms"])')
  log "$name serves $n VMs"
  record "{\"server\": \"$name\", \"vms\": $n}" counts
done

# ---------------------------------------------------------------- 3. throughput
PATH_JSON="/metadata/instance?api-version=$API_VERSION"
PATH_TEXT="/metadata/instance/compute/vmId?api-version=$API_VERSION&format=text"
url() { # name kind
  if [ "$2" = json ]; then echo "http://127.0.0.1:${GPORT[$1]}$PATH_JSON"; else echo "http://127.0.0.1:${GPORT[$1]}$PATH_TEXT"; fi
}
for kind in json text; do # both servers serve vm-local the same bytes (but Date / request id)
  curl -sS -H 'Metadata: true' "$(url big "$kind")" -o "$RAW/body-big-$kind"
  curl -sS -H 'Metadata: true' "$(url one "$kind")" -o "$RAW/body-one-$kind"
  cmp -s "$RAW/body-big-$kind" "$RAW/body-one-$kind" || die "the two servers serve different $kind bodies for vm-local"
  log "$kind body: $(stat -c %s "$RAW/body-big-$kind") bytes, identical on both servers"
done

run_wrk() { # name kind round duration record -> 1 if noisy and not final
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
    log "$(printf '%-3s %-4s r%s %10s req/s (noisy: foreign CPU %s s; discarded)' "$name" "$kind" "$round" "$rps" "$other")"
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
  log "$(printf '%-3s %-4s r%s %10s req/s  p50 %s ms  p99 %s ms  server CPU %s s  foreign %s s' "$name" "$kind" "$round" \
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

log "warm-up: $WARMUP per server and URL"
for name in big one; do for kind in $KINDS; do run_wrk "$name" "$kind" 0 "$WARMUP" 0 0; done; done
memory big after-warmup
memory one after-warmup
for round in $(seq 1 "$ROUNDS"); do
  if [ $((round % 2)) = 1 ]; then order="big one"; else order="one big"; fi
  for kind in $KINDS; do
    for name in $order; do measure "$name" "$kind" "$round"; done
  done
done
memory big after-throughput
memory one after-throughput

# ---------------------------------------------------------------- 4. write-to-visible latency
for name in big one; do
  wait_quiet
  log "write-to-visible: $SAMPLES samples on $name"
  taskset -c "$CLIENT_CPU" "$WV_BIN" --control "127.0.0.1:${CPORT[$name]}" --data "${DATA[$name]}" \
    --guest "127.0.0.1:${GPORT[$name]}" --vm vm-local --samples "$SAMPLES" >"$RAW/write-visible-$name.json"
  python3 - "$name" "$RAW/write-visible-$name.json" >>"$OUT/latency.jsonl" <<'PY'
import json, sys
d = json.load(open(sys.argv[2]))
d.pop("raw")
d["server"] = sys.argv[1]
print(json.dumps(d))
PY
  log "$(tail -n 1 "$OUT/latency.jsonl")"
done
memory big after-writes
memory one after-writes

# ---------------------------------------------------------------- 5. every VM served once
# In a network namespace of its own where 10.0.0.0/8 is local, so a client can bind each VM's
# caller address: the 100k server restarted there, then every VM reads its whole document
# once (examples/touch_all.rs checks each is served as itself). RSS before and after.
if [ "$TOUCH" = 1 ] && [ "$EUID" = 0 ]; then
  stop_server one
  stop_server big
  NETNS=azimds-bench-scale-$$
  ip netns add "$NETNS"
  ip -n "$NETNS" link set lo up
  ip -n "$NETNS" addr add 169.254.169.254/32 dev lo
  ip -n "$NETNS" route add local 10.0.0.0/8 dev lo
  wait_quiet
  sock=$OUT/big-control.sock
  t0=$(now)
  ip netns exec "$NETNS" taskset -c "$SERVER_CPU" "$AZIMDS_BIN" serve --listen 169.254.169.254:80 \
    --control "unix:$sock" --data "${DATA[big]}" --callers source-address --rate-limit 0 --workers 1 \
    >/dev/null 2>"$RAW/big-touch.stderr" &
  PID[big]=$!
  until [ "$(curl -s -o /dev/null -w '%{http_code}' --unix-socket "$sock" http://azimds/readyz || true)" = 200 ]; do
    kill -0 "${PID[big]}" 2>/dev/null || { tail -n 20 "$RAW/big-touch.stderr" >&2; die "big server exited in the namespace"; }
    sleep 0.01
  done
  log "big server in $NETNS ready in $(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }') s"
  memory big touch-before
  c0=$(cpu_ticks "${PID[big]}")
  ip netns exec "$NETNS" taskset -c "$CLIENT_CPU" "$TOUCH_BIN" --guest 169.254.169.254:80 --count "$COUNT" \
    >"$RAW/touch.json" || die "touch_all failed: $(cat "$RAW/touch.json")"
  c1=$(cpu_ticks "${PID[big]}")
  log "every VM served once: $(cat "$RAW/touch.json"), server CPU $(awk -v t=$((c1 - c0)) -v h="$CLK_TCK" 'BEGIN { printf "%.2f", t / h }') s"
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); d["server_cpu_s"]=float(sys.argv[2]); print(json.dumps(d))' \
    "$RAW/touch.json" "$(awk -v t=$((c1 - c0)) -v h="$CLK_TCK" 'BEGIN { print t / h }')" >"$OUT/touch.jsonl"
  memory big touch-after
elif [ "$TOUCH" = 1 ]; then
  log "WARNING: not root: skipping step 5 (every VM served once needs a network namespace)"
fi

# ---------------------------------------------------------------- summary
T_END=$(date +%s)
python3 - "$OUT" "$COUNT" "$ROUNDS" "$DURATION" "$CONNECTIONS" "$SAMPLES" "$T_START" "$T_END" "$(stat -c %s "${VMS_FILE[big]}")" \
  "$GIT_START" "$GIT_DIRTY_START" "$(date -r "$AZIMDS_BIN" +%FT%T)" <<'PY'
import json, os, platform, statistics, subprocess, sys
out, count, rounds, duration, conns, samples, t0, t1, file_bytes, git, dirty, built = sys.argv[1:]
load = lambda n: [json.loads(l) for l in open(os.path.join(out, n))] if os.path.exists(os.path.join(out, n)) else []
starts, runs, lat, mem = load("starts.jsonl"), load("runs.jsonl"), load("latency.jsonl"), load("memory.jsonl")
touch = load("touch.jsonl")
med = statistics.median
sh = lambda c: subprocess.run(c, shell=True, capture_output=True, text=True).stdout.strip()
res = {"config": {"count": int(count), "rounds": int(rounds), "duration": duration, "connections": int(conns),
                  "samples": int(samples), "definitions_bytes": int(file_bytes)},
       "machine": {"cpu": sh("lscpu | sed -n 's/^Model name: *//p' | head -1"), "nproc": os.cpu_count(),
                   "kernel": platform.release()},
       # HEAD and src/ state when the run started, and when the measured binary was built.
       "git_at_start": git, "src_dirty_at_start": dirty == "true", "binary_built": built,
       "elapsed_s": int(t1) - int(t0), "starts": starts, "touch": touch, "memory": mem, "latency": lat, "throughput": {}}
print(f"azimds scale benchmark: {int(count):,} VMs (+ vm-local) vs 1 VM; {rounds} rounds x {duration}, wrk -t1 -c{conns}")
print()
print("| server | phase | ready s | load_ms | RSS MB | peak RSS MB | store MB |")
print("|---|---|---|---|---|---|---|")
for s in starts:
    print(f"| {s['server']} | {s['phase']} | {s['ready_s']:.2f} | {s['load_ms']} | {s['rss_kb']/1024:.1f} | {s['hwm_kb']/1024:.1f} | {s['store_bytes']/1e6:.1f} |")
print()
print("| URL | server | req/s median (min-max) | ratio of medians | median of per-round ratios (min-max) | p50 ms | p99 ms median (max) | CPU us/req | noisy kept |")
print("|---|---|---|---|---|---|---|---|---|")
for kind in ("json", "text"):
    summary = {}
    for srv in ("big", "one"):
        r = [x for x in runs if x["server"] == srv and x["url"] == kind]
        if not r:
            continue
        summary[srv] = {"rps_median": med(x["rps"] for x in r), "rps_min": min(x["rps"] for x in r),
                        "rps_max": max(x["rps"] for x in r), "p50_ms_median": med(x["p50_ms"] for x in r),
                        "p99_ms_median": med(x["p99_ms"] for x in r), "p99_ms_max": max(x["p99_ms"] for x in r),
                        "cpu_us_per_req_median": med(x["server_cpu_s"] * 1e6 / x["requests"] for x in r),
                        "noisy_kept": sum(1 for x in r if x["noisy"]), "runs": len(r)}
    if "big" in summary and "one" in summary:
        summary["ratio_rps_big_over_one"] = summary["big"]["rps_median"] / summary["one"]["rps_median"]
        per_round = {}
        for x in runs:
            if x["url"] == kind:
                per_round.setdefault(x["round"], {})[x["server"]] = x
        paired = [r["big"]["rps"] / r["one"]["rps"] for r in per_round.values() if len(r) == 2]
        cpu = lambda x: x["server_cpu_s"] * 1e6 / x["requests"]
        summary["paired_ratios"] = paired
        summary["ratio_rps_paired_median"] = med(paired)
        summary["ratio_cpu_per_req_paired_median"] = med(cpu(r["big"]) / cpu(r["one"]) for r in per_round.values() if len(r) == 2)
    res["throughput"][kind] = summary
    for srv in ("big", "one"):
        s = summary.get(srv)
        if not s:
            continue
        ratio = f"{summary['ratio_rps_big_over_one']:.3f}" if srv == "big" and "ratio_rps_big_over_one" in summary else ""
        paired = (f"{summary['ratio_rps_paired_median']:.3f} ({min(summary['paired_ratios']):.3f}-{max(summary['paired_ratios']):.3f})"
                  if srv == "big" and summary.get("paired_ratios") else "")
        print(f"| {kind} | {srv} | {s['rps_median']:,.0f} ({s['rps_min']:,.0f}-{s['rps_max']:,.0f}) | {ratio} | {paired} | "
              f"{s['p50_ms_median']:.3f} | {s['p99_ms_median']:.3f} ({s['p99_ms_max']:.3f}) | {s['cpu_us_per_req_median']:.2f} | {s['noisy_kept']} |")
print()
print("| server | samples | PUT ack p50 / p99 ms | ack -> visible p50 / p99 / max ms | visible on first poll |")
print("|---|---|---|---|---|")
for x in lat:
    a, v = x["ack_ms"], x["visible_after_ack_ms"]
    print(f"| {x['server']} | {x['samples']} | {a['p50']:.3f} / {a['p99']:.3f} | {v['p50']:.3f} / {v['p99']:.3f} / {v['max']:.3f} | {x['visible_on_first_poll']} |")
print()
print("| server | when | RSS MB | RssAnon MB | peak RSS MB |")
print("|---|---|---|---|---|")
for m in mem:
    print(f"| {m['server']} | {m['phase']} | {m['rss_kb']/1024:.1f} | {m['rss_anon_kb']/1024:.1f} | {m['hwm_kb']/1024:.1f} |")
for t in touch:
    print(f"\nevery VM served once: {t['requests']:,} VMs, {t['failures']} failures, {t['seconds']:.1f} s, server CPU {t['server_cpu_s']:.1f} s")
json.dump(res, open(os.path.join(out, "results.json"), "w"), indent=1)
print()
print(f"results: {os.path.join(out, 'results.json')} (elapsed {res['elapsed_s']} s)")
PY
