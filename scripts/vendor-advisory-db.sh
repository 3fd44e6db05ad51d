#!/usr/bin/env bash
# Vendors the part of the RustSec advisory database that concerns azimds' dependency tree into
# supply-chain/advisory-db/, for scripts/check-supply-chain.sh's advisories check where GitHub
# (which cargo-deny fetches the database from) cannot be reached, as in CI here.
#
#   scripts/vendor-advisory-db.sh SOURCE     SOURCE: a git clone of rustsec/advisory-db
#
# Kept: crates/<name>/ for every crate name in Cargo.lock and fuzz/Cargo.lock that has
# advisories, and rust/ (the toolchain's). A crate with no advisories has no directory
# upstream, so nothing that could match is left out. SNAPSHOT records the upstream commit, its
# date (the check refuses a snapshot too old) and every crate name considered: a crate added
# to a lock file later is not covered, and the check says to run this again.
set -euo pipefail
cd "$(dirname "$0")/.."
source=${1:?usage: scripts/vendor-advisory-db.sh PATH-TO-A-CLONE-OF-rustsec/advisory-db}
commit=$(git -C "$source" log -1 --format=%H)
date=$(git -C "$source" log -1 --format=%cI)
target=supply-chain/advisory-db
rm -rf "$target"
mkdir -p "$target/crates"
names=$(cat Cargo.lock fuzz/Cargo.lock | sed -n 's/^name = "\(.*\)"$/\1/p' | sort -u)
kept=0
for name in $names; do
    if git -C "$source" cat-file -e "HEAD:crates/$name" 2>/dev/null; then
        mkdir -p "$target/crates/$name"
        git -C "$source" archive HEAD "crates/$name" | tar -x -C "$target"
        kept=$((kept + 1))
    fi
done
git -C "$source" archive HEAD rust LICENSE.txt | tar -x -C "$target"
{
    echo "commit $commit"
    echo "date $date"
    for name in $names; do echo "considered $name"; done
} > "$target/SNAPSHOT"
echo "vendored rustsec/advisory-db $commit ($date): $kept of $(wc -w <<<"$names") crates have advisories"
