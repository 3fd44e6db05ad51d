"""Attested documents (spec §7) checked by a Java relying party: BouncyCastle and java.security.

java/VerifyAttested.java is compiled with javac against Debian's BouncyCastle and Gson jars
(what Microsoft's imdssample.java builds on) and run inside the test namespace against the
live azimds: it fetches the document from 169.254.169.254 itself, verifies the CMS signer
with BouncyCastle, builds and validates the chain to the pinned CA with PKIX, and prints the
statement. Expected values come from vm.yaml, the spec (§7.3 validity, §7.5 leaf names) and
the README's recipe, never from azimds' output.
"""

import base64
import json
import secrets
import shutil
import string
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509

from conftest import HERE, _probe_env, _tail
from test_attested import _readme_block

# Not run by the conformance kit against other servers: needs the CA from azimds' control API, vm.yaml's VMs, PATCHes through it.
pytestmark = pytest.mark.azimds_only

SOURCE = HERE / "java" / "VerifyAttested.java"
JARS = [Path("/usr/share/java") / f"{name}.jar" for name in ("bcprov", "bcpkix", "bcutil", "gson")]
CONTROL_CA = "http://127.0.0.1:16926/attested/ca.pem"
# The "CA Issuers" URL azimds writes into its leaves by default (README, --attested-issuer-url).
ISSUER_URL = "http://169.254.169.254/metadata/attested/ca.cer?"
DOCUMENT_URL = "http://169.254.169.254/metadata/attested/document?api-version={}&nonce={}"
# bcgit/bc-java#1553: BouncyCastle's refusal of a signature OID as the digest algorithm.
BC_REFUSAL = "no such algorithm: 1.2.840.113549.1.1.11"


@pytest.fixture(scope="module")
def classpath(tmp_path_factory) -> str:
    missing = [str(jar) for jar in JARS if not jar.is_file()]
    assert not missing, f"{missing} not installed: run scripts/install-test-deps.sh"
    assert shutil.which("javac"), "javac not found: run scripts/install-test-deps.sh"
    classes = tmp_path_factory.mktemp("java-classes")
    jars = ":".join(map(str, JARS))
    built = subprocess.run(
        ["javac", "-Xlint:all,-path", "-Werror", "-cp", jars, "-d", str(classes), str(SOURCE)],
        capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    return f"{jars}:{classes}"


def _java(imds, classpath, *args, cwd=None):
    return subprocess.run(
        ["ip", "netns", "exec", imds.ns, "java", "-cp", classpath, "VerifyAttested", *args],
        capture_output=True, text=True, timeout=120, env=_probe_env(), cwd=cwd)


def _verified(imds, classpath, *args) -> dict:
    proc = _java(imds, classpath, *args)
    assert proc.returncode == 0, f"{proc.stderr}\n{_tail(imds.log())}"
    return json.loads(proc.stdout)


def _nonce() -> str:
    # §7.1: up to 32 alphanumeric characters.
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(32))


def _ca_subject(imds) -> str:
    status, pem = imds.control("GET", "/attested/ca.pem")
    assert status == 200, pem
    return x509.load_pem_x509_certificate(pem.encode()).subject.rfc4514_string()


def _check_validity(statement):
    created = datetime.fromisoformat(statement["createdOn"].replace("Z", "+00:00"))
    expires = datetime.fromisoformat(statement["expiresOn"].replace("Z", "+00:00"))
    assert expires - created == timedelta(hours=6)  # §7.3, real captures
    assert abs(datetime.now(timezone.utc) - created) < timedelta(minutes=5)


def test_public_cloud_document_verifies_with_bouncycastle(imds, vm, classpath):
    compute = vm["compute"]
    # imdssample.java's version and nonce, then the newest version with a 32-character nonce.
    for api_version, nonce in (("2019-03-11", "123456"), ("2025-04-07", _nonce())):
        statement = _verified(
            imds, classpath, CONTROL_CA, DOCUMENT_URL.format(api_version, nonce), nonce)
        assert statement["nonce"] == nonce
        assert statement["vmId"] == compute["vmId"]
        if api_version >= "2019-04-30":  # §7.3: subscriptionId since 2019-04-30
            assert statement["subscriptionId"] == compute["subscriptionId"]
        else:
            assert "subscriptionId" not in statement
        _check_validity(statement)
        assert statement["signer"] == "CN=metadata.azure.com"  # §7.5
        assert statement["signerDnsNames"] == [
            f"{compute['location']}.metadata.azure.com", "metadata.azure.com"]
        assert statement["anchor"] == _ca_subject(imds)
        assert statement["pathLength"] == 1  # the leaf alone: the CA is the anchor
        # The JDK's own PKCS#7 parser (imdssample.java's step) finds only the leaf (§7.4).
        assert statement["jdkCertificates"] == 1


def test_the_issuer_url_serves_the_ca_java_verifies_against(imds, vm, classpath):
    nonce = _nonce()
    statement = _verified(
        imds, classpath, ISSUER_URL, DOCUMENT_URL.format("2021-02-01", nonce), nonce)
    assert statement["vmId"] == vm["compute"]["vmId"]
    assert statement["nonce"] == nonce


