"""Run OpenTelemetry's Azure VM resource detector, unmodified, and report.

Executed by conftest.py inside the test network namespace, where azimds
listens on 169.254.169.254:80. Usage: otel_probe.py OUT.json

The detector calls
  GET http://169.254.169.254/metadata/instance/compute?api-version=2021-12-13&format=json
with `Metadata: True` and a 0.2 s timeout, and swallows every error (it then
returns an empty Resource), so the test must check the attributes are there.
"""

import json
import logging
import os
import sys


def main() -> None:
    out_path = sys.argv[1]
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)

    import opentelemetry.resource.detector.azure.vm as vm_mod
    from opentelemetry.resource.detector.azure.vm import AzureVMResourceDetector
    from opentelemetry.sdk.resources import Resource

    result = {}

    # 1. The detector class itself, as applications call it.
    resource = AzureVMResourceDetector().detect()
    result["detect_attributes"] = dict(resource.attributes)

    # 2. The way most applications get it: the SDK's entry-point loading via
    #    OTEL_EXPERIMENTAL_RESOURCE_DETECTORS=azure_vm and Resource.create().
    os.environ["OTEL_EXPERIMENTAL_RESOURCE_DETECTORS"] = "azure_vm"
    created = Resource.create()
    result["create_attributes"] = dict(created.attributes)

    # 3. The detector's own fetch function (the parsed JSON it works from),
    #    for the shape check.
    result["raw_compute"] = vm_mod._get_azure_vm_metadata()
    result["endpoint"] = vm_mod._AZURE_VM_METADATA_ENDPOINT

    with open(out_path, "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
