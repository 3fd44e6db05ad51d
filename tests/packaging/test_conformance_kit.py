"""The conformance kit (scripts/conformance.sh, docs/conformance.md) as another project uses
it: against a server it did not start and whose VM it does not know. The server here is the
static binary serving its built-in demo VM (not the suite's tests/clients/vm.yaml) on a port
the kernel picked, reached only through the URL given to the kit."""

import re
import shutil
import subprocess
from pathlib import Path

from conftest import REPO

KIT = REPO / "scripts" / "conformance.sh"
CHECK = re.compile(r"(PASS|FAIL) \S+\.py::\S+")
SUMMARY = re.compile(r"(\d+) passed, (\d+) failed")


def test_the_kit_checks_a_server_it_did_not_start(static_bin, tmp_path, start):
    server = start([str(static_bin), "serve", "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0",
                    "--data", str(tmp_path / "data")])
    url = "http://" + server.ready["guest"][0]
    run = subprocess.run(["bash", str(KIT), url], capture_output=True, text=True, timeout=900)
    log = re.search(r"full pytest output: (\S+)\)", run.stderr)
    if log:  # kept for a user to read; not for this test's runs
        shutil.rmtree(Path(log[1]).parent, ignore_errors=True)
    lines = run.stdout.splitlines()
    assert lines, run.stderr
    # One line per check, then the summary; checks that need azimds' own control API are
    # announced as not run, never silently dropped.
    assert lines[0].startswith("not run against this server"), lines[0]
    checks, summary = lines[1:-1], SUMMARY.fullmatch(lines[-1])
    assert summary, lines[-1]
    assert all(CHECK.match(line) for line in checks), "\n".join(checks)
    failed = [line for line in checks if line.startswith("FAIL")]
    assert (int(summary[1]), int(summary[2])) == (len(checks) - len(failed), len(failed))
    assert not failed and run.returncode == 0, "\n".join(failed) + run.stderr[-2000:]
    # The real clients ran: cloud-init, WALinuxAgent, OpenTelemetry and the managed-identity SDKs.
    for client in ("test_cloud_init", "test_waagent", "test_otel", "test_managed_identity"):
        assert any(client in line for line in checks), client
    assert server.close() == 0
