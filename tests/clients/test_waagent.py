"""WALinuxAgent's IMDS client (Debian package waagent, azurelinuxagent.common.protocol.imds).

ImdsClient sends GET /metadata/instance/compute and /metadata/instance at
api-version 2018-02-01 with `Metadata: True` (a Python bool on the wire).
"""

import json

import pytest

from imds_schema import compute_for, explain, instance_for

# The attributes ComputeInfo models: exactly the 2018-02-01 compute key set.
COMPUTE_INFO_FIELDS = (
    "location", "name", "offer", "osType", "placementGroupId",
    "platformFaultDomain", "platformUpdateDomain", "publisher",
    "resourceGroupName", "sku", "subscriptionId", "tags", "version", "vmId",
    "vmSize", "vmScaleSetName", "zone",
)
IMDS_IMAGE_ORIGIN_UNKNOWN = 0
IMDS_IMAGE_ORIGIN_CUSTOM = 1


@pytest.fixture(scope="module")
def waagent(imds) -> dict:
    return imds.run_probe("waagent_probe")


def test_get_compute_values_equal_vm_definition(waagent, vm):
    compute = vm["compute"]
    want = {f: compute[f] for f in COMPUTE_INFO_FIELDS}
    assert waagent["compute"] == want, explain(waagent["compute"], want)


def test_image_info_and_origin(waagent, vm):
    c = vm["compute"]
    assert waagent["image_info"] == f"{c['publisher']}:{c['offer']}:{c['sku']}:{c['version']}"
    # UNKNOWN means the agent failed to classify; CUSTOM iff publisher is "".
    assert waagent["image_origin"] != IMDS_IMAGE_ORIGIN_UNKNOWN
    assert (waagent["image_origin"] == IMDS_IMAGE_ORIGIN_CUSTOM) == (c["publisher"] == "")


def test_health_check_validate_is_healthy(waagent):
    assert waagent["validate"] == {"healthy": True, "error": ""}


def test_no_unknown_properties_at_2018_02_01(waagent):
    # set_properties() logs "Unknown property: compute.<key>" for any key
    # newer than the 2018-02-01 schema the agent models.
    unknown = [line for line in waagent["log"].splitlines() if "Unknown property" in line]
    assert unknown == []


def test_raw_compute_is_2018_02_01_shape(waagent, vm):
    raw = waagent["raw_compute"]
    assert raw["success"], raw["body"]
    got, want = json.loads(raw["body"]), compute_for(vm["compute"], waagent["api_version"])
    assert got == want, explain(got, want)


def test_raw_instance_is_2018_02_01_shape(waagent, vm):
    raw = waagent["raw_instance"]
    assert raw["success"], raw["body"]
    got, want = json.loads(raw["body"]), instance_for(vm, waagent["api_version"])
    assert got == want, explain(got, want)
