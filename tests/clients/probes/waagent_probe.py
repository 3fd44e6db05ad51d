"""Run WALinuxAgent's IMDS client (Debian package `waagent`), unmodified.

Executed by conftest.py inside the test network namespace, where azimds
listens on 169.254.169.254:80. Usage: waagent_probe.py OUT.json WORKDIR

azurelinuxagent.common.protocol.imds.ImdsClient (2.7.x) sends
  GET /metadata/instance/compute?api-version=2018-02-01   (get_compute)
  GET /metadata/instance?api-version=2018-02-01           (validate, health UA)
with the header `Metadata: True` (a Python bool, serialised as "True") and
`User-Agent: WALinuxAgent/<ver>` or `WALinuxAgent/<ver>+health`.
"""

import json
import os
import sys


def main() -> None:
    out_path, workdir = sys.argv[1], sys.argv[2]
    log_path = os.path.join(workdir, "waagent.log")

    from azurelinuxagent.common import logger
    from azurelinuxagent.common.datacontract import get_properties
    from azurelinuxagent.common.protocol import imds
    from azurelinuxagent.common.version import AGENT_VERSION

    # The agent's own logger, to a file: set_properties() warns
    # "Unknown property: compute.<key>" for every key it does not model, and
    # restutil logs each HTTP request/response at VERBOSE.
    logger.add_logger_appender(logger.AppenderType.FILE, logger.LogLevel.VERBOSE, path=log_path)

    # The argument is the WireServer address the client falls back to when
    # IMDS is unreachable. Loopback, so that a broken server never makes the
    # client send anything off this network namespace.
    client = imds.get_imds_client("127.0.0.1")

    result = {"agent_version": AGENT_VERSION, "api_version": imds.APIVERSION}

    compute = client.get_compute()
    result["compute"] = get_properties(compute)
    result["image_info"] = compute.image_info
    result["image_origin"] = compute.image_origin

    healthy, error = client.validate()
    result["validate"] = {"healthy": healthy, "error": error}

    for name, path, is_health in (
        ("compute", "instance/compute", False),
        ("instance", "instance", True),
    ):
        res = client.get_metadata(path, is_health=is_health)
        body = res.response
        if isinstance(body, bytes):
            body = body.decode("utf-8")
        result["raw_" + name] = {
            "success": res.success,
            "service_error": res.service_error,
            "body": body,
        }

    try:
        with open(log_path, encoding="utf-8") as fh:
            result["log"] = fh.read()
    except FileNotFoundError:
        result["log"] = ""

    with open(out_path, "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
