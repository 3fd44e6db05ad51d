#!/usr/bin/env bash
# Run the real-clients conformance suite (tests/clients) against an azimds
# binary: unmodified OpenTelemetry, cloud-init and WALinuxAgent IMDS clients,
# each run inside a private network namespace where azimds serves
# 169.254.169.254:80.
#
#   scripts/test-clients.sh [AZIMDS_BIN] [pytest args...]
#
# AZIMDS_BIN: first argument, else $AZIMDS_BIN, else target/release/azimds.
# Needs root (ip netns) and scripts/install-test-deps.sh to have been run.
# Exit status is pytest's.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${AZIMDS_CLIENTS_VENV:-$REPO/.venv-clients}

BIN=${AZIMDS_BIN:-$REPO/target/release/azimds}
if [[ $# -gt 0 && $1 != -* ]]; then BIN=$1; shift; fi
[[ $BIN == /* ]] || BIN=$PWD/$BIN

die() { printf 'test-clients: %s\n' "$*" >&2; exit 2; }
[[ $EUID -eq 0 ]] || die "must run as root (the suite creates a network namespace)"
# A missing binary is reported by the suite itself (every test errors), so
# that the run still ends with pytest's summary line.
[[ -x $BIN && -f $BIN ]] || printf 'test-clients: WARNING: azimds binary not found or not executable: %s\n' "$BIN" >&2
[[ -x $VENV/bin/python ]] || die "no venv at $VENV: run scripts/install-test-deps.sh"

# The pytest session fixture creates, uses and deletes this namespace; the
# trap is the backstop if pytest itself is killed.
NS=azimds-ct-$$
cleanup() {
    if ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$NS"; then
        for pid in $(ip netns pids "$NS" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
        ip netns del "$NS" 2>/dev/null || true
        echo "test-clients: removed leftover network namespace $NS" >&2
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The azure_identity Rust crate's probe (tests/clients/rust): its own small cargo project,
# built into the main project's target directory so shared dependencies build once.
t=$(date +%s.%N)
CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target} cargo build --quiet --locked \
    --manifest-path "$REPO/tests/clients/rust/Cargo.toml" \
    || die "building tests/clients/rust (the azure_identity probe) failed"
awk -v a="$t" -v b="$(date +%s.%N)" 'BEGIN { printf "test-clients: azure_identity probe built in %.1fs\n", b - a }' >&2

start=$(date +%s.%N)
set +e
AZIMDS_BIN=$BIN AZIMDS_CT_NETNS=$NS PYTHONDONTWRITEBYTECODE=1 \
    "$VENV/bin/python" -m pytest -c "$REPO/tests/clients/pytest.ini" \
    --rootdir "$REPO/tests/clients" "$REPO/tests/clients" "$@"
rc=$?
set -e
awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "test-clients: pytest exit %d after %.1fs\n", '"$rc"', b - a }' >&2
exit $rc
