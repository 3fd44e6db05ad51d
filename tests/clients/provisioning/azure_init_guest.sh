#!/bin/sh
# A first boot with azure-init (run by guests.py inside the guest's root): IMDS for the user,
# its SSH keys and the host name, then the goal state and a Ready report. azure-init 0.1.1
# (crates.io, built by scripts/install-test-deps.sh) is the published release; it reports
# through the goal state and /machine/?comp=health (wireserver.md §5.1, "azure-init ≤ 0.1.x").
set -eu
# The image's groups azure-init 0.1.1 adds its user to (an Ubuntu image has them all).
for group in adm audio cdrom dialout dip floppy lxd netdev plugdev sudo video; do
    getent group "$group" >/dev/null || groupadd "$group"
done
exec "$1"
