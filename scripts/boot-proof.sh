#!/usr/bin/env bash
# The end-to-end proof of the WireServer companion (issue 15): a Debian 12 image built with
# debootstrap, with cloud-init and waagent from Debian's packages and nothing else changed,
# boots under qemu-system-x86_64 on a private network whose 168.63.129.16 and 169.254.169.254
# are azimds, with the Azure DMI asset tag and the OVF CD azimds made — and reaches Ready on
# its own. Prints the time from power-on to each agent's Ready report and checks an SSH login
# with the IMDS key. A benchmark, not a CI test: the first run builds the image (minutes).
#
#   scripts/boot-proof.sh            # as root; AZIMDS_BIN=path/to/azimds to pick a binary
#
# Environment: AZIMDS_PROOF_DIR (image cache and run files, default /var/tmp/azimds-boot-proof,
# never in git), AZIMDS_PROOF_TIMEOUT (default 20m), AZIMDS_PROOF_ACCEL (tcg: software
# emulation, which works everywhere; kvm where /dev/kvm really works — nested KVM may open
# and then hang).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${AZIMDS_BIN:-$REPO/target/release/azimds}
WORK=${AZIMDS_PROOF_DIR:-/var/tmp/azimds-boot-proof}
TIMEOUT=${AZIMDS_PROOF_TIMEOUT:-20m}
ACCEL=${AZIMDS_PROOF_ACCEL:-tcg}
SUITE=bookworm
MIRROR=http://deb.debian.org/debian
NS=azimds-proof-$$
SUBNET=10.215.0
GUEST_IP=$SUBNET.10
GUEST_MAC=52:54:00:21:50:10
VM_UUID=6e1f0c7a-5b2d-4c8e-9f6a-15a1b2c3d4e5
ASSET_TAG=7783-7084-3265-9085-8269-3286-77   # "MSFT AZURE VM" (wireserver.md §1.1)
RUN=$WORK/run

