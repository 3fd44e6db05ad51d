"""cloud-init's Azure datasource (Debian package cloud-init, cloudinit/sources/DataSourceAzure.py).

Fetch: GET /metadata/instance?api-version=2021-08-01&extended=true
(fallback on 400: 2019-06-01; network-only: /metadata/instance/network),
`Metadata: true`. Parse: osProfile -> default user / hostname / ssh_pwauth,
publicKeys -> SSH keys, userData -> user data, location -> region,
platformFaultDomain -> availability zone, network -> netplan v2 config.
"""

import base64

import pytest

from imds_schema import explain, instance_for


@pytest.fixture(scope="module")
def ci(imds) -> dict:
    return imds.run_probe("cloud_init_probe")


def _without_extended(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k != "extended"}


# ------------------------------------------------------------------ fetch
def test_fetch_wanted_version_returns_vm_document(ci, vm):
    assert ci["imds_md"], "cloud-init got no IMDS data (request failed; see azimds log)"
    got, want = _without_extended(ci["imds_md"]), instance_for(vm, ci["imds_ver_want"])
    assert got == want, explain(got, want)


def test_fetch_wanted_version_has_extended_block(ci):
    # extended=true (>= 2021-03-01) adds extended.compute{hasCustomData,ppsType};
    # cloud-init reads ppsType. A VM without pre-provisioning has "None".
    assert ci["imds_md"].get("extended") == {
        "compute": {"hasCustomData": False, "ppsType": "None"}
    }


def test_fallback_version_returns_vm_document(ci, vm):
    got, want = ci["imds_md_min"], instance_for(vm, ci["imds_ver_min"])
    assert got == want, explain(got, want)


def test_network_subpath_returns_vm_network(ci, vm):
    assert ci["imds_network_min"] == vm["network"], explain(ci["imds_network_min"], vm["network"])


# ------------------------------------------------------------------ parse
def test_os_profile(ci, vm):
    os_profile = vm["compute"]["osProfile"]
    disable = os_profile["disablePasswordAuthentication"] == "true"
    assert ci["username"] == os_profile["adminUsername"]
    assert ci["hostname"] == os_profile["computerName"]
    assert ci["disable_password"] is disable
    assert ci["get_hostname"] == os_profile["computerName"]


def test_minimal_ovf_built_from_imds(ci, vm):
    os_profile = vm["compute"]["osProfile"]
    assert ci["ovf_md"] == {"local-hostname": os_profile["computerName"]}
    assert ci["ovf_cfg"]["system_info"] == {"default_user": {"name": os_profile["adminUsername"]}}
    assert ci["ovf_cfg"]["ssh_pwauth"] is (os_profile["disablePasswordAuthentication"] != "true")


def test_public_ssh_keys(ci, vm):
    assert ci["public_ssh_keys"] == [k["keyData"] for k in vm["compute"]["publicKeys"]]


def test_user_data(ci, vm):
    expected = base64.b64decode(vm["compute"]["userData"])
    assert base64.b64decode(ci["userdata_raw_b64"]) == expected
    if expected.startswith(b"#cloud-config"):
        assert ci["userdata_parts"] == ["text/cloud-config"]


def test_region_and_availability_zone(ci, vm):
    assert ci["region"] == vm["compute"]["location"]
    assert ci["availability_zone"] == vm["compute"]["platformFaultDomain"]


def test_pps_type_none(ci):
    assert ci["ppstype_from_imds"] == "None"
    assert ci["pps_type"] == "None"


def test_network_metadata_validates(ci):
    assert ci["network_metadata_valid"] is True


def expected_netplan(network: dict) -> dict:
    """netplan v2 config cloud-init derives from IMDS network (spec §3.5):
    one ethN per NIC with an address, matched by lower-case colon MAC, DHCP on
    the first IPv4/IPv6 address, the others as static ip/prefix, route
    metric 100 * (N + 1)."""
    ethernets = {}
    for idx, nic in enumerate(network["interface"]):
        name = f"eth{idx}"
        metric = {"route-metric": (idx + 1) * 100}
        cfg = {"dhcp4": True, "dhcp4-overrides": metric, "dhcp6": False}
        addresses = []
        has_address = False
        for family in ("ipv4", "ipv6"):
            ips = nic.get(family, {}).get("ipAddress", [])
            if not ips:
                continue
            has_address = True
            if family == "ipv6":
                cfg["dhcp6"] = True
                cfg["dhcp6-overrides"] = metric
            for ip in ips[1:]:
                prefix = nic[family]["subnet"][0]["prefix"]
                addresses.append(f"{ip['privateIpAddress']}/{prefix}")
        if not has_address:
            continue
        if addresses:
            cfg["addresses"] = addresses
        mac = nic["macAddress"].lower()
        cfg["match"] = {"macaddress": ":".join(mac[i:i + 2] for i in range(0, 12, 2))}
        cfg["set-name"] = name
        ethernets[name] = cfg
    return {"version": 2, "ethernets": ethernets}


def test_network_config_from_imds(ci, vm):
    want = expected_netplan(vm["network"])
    assert ci["network_config"] == want, explain(ci["network_config"], want)
