"""Managed identity with real SDKs: azure-identity (Python), MSAL Python, @azure/identity
(npm) and the azure_identity Rust crate, each unmodified in the namespace where azimds is
169.254.169.254:80.

For every token a client returns, the test checks that azimds issued it, for the right
identity: the RS256 signature verifies against the JWKS azimds publishes on its control
listener (PyJWT, as a relying party would), issuer, audience and tenant are right, the
oid/appid/xms_mirid claims are the selected identity's from vm.yaml, and asking azimds
directly for that identity and audience returns the very same (cached) token.
"""

import json
import sys

import jwt
import pytest
import yaml

from conftest import VM_FILE

CONTROL = "http://127.0.0.1:16926"  # azimds' default control listener, inside the namespace
SCOPE_RESOURCE = "https://management.azure.com"


@pytest.fixture(scope="module")
def identities() -> dict:
    with open(VM_FILE, encoding="utf-8") as fh:
        return yaml.safe_load(fh)["vms"][0]["identities"]


def _fetch_in_ns(imds, url: str, headers: dict) -> tuple[int, str]:
    script = (
        "import json, sys, urllib.request, urllib.error\n"
        "req = urllib.request.Request(sys.argv[1], headers=json.loads(sys.argv[2]))\n"
        "opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))\n"
        "try:\n"
        "    r = opener.open(req, timeout=10); print(r.status); print(r.read().decode())\n"
        "except urllib.error.HTTPError as e:\n"
        "    print(e.code); print(e.read().decode())\n"
    )
    proc = imds.exec_in_ns(sys.executable, "-c", script, url, json.dumps(headers))
    assert proc.returncode == 0, proc.stderr
    status, _, body = proc.stdout.partition("\n")
    return int(status), body.rstrip("\n")


@pytest.fixture(scope="module")
def jwks(imds) -> dict:
    status, body = _fetch_in_ns(imds, f"{CONTROL}/common/discovery/keys", {})
    assert status == 200, body
    keys = json.loads(body)
    assert keys["keys"] and all("d" not in k for k in keys["keys"]), "public keys only"
    return keys


def expected(identities: dict, case: str) -> dict:
    """The identity a case must get: system-assigned by default, else the first user-assigned."""
    if case in ("system", "default_credential"):
        sys_id = identities["systemAssigned"]
        vm_res = yaml.safe_load(open(VM_FILE, encoding="utf-8"))["vms"][0]["instance"]["compute"]["resourceId"]
        return {"clientId": sys_id["clientId"], "objectId": sys_id["objectId"], "resourceId": vm_res, "selector": ""}
    user = identities["userAssigned"][0]
    return {**user, "selector": f"&client_id={user['clientId']}"}


def check_token(imds, jwks: dict, identities: dict, case: str, token: str) -> None:
    header = jwt.get_unverified_header(token)
    key = next((k for k in jwks["keys"] if k["kid"] == header["kid"]), None)
    assert key is not None, f"{case}: token kid {header['kid']} is not published"
    aud = jwt.decode(token, options={"verify_signature": False})["aud"]
    assert aud.rstrip("/") == SCOPE_RESOURCE, f"{case}: aud {aud}"
    claims = jwt.decode(
        token, jwt.PyJWK(key).key, algorithms=["RS256"], audience=aud,
        issuer=f"https://sts.windows.net/{identities['tenantId']}/",
        options={"require": ["exp", "nbf", "iat"]},
    )
    want = expected(identities, case)
    got = {k: claims[k] for k in ("appid", "oid", "sub", "tid", "xms_mirid")}
    assert got == {
        "appid": want["clientId"], "oid": want["objectId"], "sub": want["objectId"],
        "tid": identities["tenantId"], "xms_mirid": want["resourceId"],
    }, case
    # The very token azimds holds for this identity and audience (served from its cache).
    status, body = _fetch_in_ns(
        imds,
        "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01"
        f"&resource={aud}{want['selector']}",
        {"Metadata": "true"},
    )
    assert status == 200, body
    assert json.loads(body)["access_token"] == token, f"{case}: not the token azimds issued"


def run(imds, name: str) -> dict:
    out = imds.run_probe(name)
    errors = {case: r["error"] for case, r in out.items() if "error" in r}
    assert not errors, f"{name}: {errors}\n--- azimds log ---\n{imds.log()[-3000:]}"
    return out


@pytest.fixture(scope="module")
def python_sdk(imds) -> dict:
    return run(imds, "azure_identity_probe")


@pytest.fixture(scope="module")
def msal_python(imds) -> dict:
    return run(imds, "msal_probe")


@pytest.fixture(scope="module")
def js_sdk(imds) -> dict:
    return run(imds, "azure_identity_js_probe")


@pytest.fixture(scope="module")
def rust_sdk(imds) -> dict:
    return run(imds, "azure_identity_rust_probe")


PY_CASES = ["system", "client_id", "object_id", "resource_id", "default_credential"]
USER_CASES = ["system", "client_id", "object_id", "resource_id"]


@pytest.mark.azimds_only  # vm.yaml's identities, azimds' JWKS
@pytest.mark.parametrize("case", PY_CASES)
def test_azure_identity_python(imds, jwks, identities, python_sdk, case):
    check_token(imds, jwks, identities, case, python_sdk[case]["token"])
    assert python_sdk[case]["expires_on"] > 0


@pytest.mark.azimds_only  # vm.yaml's identities, azimds' JWKS
@pytest.mark.parametrize("case", USER_CASES)
def test_msal_python(imds, jwks, identities, msal_python, case):
    check_token(imds, jwks, identities, case, msal_python[case]["token"])
    assert int(msal_python[case]["expires_in"]) > 3600


@pytest.mark.azimds_only  # vm.yaml's identities, azimds' JWKS
@pytest.mark.parametrize("case", USER_CASES + ["default_credential"])
def test_azure_identity_js(imds, jwks, identities, js_sdk, case):
    check_token(imds, jwks, identities, case, js_sdk[case]["token"])
    assert js_sdk[case]["expiresOnTimestamp"] > 0


@pytest.mark.azimds_only  # vm.yaml's identities, azimds' JWKS
@pytest.mark.parametrize("case", USER_CASES)
def test_azure_identity_rust(imds, jwks, identities, rust_sdk, case):
    check_token(imds, jwks, identities, case, rust_sdk[case]["token"])
    assert rust_sdk[case]["expires_on"] > 0


def test_header_less_probe_is_a_fast_400(imds):
    for target in ["/metadata/identity/oauth2/token",
                   "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://management.azure.com/"]:
        status, body = _fetch_in_ns(imds, f"http://169.254.169.254{target}", {})
        assert (status, body) == (400, '{"error":"invalid_request","error_description":"Required metadata header not specified"}')
