"""cloud-init's pre-provisioned-pool flow (spec §9.2) against the assign action.

The VM is put in a pool through the control API (`extended.compute.ppsType: Running`);
cloud-init (probes/cloud_init_reprovision_probe.py) decides from IMDS that it is pooled and
polls /metadata/reprovisiondata, getting 404s. Once its log shows a 404 was handled, the
test assigns the VM an OVF environment (PUT /v1/vms/{id}/reprovisiondata, what `azimds vm
assign` sends); cloud-init's next poll gets it, and read_azure_ovf parses it into the
customer's hostname, user and SSH settings. Nothing here sleeps: the test waits on the
probe's log and on its exit.
"""

import json
import subprocess
import sys
import threading

from conftest import PROBES, _probe_env, _tail
import pytest

# Not run by the conformance kit against other servers: needs the reprovision assignment through azimds' control API.
pytestmark = pytest.mark.azimds_only

OVF = """<?xml version="1.0" encoding="utf-8"?>
<Environment xmlns="http://schemas.dmtf.org/ovf/environment/1" xmlns:oe="http://schemas.dmtf.org/ovf/environment/1" xmlns:wa="http://schemas.microsoft.com/windowsazure" xmlns:i="http://www.w3.org/2001/XMLSchema-instance">
 <wa:ProvisioningSection>
  <wa:Version>1.0</wa:Version>
  <LinuxProvisioningConfigurationSet xmlns="http://schemas.microsoft.com/windowsazure" xmlns:i="http://www.w3.org/2001/XMLSchema-instance">
   <ConfigurationSetType>LinuxProvisioningConfiguration</ConfigurationSetType>
   <HostName>customer-vm-7</HostName>
   <UserName>customer</UserName>
   <DisableSshPasswordAuthentication>true</DisableSshPasswordAuthentication>
  </LinuxProvisioningConfigurationSet>
 </wa:ProvisioningSection>
 <wa:PlatformSettingsSection>
  <wa:Version>1.0</wa:Version>
  <PlatformSettings xmlns="http://schemas.microsoft.com/windowsazure" xmlns:i="http://www.w3.org/2001/XMLSchema-instance">
   <ProvisionGuestAgent>true</ProvisionGuestAgent>
  </PlatformSettings>
 </wa:PlatformSettingsSection>
</Environment>"""

# cloud-init 22.4.2 logs this (DEBUG, from _poll_imds' exception callback) when its first
# poll got a 404 and it keeps polling.
FIRST_404 = "failed. Exception: 404 Client Error: Not Found for url: http://169.254.169.254/metadata/reprovisiondata?api-version=2019-06-01 and code: 404"


def _control_raw(imds, method, path, body: str):
    token = (imds.workroot / "state" / "azimds" / "control-token").read_text().strip()
    script = (
        "import http.client, sys\n"
        "c = http.client.HTTPConnection('127.0.0.1', 16926, timeout=30)\n"
        "c.request(sys.argv[1], sys.argv[2], body=sys.stdin.read().encode(), headers={\n"
        "    'Authorization': 'Bearer ' + sys.argv[3], 'Content-Type': 'application/xml'})\n"
        "r = c.getresponse(); print(r.status); print(r.read().decode())\n"
    )
    proc = subprocess.run(
        ["ip", "netns", "exec", imds.ns, sys.executable, "-c", script, method, path, token],
        input=body, capture_output=True, text=True, timeout=60, env=_probe_env())
    status, _, text = proc.stdout.partition("\n")
    return int(status), text


def test_cloud_init_polls_until_assigned_then_provisions_from_the_ovf(imds, vm, tmp_path):
    status, body = imds.control("GET", "/v1/vms")
    [vm_id] = [v["id"] for v in body["vms"]]
    pooled = {"instance": {"extended": {"compute": {"ppsType": "Running"}}}}
    status, body = imds.control("PATCH", f"/v1/vms/{vm_id}", pooled)
    assert status == 200, body
    out = tmp_path / "out.json"
    probe = subprocess.Popen(
        ["ip", "netns", "exec", imds.ns, sys.executable,
         str(PROBES / "cloud_init_reprovision_probe.py"), str(out), str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_probe_env())
    log, saw_404 = [], threading.Event()

    def read_log():
        for line in probe.stderr:
            log.append(line)
            if FIRST_404 in line:
                saw_404.set()

    reader = threading.Thread(target=read_log, daemon=True)
    reader.start()
    try:
        assert saw_404.wait(timeout=60), "cloud-init never polled:\n" + _tail("".join(log))
        status, text = _control_raw(imds, "PUT", f"/v1/vms/{vm_id}/reprovisiondata", OVF)
        assert status == 200, text
        probe.wait(timeout=60)
        reader.join(timeout=10)
    finally:
        if probe.poll() is None:
            probe.kill()
            probe.wait()
        imds.control("DELETE", f"/v1/vms/{vm_id}/reprovisiondata")
        imds.control("PATCH", f"/v1/vms/{vm_id}", {"instance": {"extended": None}})
    assert probe.returncode == 0, _tail("".join(log)) + "\n" + _tail(imds.log())
    trace = json.loads(out.read_text())
    assert trace["ppsType"] == "Running"
    assert trace["pps_type"] == "Running", "cloud-init saw a pooled VM"
    assert trace["polls"] >= 2, "at least one 404, then the 200"
    assert trace["teardowns"] == 0, "a 404 keeps polling; nothing failed"
    assert trace["ovf_env"] == OVF
    assert trace["metadata"]["local-hostname"] == "customer-vm-7"
    assert trace["cfg"]["system_info"]["default_user"]["name"] == "customer"
    assert trace["cfg"]["ssh_pwauth"] is False
    # Unassigned again, and out of the pool: what the other tests see is vm.yaml's.
    status, body = imds.control("GET", f"/v1/vms/{vm_id}")
    assert "reprovisionData" not in body and "extended" not in body["instance"], body
