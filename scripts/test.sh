#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine with Rust: installs what the tests need
# (Debian's cloud-init and waagent, Python clients in a venv), then runs the Rust tests, the
# control API against its OpenAPI document, the fuzz targets over their corpora, the real-client
# conformance suite, and the packaging tests (the static binary in an empty root, the container
# file, the .deb installed here, the conformance kit against a server it did not start). Safe to
# re-run; installs are skipped when already present.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "installing test dependencies"
bash scripts/install-test-deps.sh

step "cargo test (with fleet mode: the etcd store against a real etcd)"
cargo test --all-targets --features fleet 2>&1

step "cargo test (the default build, without fleet mode)"
cargo test --all-targets 2>&1

step "the control API against its OpenAPI document (schemathesis, scripts/test-schema.sh)"
cargo build --bin azimds
AZIMDS_BIN="$PWD/target/debug/azimds" bash scripts/test-schema.sh

step "fuzz targets replay their corpora and regression inputs (scripts/fuzz.sh --replay)"
bash scripts/fuzz.sh --replay

step "real clients against azimds (network namespaces)"
AZIMDS_BIN="$PWD/target/debug/azimds" bash scripts/test-clients.sh

step "packages: static binary, container file, .deb, conformance kit (scripts/test-packages.sh)"
bash scripts/test-packages.sh
