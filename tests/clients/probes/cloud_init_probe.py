"""Run cloud-init's Azure IMDS fetch and parse code (Debian package), unmodified.

Executed by conftest.py inside the test network namespace, where azimds
listens on 169.254.169.254:80. Usage: cloud_init_probe.py OUT.json WORKDIR

cloud-init 22.4 (cloudinit/sources/DataSourceAzure.py) fetches
  GET /metadata/instance?api-version=2021-08-01&extended=true
(get_imds_data_with_api_fallback -> get_metadata_from_imds), and on a 400
falls back to
  GET /metadata/instance?api-version=2019-06-01
with `Metadata: true`. When a NIC is hot-attached it fetches
  GET /metadata/instance/network?api-version=2019-06-01.
crawl_metadata() itself only calls IMDS once it has brought up DHCP on a real
NIC, so this probe calls the same functions crawl_metadata() and _get_data()
call, in the same order, and then the DataSource's public accessors.
"""

import base64
import json
import logging
import os
import sys


def main() -> None:
    out_path, workdir = sys.argv[1], sys.argv[2]
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)

    from cloudinit import distros, helpers, util
    from cloudinit import version as ci_version
    from cloudinit.sources import DataSourceAzure as dsaz
    from cloudinit.sources.helpers.azure import build_minimal_ovf

    paths = helpers.Paths(
        {
            "cloud_dir": os.path.join(workdir, "var-lib-cloud"),
            "run_dir": os.path.join(workdir, "run-cloud-init"),
            "docs_dir": os.path.join(workdir, "docs"),
            "templates_dir": os.path.join(workdir, "templates"),
        }
    )
    # data_dir is where cloud-init writes ovf-env.xml (default /var/lib/waagent).
    sys_cfg = {"datasource": {"Azure": {"data_dir": os.path.join(workdir, "waagent")}}}
    distro = distros.fetch("debian")("debian", {}, paths)
    ds = dsaz.DataSourceAzure(sys_cfg, distro, paths)

    result = {
        "cloud_init_version": ci_version.version_string(),
        "imds_ver_want": dsaz.IMDS_VER_WANT,
        "imds_ver_min": dsaz.IMDS_VER_MIN,
    }

    # --- fetch: what crawl_metadata() does once networking is up ---------
    imds_md = ds.get_imds_data_with_api_fallback(retries=2)
    result["imds_md"] = imds_md

    # The fallback request (what cloud-init sends after a 400), made directly.
    result["imds_md_min"] = dsaz.get_metadata_from_imds(
        retries=2, md_type=dsaz.MetadataType.ALL, api_version=dsaz.IMDS_VER_MIN
    )
    # The network-only request used while waiting for hot-attached NICs.
    result["imds_network_min"] = dsaz.get_metadata_from_imds(
        retries=2, md_type=dsaz.MetadataType.NETWORK, api_version=dsaz.IMDS_VER_MIN
    )

    # --- parse: crawl_metadata() ------------------------------------------
    result["pps_type"] = ds._determine_pps_type({}, imds_md).value
    result["ppstype_from_imds"] = ds._ppstype_from_imds(imds_md)
    result["network_metadata_valid"] = ds.validate_imds_network_metadata(imds_md=imds_md)

    username = dsaz._username_from_imds(imds_md)
    hostname = dsaz._hostname_from_imds(imds_md)
    disable_password = dsaz._disable_password_from_imds(imds_md)
    result["username"] = username
    result["hostname"] = hostname
    result["disable_password"] = disable_password

    # With no provisioning ISO, crawl_metadata() builds a minimal
    # ovf-env.xml from these IMDS values and caches it; later boots parse it.
    ovf = build_minimal_ovf(
        username=username, hostname=hostname, disableSshPwd=disable_password
    )
    ovf_md, _ovf_ud, ovf_cfg = dsaz.read_azure_ovf(ovf)
    result["ovf_md"] = ovf_md
    result["ovf_cfg"] = ovf_cfg

    imds_userdata = dsaz._userdata_from_imds(imds_md)
    userdata_raw = b""
    if imds_userdata:
        userdata_raw = base64.b64decode("".join(imds_userdata.split()))
    result["userdata_raw_b64"] = base64.b64encode(userdata_raw).decode("ascii")

    # --- _get_data(): cache on the datasource, then the public accessors ---
    metadata = {"local-hostname": hostname, "imds": imds_md}
    if disable_password:
        metadata["disable_password"] = disable_password
    ds._metadata_imds = imds_md
    ds.metadata = util.mergemanydict([metadata, dsaz.DEFAULT_METADATA])
    ds.userdata_raw = userdata_raw

    result["region"] = ds.region
    result["availability_zone"] = ds.availability_zone
    result["public_ssh_keys"] = ds.get_public_ssh_keys()
    result["get_hostname"] = ds.get_hostname(metadata_only=True).hostname
    result["network_config"] = ds.network_config
    result["userdata_parts"] = [
        part.get_content_type() for part in ds.get_userdata().walk()
        if not part.is_multipart()
    ]

    with open(out_path, "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
