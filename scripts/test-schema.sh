#!/usr/bin/env bash
# The control API against its own OpenAPI document (src/control/openapi.json), with
# schemathesis: every operation, from the document's examples, its coverage cases (edges
# and every kind of invalid value), random fuzzing, and stateful sequences along the
# document's links (create a VM, then read, patch, assign, delete it with the ETag it got).
# Every check but positive_data_acceptance runs (see RELIABILITY.md): no 5xx, every status,
# content type, header and body as documented, invalid input refused with a 4xx, 401
# without the token, 405 with Allow for other methods, a deleted VM gone.
#
#   scripts/test-schema.sh [schemathesis args...]
#
# Starts the real binary (AZIMDS_BIN, default target/debug/azimds) on ephemeral loopback
# ports with a fresh data directory, one VM, and a manual clock (so the clock routes move
# time), and
# stops it after. Bounded: AZIMDS_SCHEMA_MAX_TIME_CASES seconds for the examples, coverage
# and fuzzing phases (default 90), then AZIMDS_SCHEMA_MAX_TIME_STATEFUL for the stateful
# phase (default 60); tests/schema/schemathesis.toml pins the long polls' wait to 1 s. Needs
# schemathesis in .venv-schema (scripts/install-test-deps.sh). Exits 0 when both runs pass
# and the server neither panicked nor died, 1 otherwise.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${AZIMDS_SCHEMA_VENV:-$REPO/.venv-schema}
BIN=${AZIMDS_BIN:-$REPO/target/debug/azimds}
MAX_TIME_CASES=${AZIMDS_SCHEMA_MAX_TIME_CASES:-90}
MAX_TIME_STATEFUL=${AZIMDS_SCHEMA_MAX_TIME_STATEFUL:-60}
SEED=${AZIMDS_SCHEMA_SEED:-$RANDOM$RANDOM}

die() { printf 'test-schema: %s\n' "$*" >&2; exit 2; }
[[ -x $BIN ]] || die "azimds binary not found: $BIN (cargo build --bin azimds)"
[[ -x $VENV/bin/schemathesis ]] || die "no schemathesis in $VENV: run scripts/install-test-deps.sh"

WORK=$(mktemp -d /tmp/azimds-schema.XXXXXX)
SERVER_PID=
cleanup() {
    if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# Source-address mode, so that the VMs the run creates can be served side by side; web-1
# (the document's examples name it) is there from the start, owned by the definitions file.
cat >"$WORK/vms.yaml" <<'EOF'
vms:
  - id: web-1
    callers: [127.0.0.1]
    instance: {compute: {name: web-1, vmSize: Standard_B2s, location: westeurope}}
EOF
"$BIN" serve --listen 127.0.0.1:0 --control 127.0.0.1:0 --data "$WORK/data" \
    --vms "$WORK/vms.yaml" --callers source-address \
    --clock manual --rate-limit 0 --ready-file "$WORK/ready.json" \
    >/dev/null 2>"$WORK/server.log" &
SERVER_PID=$!
for _ in $(seq 100); do
    [[ -s $WORK/ready.json ]] && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log" >&2; die "the server exited before it was ready"; }
    sleep 0.1
done
[[ -s $WORK/ready.json ]] || die "the server was not ready within 10 s"
CONTROL=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["control"])' "$WORK/ready.json")
TOKEN=$(cat "$WORK/data/control-token")

printf 'test-schema: schemathesis %s against %s (seed %s)\n' \
    "$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("schemathesis"))')" \
    "$CONTROL" "$SEED" >&2
# One run per kind of test, each with its own time: with one budget for all, fuzzing (which
# repeats until the time is spent) would leave nothing for the stateful phase.
run() {
    local phases=$1 max_time=$2 workers=$3 excluded=$4
    shift 4
    local start rc
    start=$(date +%s)
    set +e
    "$VENV/bin/schemathesis" --no-color --config-file "$REPO/tests/schema/schemathesis.toml" \
        run "$REPO/src/control/openapi.json" \
        --url "http://$CONTROL" \
        --header "Authorization: Bearer $TOKEN" \
        --checks all --exclude-checks "$excluded" \
        --phases "$phases" --max-time "$max_time" --seed "$SEED" \
        --request-timeout 20 --workers "$workers" \
        --report junit --report-dir "$WORK/report-${phases//,/-}" \
        "$@"
    rc=$?
    set -e
    printf 'test-schema: %s: schemathesis exit %d after %ds\n' "$phases" "$rc" "$(( $(date +%s) - start ))" >&2
    return $rc
}
status=0
cd "$WORK"  # schemathesis keeps its cache (.schemathesis/) in the working directory
run examples,coverage,fuzzing "$MAX_TIME_CASES" 2 positive_data_acceptance "$@" || status=1
# One worker: a scenario follows links (an event created, then read back), and a second
# worker's scenario on the same server (the one manual clock moved on, the VM deleted) could
# end that event in between: seed 205551008 got a 404 for an event it had just created.
# use_after_free is left out of this phase: DELETE /v1/vms/{id}/provisioning resets a
# record (it reads as Pending after, by design), and schemathesis 4.32.5's stateful phase did
# not honour schemathesis.toml's per-operation exclusion for that read (seed 262881624
# reported the 200 as ST301). The fuzzing phase keeps the check; tests/it (control_contract.rs,
# control.rs) assert the 404s of deleted VMs and their sub-resources.
# ensure_resource_availability is left out of this phase too: POST /v1/events/{id}/cancel (or
# complete) ends an event, which then leaves the control API as it leaves the guest's
# document, so GET after it is a 404 by design; schemathesis follows the link from the create
# to the read across such a command and reported it as ST302 (seed 131674374), and ignored a
# per-operation exclusion for getEvent as it did for use_after_free. tests/it reads back the
# VMs, events and faults it creates (durability.rs, scheduled.rs, faults.rs).
run stateful "$MAX_TIME_STATEFUL" 1 positive_data_acceptance,use_after_free,ensure_resource_availability "$@" || status=1

if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    tail -40 "$WORK/server.log" >&2
    printf 'test-schema: the server died during the run\n' >&2
    exit 1
fi
if grep -q 'panicked' "$WORK/server.log"; then
    grep -B2 -A8 'panicked' "$WORK/server.log" | head -60 >&2
    printf 'test-schema: the server panicked during the run\n' >&2
    exit 1
fi
exit $status
