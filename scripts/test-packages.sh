#!/usr/bin/env bash
# The packaging tests (tests/packaging): builds the static binary and the Debian package with
# the same scripts a user runs, then tests them on this machine (chroot into an empty root,
# the Containerfile's image run as its USER, the .deb installed, checked and purged, and
# scripts/conformance.sh against the static binary started apart from it).
#
#   scripts/test-packages.sh [pytest args...]
#
# Needs root and scripts/install-test-deps.sh (the venv, libssl-dev, systemd, man-db, buildah).
# The binaries are unoptimized builds (PROFILE=dev, the debug binary for the .deb): the
# tests check packaging, not speed, and a release build would double the CI time.
# Installs azimds from the .deb for the run: fails if azimds is already installed here.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${AZIMDS_CLIENTS_VENV:-$REPO/.venv-clients}
die() { printf 'test-packages: %s\n' "$*" >&2; exit 2; }
[[ $EUID -eq 0 ]] || die "must run as root (chroot, ip netns, dpkg)"
[[ -x $VENV/bin/python ]] || die "no venv at $VENV: run scripts/install-test-deps.sh"
now() { date +%s.%N; }
took() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

t=$(now)
STATIC=$(PROFILE=dev bash "$REPO/scripts/build-static.sh")
printf 'test-packages: static binary built in %s\n' "$(took "$t")" >&2

t=$(now)
cargo build --quiet --locked --bin azimds --manifest-path "$REPO/Cargo.toml"
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
# gzip: xz takes three times as long and the package is thrown away after the test. The
# tests' own directories (copies of the binary, an image store) go with it.
DEB=$(COMPRESS=gzip bash "$REPO/scripts/package-deb.sh" --binary "$REPO/target/debug/azimds" --out "$OUT")
printf 'test-packages: .deb built in %s\n' "$(took "$t")" >&2

t=$(now)
set +e
AZIMDS_STATIC_BIN=$STATIC AZIMDS_DEB=$DEB PYTHONDONTWRITEBYTECODE=1 \
    "$VENV/bin/python" -m pytest -p no:cacheprovider --basetemp "$OUT/pytest" \
    --rootdir "$REPO/tests/packaging" \
    "$REPO/tests/packaging" "$@"
rc=$?
set -e
printf 'test-packages: pytest exit %d after %s\n' "$rc" "$(took "$t")" >&2
exit $rc
