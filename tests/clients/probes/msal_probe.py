"""Run MSAL Python's ManagedIdentityClient, unmodified, inside the test namespace where
azimds serves 169.254.169.254:80. Usage: msal_probe.py OUT.json WORKDIR

Cases: system-assigned and user-assigned by client id, object id and resource id. Each case
records the access token and expires_in, or MSAL's error dict.
"""

import json
import logging
import sys

from identity_common import RESOURCE, first_user_assigned, scrub_azure_env


def main() -> None:
    out_path = sys.argv[1]
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    scrub_azure_env()
    import msal
    import requests

    user = first_user_assigned()
    cases = {
        "system": msal.SystemAssignedManagedIdentity(),
        "client_id": msal.UserAssignedManagedIdentity(client_id=user["clientId"]),
        "object_id": msal.UserAssignedManagedIdentity(object_id=user["objectId"]),
        "resource_id": msal.UserAssignedManagedIdentity(resource_id=user["resourceId"]),
    }
    results = {}
    for name, identity in cases.items():
        client = msal.ManagedIdentityClient(identity, http_client=requests.Session())
        result = client.acquire_token_for_client(resource=RESOURCE)
        if "access_token" in result:
            results[name] = {
                "token": result["access_token"],
                "expires_in": result.get("expires_in"),
                "token_source": result.get("token_source"),
            }
        else:
            results[name] = {"error": result}
    with open(out_path, "w", encoding="utf-8") as fh:
        json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
