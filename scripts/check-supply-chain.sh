#!/usr/bin/env bash
# cargo-deny over the dependency tree (deny.toml): advisories, licences, duplicate crates and
# sources, for the default build and with `--features fleet`, offline.
#
#   scripts/check-supply-chain.sh
#
# Installs cargo-deny (crates.io, --locked, the version below) when it is missing or another
# version. The advisory database is a snapshot of rustsec/advisory-db: this network does not
# reach GitHub, where cargo-deny would fetch it. In order, the first that exists:
#   - AZIMDS_ADVISORY_DB, or ../shared/advisory-db beside this checkout: a git clone of it;
#   - supply-chain/advisory-db/, vendored in this repository by scripts/vendor-advisory-db.sh
#     (the advisories of every crate in the lock files, and SNAPSHOT: the upstream commit, its
#     date, the crate names considered); a crate in a lock file it did not consider fails the
#     check with the command to vendor again.
# Either is laid out in a scratch directory as cargo-deny's `db-path` expects, and refused
# when its upstream commit is older than AZIMDS_ADVISORY_DB_MAX_AGE_DAYS (default 180).
# Without a snapshot the advisories check cannot run: the script says so and fails, unless
# AZIMDS_ADVISORIES=if-present, which then runs the other three checks and prints that
# advisories were NOT checked.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
DENY_VERSION=0.20.2
DB_SOURCE=${AZIMDS_ADVISORY_DB:-$REPO/../shared/advisory-db}
VENDORED=$REPO/supply-chain/advisory-db
MAX_AGE_DAYS=${AZIMDS_ADVISORY_DB_MAX_AGE_DAYS:-180}

log() { printf '[supply-chain] %s\n' "$*" >&2; }

if [[ "$(cargo deny --version 2>/dev/null)" != "cargo-deny $DENY_VERSION" ]]; then
    t=$(date +%s)
    # Its release profile is fat LTO with one codegen unit: minutes more of build on two
    # cores for a tool that reads a lock file. A normal optimized build is plenty.
    build_dir=$(mktemp -d)
    CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
        CARGO_TARGET_DIR=$build_dir \
        cargo install --quiet --locked cargo-deny --version "$DENY_VERSION"
    rm -rf "$build_dir"
    log "cargo-deny $DENY_VERSION installed in $(( $(date +%s) - t ))s"
fi

checks=(advisories bans licenses sources)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
# cargo-deny looks for the database at <db-path>/<name>-<hash of its URL>; this is the
# directory of its default URL (the RustSec database on GitHub).
DB_DIR=$WORK/advisory-db-3157b0e258782691
if [[ -z ${AZIMDS_ADVISORY_DB:-} ]] && ! git -C "$DB_SOURCE" rev-parse --verify -q HEAD >/dev/null 2>&1 \
    && [[ -f $VENDORED/SNAPSHOT ]]; then
    considered=$(sed -n 's/^considered //p' "$VENDORED/SNAPSHOT" | sort -u)
    missing=$(cat Cargo.lock fuzz/Cargo.lock | sed -n 's/^name = "\(.*\)"$/\1/p' | sort -u \
        | comm -23 - <(echo "$considered"))
    if [[ -n $missing ]]; then
        log "the vendored advisory database did not consider: $(echo $missing)"
        log "vendor it again: scripts/vendor-advisory-db.sh <a clone of rustsec/advisory-db>"
        exit 1
    fi
    commit=$(sed -n 's/^commit //p' "$VENDORED/SNAPSHOT")
    date=$(sed -n 's/^date //p' "$VENDORED/SNAPSHOT")
    # A git repository is what cargo-deny opens: one commit of the vendored files, dated as
    # the upstream commit they come from.
    cp -r "$VENDORED" "$DB_DIR"
    git -C "$DB_DIR" init --quiet
    git -C "$DB_DIR" add -A
    GIT_AUTHOR_DATE=$date GIT_COMMITTER_DATE=$date git -C "$DB_DIR" \
        -c user.name=azimds -c user.email=azimds@localhost \
        commit --quiet -m "rustsec/advisory-db $commit, the part for azimds' lock files"
    age_days=$(( ($(date +%s) - $(date -d "$date" +%s)) / 86400 ))
    log "advisory database: rustsec/advisory-db $commit of $date ($age_days days old), vendored in supply-chain/advisory-db"
    if (( age_days > MAX_AGE_DAYS )); then
        log "the advisory database is older than $MAX_AGE_DAYS days: vendor a newer snapshot"
        exit 1
    fi
    export AZIMDS_ADVISORY_DBS=$WORK
elif git -C "$DB_SOURCE" rev-parse --verify -q HEAD >/dev/null 2>&1; then
    git clone --quiet --no-hardlinks "$DB_SOURCE" "$DB_DIR"
    commit=$(git -C "$DB_DIR" log -1 --format=%H)
    date=$(git -C "$DB_DIR" log -1 --format=%cI)
    age_days=$(( ($(date +%s) - $(date -d "$date" +%s)) / 86400 ))
    log "advisory database: rustsec/advisory-db $commit of $date ($age_days days old), from $DB_SOURCE"
    if (( age_days > MAX_AGE_DAYS )); then
        log "the advisory database is older than $MAX_AGE_DAYS days: bring a newer snapshot"
        exit 1
    fi
    export AZIMDS_ADVISORY_DBS=$WORK
elif [[ ${AZIMDS_ADVISORIES:-} == if-present ]]; then
    log "NO advisory database at $DB_SOURCE: advisories NOT checked (AZIMDS_ADVISORIES=if-present)"
    checks=(bans licenses sources)
else
    log "no advisory database (a git clone of rustsec/advisory-db) at $DB_SOURCE"
    log "set AZIMDS_ADVISORY_DB to one, or AZIMDS_ADVISORIES=if-present to run the other checks only"
    exit 1
fi

# The fleet tree is the default tree plus etcd-client and what it pulls in, so deny.toml's
# allowances for those crates (the ISC licence, three of the duplicate skips) are unused in the
# default run: only there are those two warnings allowed.
log "cargo deny (default features): ${checks[*]}"
cargo deny --offline --locked check --allow license-not-encountered --allow unmatched-skip \
    --deny warnings "${checks[@]}"
log "cargo deny (--features fleet): ${checks[*]}"
cargo deny --offline --locked --features fleet check --deny warnings "${checks[@]}"
