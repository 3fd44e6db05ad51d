"""Unmodified Azure provisioning agents against azimds' IMDS and WireServer (wireserver.md §9.2).

Four guests boot at once, each in its own network namespace and overlay root (guests.py), with
the DMI asset tag, DHCP options 121/245 and its own provisioning CD made by `azimds ovf-env
--iso`:

- ci22: Debian 12's cloud-init 22.4.2, init-local then init (its Azure datasource's DHCP, the
  CD, IMDS, goal state, report-ready; then host name, user, keys, custom data);
- ci25: cloud-init 25.1.4 (Debian 13's package, laid over this root), the same flow;
- wa:   Debian 12's waagent 2.7.3, provisioning on its own (CD, user, keys, host name, NotReady
  then Ready), then its extension handler (goal state, Host GA Plugin, status upload);
- ai:   azure-init 0.1.1 from crates.io (IMDS user and keys, goal state, Ready).

Each test asserts what the agent wrote into its root and what azimds recorded, read with the
azimds CLI (`vm wait-ready`, `vm provisioning --json`). Then a stranger gets nothing and a VM
cannot report for another.
"""

import os
import time
from pathlib import Path

import pytest

import guests

# Not run by the conformance kit against other servers: needs azimds' WireServer companion and its provisioning records.
pytestmark = pytest.mark.azimds_only

HERE = Path(__file__).resolve().parent
GUEST_SCRIPTS = HERE / "provisioning"
# Debian 13's cloud-init (25.1.x), unpacked by scripts/install-test-deps.sh.
CLOUD_INIT_25 = Path(os.environ.get("AZIMDS_CLOUD_INIT_25", "/var/cache/azimds-test-deps/cloud-init-trixie"))


def cloud_init_25_version() -> str:
    """The unpacked package's own version string (cloudinit/version.py)."""
    text = (CLOUD_INIT_25 / "usr/lib/python3/dist-packages/cloudinit/version.py").read_text()
    return text.split('__VERSION__ = "')[1].split('"')[0]


# azure-init's published release, built by scripts/install-test-deps.sh.
AZURE_INIT = Path(os.environ.get("AZIMDS_AZURE_INIT", "/var/cache/azimds-test-deps/azure-init-0.1.1/bin/azure-init"))


def cloud_init_22_version() -> str:
    from cloudinit import version
    return version.version_string()
READY_TIMEOUT = "5m"
STATUS_TIMEOUT_S = 90


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.fail("the provisioning suite needs root (namespaces, overlays, loop devices)", pytrace=False)
    missing = guests.require_tools()
    if missing:
        pytest.fail(f"missing tools: {missing}; run scripts/install-test-deps.sh", pytrace=False)
    if not AZURE_INIT.is_file():
        pytest.fail(f"azure-init not built at {AZURE_INIT}; run scripts/install-test-deps.sh", pytrace=False)
    if not (CLOUD_INIT_25 / "usr/lib/python3/dist-packages/cloudinit").is_dir():
        pytest.fail(f"cloud-init 25 not unpacked at {CLOUD_INIT_25}; run scripts/install-test-deps.sh",
                    pytrace=False)
    binary = Path(os.environ.get("AZIMDS_BIN") or HERE.parent.parent / "target/release/azimds").resolve()
    topology = guests.Topology(binary, tmp_path_factory.mktemp("provisioning"), str(os.getpid() % 100000))
    try:
        topology.start()
        yield topology
    finally:
        topology.close()


@pytest.fixture(scope="module")
def booted(net):
    """All four guests booted concurrently; each agent's outcome, once it is Ready."""
    ci22, ci25, wa, ai = (net.guests[vm] for vm in ("ci22", "ci25", "wa", "ai"))
    for guest in (ci22, ci25, wa, ai):
        guest.work.mkdir(parents=True, exist_ok=True)
        guest.set_smbios()
        guest.attach_cd()
    started = time.time()
    ci22.start("sh", str(GUEST_SCRIPTS / "cloud_init_guest.sh"))
    ci25.start("sh", str(GUEST_SCRIPTS / "cloud_init_guest.sh"), extra=str(CLOUD_INIT_25))
    wa.start("sh", str(GUEST_SCRIPTS / "waagent_guest.sh"))
    ai.start("sh", str(GUEST_SCRIPTS / "azure_init_guest.sh"), str(AZURE_INIT))
    waited = {}
    for guest in (ci22, ci25, wa, ai):
        done = net.azimds("vm", "wait-ready", guest.vm_id, "--timeout", READY_TIMEOUT,
                          check=False, timeout=330)
        waited[guest.vm_id] = done
        assert done.returncode == 0, (
            f"{guest.vm_id} not Ready: {done.stderr}\n--- agent output ---\n{guest.log()[-3000:]}"
            f"\n--- azimds ---\n{net.log()[-2000:]}")
    for guest in (ci22, ci25, ai):
        rc = guest.proc.wait(timeout=120)
        assert rc == 0, f"{guest.vm_id}'s agent failed:\n{guest.log()[-4000:]}"
    # waagent's extension handler uploads its status every 6 s once it runs.
    deadline = time.monotonic() + STATUS_TIMEOUT_S
    while net.provisioning("wa")["agentStatus"] is None:
        assert time.monotonic() < deadline, f"no status upload from waagent:\n{wa.written('/var/log/waagent.log')[-4000:]}"
        time.sleep(0.5)
    wa.stop()
    return {"started": started, "waited": waited}