log() { printf '[boot-proof] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

[[ $EUID -eq 0 ]] || die "run as root (debootstrap, network namespaces, tap devices)"
[[ -x $BIN ]] || die "no azimds binary at $BIN (cargo build --release, or set AZIMDS_BIN)"

# ------------------------------------------------------------------ tools
need=()
for tool in qemu-system-x86_64:qemu-system-x86 debootstrap:debootstrap mkfs.ext4:e2fsprogs \
            qemu-img:qemu-utils dnsmasq:dnsmasq-base xorriso:xorriso ssh:openssh-client; do
    command -v "${tool%%:*}" >/dev/null || need+=("${tool#*:}")
done
if ((${#need[@]})); then
    log "installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# ------------------------------------------------------------------ image
# Built once and kept: the image is the unmodified distribution plus what every cloud image has
# (a kernel, fstab, sshd); nothing azimds-specific is put in it.
mkdir -p "$WORK"
if [[ ! -f $WORK/rootfs.img ]]; then
    t=$(now)
    rm -rf "$WORK/rootfs"
    log "debootstrap $SUITE, then cloud-init and waagent with apt (a few minutes)"
    debootstrap --variant=minbase \
        --include=systemd-sysv,udev,dbus,isc-dhcp-client,ifupdown,iproute2,netbase,procps \
        "$SUITE" "$WORK/rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
        || die "debootstrap failed; see $WORK/debootstrap.log"
    # apt (not debootstrap's resolver, which skips virtual packages) installs the agents. No
    # service may start in the chroot.
    printf '#!/bin/sh\nexit 101\n' >"$WORK/rootfs/usr/sbin/policy-rc.d"
    chmod 755 "$WORK/rootfs/usr/sbin/policy-rc.d"
    unshare --mount --fork sh -c "mount -t proc proc '$WORK/rootfs/proc' &&
        chroot '$WORK/rootfs' env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
            --no-install-recommends linux-image-cloud-amd64 cloud-init waagent openssh-server \
            eject sudo ca-certificates" >>"$WORK/debootstrap.log" 2>&1 \
        || die "installing the agents failed; see $WORK/debootstrap.log"
    rm -f "$WORK/rootfs/usr/sbin/policy-rc.d"
    chroot "$WORK/rootfs" apt-get clean
    printf '/dev/vda / ext4 defaults 0 1\n' >"$WORK/rootfs/etc/fstab"
    printf 'auto lo\niface lo inet loopback\nsource /etc/network/interfaces.d/*\n' \
        >"$WORK/rootfs/etc/network/interfaces"
    echo debian >"$WORK/rootfs/etc/hostname"
    cp "$WORK"/rootfs/boot/vmlinuz-* "$WORK/vmlinuz"
    cp "$WORK"/rootfs/boot/initrd.img-* "$WORK/initrd.img"
    mkfs.ext4 -q -F -L root -d "$WORK/rootfs" "$WORK/rootfs.img" 4G
    rm -rf "$WORK/rootfs"
    log "image built in $(since "$t")s: $WORK/rootfs.img"
fi

# Debian's walinuxagent.service has ConditionVirtualization=microsoft: systemd says
# "microsoft" on Hyper-V, or on KVM with Hyper-V enlightenments (the CPUID signature "Microsoft
# Hv"), but never under software emulation. For such a run the image gets a drop-in that clears
# the condition — the one change to the distribution, and only to when the unit starts.
if [[ $ACCEL != kvm ]] && ! debugfs -R "stat /etc/systemd/system/walinuxagent.service.d/azimds-proof.conf" \
        "$WORK/rootfs.img" 2>/dev/null | grep -q Inode; then
    printf '[Unit]\n# Not Hyper-V: see scripts/boot-proof.sh\nConditionVirtualization=\n' >"$WORK/dropin.conf"
    debugfs -w -R "mkdir /etc/systemd/system/walinuxagent.service.d" "$WORK/rootfs.img" >/dev/null 2>&1
    debugfs -w -R "write $WORK/dropin.conf /etc/systemd/system/walinuxagent.service.d/azimds-proof.conf" \
        "$WORK/rootfs.img" >/dev/null 2>&1
    debugfs -R "stat /etc/systemd/system/walinuxagent.service.d/azimds-proof.conf" "$WORK/rootfs.img" 2>/dev/null \
        | grep -q Inode || die "cannot add the walinuxagent drop-in to the image"
    log "image: walinuxagent.service may start without Hyper-V (drop-in added)"
fi

# ------------------------------------------------------------------ network and azimds
rm -rf "$RUN"; mkdir -p "$RUN"
cleanup() {
    for pid in $(ip netns pids "$NS" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
    ip netns del "$NS" 2>/dev/null || true
}
trap cleanup EXIT
ip netns add "$NS"
ip -n "$NS" link set lo up
ip -n "$NS" addr add 169.254.169.254/32 dev lo
ip -n "$NS" addr add 168.63.129.16/32 dev lo
ip -n "$NS" link add br0 type bridge
ip -n "$NS" addr add "$SUBNET.1/24" dev br0
ip -n "$NS" link set br0 up
ip -n "$NS" tuntap add tap0 mode tap
ip -n "$NS" link set tap0 master br0
ip -n "$NS" link set tap0 up

ssh-keygen -q -t ed25519 -N '' -C azureuser@azimds-proof -f "$RUN/id_ed25519"
custom_data=$(printf '#cloud-config\nwrite_files:\n  - path: /etc/azimds-proof\n    content: "custom data from the OVF CD\\n"\n' | base64 -w0)
cat >"$RUN/vms.json" <<JSON
{"vms": [{
  "id": "proof", "callers": ["$GUEST_IP"],
  "provisioning": {"customData": "$custom_data"},
  "instance": {
    "compute": {"name": "azimds-proof", "vmId": "$VM_UUID", "location": "westeurope",
      "osType": "Linux", "vmSize": "Standard_D2s_v5",
      "osProfile": {"adminUsername": "azureuser", "computerName": "azimds-proof",
                    "disablePasswordAuthentication": "true"},
      "publicKeys": [{"keyData": "$(cat "$RUN/id_ed25519.pub")",
                      "path": "/home/azureuser/.ssh/authorized_keys"}]},
    "network": {"interface": [{"macAddress": "$(echo "$GUEST_MAC" | tr -d : | tr a-f A-F)",
      "ipv4": {"ipAddress": [{"privateIpAddress": "$GUEST_IP", "publicIpAddress": ""}],
               "subnet": [{"address": "$SUBNET.0", "prefix": "24"}]},
      "ipv6": {"ipAddress": []}}]}}
}]}
JSON
ip netns exec "$NS" "$BIN" serve --listen 169.254.169.254:80 --wireserver-listen 168.63.129.16:80 \
    --callers source-address --vms "$RUN/vms.json" --data "$RUN/data" \
    --control "unix:$RUN/control.sock" >"$RUN/azimds.log" 2>&1 &
for _ in $(seq 100); do [[ -S $RUN/control.sock ]] && break; sleep 0.1; done
[[ -S $RUN/control.sock ]] || die "azimds did not start: $(tail -5 "$RUN/azimds.log")"
azimds() { "$BIN" "$@" --control "unix:$RUN/control.sock"; }
# wireserver.md §1.3: routes to both services and a default route (121), 245 forced.
ip netns exec "$NS" dnsmasq --keep-in-foreground --conf-file=/dev/null --port=0 \
    --interface=br0 --bind-interfaces --dhcp-authoritative \
    --dhcp-range="$SUBNET.100,$SUBNET.150,255.255.255.0,1h" --dhcp-host="$GUEST_MAC,$GUEST_IP" \
    --dhcp-leasefile="$RUN/dnsmasq.leases" --dhcp-option=3,"$SUBNET.1" \
    --dhcp-option=121,168.63.129.16/32,"$SUBNET.1",169.254.169.254/32,"$SUBNET.1",0.0.0.0/0,"$SUBNET.1" \
    --dhcp-option-force=245,168.63.129.16 >"$RUN/dnsmasq.log" 2>&1 &

azimds ovf-env proof --iso "$RUN/ovf-env.iso" 2>/dev/null
qemu-img create -q -f qcow2 -F raw -b "$WORK/rootfs.img" "$RUN/disk.qcow2"

# ------------------------------------------------------------------ boot
log "booting (accel $ACCEL); serial console in $RUN/serial.log"
t0=$(now)
# With KVM, Hyper-V enlightenments make systemd (and waagent's unit) see "microsoft".
cpu=max; [[ $ACCEL == kvm ]] && cpu=host,hv-relaxed,hv-vapic,hv-time,hv-spinlocks=0x1fff
ip netns exec "$NS" qemu-system-x86_64 -machine "pc,accel=$ACCEL" -cpu "$cpu" -m 2048 -smp 2 \
    -kernel "$WORK/vmlinuz" -initrd "$WORK/initrd.img" \
    -append "root=/dev/vda rw console=ttyS0 net.ifnames=0" \
    -drive "file=$RUN/disk.qcow2,if=virtio,format=qcow2" -cdrom "$RUN/ovf-env.iso" \
    -netdev tap,id=n0,ifname=tap0,script=no,downscript=no \
    -device "virtio-net-pci,netdev=n0,mac=$GUEST_MAC" \
    -smbios "type=1,manufacturer=Microsoft Corporation,product=Virtual Machine,uuid=$VM_UUID" \
    -smbios "type=3,manufacturer=Microsoft Corporation,asset=$ASSET_TAG" \
    -display none -serial "file:$RUN/serial.log" -monitor none &
qemu=$!

azimds vm wait-ready proof --timeout "$TIMEOUT" || { azimds vm provisioning proof || true; die "not Ready; see $RUN/serial.log"; }
first_ready=$(since "$t0")
first_agent=$(azimds vm provisioning proof --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["readyAgent"])')
log "Ready after ${first_ready}s (reported by $first_agent)"

# waagent (Provisioning.Agent=cloud-init in Debian's waagent.conf) reports its own Ready once
# cloud-init's ovf-env.xml and the SSH host keys exist, then uploads status through the Host GA
# Plugin. Its reports arrive on the same record; wait for them too (bounded).
waagent_ready=-
deadline=$(( $(date +%s) + 600 ))
while (( $(date +%s) < deadline )); do
    if azimds vm provisioning proof --json | python3 -c '
import json, sys
record = json.load(sys.stdin)
ready = any(r["health"] == "Ready" and r["agent"].startswith("WALinuxAgent") for r in record["reports"])
sys.exit(0 if ready and record["agentStatus"] else 1)'; then
        waagent_ready=$(since "$t0"); break
    fi
    sleep 1
done
log "waagent Ready and status uploaded after ${waagent_ready}s"

# The agents' work, seen from outside: an SSH login with the IMDS key as the admin user.
login=$(ip netns exec "$NS" ssh -i "$RUN/id_ed25519" -o BatchMode=yes -o StrictHostKeyChecking=no \
    -o UserKnownHostsFile=/dev/null -o ConnectTimeout=10 "azureuser@$GUEST_IP" \
    'hostname; cat /etc/azimds-proof' 2>/dev/null || echo "ssh failed")
log "ssh azureuser@$GUEST_IP: $(echo "$login" | tr '\n' ' ')"
azimds vm provisioning proof
kill "$qemu" 2>/dev/null || true
printf 'boot-proof: accel=%s ready_s=%s first_agent=%s waagent_ready_s=%s login=%s\n' \
    "$ACCEL" "$first_ready" "$first_agent" "$waagent_ready" "$(echo "$login" | head -1)"
