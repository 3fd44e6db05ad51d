"""cloud-init's pre-provisioned-pool poll (Debian's cloud-init 22.4.2), unmodified.

Executed by test_reprovision.py inside the test network namespace, where azimds listens on
169.254.169.254:80. Usage: cloud_init_reprovision_probe.py OUT.json WORKDIR

A pooled VM's cloud-init reads IMDS (`get_imds_data_with_api_fallback`), decides its
pre-provisioning type from `extended.compute.ppsType` (`_determine_pps_type`), reports ready
to WireServer, waits for the NIC to be switched to the customer's network, then calls
`_reprovision()`: `_poll_imds()` polls
  GET /metadata/reprovisiondata?api-version=2019-06-01   (Metadata: true, 2 s timeout)
once a second, keeping on through 404 and 410, until a 2xx with a body, and parses that body
with read_azure_ovf (the OVF environment).

Outside Azure there is no WireServer and no NIC switch, so this probe starts where cloud-init
is after a reboot that follows them: the `reported_ready` marker exists (cloud-init then skips
report-ready and the netlink wait, DataSourceAzure.py 1219-1221) and ephemeral networking is
up (a lease object on the datasource, as `_setup_ephemeral_networking` leaves it; here the
namespace's loopback already routes to IMDS). Everything from there on is cloud-init's code.
"""

import json
import logging
import os
import sys


class AlreadyUp:
    """What cloud-init's EphemeralDHCPv4 leaves after DHCP: a lease and an interface."""

    def __init__(self, trace):
        self.lease = {"interface": "lo", "fixed-address": "169.254.169.254"}
        self.iface = "lo"
        self.trace = trace

    def clean_network(self):
        # cloud-init tears the ephemeral network down after a failed poll (not a 404).
        self.trace["teardowns"] += 1
        self.lease = None


def main() -> None:
    out_path, workdir = sys.argv[1], sys.argv[2]
    from cloudinit import distros, helpers
    from cloudinit import version as ci_version
    from cloudinit.sources import DataSourceAzure as dsaz

    # cloudinit's import leaves the root logger with a NullHandler only: log to stderr after
    # it (the test reads cloud-init's own log to know it polled).
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s:%(name)s:%(message)s"))
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.DEBUG)

    paths = helpers.Paths({
        "cloud_dir": os.path.join(workdir, "var-lib-cloud"),
        "run_dir": os.path.join(workdir, "run-cloud-init"),
    })
    sys_cfg = {"datasource": {"Azure": {"data_dir": os.path.join(workdir, "waagent")}}}
    distro = distros.fetch("debian")("debian", {}, paths)
    ds = dsaz.DataSourceAzure(sys_cfg, distro, paths)
    trace = {"cloud_init_version": ci_version.version_string(), "teardowns": 0}

    imds_md = ds.get_imds_data_with_api_fallback(retries=2)
    trace["ppsType"] = imds_md["extended"]["compute"]["ppsType"]
    trace["pps_type"] = ds._determine_pps_type({}, imds_md).value

    os.makedirs(os.path.join(paths.cloud_dir, "data"), exist_ok=True)
    open(ds._reported_ready_marker_file, "w").close()
    ds._ephemeral_dhcp_ctx = AlreadyUp(trace)
    print("polling reprovisiondata", file=sys.stderr, flush=True)

    md, ud, cfg, files = ds._reprovision()
    trace["polls"] = ds.imds_poll_counter
    trace["metadata"] = md
    trace["cfg"] = cfg
    trace["ovf_env"] = files["ovf-env.xml"].decode("utf-8")
    with open(out_path, "w", encoding="utf-8") as fh:
        json.dump(trace, fh, indent=1, sort_keys=True, default=str)


if __name__ == "__main__":
    main()
