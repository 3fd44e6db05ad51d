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
The conformance kit (scripts/conformance.sh, docs/conformance.md) runs the same
suite against another IMDS:
  AZIMDS_CT_SERVER  a shell command started in the namespace instead of azimds;
                    it must serve 169.254.169.254:80 there
  AZIMDS_CT_TARGET  an http://HOST:PORT reached from the namespace's
                    169.254.169.254:80 through a forwarder (forward.py)
  AZIMDS_CT_LINES   1: one "PASS|FAIL check" line per check on stdout and a
                    closing "N passed, N failed" line
With either of the first two, what the clients parse is compared with the
server's own document instead of vm.yaml, and checks marked `azimds_only`
(they drive azimds' control API or use vm.yaml's identities) are not run.
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
FOREIGN_SERVER = os.environ.get("AZIMDS_CT_SERVER") or None
FOREIGN_TARGET = os.environ.get("AZIMDS_CT_TARGET") or None
FOREIGN = bool(FOREIGN_SERVER or FOREIGN_TARGET)
# Between probes against a foreign server: long enough for a 5-per-second bucket to refill.
PROBE_SPACING_S = 1.1
_LAST_PROBE_END = 0.0
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

    def server_command(self) -> list:
        """What serves 169.254.169.254:80 in the namespace: azimds, a foreign server's own
        command (AZIMDS_CT_SERVER), or a forwarder to AZIMDS_CT_TARGET."""
        if FOREIGN_SERVER:
            return ["bash", "-c", FOREIGN_SERVER]
        if FOREIGN_TARGET:
            return [sys.executable, str(HERE / "forward.py"), "listen",
                    f"{IMDS_IP}:{IMDS_PORT}", str(self.workroot / "forward.sock")]
        return [str(self.binary), "serve", "--listen", f"{IMDS_IP}:{IMDS_PORT}",
                "--vms", str(VM_FILE), "--rate-limit", "0"]

    def start(self) -> None:
        if FOREIGN_TARGET:
            # The host side of the forwarder: the namespace's connections arrive on a unix
            # socket (file system, not network) and go on to the target from here.
            self.forwarder = subprocess.Popen(
                [sys.executable, str(HERE / "forward.py"), "connect",
                 str(self.workroot / "forward.sock"), FOREIGN_TARGET],
                stdin=subprocess.DEVNULL, start_new_session=True)
            socket_path = self.workroot / "forward.sock"
            deadline = time.monotonic() + READY_TIMEOUT_S
            while not socket_path.exists():
                if self.forwarder.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the forwarder to {FOREIGN_TARGET} did not start")
                time.sleep(0.05)
        logf = open(self.log_path, "wb")
        try:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.ns, *self.server_command()],
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
        forwarder = getattr(self, "forwarder", None)
        if forwarder is not None and forwarder.poll() is None:
            forwarder.terminate()
            forwarder.wait(timeout=5)
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
        if FOREIGN:
            # IMDS answers 429 past 5 requests a second per VM (spec §1.11), Azure included: a
            # probe starts with the bucket full, as a client on a VM would, not after the
            # previous probe's burst (on a fast machine the OTel detector's third request got
            # a 429 and it returned None).
            global _LAST_PROBE_END
            time.sleep(max(0.0, _LAST_PROBE_END + PROBE_SPACING_S - time.monotonic()))
        try:
            return self._run_probe(name, *args)
        finally:
            _LAST_PROBE_END = time.monotonic()

    def _run_probe(self, name: str, *args: str) -> dict:
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
def _server_document(server: "Imds") -> dict:
    """The server's own instance document at the newest api-version it lists."""
    script = (
        "import json, urllib.request\n"
        "o = urllib.request.build_opener(urllib.request.ProxyHandler({}))\n"
        "get = lambda p: json.load(o.open(urllib.request.Request("
        "'http://169.254.169.254' + p, headers={'Metadata': 'true'}), timeout=30))\n"
        "newest = get('/metadata/versions')['apiVersions'][-1]\n"
        "print(json.dumps(get('/metadata/instance?api-version=' + newest)))\n"
    )
    proc = server.exec_in_ns(sys.executable, "-c", script)
    assert proc.returncode == 0, f"cannot read the server's instance document: {proc.stderr}"
    return json.loads(proc.stdout)


@pytest.fixture(scope="session")
def vm(request) -> dict:
    """The `instance` document of the single VM in vm.yaml; against a foreign server
    (conformance kit), the server's own document."""
    if FOREIGN:
        return _server_document(request.getfixturevalue("imds"))
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
    if not FOREIGN and not (binary.is_file() and os.access(binary, os.X_OK)):
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
_LINES = os.environ.get("AZIMDS_CT_LINES") == "1"
_LINES_FD = int(os.environ.get("AZIMDS_CT_LINES_FD", "1"))
_COUNTS = {"passed": 0, "failed": 0}


def pytest_collection_modifyitems(config, items):
    """Against a foreign server, checks that need azimds itself are not run (and said so)."""
    if not FOREIGN:
        return
    def azimds_only(item) -> bool:
        # The embedding examples and endpoint overrides start azimds themselves.
        return (item.get_closest_marker("azimds_only") is not None
                or "examples" in item.path.parts or item.path.name == "test_endpoint_overrides.py")

    kept = [item for item in items if not azimds_only(item)]
    dropped = [item for item in items if azimds_only(item)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
        if _LINES:
            os.write(_LINES_FD, f"not run against this server (need azimds' control API or vm.yaml): "
                        f"{len(dropped)} checks\n".encode())


def pytest_runtest_logreport(report):
    """One line per check: its call's outcome, or a failed set-up (a probe that did not run)."""
    if not _LINES:
        return
    counted = report.when == "call" or (report.failed and report.when == "setup")
    if report.failed and report.when == "teardown":
        counted = True
    if not counted:
        return
    _COUNTS["passed" if report.passed else "failed"] += 1
    reason = ""
    if report.failed:
        lines = [line for line in str(report.longrepr).strip().splitlines() if line.strip()]
        reason = ": " + (lines[-1].strip()[:200] if lines else "failed")
    verdict = "PASS" if report.passed else "FAIL"
    os.write(_LINES_FD, f"{verdict} {report.nodeid}{reason}\n".encode())


def pytest_sessionfinish(session, exitstatus):
    if _LINES:
        os.write(_LINES_FD, f"{_COUNTS['passed']} passed, {_COUNTS['failed']} failed\n".encode())


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "azimds_only: drives azimds' control API or relies on vm.yaml; not run "
        "against other servers by the conformance kit")
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
