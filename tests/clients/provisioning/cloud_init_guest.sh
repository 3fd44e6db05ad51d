#!/bin/sh
# A first boot of an Azure image, as far as cloud-init takes it (run by guests.py inside the
# guest's root): the init-local stage (ephemeral DHCP, the OVF from /dev/sr0, IMDS, the
# WireServer goal state and report-ready), then the init stage, whose modules put the host
# name, the admin user, its SSH keys and the custom data's files in place. The cloud-init is
# whichever the root has: Debian 12's 22.4.2, or 25.1.4 overlaid from Debian 13's package.
set -eu
rm -f /etc/cloud/cloud-init.disabled
# The image's sshd configuration (cloud-init edits it for ssh_pwauth).
mkdir -p /etc/ssh
printf 'PasswordAuthentication yes\n' >/etc/ssh/sshd_config
# Only the Azure datasource: an Azure-targeted image's list (wireserver.md §1.1), so the
# host's DMI asset tag (not Azure's) does not matter here; the qemu proof boots the default list.
printf 'datasource_list: [ Azure ]\n' >/etc/cloud/cloud.cfg.d/99-azimds-test.cfg
cloud-init --version
cloud-init init --local
cloud-init init
