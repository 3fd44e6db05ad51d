#!/usr/bin/env bash
# Install what the real-clients conformance suite (tests/clients) needs on a
# Debian 12 machine. Idempotent: a second run only checks and exits quickly.
#
#   scripts/install-test-deps.sh            # as root (or with sudo available)
#
# What it does:
#   1. apt: cloud-init, waagent (the unmodified clients under test), iproute2
#      (ip netns), python3-venv and python3-yaml, a JDK with BouncyCastle and Gson
#      (the Java attested-document verifier), and what the packaging tests use
#      (libssl-dev, binutils, systemd, man-db, adduser, buildah). Installed with
#      --no-install-recommends and with a policy-rc.d that forbids starting
#      services, so no agent/daemon starts during the install. When this script
#      is the one that installed cloud-init / waagent, it also disables them at
#      boot (they would otherwise try to provision and reconfigure networking
#      on the next boot of a non-Azure machine).
#   2. a venv at .venv-clients (override: AZIMDS_CLIENTS_VENV) created from
#      Debian's /usr/bin/python3 with --system-site-packages, so that it sees
#      cloudinit and azurelinuxagent from /usr/lib/python3/dist-packages.
#   3. pip install -r tests/clients/requirements.txt into that venv (pytest,
#      opentelemetry-resource-detector-azure, azure-identity, msal).
#   4. npm ci in tests/clients/js (@azure/identity, pinned by its package-lock.json),
#      skipped when node_modules already matches the lock file.
#   5. a venv at .venv-schema (override: AZIMDS_SCHEMA_VENV) with tests/schema/requirements.txt
#      (schemathesis, for scripts/test-schema.sh), apart from the clients' venv so that its
#      dependencies never change what the clients run with.
#   6. the nightly toolchain and cargo-fuzz, for scripts/fuzz.sh (skipped when present).
# Each step prints how long it took.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${AZIMDS_CLIENTS_VENV:-$REPO/.venv-clients}
REQS=$REPO/tests/clients/requirements.txt
SCHEMA_VENV=${AZIMDS_SCHEMA_VENV:-$REPO/.venv-schema}
SCHEMA_REQS=$REPO/tests/schema/requirements.txt
# curl: the guests of tests/it/isolation.rs (ip netns exec NS curl ...).
# openssl: the command line that verifies attested documents (tests/it/attested.rs, the
# attested unit tests, Microsoft's IMDSSample.py in tests/clients).
# dnsmasq-base (DHCP with options 121/245, no service), xorriso (`azimds ovf-env --iso`, and the
# CD reader where the kernel has no ISO 9660 driver), isc-dhcp-client (cloud-init's DHCP):
# tests/clients/test_provisioning.py.
# A JDK, BouncyCastle (bcprov, bcpkix and its bcutil) and Gson: the Java relying party of
# tests/clients/java/VerifyAttested.java (what Microsoft's imdssample.java builds on).
# The packaging tests (scripts/test-packages.sh): libssl-dev's static libraries for the
# static binary, binutils' readelf, systemd's systemd-analyze, man-db's man, adduser for the
# .deb's postinst, buildah to build the container image without a daemon.
# protobuf-compiler (protoc, which etcd-client's build runs) with libprotobuf-dev (the well-known
# types, google/protobuf/*.proto, that etcd's protos import; protoc alone lacks them) and
# etcd-server, etcd-client: the
# `fleet` feature's build and the tests that start a real etcd on loopback (docs/fleet.md).
APT_PKGS=(cloud-init waagent iproute2 nftables curl openssl python3-venv python3-yaml
          protobuf-compiler libprotobuf-dev etcd-server etcd-client
          dnsmasq-base xorriso isc-dhcp-client
          openjdk-17-jdk-headless libbcprov-java libbcpkix-java libbcutil-java
          libgoogle-gson-java
          libssl-dev binutils systemd man-db adduser buildah)
