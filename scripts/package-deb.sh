#!/usr/bin/env bash
# Build the azimds Debian package: the binary, a hardened systemd unit, a default config,
# man pages and shell completions generated from the binary itself.
#
#   scripts/package-deb.sh                      # builds the release binary, then the .deb
#   scripts/package-deb.sh --binary PATH        # package PATH instead (e.g. the static build)
#   scripts/package-deb.sh --out DIR           # where the .deb goes [default: target/debian]
#   COMPRESS=none scripts/package-deb.sh …      # dpkg-deb -Z: xz (default), gzip or none
#
# Prints the .deb's path last. Install it with: apt-get install ./azimds_VERSION_ARCH.deb
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
BIN= OUT=$REPO/target/debian
while (($#)); do
    case $1 in
        --binary) BIN=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        *) echo "package-deb: unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
    esac
done
if [[ -z $BIN ]]; then
    cargo build --locked --release --bin azimds --manifest-path "$REPO/Cargo.toml" >&2
    BIN=$REPO/target/release/azimds
fi
[[ -x $BIN ]] || { echo "package-deb: no executable at $BIN" >&2; exit 1; }

VERSION=$("$BIN" --version | awk '{print $2}')
ARCH=$(dpkg --print-architecture)
ROOT=$(mktemp -d)
trap 'rm -rf "$ROOT"' EXIT
chmod 0755 "$ROOT"
P=$REPO/packaging

# Stripped, as Debian ships binaries (dh_strip): the symbols are not needed to run it.
install -D -m 0755 -s "$BIN" "$ROOT/usr/bin/azimds"
install -D -m 0644 "$P/azimds.service" "$ROOT/lib/systemd/system/azimds.service"
install -D -m 0644 "$P/azimds.toml" "$ROOT/etc/azimds/azimds.toml"
install -D -m 0644 "$P/debian/copyright" "$ROOT/usr/share/doc/azimds/copyright"
gzip -9n -c "$REPO/README.md" >"$ROOT/usr/share/doc/azimds/README.md.gz"
mkdir -p "$ROOT/usr/share/man/man1"
"$BIN" man --out "$ROOT/usr/share/man/man1" >/dev/null
gzip -9n "$ROOT"/usr/share/man/man1/*.1
install -d "$ROOT/usr/share/bash-completion/completions" "$ROOT/usr/share/zsh/vendor-completions" \
    "$ROOT/usr/share/fish/vendor_completions.d"
"$BIN" completions bash >"$ROOT/usr/share/bash-completion/completions/azimds"
"$BIN" completions zsh >"$ROOT/usr/share/zsh/vendor-completions/_azimds"
"$BIN" completions fish >"$ROOT/usr/share/fish/vendor_completions.d/azimds.fish"

# A dynamically linked binary needs glibc and OpenSSL 3; the static one nothing.
DEPENDS="adduser"
if readelf -d "$BIN" | grep -q 'NEEDED.*libc\.so'; then DEPENDS="$DEPENDS, libc6 (>= 2.34)"; fi
if readelf -d "$BIN" | grep -q 'NEEDED.*libssl\.so\.3'; then DEPENDS="$DEPENDS, libssl3 (>= 3.0.0)"; fi

mkdir -p "$ROOT/DEBIAN"
install -m 0755 "$P/debian/postinst" "$P/debian/prerm" "$P/debian/postrm" "$ROOT/DEBIAN/"
echo /etc/azimds/azimds.toml >"$ROOT/DEBIAN/conffiles"
cat >"$ROOT/DEBIAN/control" <<CONTROL
Package: azimds
Version: $VERSION
Architecture: $ARCH
Maintainer: azimds authors <azimds@localhost>
Depends: $DEPENDS
Section: net
Priority: optional
Installed-Size: $(du -sk --exclude=DEBIAN "$ROOT" | cut -f1)
Description: Azure-compatible Instance Metadata Service
 azimds serves what Azure VMs read from http://169.254.169.254/metadata: instance
 metadata for every api-version, managed-identity tokens and scheduled events,
 byte-compatible with Azure, for development, CI and private clouds. Runs as the
 hardened azimds.service (own user, CAP_NET_BIND_SERVICE only); configure it in
 /etc/azimds/azimds.toml.
CONTROL

mkdir -p "$OUT"
DEB=$OUT/azimds_${VERSION}_${ARCH}.deb
dpkg-deb --root-owner-group -Z"${COMPRESS:-xz}" --build "$ROOT" "$DEB" >&2
echo "$DEB"
