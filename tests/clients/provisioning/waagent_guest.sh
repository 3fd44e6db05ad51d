#!/bin/sh
# A first boot of an image provisioned by the Azure Linux Agent alone (run by guests.py inside
# the guest's root): waagent's daemon finds the WireServer, mounts the OVF CD, creates the
# user, deploys its keys and sets the host name, reports NotReady/Provisioning then Ready, and
# starts its extension handler, which uploads the agent's status every few seconds.
set -eu
# The image's sshd: a configuration and host keys (waagent reports the host key's thumbprint).
mkdir -p /etc/ssh
printf 'PasswordAuthentication yes\n' >/etc/ssh/sshd_config
ssh-keygen -A >/dev/null
# wireserver.md §9.2 (3): the agent's own provisioning, nothing that touches disks, the
# firewall or log collection.
cat >/etc/waagent.conf <<'CONF'
Provisioning.Agent=waagent
Provisioning.DeleteRootPassword=n
Provisioning.RegenerateSshHostKeyPair=n
Provisioning.MonitorHostName=n
Provisioning.DecodeCustomData=y
Provisioning.ExecuteCustomData=n
ResourceDisk.Format=n
ResourceDisk.EnableSwap=n
Logs.Verbose=y
Logs.Collect=n
OS.EnableFirewall=n
AutoUpdate.Enabled=n
Extensions.Enabled=y
CONF
rm -rf /var/lib/waagent
mkdir -p /var/lib/waagent
# Not exec'd: this shell stays PID 1 of the guest's PID namespace, as init would be. The
# extension handler takes a parent with PID 1 for a dead daemon and exits ("orphan").
waagent -daemon
