#!/bin/sh
# `mount` for a guest whose kernel has no ISO 9660 driver (some CI kernels are built without
# isofs, udf and vfat): installed by in_root.sh as /usr/local/sbin/mount only then. Mounting the
# provisioning CD (/dev/sr0 or /dev/cdrom) unpacks it with xorriso, a real ISO 9660 reader, onto
# a read-only tmpfs at the mount point; anything else goes to the real mount. The agents are
# untouched: they run `mount` as they always do and read the files from the mount point.
for arg in "$@"; do device=$point; point=$arg; done
case "${device:-}" in
/dev/sr0 | /dev/cdrom)
    /usr/bin/mount -t tmpfs -o size=16m,mode=0755 provisioning-cd "$point" || exit 32
    if ! xorriso -osirrox on -indev "stdio:$device" -extract / "$point" >/dev/null 2>&1; then
        /usr/bin/umount "$point"
        echo "mount: $device: no ISO 9660 file system" >&2
        exit 32
    fi
    exec /usr/bin/mount -o remount,ro "$point"
    ;;
esac
exec /usr/bin/mount "$@"
