"""Attested documents (spec §7) as relying parties inside the VM check them.

* Microsoft's IMDSSample.py (probes/imds_sample_probe.py, re-expressed call for call): the
  instance call, the attested call, the substring nonce check on the decoded signature, and
  the certificate steps: openssl extracts the signer, the "CA Issuers" URL is read from
  `openssl x509 -text` and downloaded (from the guest listener, with the line's newline
  still on it), converted from DER, and (our addition) verified against the signer.
* The README's two verification recipes, taken from README.md and run unmodified: stock
  openssl against /attested/ca.pem, and Python `cryptography` (with asn1crypto for the CMS
  structure). The values are checked against vm.yaml, nothing copied from azimds.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

from conftest import PROBES, REPO, _probe_env, _tail
import pytest

# Not run by the conformance kit against other servers: needs the CA from azimds' control API, vm.yaml's vmId.
pytestmark = pytest.mark.azimds_only

README = REPO / "README.md"


def _run_in_ns(imds, args, cwd, timeout=120, env=None):
    return subprocess.run(
        ["ip", "netns", "exec", imds.ns, *args], cwd=cwd, capture_output=True, text=True,
        timeout=timeout, env=env or _probe_env(),
    )


def _readme_block(language: str, first_line: str) -> str:
    """The fenced block of README.md in `language` whose first line is `first_line`."""
    text = README.read_text()
    for match in re.finditer(r"```" + language + r"\n(.*?)```", text, re.S):
        if match.group(1).startswith(first_line):
            return match.group(1)
    raise AssertionError(f"README.md has no ```{language} block starting {first_line!r}")


def _decoded_content(der: bytes, workdir: Path) -> dict:
    (workdir / "check.der").write_bytes(der)
    out = subprocess.run(
        ["openssl", "smime", "-verify", "-noverify", "-inform", "DER", "-in", "check.der"],
        cwd=workdir, capture_output=True, timeout=30,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _run_sample(imds, tmp_path, api_version):
    workdir = tmp_path / api_version
    workdir.mkdir()
    out = workdir / "out.json"
    proc = _run_in_ns(
        imds, [sys.executable, str(PROBES / "imds_sample_probe.py"), str(out), str(workdir),
               api_version], cwd=workdir)
    assert proc.returncode == 0, f"{_tail(proc.stderr)}\n{_tail(imds.log())}"
    return json.loads(out.read_text()), proc.stdout, workdir


def test_imds_sample_py_attested_part(imds, vm, tmp_path):
    # The revision read pins 2019-03-11; a later one sends 2021-02-01 (probe docstring).
    for api_version in ("2019-03-11", "2021-02-01"):
        trace, stdout, workdir = _run_sample(imds, tmp_path, api_version)
        assert trace["result"] == "completed"
        assert trace["instance"]["compute"]["vmId"] == vm["compute"]["vmId"]
        assert set(trace["attested"]) == {"encoding", "signature"}
        assert trace["attested"]["encoding"] == "pkcs7"
        # The sample's own check: its nonce is a substring of the decoded DER (attached content).
        assert trace["nonce_found"] is True
        assert "Nonce values match." in stdout
        # And the vmId the relying party reads from it is the VM's.
        der = (workdir / "decoded_signature").read_bytes()
        content = _decoded_content(der, workdir)
        assert content["nonce"] == "1234576"
        assert content["vmId"] == vm["compute"]["vmId"]
        expected = {"nonce", "plan", "timeStamp", "vmId"}
        if api_version >= "2019-04-30":
            expected.add("subscriptionId")
        if api_version >= "2019-11-01":
            expected.add("sku")
        if api_version >= "2020-09-01":
            expected.add("licenseType")
        assert set(content) == expected, content
        # The certificate steps: signer extracted, issuer found at its AIA URL and downloaded.
        info = (workdir / "cert_info").read_text()
        assert "Subject: CN = metadata.azure.com" in info
        assert f"DNS:{vm['compute']['location']}.metadata.azure.com" in info
        assert trace["intermediate_cert_url"] == (
            "http://169.254.169.254/metadata/attested/ca.cer?\n")
        assert trace["intermediate_request_url"].endswith("/metadata/attested/ca.cer?%0A")
        assert trace["intermediate_status"] == 200
        status, ca_pem = imds.control("GET", "/attested/ca.pem")
        assert status == 200
        assert (workdir / "intermediate.pem").read_text().strip() == ca_pem.strip()
        verify = subprocess.run(
            ["openssl", "verify", "-CAfile", "intermediate.pem", "signer.pem"], cwd=workdir,
            capture_output=True, text=True, timeout=30)
        assert verify.stdout == "signer.pem: OK\n", verify.stderr
        # The sample's Baltimore check cannot pass with any CA but Microsoft's (spec §7.6).
        assert trace["baltimore_verify_exit"] != 0


def test_readme_openssl_recipe(imds, vm, tmp_path):
    recipe = _readme_block("sh", "# 1. In the VM")
    proc = _run_in_ns(imds, ["bash", "-euo", "pipefail", "-c", recipe], cwd=tmp_path)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    assert "Verification successful" in proc.stderr
    content = json.loads((tmp_path / "content.json").read_text())
    assert content["vmId"] == vm["compute"]["vmId"]
    assert content["subscriptionId"] == vm["compute"]["subscriptionId"]
    assert content["nonce"] == "1234567890"


def test_readme_python_cryptography_recipe(imds, vm, tmp_path):
    recipe = _readme_block("python", "# verify_attested.py")
    (tmp_path / "verify_attested.py").write_text(recipe)
    # The document and the CA, fetched as the recipe's text says: in the VM, and from the
    # control listener (no token).
    fetch = (
        "import sys, urllib.request\n"
        "req = urllib.request.Request('http://169.254.169.254/metadata/attested/document"
        "?api-version=2025-04-07&nonce=' + sys.argv[1], headers={'Metadata': 'true'})\n"
        "open('document.json', 'wb').write(urllib.request.urlopen(req).read())\n"
        "open('azimds-ca.pem', 'wb').write(urllib.request.urlopen("
        "'http://127.0.0.1:16926/attested/ca.pem').read())\n"
    )
    proc = _run_in_ns(imds, [sys.executable, "-c", fetch, "a1b2c3"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    run = lambda *args: _run_in_ns(  # noqa: E731
        imds, [sys.executable, "verify_attested.py", *args], cwd=tmp_path)
    good = run("azimds-ca.pem", "document.json", "a1b2c3")
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout) == {
        "vmId": vm["compute"]["vmId"],
        "subscriptionId": vm["compute"]["subscriptionId"],
        "nonce": "a1b2c3",
    }
    # A wrong nonce, another CA, and a flipped signature byte are all refused.
    assert run("azimds-ca.pem", "document.json", "other").returncode != 0
    other = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "o.key",
         "-out", "other.pem", "-days", "1", "-subj", "/CN=azimds Attestation Root CA"],
        cwd=tmp_path, capture_output=True, timeout=60)
    assert other.returncode == 0, other.stderr
    assert run("other.pem", "document.json", "a1b2c3").returncode != 0
    document = json.loads((tmp_path / "document.json").read_text())
    import base64
    der = bytearray(base64.b64decode(document["signature"]))
    der[-1] ^= 1
    document["signature"] = base64.b64encode(bytes(der)).decode()
    (tmp_path / "flipped.json").write_text(json.dumps(document))
    flipped = run("azimds-ca.pem", "flipped.json", "a1b2c3")
    assert flipped.returncode != 0
    assert "InvalidSignature" in flipped.stderr, flipped.stderr
