"""Azure's failure modes against real clients (issue 10): each test sets a fault rule on the
running azimds through its control API, runs an unmodified client, checks that the client
coped as it is written to (or failed as it should), and reads the VM's request journal to
see exactly what the client asked. Rules are cleared after each test.

  * azure-identity rides out a 410 window ("IMDS is updating", spec §1.11, §5.5) and then
    gets its token;
  * cloud-init's IMDS fetch rides out 429 and then 500 (it retries 404/410/429/500);
  * WALinuxAgent reports IMDS unhealthy on 410 (it raises ResourceGoneError at once), and
    rides out 429 (its throttle retries, a second apart).
"""

import pytest

# Not run by the conformance kit against other servers: needs fault rules through azimds' control API.
pytestmark = pytest.mark.azimds_only

TOKEN_PATH = "/metadata/identity/oauth2/token"


@pytest.fixture
def faults(imds):
    """Adds rules for one test; clears every rule afterwards."""
    def add(rule: dict) -> dict:
        status, body = imds.control("POST", "/v1/faults", rule)
        assert status == 201, body
        return body

    yield add
    status, body = imds.control("DELETE", "/v1/faults")
    assert status == 200, body


@pytest.fixture(scope="module")
def vm_id(imds) -> str:
    status, body = imds.control("GET", "/v1/vms")
    assert status == 200, body
    return body["vms"][0]["id"]


def journal_after(imds, vm_id: str, seq: int) -> list:
    status, body = imds.control("GET", f"/v1/vms/{vm_id}/journal?after={seq}")
    assert status == 200, body
    return body["entries"]


def journal_end(imds, vm_id: str) -> int:
    status, body = imds.control("GET", f"/v1/vms/{vm_id}/journal?limit=1")
    assert status == 200, body
    return body["next"] - 1


def test_azure_identity_rides_out_imds_updating(imds, faults, vm_id):
    start = journal_end(imds, vm_id)
    rule = faults({"preset": "imds-updating", "endpoint": "token", "duration": "4s"})
    assert rule["status"] == 410
    result = imds.run_probe("faults_probe", "azure_identity")
    assert "error" not in result, result["error"] if "error" in result else ""
    assert result["token"].count(".") == 2
    asked = [e for e in journal_after(imds, vm_id, start) if e["path"] == TOKEN_PATH]
    statuses = [e["status"] for e in asked]
    # 410 until the window ends, then the token (azure-identity backs off 0, 5, 10 s on 410).
    assert statuses[-1] == 200 and set(statuses[:-1]) == {410}, statuses
    assert all(e["fault"]["rule"] == rule["id"] for e in asked[:-1])
    assert all(e["metadataHeader"] for e in asked)
    assert "azsdk-python-identity" in asked[-1]["userAgent"]
    assert result["seconds"] >= 4


def test_cloud_init_rides_out_429_and_500(imds, faults, vm_id, vm):
    start = journal_end(imds, vm_id)
    faults({"endpoint": "instance", "status": 429, "count": 2})
    faults({"endpoint": "instance", "status": 500, "count": 2})
    result = imds.run_probe("faults_probe", "cloud_init")
    assert "error" not in result, result.get("error")
    assert result["imds_md"]["compute"]["name"] == vm["compute"]["name"]
    statuses = [e["status"] for e in journal_after(imds, vm_id, start)]
    assert statuses == [429, 429, 500, 500, 200], statuses
    assert result["seconds"] >= 4, "a second between retries"


def test_waagent_reports_imds_unhealthy_when_it_is_gone(imds, faults, vm_id):
    start = journal_end(imds, vm_id)
    faults({"preset": "imds-updating", "duration": "60s"})
    result = imds.run_probe("faults_probe", "waagent_gone")
    assert result["validate"] == {
        "healthy": False,
        "error": "IMDS error in /metadata/instance: HTTP Failed with Status Code 410: Gone",
    }
    assert "410: Gone" in result["compute_error"], result["compute_error"]
    asked = journal_after(imds, vm_id, start)
    # No retries on 410: one request per call, each with the agent's own User-Agent.
    assert [e["status"] for e in asked] == [410, 410], asked
    assert asked[0]["userAgent"].startswith("WALinuxAgent/") and asked[0]["userAgent"].endswith("+health")


def test_waagent_rides_out_throttling(imds, faults, vm_id, vm):
    start = journal_end(imds, vm_id)
    faults({"preset": "throttled", "endpoint": "instance", "count": 3})
    result = imds.run_probe("faults_probe", "waagent_throttled")
    assert "error" not in result, result.get("error")
    assert result["compute"]["name"] == vm["compute"]["name"]
    statuses = [e["status"] for e in journal_after(imds, vm_id, start)]
    assert statuses == [429, 429, 429, 200], statuses
