#!/bin/sh
# Run a command as a guest would see its own machine: in a private overlay of this host's
# root (writes land in WORK/upper, never on the host), with its own /dev, /run, /tmp and
# host name, and the provisioning CD as /dev/sr0. Started by guests.py inside the guest's
# network namespace and under `unshare --mount --uts --pid --fork`, so everything it mounts
# or starts goes away with it.
#
#   in_root.sh WORK EXTRA CDROM-DEVICE COMMAND...
#
# EXTRA is a directory laid over the host's root (a newer package's files, say), or "-";
# its Python packages replace the host's whole (their directories are made opaque).
# CDROM-DEVICE is a loop device holding the ISO, or "-" for none. Files in WORK/dmi (chassis_asset_tag, product_uuid) are
# the guest's SMBIOS values.
set -eu
work=$1 extra=$2 cdrom=$3
shift 3
root=$work/root
mount --make-rprivate /
mkdir -p "$work/upper" "$work/work" "$root" "$work/out" "$work/extra"
lower=/
if [ "$extra" != - ]; then
    # A layer may not lie inside another on the same file system: copy it onto a tmpfs.
    mount -t tmpfs -o mode=0755,size=256m guest-extra "$work/extra"
    cp -a "$extra/." "$work/extra/"
    for package in "$work"/extra/usr/lib/python3/dist-packages/*/; do
        [ -d "$package" ] || continue
        /usr/bin/python3 -c 'import os, sys; os.setxattr(sys.argv[1], "trusted.overlay.opaque", b"y")' "$package"
    done
    lower=$work/extra:/
fi
mount -t overlay overlay -o "lowerdir=$lower,upperdir=$work/upper,workdir=$work/work" "$root"
# A guest is a VM, not a container: hide the marker a container runtime may have left on this
# host (cloud-init ignores DMI inside containers).
rm -f "$root/.dockerenv" "$root/run/.containerenv"
mount -t proc proc "$root/proc"
mount --rbind /sys "$root/sys"
if [ -d "$work/dmi" ]; then
    # The hypervisor's SMBIOS (qemu -smbios, wireserver.md §1.1): /sys/class/dmi/id from
    # WORK/dmi, every other class as this namespace's sysfs has it.
    mount -t tmpfs -o mode=0755,size=1m guest-sysclass "$root/sys/class"
    for class in /sys/class/*; do
        mkdir "$root$class"
        mount --rbind "$class" "$root$class"
    done
    mkdir -p "$root/sys/class/dmi/id"
    cp "$work"/dmi/* "$root/sys/class/dmi/id/"
fi
mount -t tmpfs -o mode=0755,size=64m guest-dev "$root/dev"
mknod -m 666 "$root/dev/null" c 1 3
mknod -m 666 "$root/dev/zero" c 1 5
mknod -m 666 "$root/dev/full" c 1 7
mknod -m 666 "$root/dev/random" c 1 8
mknod -m 666 "$root/dev/urandom" c 1 9
mknod -m 666 "$root/dev/tty" c 5 0
mkdir -p "$root/dev/pts" "$root/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666 devpts "$root/dev/pts"
ln -s pts/ptmx "$root/dev/ptmx"
ln -s /proc/self/fd "$root/dev/fd"
mount -t tmpfs -o size=64m guest-shm "$root/dev/shm"
if [ "$cdrom" != - ]; then
    # The CD as the guest's first optical drive (wireserver.md §2.1: /dev/sr0).
    major=$(stat -L -c '%t' "$cdrom") minor=$(stat -L -c '%T' "$cdrom")
    mknod -m 660 "$root/dev/sr0" b "$((0x$major))" "$((0x$minor))"
    ln -s sr0 "$root/dev/cdrom"
    if ! grep -qw iso9660 /proc/filesystems; then
        mkdir -p "$root/usr/local/sbin"
        cp "$(dirname "$0")/cd_mount.sh" "$root/usr/local/sbin/mount"
    fi
fi
mount -t tmpfs -o mode=0755,size=64m guest-run "$root/run"
mount -t tmpfs -o mode=1777,size=256m guest-tmp "$root/tmp"
# The guest scripts are run from the checkout by their host path; a checkout under /tmp would
# be hidden by the guest's own /tmp, so it is bound in at the same path.
scripts=$(cd "$(dirname "$0")" && pwd)
case $scripts in /tmp/*) mkdir -p "$root$scripts" && mount --bind "$scripts" "$root$scripts" ;; esac
mkdir -p "$root/azimds-out"
mount --bind "$work/out" "$root/azimds-out"
hostname localhost
exec chroot "$root" /usr/bin/env -i PATH=/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "$@"