@pytest.mark.parametrize("vm_id", ["ci22", "ci25"])
def test_cloud_init_reported_ready_once(net, booted, vm_id):
    version = cloud_init_22_version() if vm_id == "ci22" else cloud_init_25_version()
    assert version.startswith("22." if vm_id == "ci22" else "25."), version
    record = net.provisioning(vm_id)
    assert record["state"] == "Ready"
    assert record["readyAgent"] == f"Cloud-Init/{version}"
    # §5.1: one Ready per provisioning, on /machine?comp=health, naming this VM's goal state.
    assert [r["health"] for r in record["reports"]] == ["Ready"]
    report = record["latest"]
    assert report["endpoint"] == "/machine?comp=health"
    assert report["incarnation"] == "1"
    assert report["instanceId"].endswith("._" + net.guests[vm_id].compute["name"])
    assert record["goalState"]["firstFetchedAt"] is not None
    assert booted["waited"][vm_id].stdout.startswith(f"VM {vm_id} is Ready (reported by Cloud-Init/{version}")


@pytest.mark.parametrize("vm_id", ["ci22", "ci25"])
def test_cloud_init_provisioned_from_the_cd_and_imds(net, booted, vm_id):
    guest = net.guests[vm_id]
    profile = guest.compute["osProfile"]
    log = guest.written("/var/log/cloud-init.log")
    # The OVF came from the CD azimds made (wireserver.md §2.1), not from IMDS alone.
    assert "Found provisioning metadata in /dev/sr0" in log
    # Its own DHCP got the routes of option 121 and IMDS answered.
    assert f"Username retrieved from IMDS: {profile['adminUsername']}" in log
    assert guest.written("/etc/hostname").strip() == profile["computerName"]
    user = profile["adminUsername"]
    passwd = [line.split(":") for line in guest.written("/etc/passwd").splitlines()]
    assert any(fields[0] == user and fields[5] == f"/home/{user}" for fields in passwd)
    keys = guest.written(f"/home/{user}/.ssh/authorized_keys")
    for key in guest.compute["publicKeys"]:
        assert key["keyData"] in keys
    # The custom data (a #cloud-config in the OVF's CustomData) was run.
    assert guest.written("/etc/azimds-custom-data") == f"custom data for {vm_id}\n"


def test_the_guests_provisioned_concurrently(net, booted):
    # All four were started before any was waited for; each fetched its own goal state and
    # became Ready while the others were provisioning too.
    first = {vm: net.provisioning(vm)["goalState"]["firstFetchedAt"] for vm in net.guests}
    ready = {vm: net.provisioning(vm)["readyAt"] for vm in net.guests}
    assert all(first.values()) and all(ready.values()), (first, ready)
    containers = {net.provisioning(vm)["latest"]["containerId"] for vm in net.guests}
    assert len(containers) == len(net.guests), "each VM has its own goal state"


def test_waagent_provisioned_and_reported_not_ready_then_ready(net, booted):
    guest = net.guests["wa"]
    record = net.provisioning("wa")
    assert record["state"] == "Ready"
    assert record["readyAgent"] == "WALinuxAgent/2.7.3.0"
    reports = [(r["health"], r["subStatus"], r["description"]) for r in record["reports"]]
    # §5.1: NotReady/Provisioning/Starting first, then Ready.
    assert reports == [("NotReady", "Provisioning", "Starting"), ("Ready", None, None)]
    assert all(r["agent"] == "WALinuxAgent/2.7.3.0" for r in record["reports"])
    profile = guest.compute["osProfile"]
    user = profile["adminUsername"]
    assert guest.written("/etc/hostname").strip() == profile["computerName"]
    assert any(line.split(":")[0] == user for line in guest.written("/etc/passwd").splitlines())
    keys = guest.written(f"/home/{user}/.ssh/authorized_keys")
    assert guest.compute["publicKeys"][0]["keyData"] in keys
    # Provisioning.DecodeCustomData=y: the OVF's CustomData, decoded.
    assert guest.written("/var/lib/waagent/CustomData") == "custom data for waagent\n"
    # The CD's ovf-env.xml is what `azimds ovf-env` writes (waagent copies it with the
    # password masked, §2.1).
    served = net.azimds("ovf-env", "wa").stdout
    masked = served.replace("<UserPassword></UserPassword>", "<UserPassword>*</UserPassword>")
    assert guest.written("/var/lib/waagent/ovf-env.xml") == masked
    # It took azimds' versions list and goal state, and the Host GA Plugin's 404 (§6.1).
    log = guest.written("/var/log/waagent.log")
    assert "vmSettings is not supported" in log
    assert "Fetch goal state completed" in log
    assert "orphan" not in log


