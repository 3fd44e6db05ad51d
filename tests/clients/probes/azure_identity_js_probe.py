"""Run @azure/identity (npm) ManagedIdentityCredential, unmodified, with node inside the test
namespace (tests/clients/js/identity_probe.mjs does the work; this wrapper gives it the
selectors from vm.yaml and the suite's probe interface). Usage: ... OUT.json WORKDIR
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from identity_common import first_user_assigned, scrub_azure_env

JS = Path(__file__).resolve().parent.parent / "js"


def main() -> None:
    out_path = sys.argv[1]
    scrub_azure_env()
    node = shutil.which("node")
    if node is None or not (JS / "node_modules" / "@azure" / "identity").is_dir():
        sys.exit("node or @azure/identity missing: run scripts/install-test-deps.sh")
    user = first_user_assigned()
    selectors = {"client_id": user["clientId"], "object_id": user["objectId"], "resource_id": user["resourceId"]}
    proc = subprocess.run(
        [node, str(JS / "identity_probe.mjs"), out_path, json.dumps(selectors)],
        cwd=JS, env=os.environ, timeout=170,
    )
    sys.exit(proc.returncode)


if __name__ == "__main__":
    main()
