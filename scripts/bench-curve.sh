#!/usr/bin/env bash
# Scaling curve (issue #16, item 5): import time, start time and RSS against the number of VMs.
#
#   scripts/bench-curve.sh                          # COUNTS="1000 10000 100000 300000"; ~10 min quiet
#   COUNTS="500 1000 2000" scripts/bench-curve.sh   # smoke run, under a minute
#   FORMAT=yaml scripts/bench-curve.sh              # the same with the YAML files
#   python3 scripts/bench_curve_plot.py target/bench-curve   # redraw the table and plot
#
# For each count N: examples/scale_vms.rs writes N VMs (+ vm-local) as FORMAT; a new data
# directory is initialised by one start without --vms (its keys made, ~0.7 CPU s, timed apart);
# the empty store imports the file with `serve --vms FILE` (scripts/bench_start.py: spawn -> first guest 200, polled
# every 10 ms from process start; the process's CPU seconds; peak RSS VmHWM); then RESTARTS
# restarts from that store without --vms (median wall to first 200 and CPU seconds; RSS after
# start, the larger of at the first 200 and SETTLE s later). The file and the store are deleted
# before the next count (CLEAN=1), so the disk holds one count at a time.
# Memory: before each count the script estimates its need from the largest count measured so far
# (that import peak scaled linearly, +25 %; 40 KB per VM before any measurement) and skips the
# count, saying so, if /proc/meminfo's MemAvailable is smaller. At 300,000 VMs that is about
# 3 x the 100k import peak: ~5 GB with a 1.4 GB peak at 100k; disk ~1.2 GB for the file and
# ~3.4 GB for the store.
# Output: $OUT/curve.csv, $OUT/curve.md (a table with the growth exponent between successive
# counts: 1.0 is linear, below 1 better), $OUT/curve.png (log-log: start time, import time, RSS),
# every server log and record in $OUT/raw/. The plot needs matplotlib: if no python3 here has it,
# the script installs Debian's python3-matplotlib with apt-get (once; it says so) and draws with
# /usr/bin/python3.
#
# Knobs (defaults): COUNTS="1000 10000 100000 300000" RESTARTS=3 SETTLE=1 FORMAT=json
#   START_CPU= (unpinned) PORT_BASE=18640 QUIET_WAIT=30 SKIP_BUILD=0 CLEAN=1 OUT=target/bench-curve
#   AZIMDS_BIN=target/release/azimds
set -euo pipefail

COUNTS=${COUNTS:-1000 10000 100000 300000}
RESTARTS=${RESTARTS:-3}
SETTLE=${SETTLE:-1}
FORMAT=${FORMAT:-json}
START_CPU=${START_CPU:-}
PORT_BASE=${PORT_BASE:-18640}
QUIET_WAIT=${QUIET_WAIT:-30}
SKIP_BUILD=${SKIP_BUILD:-0}
CLEAN=${CLEAN:-1}
case $FORMAT in json) GEN_FLAG=() ;; yaml) GEN_FLAG=(--yaml) ;; *) echo "FORMAT is json or yaml" >&2; exit 2 ;; esac

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
OUT=${OUT:-$ROOT/target/bench-curve}
RAW=$OUT/raw
AZIMDS_BIN=${AZIMDS_BIN:-$ROOT/target/release/azimds}
CLK_TCK=$(getconf CLK_TCK)