def test_waagent_status_reaches_azimds_through_the_host_ga_plugin(net, booted):
    status = net.provisioning("wa")["agentStatus"]
    assert status["status"] == "Ready"
    assert status["version"] == "2.7.3.0"
    assert status["message"] == "Guest Agent is running"
    text = net.azimds("vm", "provisioning", "wa").stdout
    assert "guest agent status: Ready (version 2.7.3.0)" in text
    assert text.startswith("VM wa: Ready since ")


def test_azure_init_reported_ready_and_created_the_user(net, booted):
    guest = net.guests["ai"]
    record = net.provisioning("ai")
    assert record["state"] == "Ready"
    # azure-init 0.1.1 sends no User-Agent: its x-ms-agent-name names it (§5.1).
    assert record["readyAgent"] == "azure-init"
    assert [r["health"] for r in record["reports"]] == ["Ready"]
    assert record["latest"]["endpoint"] == "/machine?comp=health"
    # It parsed azimds' goal state with its own (serde) types and echoed the ids.
    assert record["latest"]["instanceId"].endswith("._prov-ai")
    assert record["latest"]["incarnation"] == "1"
    user = guest.compute["osProfile"]["adminUsername"]
    assert any(line.split(":")[0] == user for line in guest.written("/etc/passwd").splitlines())
    keys = guest.written(f"/home/{user}/.ssh/authorized_keys")
    assert guest.compute["publicKeys"][0]["keyData"] in keys


def test_a_stranger_gets_nothing(net, booted):
    before = {vm: net.provisioning(vm)["reports"] for vm in net.guests}
    for url, extra in [
        (f"http://{guests.WIRESERVER_IP}/machine/?comp=goalstate", []),
        (f"http://{guests.WIRESERVER_IP}/?comp=versions", []),
        (f"http://{guests.WIRESERVER_IP}:32526/versions", []),
        (f"http://{guests.WIRESERVER_IP}/provisioning/health",
         ["-X", "POST", "-H", "content-type: application/json", "--data", '{"state":"NotReady","details":{"subStatus":"ProvisioningFailed"}}']),
    ]:
        done = guests.curl(net.rogue, url, *extra)
        # curl 52: the server closed the connection without a byte (fail closed).
        assert done.returncode in (52, 56), f"{url}: {done.returncode} {done.stdout!r} {done.stderr}"
        assert done.stdout == ""
    after = {vm: net.provisioning(vm)["reports"] for vm in net.guests}
    assert after == before


def test_a_vm_cannot_report_for_another(net, booted):
    ci22 = net.provisioning("ci22")["latest"]
    forged = (
        '<?xml version="1.0" encoding="utf-8"?><Health><GoalStateIncarnation>1</GoalStateIncarnation>'
        f'<Container><ContainerId>{ci22["containerId"]}</ContainerId><RoleInstanceList><Role>'
        f'<InstanceId>{ci22["instanceId"]}</InstanceId><Health><State>NotReady</State><Details>'
        '<SubStatus>ProvisioningFailed</SubStatus><Description>forged</Description></Details>'
        '</Health></Role></RoleInstanceList></Container></Health>'
    )
    done = net.guests["wa"].curl(f"http://{guests.WIRESERVER_IP}/machine?comp=health",
                                 "-X", "POST", "-H", "content-type: text/xml", "--data", forged,
                                 "-o", "/dev/null", "-w", "%{http_code}")
    assert done.stdout == "200", done.stderr
    # The report is the sender's: ci22 stays Ready, wa now carries the failure it sent.
    assert net.provisioning("ci22")["state"] == "Ready"
    assert net.provisioning("ci22")["latest"] == ci22
    wa = net.provisioning("wa")
    assert wa["state"] == "Failed"
    assert wa["latest"]["description"] == "forged"
    assert wa["latest"]["containerId"] == ci22["containerId"], "recorded as sent, for the sender"
