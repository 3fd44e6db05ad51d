"""Packaging tests (issue 12): the static binary in an empty root, the container file, the
Debian package installed on this machine, the conformance kit run as other projects run it. Run by scripts/test-packages.sh (from
scripts/test.sh) as root: they chroot, create network namespaces and install a .deb.

Environment:
  AZIMDS_STATIC_BIN  the static binary (scripts/build-static.sh)
  AZIMDS_DEB         the .deb (scripts/package-deb.sh)
Nothing is skipped: a missing input fails.
"""

import json
import os
import select
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent


def _path_from_env(name: str) -> Path:
    value = os.environ.get(name)
    if not value or not Path(value).is_file():
        pytest.fail(f"{name} must name an existing file (got {value!r}); run scripts/test-packages.sh",
                    pytrace=False)
    return Path(value).resolve()


@pytest.fixture(scope="session")
def static_bin() -> Path:
    return _path_from_env("AZIMDS_STATIC_BIN")


@pytest.fixture(scope="session")
def deb() -> Path:
    return _path_from_env("AZIMDS_DEB")


@pytest.fixture(scope="session", autouse=True)
def root():
    if os.geteuid() != 0:
        pytest.fail("the packaging tests need root (chroot, ip netns, dpkg)", pytrace=False)


class Netns:
    """A network namespace of our own with loopback up (and 169.254.169.254/32 on it)."""

    def __init__(self):
        self.name = f"azimds-pkg-{uuid.uuid4().hex[:8]}"
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        self.run("ip", "link", "set", "lo", "up")
        self.run("ip", "addr", "add", "169.254.169.254/32", "dev", "lo")

    def command(self, *cmd: str) -> list:
        return ["ip", "netns", "exec", self.name, *cmd]

    def run(self, *cmd: str, **kwargs) -> subprocess.CompletedProcess:
        kwargs.setdefault("check", True)
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        kwargs.setdefault("timeout", 30)
        return subprocess.run(self.command(*cmd), **kwargs)

    def curl(self, url: str, *headers: str) -> tuple:
        args = ["curl", "-sS", "--noproxy", "*", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}"]
        for header in headers:
            args += ["-H", header]
        out = self.run(*args, url).stdout
        body, _, status = out.rpartition("\n")
        return int(status), body

    def delete(self):
        pids = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True, text=True).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), 9)
            except ProcessLookupError:
                pass
        subprocess.run(["ip", "netns", "del", self.name], check=False)


@pytest.fixture
def netns():
    ns = Netns()
    try:
        yield ns
    finally:
        ns.delete()


class Started:
    """A process that prints azimds' ready line on stdout; stopped on close."""

    def __init__(self, command: list, timeout: float = 60, **kwargs):
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, **kwargs)
        self.ready = self._ready_line(timeout)

    def _ready_line(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            readable, _, _ = select.select([self.proc.stdout], [], [], max(left, 0))
            if not readable:
                self.close()
                pytest.fail(f"no ready line within {timeout}s; stderr:\n{self.stderr()}", pytrace=False)
            chunk = os.read(self.proc.stdout.fileno(), 4096)
            if not chunk:
                self.proc.wait(timeout=10)
                pytest.fail(f"exited {self.proc.returncode} before ready; stderr:\n{self.stderr()}",
                            pytrace=False)
            line += chunk
        return json.loads(line)

    def wait_for_stderr(self, needle: str, timeout: float) -> bool:
        """Reads stderr until a line contains `needle` (True) or `timeout` passes (False)."""
        deadline = time.monotonic() + timeout
        buffered = b""
        while time.monotonic() < deadline:
            readable, _, _ = select.select([self.proc.stderr], [], [], deadline - time.monotonic())
            if not readable:
                break
            chunk = os.read(self.proc.stderr.fileno(), 4096)
            if not chunk:
                break
            buffered += chunk
            if needle.encode() in buffered:
                return True
        return False

    def stderr(self) -> str:
        if self.proc.poll() is None:
            return "(still running)"
        return self.proc.stderr.read().decode(errors="replace")

    def close(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode


@pytest.fixture
def start():
    started = []

    def _start(command: list, **kwargs) -> Started:
        process = Started(command, **kwargs)
        started.append(process)
        return process

    yield _start
    for process in started:
        process.close()


def which(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found (scripts/install-test-deps.sh installs it)", pytrace=False)
    return path
