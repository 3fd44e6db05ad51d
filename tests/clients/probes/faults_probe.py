"""Run one real client, unmodified, while azimds injects Azure's failures (issue 10).
Usage: faults_probe.py OUT.json WORKDIR CASE

Cases (the test sets the fault rule before and clears it after):
  azure_identity   ManagedIdentityCredential().get_token(): rides out 410 (IMDS updating).
  cloud_init       cloud-init's get_metadata_from_imds(retries=6): rides out 429 and 500.
  waagent_gone     WALinuxAgent's ImdsClient under 410: validate() reports IMDS unhealthy.
  waagent_throttled  WALinuxAgent's ImdsClient under 429: get_compute() retries and succeeds.
Each records what the client returned or raised, and how long it took.
"""

import json
import logging
import os
import sys
import time


def azure_identity(_workdir: str) -> dict:
    from identity_common import SCOPE, scrub_azure_env

    scrub_azure_env()
    from azure.identity import ManagedIdentityCredential

    token = ManagedIdentityCredential().get_token(SCOPE)
    return {"token": token.token, "expires_on": token.expires_on}


def cloud_init(_workdir: str) -> dict:
    from cloudinit.sources import DataSourceAzure as dsaz

    md = dsaz.get_metadata_from_imds(retries=6, md_type=dsaz.MetadataType.ALL, api_version=dsaz.IMDS_VER_MIN)
    return {"imds_md": md}


def _waagent(workdir: str):
    from azurelinuxagent.common import logger
    from azurelinuxagent.common.protocol import imds

    logger.add_logger_appender(
        logger.AppenderType.FILE, logger.LogLevel.VERBOSE, path=os.path.join(workdir, "waagent.log")
    )
    return imds.get_imds_client("127.0.0.1")


def waagent_gone(workdir: str) -> dict:
    client = _waagent(workdir)
    healthy, error = client.validate()
    try:
        client.get_compute()
        compute_error = None
    except Exception as exc:  # noqa: BLE001 - reported to the test
        compute_error = f"{type(exc).__name__}: {exc}"
    return {"validate": {"healthy": healthy, "error": error}, "compute_error": compute_error}


def waagent_throttled(workdir: str) -> dict:
    from azurelinuxagent.common.datacontract import get_properties

    compute = _waagent(workdir).get_compute()
    return {"compute": get_properties(compute)}


CASES = {
    "azure_identity": azure_identity,
    "cloud_init": cloud_init,
    "waagent_gone": waagent_gone,
    "waagent_throttled": waagent_throttled,
}


def main() -> None:
    out_path, workdir, case = sys.argv[1], sys.argv[2], sys.argv[3]
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    started = time.monotonic()
    try:
        result = CASES[case](workdir)
    except Exception as exc:  # noqa: BLE001 - reported to the test
        result = {"error": f"{type(exc).__name__}: {exc}"}
    result["seconds"] = time.monotonic() - started
    with open(out_path, "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
