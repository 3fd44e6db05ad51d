"""The static binary (scripts/build-static.sh) runs in an empty root, and the container image
(packaging/Containerfile, FROM scratch, built by scripts/build-container.sh with buildah)
serves from its own root file system as its config says."""

import http.server
import json
import os
import queue
import shlex
import shutil
import subprocess
import threading
import urllib.request
from pathlib import Path

import jwt
import pytest

from conftest import REPO, which

# Only what finds chroot and ip on the host side; azimds itself gets no variables it reads.
CLEAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}


def get(url: str, headers=None) -> tuple:
    request = urllib.request.Request(url, headers=headers or {})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_the_binary_needs_no_shared_library(static_bin):
    dynamic = subprocess.run(["readelf", "-d", str(static_bin)], capture_output=True, text=True).stdout
    assert "NEEDED" not in dynamic, dynamic
    headers = subprocess.run(["readelf", "-l", str(static_bin)], capture_output=True, text=True).stdout
    assert "INTERP" not in headers, "a static binary has no program interpreter"


def test_it_serves_metadata_and_signed_tokens_from_an_empty_root(static_bin, tmp_path, start):
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(static_bin, root / "azimds")
    server = start(["chroot", str(root), "/azimds", "serve", "--listen", "127.0.0.1:0",
                    "--control", "127.0.0.1:0", "--data", "/data"],
                   env=CLEAN_ENV)
    guest = "http://" + server.ready["guest"][0]
    status, body = get(f"{guest}/metadata/instance/compute/name?api-version=2021-02-01&format=text",
                       {"Metadata": "true"})
    assert (status, body) == (200, b"azimds-demo")
    # RS256 signing with the statically linked OpenSSL, verified against the published keys.
    status, body = get(f"{guest}/metadata/identity/oauth2/token?api-version=2018-02-01"
                       "&resource=https%3A%2F%2Fmanagement.azure.com%2F", {"Metadata": "true"})
    assert status == 200, body
    token = json.loads(body)["access_token"]
    status, keys = get(f"http://{server.ready['control']}/common/discovery/keys")
    assert status == 200
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(k for k in json.loads(keys)["keys"] if k["kid"] == kid)
    claims = jwt.decode(token, jwt.PyJWK(key).key, algorithms=["RS256"],
                        audience="https://management.azure.com/")
    assert claims["idtyp"] == "app"
    assert server.close() == 0
    # Nothing but the binary and the state it made: no /etc, /lib, /tmp or /dev needed.
    assert sorted(p.name for p in root.iterdir()) == ["azimds", "data"]