log() { printf '[bench-curve %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

for p in "$PORT_BASE" $((PORT_BASE + 1)); do
  (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && die "port $p is in use (set PORT_BASE)"
done
mkdir -p "$RAW"
rm -f "$RAW"/* "$OUT/points.jsonl" "$OUT/curve.csv" "$OUT/curve.md" "$OUT/curve.png"
if [ "$SKIP_BUILD" != 1 ]; then
  log "cargo build --release --bin azimds --example scale_vms"
  CARGO_INCREMENTAL=0 cargo build --release --bin azimds --example scale_vms 2>&1 | tail -n 2 >&2
fi
mkdir -p "$OUT/bin"
[ -x "$AZIMDS_BIN" ] || die "$AZIMDS_BIN not found"
[ -x "$ROOT/target/release/examples/scale_vms" ] || die "target/release/examples/scale_vms not found"
cp "$AZIMDS_BIN" "$OUT/bin/azimds"; cp "$ROOT/target/release/examples/scale_vms" "$OUT/bin/"
BIN=$OUT/bin/azimds GEN_BIN=$OUT/bin/scale_vms
log "azimds $("$BIN" --version) at $(git rev-parse --short HEAD), binary built $(date -r "$AZIMDS_BIN" +%FT%T)"

# The plotting interpreter: any python3 with matplotlib, else Debian's after installing it.
PLOT_PY=""
for py in python3 /usr/bin/python3; do
  if "$py" -c 'import matplotlib' 2>/dev/null; then PLOT_PY=$py; break; fi
done
if [ -z "$PLOT_PY" ]; then
  log "matplotlib missing: installing Debian's python3-matplotlib (apt-get install -y python3-matplotlib)"
  if DEBIAN_FRONTEND=noninteractive apt-get install -y python3-matplotlib >"$RAW/apt.log" 2>&1 \
    || { apt-get update >>"$RAW/apt.log" 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y python3-matplotlib >>"$RAW/apt.log" 2>&1; }; then
    PLOT_PY=/usr/bin/python3
  else
    log "WARNING: could not install python3-matplotlib ($RAW/apt.log); the table is written, the PNG is not"
  fi
fi

sys_busy_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }
wait_quiet() { # up to QUIET_WAIT s for < 0.10 CPU-s/s of load on the machine
  local b0 b1 b=0
  for _ in $(seq 1 "$QUIET_WAIT"); do
    b0=$(sys_busy_ticks); sleep 1; b1=$(sys_busy_ticks)
    b=$(awk -v b=$((b1 - b0)) -v h="$CLK_TCK" 'BEGIN { printf "%.2f", b / h }')
    awk -v b="$b" 'BEGIN { exit !(b <= 0.10) }' && return 0
  done
  [ "$QUIET_WAIT" = 0 ] || log "WARNING: machine still busy (${b} CPU-s/s) after ${QUIET_WAIT} s; going on"
}
timed() { # COUNT PHASE DATA [--ready-control] [serve args]: one start; prints its record, kept in $RAW
  local n=$1 phase=$2 data=$3 ready=(); shift 3
  if [ "${1:-}" = --ready-control ]; then ready=(--ready-control); shift; fi
  wait_quiet
  python3 "$ROOT/scripts/bench_start.py" --port "$PORT_BASE" --log "$RAW/$n-$phase.stderr" --settle "$SETTLE" \
    ${START_CPU:+--cpu "$START_CPU"} ${ready[@]+"${ready[@]}"} "$BIN" "$data" "$phase" "$@" | tee "$RAW/$n-$phase.json" \
    || { tail -n 20 "$RAW/$n-$phase.stderr" >&2; die "$phase with $n VMs failed"; }
}

largest_n=0 largest_peak_mb=0
for n in $COUNTS; do
  avail_mb=$(awk '$1 == "MemAvailable:" { print int($2 / 1024) }' /proc/meminfo)
  if [ "$largest_n" -gt 0 ]; then
    need_mb=$(awk -v p="$largest_peak_mb" -v a="$largest_n" -v n="$n" 'BEGIN { printf "%d", p * n / a * 1.25 + 100 }')
  else
    need_mb=$((n / 25 + 100))
  fi
  disk_mb=$(df -Pm "$OUT" | awk 'NR == 2 { print $4 }')
  need_disk_mb=$((n * 16 / 1000 + 100))   # the file (~4-5 KB per VM) and the store (~11 KB per VM)
  log "$n VMs: needs about $need_mb MB of memory ($avail_mb MB available) and $need_disk_mb MB of disk ($disk_mb MB free)"
  if [ "$avail_mb" -lt "$need_mb" ] || [ "$disk_mb" -lt "$need_disk_mb" ]; then
    log "WARNING: skipping $n VMs: not enough free memory or disk"
    echo "{\"count\": $n, \"skipped\": \"needs $need_mb MB memory / $need_disk_mb MB disk; $avail_mb MB / $disk_mb MB free\"}" >>"$OUT/points.jsonl"
    continue
  fi
  file=$OUT/vms-$n.$FORMAT data=$OUT/data-$n
  t0=$(date +%s.%N)
  "$GEN_BIN" "$n" "$file" ${GEN_FLAG[@]+"${GEN_FLAG[@]}"}
  log "$n VMs: $(stat -c %s "$file") B of $FORMAT in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"
  rm -rf "$data"
  init=$(timed "$n" init "$data" --ready-control)   # keys and token made: not part of the import
  log "$n VMs: data directory initialised: $init"
  imp=$(timed "$n" import "$data" --vms "$file")
  log "$n VMs: import: $imp"
  restarts=()
  for r in $(seq 1 "$RESTARTS"); do
    restarts+=("$(timed "$n" "start$r" "$data")")
    log "$n VMs: start $r: ${restarts[-1]}"
  done
  python3 - "$n" "$(stat -c %s "$file")" "$(stat -c %s "$data/azimds.redb")" "$imp" "${restarts[@]}" >>"$OUT/points.jsonl" <<'PY'
import json, statistics, sys
n, file_bytes, store_bytes, imp = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
starts = [json.loads(a) for a in sys.argv[5:]]
med = lambda k: statistics.median(s[k] for s in starts)
print(json.dumps({
    "count": n, "file_bytes": file_bytes, "store_bytes": store_bytes,
    "import_s": imp["ready_s"], "import_cpu_s": imp["cpu_s"], "import_peak_mb": imp["VmHWM"],
    "start_s": med("ready_s"), "start_cpu_s": med("cpu_s"),
    "start_rss_mb": statistics.median(max(s["VmRSS"], s["VmRSS_settled"]) for s in starts),
    "start_s_all": [s["ready_s"] for s in starts], "loadavg": [s["loadavg"] for s in [imp] + starts]}))
PY
  largest_n=$n
  largest_peak_mb=$(python3 -c 'import json,sys; print(int(json.loads(sys.argv[1])["VmHWM"]))' "$imp")
  if [ "$CLEAN" = 1 ]; then rm -rf "$data" "$file"; fi
done

"${PLOT_PY:-python3}" "$ROOT/scripts/bench_curve_plot.py" "$OUT" $([ -z "$PLOT_PY" ] && echo --no-plot)
