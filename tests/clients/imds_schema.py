"""Version gating of the IMDS instance document, from the spec.

/work/shared/spec/azure-imds.md §2.4 and §3.3-§3.5: every key of the newest
schema has the api-version that introduced it; a response for api-version V
contains exactly the keys introduced at or before V. `shape_for()` applies
that to the VM definition (tests/clients/vm.yaml), giving the document a
client asking for V must receive. Only the versions the clients in this
suite send need to be right here, but the table is complete for >= 2017-04-02.
"""

import copy

# compute.<key> -> first api-version that emits it (spec §3.3)
COMPUTE_INTRODUCED = {
    "location": "2017-04-02",
    "name": "2017-04-02",
    "offer": "2017-04-02",
    "osType": "2017-04-02",
    "platformFaultDomain": "2017-04-02",
    "platformUpdateDomain": "2017-04-02",
    "publisher": "2017-04-02",
    "sku": "2017-04-02",
    "version": "2017-04-02",
    "vmId": "2017-04-02",
    "vmSize": "2017-04-02",
    "placementGroupId": "2017-08-01",
    "resourceGroupName": "2017-08-01",
    "subscriptionId": "2017-08-01",
    "tags": "2017-08-01",
    "vmScaleSetName": "2017-12-01",
    "zone": "2017-12-01",
    "plan": "2018-04-02",
    "publicKeys": "2018-04-02",
    "azEnvironment": "2018-10-01",
    "provider": "2018-10-01",
    "customData": "2019-02-01",
    "resourceId": "2019-03-11",
    "storageProfile": "2019-06-01",
    "tagsList": "2019-06-04",
    "isHostCompatibilityLayerVm": "2020-06-01",
    "securityProfile": "2020-06-01",
    "osProfile": "2020-07-15",
    "licenseType": "2020-09-01",
    "evictionPolicy": "2020-12-01",
    "priority": "2020-12-01",
    "userData": "2021-01-01",
    "extendedLocation": "2021-03-01",
    "virtualMachineScaleSet": "2021-03-01",
    "platformSubFaultDomain": "2021-10-01",
    "additionalCapabilities": "2021-11-01",
    "host": "2021-11-15",
    "hostGroup": "2021-11-15",
    "isVmInStandbyPool": "2023-11-15",
    # Docs say 2023-11-15; a real 2023-11-15 capture lacks it. The spec's
    # recommended default is 2024-03-15 (configurable in the server). No
    # client in this suite asks for a version where the two differ.
    "physicalZone": "2024-03-15",
}

# Nested keys added after their parent (spec §2.4, §3.4). "*" = every element.
NESTED_INTRODUCED = {
    ("osProfile", "disablePasswordAuthentication"): "2020-10-01",
    ("securityProfile", "encryptionAtHost"): "2021-11-01",
    ("securityProfile", "securityType"): "2021-12-13",
    ("storageProfile", "resourceDisk"): "2021-02-01",
    ("storageProfile", "dataDisks", "*", "bytesPerSecondThrottle"): "2021-05-01",
    ("storageProfile", "dataDisks", "*", "diskCapacityBytes"): "2021-05-01",
    ("storageProfile", "dataDisks", "*", "isSharedDisk"): "2021-05-01",
    ("storageProfile", "dataDisks", "*", "isUltraDisk"): "2021-05-01",
    ("storageProfile", "dataDisks", "*", "opsPerSecondThrottle"): "2021-05-01",
    ("storageProfile", "imageReference", "communityGalleryImageId"): "2023-07-01",
    ("storageProfile", "imageReference", "exactVersion"): "2023-07-01",
    ("storageProfile", "imageReference", "sharedGalleryImageId"): "2023-07-01",
    ("storageProfile", "osDisk", "encryptionSettings", "diskEncryptionKey"): "2021-11-01",
    ("storageProfile", "osDisk", "encryptionSettings", "keyEncryptionKey"): "2021-11-01",
}


def _drop(node, path):
    """Delete the key at `path` (tuple, "*" = each list element) if present."""
    if not path:
        return
    head, rest = path[0], path[1:]
    if head == "*":
        for item in node if isinstance(node, list) else []:
            _drop(item, rest)
        return
    if not isinstance(node, dict) or head not in node:
        return
    if rest:
        _drop(node[head], rest)
    else:
        del node[head]


def compute_for(compute: dict, api_version: str) -> dict:
    """The compute object as served at `api_version` (ISO dates compare as strings)."""
    unknown = set(compute) - set(COMPUTE_INTRODUCED)
    assert not unknown, f"vm.yaml has compute keys the table does not know: {sorted(unknown)}"
    out = {
        k: copy.deepcopy(v)
        for k, v in compute.items()
        if COMPUTE_INTRODUCED[k] <= api_version
    }
    for path, introduced in NESTED_INTRODUCED.items():
        if api_version < introduced:
            _drop(out, path)
    return out


def instance_for(instance: dict, api_version: str) -> dict:
    """The whole instance document (no `extended`) as served at `api_version`.

    The network schema is unchanged since 2017-04-02 (spec §2.4).
    """
    return {
        "compute": compute_for(instance["compute"], api_version),
        "network": copy.deepcopy(instance["network"]),
    }


def explain(actual, expected, path="") -> str:
    """Readable list of differences between two JSON values (for assert messages)."""
    lines = []

    def walk(a, e, p):
        if isinstance(a, dict) and isinstance(e, dict):
            for k in sorted(set(a) - set(e)):
                lines.append(f"unexpected key {p}/{k}")
            for k in sorted(set(e) - set(a)):
                lines.append(f"missing key    {p}/{k}")
            for k in sorted(set(a) & set(e)):
                walk(a[k], e[k], f"{p}/{k}")
        elif isinstance(a, list) and isinstance(e, list) and len(a) == len(e):
            for i, (x, y) in enumerate(zip(a, e)):
                walk(x, y, f"{p}/{i}")
        elif a != e or type(a) is not type(e):
            lines.append(f"value at {p or '/'}: got {a!r}, expected {e!r}")

    walk(actual, expected, path)
    return "\n".join(lines) or "no differences"
