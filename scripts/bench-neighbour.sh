#!/usr/bin/env bash
# One VM against another (issue 13): the victim VM's latency with and without an attack from
# another VM on the same azimds, for this tree and optionally a baseline commit, side by side.
#
#   scripts/bench-neighbour.sh                      # this tree, 3 rounds
#   BASELINE=f6c43d7 scripts/bench-neighbour.sh     # and the commit before issue 13's work
#   BASELINE=f6c43d7 BASELINE_BIN=/path/to/azimds scripts/bench-neighbour.sh   # prebuilt
#   ROUNDS=5 REQUESTS=2000 FLOOD=1100 scripts/bench-neighbour.sh
#
# Method: examples/noisy_neighbour.rs (read it for the phases). Each phase starts a fresh
# release server under a soft descriptor limit of 1024 (systemd's default), source-address
# mode, unthrottled, pinned to CPU 0; the attacker and the victim run on CPU 1, the attacker
# on its own thread. The victim makes REQUESTS sequential requests, a new connection each,
# 2 s allowed per request, giving up after 20 failures. Rounds alternate the binaries. The
# machine may be shared: before each run the script waits up to QUIET_WAIT s for the 1-minute
# load average to drop below 1.5, and records the load it ran at. The summary shows, per
# binary and phase, the median over rounds of p50, p99, max and the server's CPU use, the
# total of failed requests, and the median load; then each attack's p50 and p99 over the same
# round's quiet phase (scripts/bench_neighbour_summary.py, which reprints it from the file).
#
# Output: the summary on stdout and in target/bench-neighbour/summary.txt; the results in
# target/bench-neighbour/results.jsonl: a first line saying what ran where (tree, kernel,
# CPU, settings), then one line per phase, round and binary.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
REQUESTS=${REQUESTS:-2000}
FLOOD=${FLOOD:-1100}
BASELINE=${BASELINE:-}
BASELINE_BIN=${BASELINE_BIN:-}
OUT=${OUT:-target/bench-neighbour}
QUIET_WAIT=${QUIET_WAIT:-60}

cd "$(dirname "$0")/.."
mkdir -p "$OUT"
cargo build --release --quiet --bin azimds --example noisy_neighbour
binaries=("current=target/release/azimds")
if [[ -n "$BASELINE" && -n "$BASELINE_BIN" ]]; then
    binaries+=("baseline-$BASELINE=$BASELINE_BIN")
elif [[ -n "$BASELINE" ]]; then
    src="$OUT/baseline-$BASELINE"
    if [[ ! -x "$src/target/release/azimds" ]]; then
        rm -rf "$src" && mkdir -p "$src"
        git archive "$BASELINE" | tar -x -C "$src"
        (cd "$src" && CARGO_INCREMENTAL=0 cargo build --release --quiet --bin azimds)
    fi
    binaries+=("baseline-$BASELINE=$src/target/release/azimds")
fi

results="$OUT/results.jsonl"
python3 -c '
import json, os, platform, sys, time
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
            if l.startswith("model name")), "?")
print(json.dumps({"config": {
    "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "tree": sys.argv[1],
    "kernel": platform.release(), "cpus": os.cpu_count(), "cpu": cpu,
    "somaxconn": int(open("/proc/sys/net/core/somaxconn").read()),
    "rounds": int(sys.argv[2]), "requests": int(sys.argv[3]), "flood": int(sys.argv[4]),
    "binaries": sys.argv[5:]}}))' "$(git describe --always --dirty)" "$ROUNDS" "$REQUESTS" \
    "$FLOOD" "${binaries[@]}" > "$results"
for round in $(seq 1 "$ROUNDS"); do
    for entry in "${binaries[@]}"; do
        name=${entry%%=*}
        binary=${entry#*=}
        for _ in $(seq 1 "$QUIET_WAIT"); do
            awk '{exit !($1 < 1.5)}' /proc/loadavg && break
            sleep 1
        done
        load=$(cut -d' ' -f1 /proc/loadavg)
        echo "round $round: $name (load $load)" >&2
        taskset -c 1 target/release/examples/noisy_neighbour --azimds "$binary" \
            --requests "$REQUESTS" --flood "$FLOOD" --pin |
            python3 -c '
import json, sys
for line in sys.stdin:
    row = json.loads(line)
    row.update(binary=sys.argv[1], round=int(sys.argv[2]), load=float(sys.argv[3]))
    print(json.dumps(row))' "$name" "$round" "$load" >> "$results"
    done
done

python3 scripts/bench_neighbour_summary.py "$results" | tee "$OUT/summary.txt"
