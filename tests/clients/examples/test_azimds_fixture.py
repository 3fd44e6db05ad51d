"""docs/testing.md's Python example (kept identical to it by test_examples.py)."""
import json
import os
import subprocess
import urllib.request

import pytest
from azure.identity import ManagedIdentityCredential

AZIMDS = os.environ.get("AZIMDS_BIN", "azimds")


@pytest.fixture
def imds(tmp_path, monkeypatch):
    """azimds on a free port; yields its base URL once it is ready."""
    server = subprocess.Popen(
        [AZIMDS, "serve", "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0",
         "--data", str(tmp_path / "azimds")],
        stdout=subprocess.PIPE, text=True)
    ready = json.loads(server.stdout.readline())  # printed once it accepts connections
    url = f"http://{ready['guest'][0]}"
    # The Azure SDKs' (and MSAL's) managed-identity endpoint override.
    monkeypatch.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", url)
    yield url
    server.terminate()
    server.wait()


def metadata(url, path):
    request = urllib.request.Request(url + path, headers={"Metadata": "true"})
    with urllib.request.urlopen(request) as response:
        return json.load(response)


def test_reads_instance_metadata(imds):
    compute = metadata(imds, "/metadata/instance/compute?api-version=2021-02-01")
    assert compute["name"] == "azimds-demo"


def test_gets_a_managed_identity_token(imds):
    token = ManagedIdentityCredential().get_token("https://management.azure.com/.default")
    assert token.token.count(".") == 2  # a JWT, signed by azimds