def schedule_reboot(server, root) -> str:
    token = (root / "data" / "control-token").read_text().strip()
    request = urllib.request.Request(
        f"http://{server.ready['control']}/v1/events", method="POST",
        data=json.dumps({"type": "Reboot", "vms": ["azimds-demo"]}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=10) as response:
        assert response.status in (200, 201)
        return json.load(response)["id"]


def test_events_and_hooks_work_in_an_empty_root(static_bin, tmp_path, start):
    """Random event ids need getrandom(2) without /dev/urandom (build-static.sh's getrandom
    backend), and a hook's host name is found in /etc/hosts by glibc's static resolver; in
    a root without it the hook fails to resolve and says so (README "Static binary")."""
    received = queue.Queue()

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            received.put(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    hook = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    try:
        for with_hosts in (True, False):
            root = tmp_path / f"root-{with_hosts}"
            root.mkdir()
            shutil.copy(static_bin, root / "azimds")
            if with_hosts:
                (root / "etc").mkdir()
                (root / "etc" / "hosts").write_text("127.0.0.1 hook.example\n")
            server = start(["chroot", str(root), "/azimds", "serve", "--listen", "127.0.0.1:0",
                            "--control", "127.0.0.1:0", "--data", "/data",
                            "--event-hook", f"http://hook.example:{hook.server_port}/events"], env=CLEAN_ENV)
            event_id = schedule_reboot(server, root)
            if with_hosts:
                delivered = received.get(timeout=30)
                assert (delivered["event"]["id"], delivered["transition"]) == (event_id, "scheduled")
            else:
                assert server.wait_for_stderr("failure in name resolution", timeout=30)
                assert received.empty()
            assert server.close() == 0
    finally:
        hook.shutdown()


class Buildah:
    """buildah with a store of its own under the test's directory (vfs: no overlay mounts, no
    daemon): builds as `docker build` does, and gives the image's config and root file system."""

    def __init__(self, base: Path):
        self.base = base
        self.command = [which("buildah"), "--root", str(base / "root"), "--runroot", str(base / "run"),
                        "--storage-driver", "vfs"]

    def __call__(self, *args: str) -> str:
        result = subprocess.run([*self.command, *args], capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    def delete(self):
        subprocess.run([*self.command, "rm", "--all"], capture_output=True, timeout=60)
        subprocess.run([*self.command, "rmi", "--all", "--force"], capture_output=True, timeout=60)
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture
def buildah(tmp_path):
    builder = Buildah(tmp_path / "buildah")
    try:
        yield builder
    finally:
        builder.delete()


def test_the_container_image_serves_on_its_documented_port_and_volume(static_bin, buildah, netns, start):
    """scripts/build-container.sh builds the image; its root file system, run as the image's
    USER with its ENTRYPOINT + CMD in a network namespace set up as Docker sets one up
    (unprivileged ports allowed), serves on the port and keeps its state in the volume the
    Containerfile documents."""
    build = " ".join(shlex.quote(word) for word in [*buildah.command, "bud", "--isolation", "chroot"])
    built = subprocess.run(["bash", str(REPO / "scripts" / "build-container.sh"), "--binary", str(static_bin),
                            "--tag", "azimds-test"], env={**os.environ, "BUILD": build},
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0 and built.stdout.strip() == "azimds-test", built.stderr
    config = json.loads(buildah("inspect", "--type", "image", "azimds-test"))["OCIv1"]["config"]
    assert list(config["ExposedPorts"]) == ["80/tcp"] and list(config["Volumes"]) == ["/var/lib/azimds"]
    root = Path(buildah("mount", buildah("from", "--pull-never", "azimds-test")))
    # FROM scratch: the binary and the data directory, nothing else.
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*")) == \
        ["azimds", "var", "var/lib", "var/lib/azimds"]
    uid, gid = (int(n) for n in config["User"].split(":"))
    volume = root / "var" / "lib" / "azimds"
    assert volume.stat().st_uid == uid
    # Docker's network namespace lets any user bind port 80.
    netns.run("sysctl", "-qw", "net.ipv4.ip_unprivileged_port_start=0")
    which("chroot")
    server = start(netns.command("chroot", f"--userspec={uid}:{gid}", str(root),
                                 *config["Entrypoint"], *config["Cmd"]), env=CLEAN_ENV)
    assert server.ready["guest"] == ["0.0.0.0:80"]
    assert server.ready["control"] == "unix:/var/lib/azimds/control.sock"
    status, body = netns.curl("http://169.254.169.254/metadata/instance/compute/name"
                              "?api-version=2021-02-01&format=text", "Metadata: true")
    assert (status, body) == (200, "azimds-demo")
    # The control API on the socket in the volume, as `docker exec … /azimds status` uses it.
    status = subprocess.run(netns.command("chroot", f"--userspec={uid}:{gid}", str(root),
                                          "/azimds", "status", "--control",
                                          "unix:/var/lib/azimds/control.sock", "--json"),
                            capture_output=True, text=True, timeout=30)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["vms"] == 1
    assert server.close() == 0
    # The state in the volume, the service user's alone.
    assert server.ready["data"] == "/var/lib/azimds/state"
    state = volume / "state"
    assert (state.stat().st_uid, state.stat().st_mode & 0o777) == (uid, 0o700)
    assert (state / "azimds.redb").stat().st_uid == uid
