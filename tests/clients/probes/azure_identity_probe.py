"""Run azure-identity's (PyPI) ManagedIdentityCredential and DefaultAzureCredential,
unmodified, inside the test namespace where azimds serves 169.254.169.254:80.
Usage: azure_identity_probe.py OUT.json WORKDIR

Cases: system-assigned; user-assigned by client id, object id and resource id
(identity_config keys object_id and resource_id, as azure-identity 1.27 documents them); DefaultAzureCredential, whose IMDS probe is a
header-less request that must get a quick 400 (spec §5.6). Each case records the token and
expires_on, or the error text.
"""

import json
import logging
import sys

from identity_common import SCOPE, first_user_assigned, scrub_azure_env


def main() -> None:
    out_path = sys.argv[1]
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    scrub_azure_env()
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    user = first_user_assigned()
    cases = {
        "system": lambda: ManagedIdentityCredential(),
        "client_id": lambda: ManagedIdentityCredential(client_id=user["clientId"]),
        "object_id": lambda: ManagedIdentityCredential(identity_config={"object_id": user["objectId"]}),
        "resource_id": lambda: ManagedIdentityCredential(identity_config={"resource_id": user["resourceId"]}),
        "default_credential": lambda: DefaultAzureCredential(),
    }
    results = {}
    for name, make in cases.items():
        try:
            token = make().get_token(SCOPE)
            results[name] = {"token": token.token, "expires_on": token.expires_on}
        except Exception as exc:  # noqa: BLE001 - reported to the test
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
    with open(out_path, "w", encoding="utf-8") as fh:
        json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
