"""Every documented endpoint override of the clients in this suite (README "Endpoint
overrides"), with the real client: azimds on 127.0.0.1:PORT, started on port 0 and found
through its ready line, in a network namespace of its own that has no 169.254.169.254 at all,
so a token can only come through the override.

Verified in each client's own source (the versions pinned in requirements.txt and js/):
  azure-identity 1.27.0   azure/identity/_credentials/imds.py: AZURE_POD_IDENTITY_AUTHORITY_HOST
  MSAL Python 1.39.0      msal/managed_identity.py (_obtain_token_on_azure_vm): the same
  @azure/identity 4.14.1  dist/.../managedIdentityCredential/imdsMsi.js and msal-node 7.2.3
                          ManagedIdentitySources/Imds.mjs: the same
The other clients here (cloud-init, WALinuxAgent, OpenTelemetry, the azure_identity crate,
the scheduled-events sample) hard-code 169.254.169.254: they get the network-namespace recipe
the rest of this suite uses.
"""

import json
import os
import select
import subprocess
import sys
import uuid

import jwt
import pytest
import yaml

from conftest import PROBES, VM_FILE, _ip, _probe_env, _tail

AUDIENCE = "https://management.azure.com"
OVERRIDE = "AZURE_POD_IDENTITY_AUTHORITY_HOST"


@pytest.fixture(scope="module")
def isolated(tmp_path_factory):
    """azimds on 127.0.0.1:0 in a namespace with only loopback; yields (namespace, ready)."""
    binary = os.environ.get("AZIMDS_BIN")
    ns = f"azimds-ov-{uuid.uuid4().hex[:8]}"
    work = tmp_path_factory.mktemp("overrides")
    _ip("netns", "add", ns)
    proc = None
    try:
        _ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, binary, "serve", "--listen", "127.0.0.1:0",
             "--control", "127.0.0.1:0", "--vms", str(VM_FILE), "--rate-limit", "0",
             "--data", str(work / "data")],
            stdout=subprocess.PIPE, stderr=open(work / "azimds.log", "wb"), stdin=subprocess.DEVNULL)
        readable, _, _ = select.select([proc.stdout], [], [], 60)
        line = proc.stdout.readline() if readable else b""
        assert line, f"no ready line:\n{_tail((work / 'azimds.log').read_text())}"
        yield ns, json.loads(line), work
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)
        _ip("netns", "del", ns, check=False)


def run_probe(isolated, name: str) -> dict:
    ns, ready, work = isolated
    out = work / f"{name}.json"
    env = {**_probe_env(), OVERRIDE: f"http://{ready['guest'][0]}", "AZIMDS_PROBE_KEEP_ENV": OVERRIDE}
    proc = subprocess.run(["ip", "netns", "exec", ns, sys.executable, str(PROBES / f"{name}.py"),
                           str(out), str(work)], capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0, _tail(proc.stderr)
    return json.loads(out.read_text())


def verify(isolated, token: str) -> dict:
    """The token's claims, its signature checked with the isolated azimds' published keys."""
    ns, ready, _ = isolated
    keys = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c",
         "import sys, urllib.request; o = urllib.request.build_opener(urllib.request.ProxyHandler({}));"
         "print(o.open(sys.argv[1], timeout=10).read().decode())",
         f"http://{ready['control']}/common/discovery/keys"],
        capture_output=True, text=True, timeout=30, check=True, env=_probe_env()).stdout
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(k for k in json.loads(keys)["keys"] if k["kid"] == kid)
    aud = jwt.decode(token, options={"verify_signature": False})["aud"]
    assert aud.rstrip("/") == AUDIENCE
    return jwt.decode(token, jwt.PyJWK(key).key, algorithms=["RS256"], audience=aud)


def identity(case: str) -> dict:
    with open(VM_FILE, encoding="utf-8") as fh:
        identities = yaml.safe_load(fh)["vms"][0]["identities"]
    if case in ("system", "default_credential"):
        return identities["systemAssigned"]
    return identities["userAssigned"][0]


@pytest.mark.parametrize("probe, cases", [
    ("azure_identity_probe", ["system", "client_id", "object_id", "resource_id", "default_credential"]),
    ("msal_probe", ["system", "client_id", "object_id", "resource_id"]),
    ("azure_identity_js_probe", ["system", "client_id", "object_id", "resource_id", "default_credential"]),
])
def test_azure_pod_identity_authority_host_redirects_the_sdk(isolated, probe, cases):
    results = run_probe(isolated, probe)
    errors = {case: r["error"] for case, r in results.items() if "error" in r}
    assert not errors, errors
    for case in cases:
        claims = verify(isolated, results[case]["token"])
        want = identity(case)
        assert (claims["appid"], claims["oid"]) == (want["clientId"], want["objectId"]), case
