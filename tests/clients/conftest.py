"""Real-clients conformance suite: session fixtures.

The clients under test hard-code http://169.254.169.254:80, so the suite runs
azimds inside a network namespace of its own that has 169.254.169.254/32 on
its loopback device, and runs each unmodified client there
(`ip netns exec NS python3 probes/<client>_probe.py OUT.json WORKDIR`). A probe
writes what the client parsed as JSON; the tests compare it with vm.yaml.

Needs root (ip netns). Environment:
  AZIMDS_BIN       azimds binary (default: <repo>/target/release/azimds)
  AZIMDS_CT_NETNS  namespace name (default: azimds-ct-<pid>); the runner
                   script sets it so that its own trap can clean up too.
Nothing is ever skipped: a missing dependency fails the run.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
VM_FILE = HERE / "vm.yaml"
PROBES = HERE / "probes"
IMDS_IP = "169.254.169.254"
IMDS_PORT = 80
READY_TIMEOUT_S = 30
PROBE_TIMEOUT_S = 180

# Variables that would change what the clients do (proxies: cloud-init's
# requests and OTel's urllib honour them; the OTel detector skips VM detection
# on AKS / App Service / Functions; OTEL_* changes Resource.create()).
_SCRUB_EXACT = {
    "http_proxy", "https_proxy", "all_proxy", "no_proxy",
    "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY",
    "AKS_ARM_NAMESPACE_ID", "AKS_CLUSTER_RESOURCE_ID",
    "WEBSITE_SITE_NAME", "FUNCTIONS_WORKER_RUNTIME",
}


def _probe_env() -> dict:
    env = {
        k: v for k, v in os.environ.items()
        if k not in _SCRUB_EXACT and not k.startswith("OTEL_")
    }
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])


# ------------------------------------------------------------------ netns
def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise RuntimeError(f"`ip {' '.join(args)}` failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def _netns_exists(ns: str) -> bool:
    out = _ip("netns", "list", check=False).stdout
    return any(line.split()[0] == ns for line in out.splitlines() if line.strip())


def _destroy_netns(ns: str) -> None:
    """Kill what still runs in our namespace (by pid) and delete it."""
    if not _netns_exists(ns):
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = [int(p) for p in _ip("netns", "pids", ns, check=False).stdout.split()]
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and _ip("netns", "pids", ns, check=False).stdout.split():
            time.sleep(0.05)
    _ip("netns", "del", ns, check=False)


class Imds:
    """A running azimds inside a private network namespace."""

    def __init__(self, ns: str, binary: Path, log_path: Path, workroot: Path):
        self.ns = ns
        self.binary = binary
        self.log_path = log_path
        self.workroot = workroot
        self.proc = None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def exec_in_ns(self, *cmd: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["ip", "netns", "exec", self.ns, *cmd],
            capture_output=True, text=True, timeout=timeout, env=_probe_env(),
        )

    def start(self) -> None:
        logf = open(self.log_path, "wb")
        try:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.ns, str(self.binary), "serve",
                 "--listen", f"{IMDS_IP}:{IMDS_PORT}", "--vms", str(VM_FILE),
                 "--rate-limit", "0"],
                stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                start_new_session=True,
                # keep any state azimds writes (default ~/.local/state) in the run's temp dir
                env={**_probe_env(), "XDG_STATE_HOME": str(self.workroot / "state")},
            )
        finally:
            logf.close()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"azimds exited with status {self.proc.returncode} before listening\n"
                    f"--- azimds output ---\n{_tail(self.log())}"
                )
            probe = self.exec_in_ns(
                "bash", "-c", f"exec 3<>/dev/tcp/{IMDS_IP}/{IMDS_PORT}", timeout=5
            )
            if probe.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"azimds did not accept connections on {IMDS_IP}:{IMDS_PORT} "
                    f"within {READY_TIMEOUT_S}s\n--- azimds output ---\n{_tail(self.log())}"
                )
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def control(self, method: str, path: str, body=None, timeout: float = 60):
        """Call azimds' control API: its default listener (127.0.0.1:16926 inside the
        namespace) with the bearer token from its data directory. Returns (status, body),
        the body parsed as JSON when it is JSON."""
        token = (self.workroot / "state" / "azimds" / "control-token").read_text().strip()
        script = (
            "import http.client, sys\n"
            "token = sys.stdin.read().strip()\n"
            "c = http.client.HTTPConnection('127.0.0.1', 16926, timeout=float(sys.argv[4]))\n"
            "c.request(sys.argv[1], sys.argv[2], body=sys.argv[3].encode() or None, headers={\n"
            "    'Authorization': 'Bearer ' + token, 'Content-Type': 'application/json'})\n"
            "r = c.getresponse(); print(r.status); print(r.read().decode())\n"
        )
        payload = "" if body is None else json.dumps(body)
        proc = subprocess.run(
            ["ip", "netns", "exec", self.ns, sys.executable, "-c", script,
             method, path, payload, str(timeout)],
            input=token, capture_output=True, text=True, timeout=timeout + 10, env=_probe_env(),
        )
        assert proc.returncode == 0, f"control {method} {path}: {proc.stderr}"
        status, _, text = proc.stdout.partition("\n")
        try:
            return int(status), json.loads(text)
        except json.JSONDecodeError:
            return int(status), text.rstrip("\n")

    def run_probe(self, name: str, *args: str) -> dict:
        """Run probes/<name>.py with this venv's python inside the namespace (extra `args`
        after OUT.json and WORKDIR)."""
        workdir = self.workroot / "-".join((name, *args))
        workdir.mkdir(parents=True, exist_ok=True)
        out = workdir / "out.json"
        try:
            proc = self.exec_in_ns(
                sys.executable, str(PROBES / f"{name}.py"), str(out), str(workdir), *args,
                timeout=PROBE_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired as exc:
            stderr = exc.stderr or b""
            proc = None
            timed_out = stderr.decode(errors="replace") if isinstance(stderr, bytes) else stderr
        if proc is None:
            pytest.fail(
                f"{name} did not finish within {PROBE_TIMEOUT_S}s\n"
                f"--- probe stderr (tail) ---\n{_tail(timed_out)}\n"
                f"--- azimds output (tail) ---\n{_tail(self.log())}",
                pytrace=False,
            )
        (workdir / "stderr.txt").write_text(proc.stderr)
        if proc.returncode != 0 or not out.exists():
            pytest.fail(
                f"{name} failed (exit {proc.returncode}); full stderr in {workdir}/stderr.txt\n"
                f"--- probe stderr (tail) ---\n{_tail(proc.stderr)}\n"
                f"--- azimds output (tail) ---\n{_tail(self.log())}",
                pytrace=False,
            )
        return json.loads(out.read_text())


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="session")
def vm() -> dict:
    """The `instance` document of the single VM in vm.yaml."""
    with open(VM_FILE, encoding="utf-8") as fh:
        doc = yaml.safe_load(fh)
    vms = doc["vms"]
    assert len(vms) == 1, "the client suite expects exactly one VM in vm.yaml"
    return vms[0]["instance"]


@pytest.fixture(scope="session")
def imds(tmp_path_factory) -> Imds:
    if os.geteuid() != 0:
        pytest.fail("the client suite needs root (it creates a network namespace)", pytrace=False)
    if shutil.which("ip") is None:
        pytest.fail("`ip` (iproute2) not found; run scripts/install-test-deps.sh", pytrace=False)
    binary = Path(os.environ.get("AZIMDS_BIN") or REPO / "target" / "release" / "azimds").resolve()
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        pytest.fail(f"azimds binary not found or not executable: {binary} (set AZIMDS_BIN)", pytrace=False)

    ns = os.environ.get("AZIMDS_CT_NETNS") or f"azimds-ct-{os.getpid()}"
    workroot = tmp_path_factory.mktemp("clients")
    server = Imds(ns, binary, workroot / "azimds.log", workroot)
    _destroy_netns(ns)  # a stale one from an interrupted run
    error = None
    try:
        _ip("netns", "add", ns)
        _ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")
        _ip("netns", "exec", ns, "ip", "addr", "add", f"{IMDS_IP}/32", "dev", "lo")
        server.start()
    except BaseException as exc:  # noqa: BLE001 - clean up, then report
        server.stop()
        _destroy_netns(ns)
        if not isinstance(exc, Exception):  # KeyboardInterrupt / SIGTERM
            raise
        error = f"could not start azimds in netns {ns}: {exc}"
    if error is not None:
        pytest.fail(error, pytrace=False)
    try:
        yield server
    finally:
        server.stop()
        _destroy_netns(ns)
        if _netns_exists(ns):
            print(f"\nWARNING: network namespace {ns} could not be deleted", file=sys.stderr)


# ------------------------------------------------------------------ hooks
def pytest_configure(config):
    # Turn SIGTERM into KeyboardInterrupt so that session fixtures (server,
    # namespace) are torn down when the run is terminated.
    def _on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, _on_term)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A skipped test is a failed test here (a missing dependency must fail)."""
    outcome = yield
    rep = outcome.get_result()
    if rep.skipped and not hasattr(rep, "wasxfail"):
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        rep.outcome = "failed"
        rep.longrepr = f"skips are failures in the client suite: {reason}"
