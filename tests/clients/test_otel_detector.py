"""OpenTelemetry's Azure VM resource detector (PyPI opentelemetry-resource-detector-azure).

It sends GET /metadata/instance/compute?api-version=2021-12-13&format=json
with `Metadata: True` and maps compute fields to resource attributes.
"""

import pytest
from opentelemetry.semconv.resource import CloudPlatformValues, CloudProviderValues

from imds_schema import compute_for, explain

# resource attribute -> compute key it is read from (the detector's mapping,
# opentelemetry/resource/detector/azure/vm.py)
ATTRIBUTE_SOURCE = {
    "azure.vm.scaleset.name": "vmScaleSetName",
    "azure.vm.sku": "sku",
    "cloud.region": "location",
    "cloud.resource_id": "resourceId",
    "host.id": "vmId",
    "host.name": "name",
    "host.type": "vmSize",
    "os.type": "osType",
    "os.version": "version",
    "service.instance.id": "vmId",
}


@pytest.fixture(scope="module")
def otel(imds) -> dict:
    return imds.run_probe("otel_probe")


def expected_attributes(compute: dict) -> dict:
    attrs = {attr: compute[key] for attr, key in ATTRIBUTE_SOURCE.items()}
    attrs["cloud.platform"] = CloudPlatformValues.AZURE_VM.value
    attrs["cloud.provider"] = CloudProviderValues.AZURE.value
    return attrs


def test_detector_attributes_equal_vm_definition(otel, vm):
    # The detector returns an empty Resource on any error, so an empty dict
    # here means the request failed (see the azimds log in the failure).
    assert otel["detect_attributes"], "detector found no Azure VM (request failed or was rejected)"
    want = expected_attributes(vm["compute"])
    assert otel["detect_attributes"] == want, explain(otel["detect_attributes"], want)


def test_resource_create_with_azure_vm_entry_point(otel, vm):
    # OTEL_EXPERIMENTAL_RESOURCE_DETECTORS=azure_vm + Resource.create()
    created = otel["create_attributes"]
    expected = expected_attributes(vm["compute"])
    assert {k: created.get(k) for k in expected} == expected


def test_detector_received_compute_at_2021_12_13(otel, vm):
    assert "api-version=2021-12-13" in otel["endpoint"]
    want = compute_for(vm["compute"], "2021-12-13")
    assert otel["raw_compute"] == want, explain(otel["raw_compute"], want)