@pytest.mark.parametrize("location, environment, signer, domain", [
    # §7.5: the government leaf names its organisation; RFC 2253 order is the reverse of DER's.
    ("usgovvirginia", "AzureUSGovernmentCloud",
     "CN=metadata.azure.us,O=Microsoft Corporation,L=Redmond,ST=WA,C=US", "metadata.azure.us"),
    ("chinanorth3", "AzureChinaCloud", "CN=metadata.azure.cn", "metadata.azure.cn"),
])
def test_other_clouds_verify_with_their_leaf(imds, vm, classpath, location, environment, signer,
                                              domain):
    status, body = imds.control("GET", "/v1/vms")
    [vm_id] = [v["id"] for v in body["vms"]]
    compute = vm["compute"]
    moved = {"instance": {"compute": {"location": location, "azEnvironment": environment}}}
    status, body = imds.control("PATCH", f"/v1/vms/{vm_id}", moved)
    assert status == 200, body
    try:
        nonce = _nonce()
        statement = _verified(
            imds, classpath, CONTROL_CA, DOCUMENT_URL.format("2025-04-07", nonce), nonce)
    finally:
        back = {"instance": {"compute": {
            "location": compute["location"], "azEnvironment": compute["azEnvironment"]}}}
        status, body = imds.control("PATCH", f"/v1/vms/{vm_id}", back)
        assert status == 200, body
    assert statement["nonce"] == nonce
    assert statement["vmId"] == compute["vmId"]
    assert statement["subscriptionId"] == compute["subscriptionId"]
    _check_validity(statement)
    assert statement["signer"] == signer
    assert statement["signerDnsNames"] == [f"{location}.{domain}", domain]
    assert statement["anchor"] == _ca_subject(imds)


def test_tampered_documents_and_wrong_anchors_are_refused(imds, vm, classpath, tmp_path):
    nonce = _nonce()
    fetched = imds.exec_in_ns(
        "curl", "-sf", "-H", "Metadata: true", DOCUMENT_URL.format("2025-04-07", nonce))
    assert fetched.returncode == 0, fetched.stderr
    document = json.loads(fetched.stdout)
    status, ca_pem = imds.control("GET", "/attested/ca.pem")
    assert status == 200
    (tmp_path / "ca.pem").write_text(ca_pem + "\n")
    (tmp_path / "document.json").write_text(json.dumps(document))
    run = lambda *args: _java(imds, classpath, *args, cwd=tmp_path)  # noqa: E731

    good = run("ca.pem", "document.json", nonce)
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)["vmId"] == vm["compute"]["vmId"]

    der = base64.b64decode(document["signature"])

    def variant(name, changed: bytes):
        (tmp_path / name).write_text(json.dumps(
            {**document, "signature": base64.b64encode(changed).decode()}))
        return run("ca.pem", name, nonce)

    # The DER ends with the SignerInfo's RSA signature (no unsigned attributes, §7.4).
    flipped = variant("flipped.json", der[:-1] + bytes([der[-1] ^ 1]))
    assert flipped.returncode == 1
    assert "the signature does not match the content" in flipped.stderr, flipped.stderr
    vm_id = vm["compute"]["vmId"].encode()
    assert der.count(vm_id) == 1
    other_id = vm_id[:-1] + (b"0" if vm_id[-1:] != b"0" else b"1")
    modified = variant("modified.json", der.replace(vm_id, other_id))
    assert modified.returncode == 1
    assert "the signature does not match the content" in modified.stderr, modified.stderr

    # Not the nonce sent.
    wrong_nonce = run("ca.pem", "document.json", nonce[::-1])
    assert wrong_nonce.returncode == 1
    assert "not the nonce you sent" in wrong_nonce.stderr, wrong_nonce.stderr

    # Another CA with the same name: PKIX finds no path to it.
    other = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "other.key",
         "-out", "other.pem", "-days", "1", "-subj", "/CN=azimds Attestation Root CA"],
        cwd=tmp_path, capture_output=True, timeout=60)
    assert other.returncode == 0, other.stderr
    wrong_ca = run("other.pem", "document.json", nonce)
    assert wrong_ca.returncode == 1
    assert "CertPathBuilderException" in wrong_ca.stderr, wrong_ca.stderr

    # Stock BouncyCastle on the SignedData as Azure shapes it (§7.4's digest OID quirk).
    strict = run("--strict", "ca.pem", "document.json", nonce)
    assert strict.returncode == 1
    assert BC_REFUSAL in strict.stderr, strict.stderr


def test_readme_java_recipe(imds, vm, tmp_path):
    fetch = _readme_block("sh", "# 1. In the VM")
    java = _readme_block("sh", "# Java: VerifyAttested.java")
    shutil.copy(SOURCE, tmp_path / "VerifyAttested.java")
    # The openssl recipe leaves document.json and azimds-ca.pem; the Java one reads them.
    for recipe in (fetch, java):
        proc = subprocess.run(
            ["ip", "netns", "exec", imds.ns, "bash", "-euo", "pipefail", "-c", recipe],
            cwd=tmp_path, capture_output=True, text=True, timeout=300, env=_probe_env())
        assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    statement = json.loads(proc.stdout)
    assert statement["vmId"] == vm["compute"]["vmId"]
    assert statement["subscriptionId"] == vm["compute"]["subscriptionId"]
    assert statement["nonce"] == "1234567890"
