#!/usr/bin/env bash
# The azimds conformance kit: real Azure clients, unmodified, against ANY Azure-compatible
# IMDS (docs/conformance.md). One line per check, then "N passed, N failed".
#
#   scripts/conformance.sh http://HOST:PORT      an IMDS already running (on this machine or
#                                                reachable from it)
#   scripts/conformance.sh --netns 'COMMAND'     start the IMDS with COMMAND inside a fresh
#                                                network namespace where it must serve
#                                                169.254.169.254:80 (as in a VM)
#
# Either way the clients (cloud-init, WALinuxAgent, OpenTelemetry's Azure detector, the Azure
# SDKs' managed-identity probe) run in a network namespace where 169.254.169.254:80 is the
# server under test, and what they parse is compared with the server's own instance document.
# Needs root and scripts/install-test-deps.sh. Exit status: 0 when every check passed.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${AZIMDS_CLIENTS_VENV:-$REPO/.venv-clients}

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
die() { printf 'conformance: %s\n' "$*" >&2; exit 2; }
case ${1:-} in
    --netns) [[ $# -eq 2 && -n $2 ]] || usage; export AZIMDS_CT_SERVER=$2 ;;
    http://*) [[ $# -eq 1 ]] || usage; export AZIMDS_CT_TARGET=$1 ;;
    *) usage ;;
esac
[[ $EUID -eq 0 ]] || die "must run as root (the clients run in a network namespace)"
[[ -x $VENV/bin/python ]] || die "no venv at $VENV: run scripts/install-test-deps.sh"

NS=azimds-cf-$$
cleanup() {
    if ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$NS"; then
        for pid in $(ip netns pids "$NS" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
        ip netns del "$NS" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The azure_identity crate's probe is a small cargo project (the other clients are Python
# and npm packages from the install script).
CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target} cargo build --quiet --locked \
    --manifest-path "$REPO/tests/clients/rust/Cargo.toml" >&2 \
    || die "building tests/clients/rust (the azure_identity probe) failed"

# The run's directory: pytest's output, and each probe's work and stderr (tmp/).
RUN=$(mktemp -d)
LOG=$RUN/pytest.log
printf 'conformance: %s (full pytest output: %s)\n' "${AZIMDS_CT_TARGET:-$AZIMDS_CT_SERVER}" "$LOG" >&2
set +e
# The check lines come on fd 3 (this script's stdout); pytest's own output goes to the log.
AZIMDS_CT_NETNS=$NS AZIMDS_CT_LINES=1 AZIMDS_CT_LINES_FD=3 PYTHONDONTWRITEBYTECODE=1 \
    "$VENV/bin/python" -m pytest -c "$REPO/tests/clients/pytest.ini" \
    --basetemp "$RUN/tmp" --rootdir "$REPO/tests/clients" "$REPO/tests/clients" 3>&1 >"$LOG" 2>&1
rc=$?
set -e
# pytest's exit status 2-4 is not a verdict on the server: say so.
if ((rc > 1)); then
    printf 'conformance: the kit itself failed (pytest exit %d):\n' "$rc" >&2
    tail -n 30 "$LOG" >&2
fi
exit $rc
