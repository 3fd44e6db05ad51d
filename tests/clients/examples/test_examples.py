"""docs/testing.md's examples run here as they are written: the Python one is
test_azimds_fixture.py (collected by pytest), the JavaScript one js/azimds.test.mjs (run with
node's test runner below), the Rust one tests/it/embedding.rs (cargo test). The page quotes
each file whole; this checks the quotes are the files."""

import os
import re
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent.parent
PAGE = REPO / "docs" / "testing.md"


def test_the_page_quotes_each_example_whole():
    text = PAGE.read_text()
    quoted = re.findall(r"<!-- example: (\S+) -->\n```\w*\n(.*?)```", text, re.S)
    assert {path for path, _ in quoted} == {
        "tests/clients/examples/test_azimds_fixture.py",
        "tests/clients/js/azimds.test.mjs",
        "tests/it/embedding.rs",
    }
    for path, block in quoted:
        assert block == (REPO / path).read_text(), f"docs/testing.md's copy of {path} differs"


def test_the_javascript_example_passes_with_nodes_test_runner():
    proc = subprocess.run(["node", "--test", "azimds.test.mjs"], cwd=REPO / "tests" / "clients" / "js",
                          capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in os.environ.items() if not k.startswith("AZURE_")})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"^# pass 2$", proc.stdout, re.M), proc.stdout