# azure-init for test_provisioning.py: its published release, built from crates.io.
AZURE_INIT_VERSION=0.1.1
AZURE_INIT_ROOT=${AZIMDS_AZURE_INIT_ROOT:-/var/cache/azimds-test-deps/azure-init-$AZURE_INIT_VERSION}
# cloud-init 25.x for test_provisioning.py: Debian 13's package, unpacked (never installed).
CLOUD_INIT_25_DIR=${AZIMDS_CLOUD_INIT_25:-/var/cache/azimds-test-deps/cloud-init-trixie}
SYS_PY=/usr/bin/python3

log() { printf '[install-test-deps] %s\n' "$*" >&2; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

T_ALL=$(now)

SUDO=()
if [[ $EUID -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then SUDO=(sudo); else
        log "must run as root (or with sudo available): apt-get and ip netns need it"; exit 1
    fi
fi

if [[ ! -r /etc/debian_version ]]; then
    log "this script targets Debian 12; /etc/debian_version not found"; exit 1
fi

pkg_installed() {
    [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}

# ---------------------------------------------------------------- 1. apt
missing=()
for p in "${APT_PKGS[@]}"; do pkg_installed "$p" || missing+=("$p"); done
fresh_cloud_init=0; fresh_waagent=0
pkg_installed cloud-init || fresh_cloud_init=1
pkg_installed waagent || fresh_waagent=1

if ((${#missing[@]})); then
    log "apt packages to install: ${missing[*]}"

    # Forbid service starts from maintainer scripts during this install.
    # waagent's postinst runs `invoke-rc.d walinuxagent start` on non-systemd
    # machines and `deb-systemd-invoke start walinuxagent.service` on systemd
    # ones; both consult policy-rc.d. An existing policy-rc.d (containers
    # usually have one) is set aside for the install and put back after.
    POLICY=/usr/sbin/policy-rc.d
    SAVED=$POLICY.azimds-saved
    restore_policy() {
        "${SUDO[@]}" rm -f "$POLICY"
        if [[ -e $SAVED ]]; then "${SUDO[@]}" mv -f "$SAVED" "$POLICY"; fi
    }
    # (a $SAVED left by an interrupted run already holds the original)
    if [[ -e $POLICY && ! -e $SAVED ]]; then "${SUDO[@]}" mv -f "$POLICY" "$SAVED"; fi
    trap restore_policy EXIT
    printf '#!/bin/sh\n# temporary, added by azimds scripts/install-test-deps.sh\nexit 101\n' \
        | "${SUDO[@]}" tee "$POLICY" >/dev/null
    "${SUDO[@]}" chmod 755 "$POLICY"

    # cloud-init: never run at boot on this machine (checked by its systemd
    # generator). Created before the install so no window exists.
    if ((fresh_cloud_init)); then
        "${SUDO[@]}" mkdir -p /etc/cloud
        "${SUDO[@]}" touch /etc/cloud/cloud-init.disabled
    fi

    t=$(now)
    "${SUDO[@]}" apt-get update -qq
    log "apt-get update: $(elapsed "$t")"

    t=$(now)
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends -o Dpkg::Use-Pty=0 "${missing[@]}" >/dev/null
    log "apt-get install: $(elapsed "$t")"

    # Boot-time neutralisation for packages this run installed: the clients
    # are used here as libraries only, never as agents. `systemctl --root=/`
    # edits the unit symlinks offline (works with or without a running
    # systemd) and also disables the matching SysV init scripts.
    units=(); sysv=()
    if ((fresh_waagent)); then units+=(walinuxagent.service); sysv+=(walinuxagent); fi
    if ((fresh_cloud_init)); then
        units+=(cloud-init-local.service cloud-init.service cloud-config.service
                cloud-final.service cloud-init-hotplugd.socket)
        sysv+=(cloud-init-local cloud-init cloud-config cloud-final)
    fi
    if ((${#units[@]})); then
        if command -v systemctl >/dev/null 2>&1; then
            "${SUDO[@]}" systemctl --root=/ --quiet disable "${units[@]}" >/dev/null 2>&1 || true
        fi
        for s in "${sysv[@]}"; do
            [[ -e /etc/init.d/$s ]] && { "${SUDO[@]}" update-rc.d "$s" disable >/dev/null 2>&1 || true; }
        done
        log "disabled at boot (installed here as libraries only): ${units[*]}"
    fi
    restore_policy; trap - EXIT
else
    log "apt packages already installed: ${APT_PKGS[*]}"
fi

# ---------------------------------------------------------------- 1b. cloud-init 25
# Debian 13 (trixie) ships cloud-init 25.1.x. It is fetched with apt from a private list
# (this machine's sources stay as they are) and unpacked with dpkg -x; the provisioning
# suite lays it over this root inside each guest's overlay.
t=$(now)
if [[ -d $CLOUD_INIT_25_DIR/usr/lib/python3/dist-packages/cloudinit ]]; then
    log "Debian 13's cloud-init already unpacked at $CLOUD_INIT_25_DIR"
else
    apt_dir=$(mktemp -d)
    chmod 755 "$apt_dir"  # apt fetches as _apt
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
    echo "deb http://deb.debian.org/debian trixie main" >"$apt_dir/sources.list"
    apt_private=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o Dir::Etc::SourceParts=/nonexistent
                 -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache")
    "${SUDO[@]}" apt-get -qq "${apt_private[@]}" update
    (cd "$apt_dir" && "${SUDO[@]}" apt-get -qq "${apt_private[@]}" download cloud-init 2>/dev/null)
    deb=$(ls "$apt_dir"/cloud-init_*_all.deb)
    version=$(dpkg-deb -f "$deb" Version)
    [[ $version == 25.* ]] || { log "Debian 13's cloud-init is $version, not 25.x"; exit 1; }
    "${SUDO[@]}" mkdir -p "$CLOUD_INIT_25_DIR.partial"
    "${SUDO[@]}" dpkg -x "$deb" "$CLOUD_INIT_25_DIR.partial"
    "${SUDO[@]}" mv "$CLOUD_INIT_25_DIR.partial" "$CLOUD_INIT_25_DIR"
    "${SUDO[@]}" rm -rf "$apt_dir"
    log "cloud-init $version unpacked at $CLOUD_INIT_25_DIR: $(elapsed "$t")"
fi

# ---------------------------------------------------------------- 1c. azure-init
# Not packaged for Debian; its release on crates.io is built with its own lock file (a few
# minutes, once per machine).
t=$(now)
if [[ -x $AZURE_INIT_ROOT/bin/azure-init ]]; then
    log "azure-init $AZURE_INIT_VERSION already built at $AZURE_INIT_ROOT"
else
    command -v cargo >/dev/null || { log "cargo not found (needed to build azure-init)"; exit 1; }
    build_dir=$(mktemp -d)
    CARGO_TARGET_DIR=$build_dir cargo install --quiet --locked azure-init --version "$AZURE_INIT_VERSION" \
        --root "$AZURE_INIT_ROOT"
    rm -rf "$build_dir"
    log "azure-init $AZURE_INIT_VERSION built at $AZURE_INIT_ROOT: $(elapsed "$t")"
fi

# ---------------------------------------------------------------- 2. venv
t=$(now)
venv_ok() {
    [[ -x $VENV/bin/python ]] \
        && grep -qx 'include-system-site-packages = true' "$VENV/pyvenv.cfg" 2>/dev/null \
        && "$VENV/bin/python" -c 'import sys; sys.exit(sys.base_prefix != "/usr")' 2>/dev/null
}
if ! venv_ok; then
    [[ -e $VENV ]] && { log "replacing unusable venv $VENV"; rm -rf "$VENV"; }
    "$SYS_PY" -m venv --system-site-packages "$VENV"
    printf '*\n' >"$VENV/.gitignore"   # keep the venv out of git status
    log "venv created at $VENV: $(elapsed "$t")"
else
    log "venv ok at $VENV: $(elapsed "$t")"
fi

# ---------------------------------------------------------------- 3. pip
t=$(now)
PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 \
    "$VENV/bin/python" -m pip install -q -r "$REQS"
log "pip install -r tests/clients/requirements.txt: $(elapsed "$t")"

# ---------------------------------------------------------------- 4. npm
t=$(now)
JS=$REPO/tests/clients/js
command -v npm >/dev/null 2>&1 || { log "npm not found (the machine's Node.js provides it)"; exit 1; }
# npm ci writes node_modules/.package-lock.json; when it equals the lock file, nothing changed.
if cmp -s "$JS/package-lock.json" "$JS/node_modules/.package-lock.json" 2>/dev/null \
    || { [[ -d $JS/node_modules/@azure/identity ]] \
         && node -e 'const l=require(process.argv[1]);const i=require(process.argv[2]);process.exit(l.packages["node_modules/@azure/identity"].version===i.version?0:1)' \
              "$JS/package-lock.json" "$JS/node_modules/@azure/identity/package.json" 2>/dev/null; }; then
    log "npm packages already installed in tests/clients/js: $(elapsed "$t")"
else
    (cd "$JS" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    log "npm ci in tests/clients/js: $(elapsed "$t")"
fi

# ---------------------------------------------------------------- 5. schemathesis venv
t=$(now)
if [[ ! -x $SCHEMA_VENV/bin/python ]]; then
    [[ -e $SCHEMA_VENV ]] && { log "replacing unusable venv $SCHEMA_VENV"; rm -rf "$SCHEMA_VENV"; }
    "$SYS_PY" -m venv "$SCHEMA_VENV"
    printf '*\n' >"$SCHEMA_VENV/.gitignore"
fi
PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 \
    "$SCHEMA_VENV/bin/python" -m pip install -q -r "$SCHEMA_REQS"
log "schemathesis $("$SCHEMA_VENV/bin/schemathesis" --version | awk '{print $NF}') in $SCHEMA_VENV: $(elapsed "$t")"

# ---------------------------------------------------------------- 6. cargo-fuzz
# scripts/fuzz.sh (the fuzz targets, RELIABILITY.md): libFuzzer through cargo-fuzz, which needs
# the nightly toolchain (sanitizer-coverage flags). Both are only checked when present.
t=$(now)
CARGO_FUZZ_VERSION=0.13.2
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    rustup toolchain install nightly --profile minimal
fi
if [[ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]]; then
    cargo install --quiet --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi
log "$(rustup run nightly rustc --version); $(cargo fuzz --version): $(elapsed "$t")"

# ---------------------------------------------------------------- check
"$VENV/bin/python" - <<'EOF'
import importlib.metadata as md, sys
import cloudinit.version, azurelinuxagent.common.version as wa, yaml, pytest
from opentelemetry.resource.detector.azure.vm import AzureVMResourceDetector  # noqa: F401
import azure.identity, msal, jwt  # noqa: F401,E401
import asn1crypto, cryptography, requests  # noqa: F401,E401
print("[install-test-deps] python %s; cloud-init %s; WALinuxAgent %s; "
      "opentelemetry-resource-detector-azure %s; opentelemetry-sdk %s; pytest %s; "
      "azure-identity %s; msal %s; cryptography %s; asn1crypto %s"
      % (sys.version.split()[0], cloudinit.version.version_string(), wa.AGENT_VERSION,
         md.version("opentelemetry-resource-detector-azure"), md.version("opentelemetry-sdk"),
         pytest.__version__, md.version("azure-identity"), md.version("msal"),
         md.version("cryptography"), md.version("asn1crypto")), file=sys.stderr)
EOF
for jar in bcprov bcpkix bcutil gson; do
    [[ -r /usr/share/java/$jar.jar ]] || { log "missing /usr/share/java/$jar.jar"; exit 1; }
done
log "$(javac -version 2>&1); BouncyCastle $(dpkg-query -W -f='${Version}' libbcprov-java); Gson $(dpkg-query -W -f='${Version}' libgoogle-gson-java)"
log "total: $(elapsed "$T_ALL")"
