#!/usr/bin/env bash
# Coverage-guided fuzzing of azimds (issue 14; RELIABILITY.md "Fuzzing"): libFuzzer through
# cargo-fuzz, with the nightly toolchain, over the targets in fuzz/fuzz_targets/.
#
#   scripts/fuzz.sh [SECONDS]   build, then fuzz every target SECONDS each (default 60), one
#                               at a time; new inputs go to fuzz/target/work/<target>, not to
#                               the committed corpus
#   scripts/fuzz.sh --replay    build, then run every target once over its committed corpus
#                               and regression inputs (libFuzzer -runs=0): the CI smoke
#
#   FUZZ_TARGETS="guest_request token_query" picks targets (default: all of them).
#   FUZZ_RUNS=10000000 also stops each target after that many executions.
#
# Prints one line per target: executions, exec/s, libFuzzer's cov (edges) and ft (features),
# corpus size, crashes (a crash, timeout or out-of-memory input, kept in fuzz/artifacts/),
# seconds. Exits non-zero if any target crashed. Logs: fuzz/target/logs/<target>.log.
#
# Built without a sanitizer (`-s none`): azimds forbids unsafe code, and AddressSanitizer
# would halve executions on this 2-core machine. libFuzzer still reports panics, timeouts
# (an input taking over 10 s) and memory over 2 GB; the targets turn a 5xx into a panic.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

mode=fuzz seconds=60
case "${1:-}" in
    --replay) mode=replay ;;
    '') ;;
    *[!0-9]*) echo "usage: scripts/fuzz.sh [SECONDS | --replay]" >&2; exit 2 ;;
    *) seconds=$1 ;;
esac

command -v cargo-fuzz >/dev/null || {
    echo "cargo-fuzz is not installed (scripts/install-test-deps.sh installs it)" >&2; exit 1; }
targets=${FUZZ_TARGETS:-$(cargo +nightly fuzz list)}

mkdir -p target/logs
if ! CARGO_INCREMENTAL=0 cargo +nightly fuzz build -s none >target/logs/build.log 2>&1; then
    tail -40 target/logs/build.log >&2; exit 1
fi
bin=target/x86_64-unknown-linux-gnu/release

# The dictionary each target uses (fuzz/dict/).
dictionary() {
    case $1 in
        guest_request) echo dict/guest_request.dict ;;
        definitions_file | control_vm_entry | merge_patch) echo dict/vm_json.dict ;;
        control_event_schedule | fault_rule | scheduled_events_post) echo dict/control_json.dict ;;
        token_query | attested_query) echo dict/query.dict ;;
    esac
}

crashed=0
printf '%-24s %12s %8s %7s %7s %7s %8s %6s\n' target executions exec/s cov ft corpus crashes secs
for target in $targets; do
    [[ -x $bin/$target ]] || { echo "$target: not built" >&2; crashed=1; continue; }
    inputs=()
    for dir in corpus/$target regressions/$target; do
        [[ -d $dir ]] && inputs+=("$dir")
    done
    args=(-timeout=10 -rss_limit_mb=2048 -print_final_stats=1 "-artifact_prefix=artifacts/$target/")
    dict=$(dictionary "$target")
    [[ -n $dict ]] && args+=("-dict=$dict")
    mkdir -p "artifacts/$target"
    if [[ $mode == replay ]]; then
        args+=(-runs=0)
    else
        mkdir -p "target/work/$target"
        inputs=("target/work/$target" "${inputs[@]}")
        args+=("-max_total_time=$seconds")
        [[ -n ${FUZZ_RUNS:-} ]] && args+=("-runs=$FUZZ_RUNS")
    fi
    log=target/logs/$target.log
    before=$(find "artifacts/$target" -type f | wc -l)
    start=$(date +%s)
    status=0
    "$bin/$target" "${args[@]}" "${inputs[@]}" >"$log" 2>&1 || status=$?
    elapsed=$(($(date +%s) - start))
    after=$(find "artifacts/$target" -type f | wc -l)
    found=$((after - before))
    if ((status != 0 && found == 0)); then found=1; fi
    ((found == 0)) || crashed=1
    executions=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    last=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -1 || true)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$last")
    printf '%-24s %12s %8s %7s %7s %7s %8s %6s\n' "$target" "${executions:-?}" "${rate:-?}" \
        "${cov:-?}" "${ft:-?}" "${corp:-?}" "$found" "$elapsed"
    if ((found)); then
        grep -E 'panicked at|ERROR: libFuzzer|SUMMARY|Test unit written' "$log" | head -5 >&2 || true
    fi
done
exit "$crashed"
