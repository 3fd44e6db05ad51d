#!/usr/bin/env bash
# A statically linked azimds: glibc (crt-static) and OpenSSL (Debian's libssl-dev .a files)
# linked in, so the binary runs in an empty root (a `FROM scratch` container, a chroot).
#
#   scripts/build-static.sh            # release: target/static/x86_64-unknown-linux-gnu/release/azimds
#                                      # (16 MB; 14 min from scratch on 2 busy cores)
#   PROFILE=dev scripts/build-static.sh   # unoptimized, faster to build (what scripts/test.sh tests)
#
# Prints the binary's path last. Needs: libssl-dev (apt), the x86_64-unknown-linux-gnu target
# (the host's own). The explicit --target keeps build scripts and proc macros dynamic: only
# the azimds binary is static. getrandom's default Linux backend finds getrandom(2) with
# dlsym, which a static binary cannot do, and falls back to /dev/urandom, absent from an empty
# root: the linux_getrandom backend calls it directly (event ids are random UUIDs). Host names in --event-hook URLs are resolved by glibc's static
# resolver, which reads /etc/resolv.conf and /etc/hosts directly (no NSS modules are loaded:
# `files` and `dns` only); in an empty root give hooks an IP address, or mount those files.
set -euo pipefail
cd "$(dirname "$0")/.."

PROFILE=${PROFILE:-release}
TARGET=x86_64-unknown-linux-gnu
case $PROFILE in
    release) DIR=release ;;
    # Without debug info: the tests copy it into every root they make, and it builds from
    # scratch in about half the time (measured on 2 cores: 173 s against 361 s; 32 MB
    # against 131 MB; target/static 0.4 GB against 1.9 GB).
    dev) DIR=debug; export CARGO_PROFILE_DEV_DEBUG=0 CARGO_PROFILE_DEV_STRIP=debuginfo ;;
    *) echo "build-static: PROFILE must be release or dev" >&2; exit 2 ;;
esac
[[ -e /usr/lib/x86_64-linux-gnu/libssl.a ]] || {
    echo "build-static: /usr/lib/x86_64-linux-gnu/libssl.a missing: apt-get install libssl-dev" >&2; exit 1; }

OPENSSL_STATIC=1 \
OPENSSL_LIB_DIR=/usr/lib/x86_64-linux-gnu \
OPENSSL_INCLUDE_DIR=/usr/include \
CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crt-static --cfg getrandom_backend=\"linux_getrandom\"" \
    cargo build --locked --profile "$PROFILE" --target "$TARGET" --target-dir target/static --bin azimds >&2

BIN=target/static/$TARGET/$DIR/azimds
# Fail here, not in a container, if anything is still dynamic.
if readelf -d "$BIN" | grep -q NEEDED; then
    echo "build-static: $BIN still needs shared libraries:" >&2
    readelf -d "$BIN" | grep NEEDED >&2
    exit 1
fi
echo "$PWD/$BIN"
