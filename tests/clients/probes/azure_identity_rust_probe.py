"""Run the `azure_identity` Rust crate's ManagedIdentityCredential inside the test namespace
(tests/clients/rust, built by scripts/test-clients.sh into <repo>/target/debug; override with
AZIMDS_RUST_PROBE). This wrapper passes the selectors from vm.yaml. Usage: ... OUT.json WORKDIR
"""

import os
import subprocess
import sys
from pathlib import Path

from identity_common import first_user_assigned, scrub_azure_env

REPO = Path(__file__).resolve().parents[3]


def main() -> None:
    out_path = sys.argv[1]
    scrub_azure_env()
    binary = Path(os.environ.get("AZIMDS_RUST_PROBE") or REPO / "target" / "debug" / "azimds-rust-identity-probe")
    if not binary.is_file():
        sys.exit(f"{binary} not found: scripts/test-clients.sh builds it (cargo build in tests/clients/rust)")
    user = first_user_assigned()
    proc = subprocess.run(
        [str(binary), out_path, f"client_id={user['clientId']}", f"object_id={user['objectId']}",
         f"resource_id={user['resourceId']}"],
        env=os.environ, timeout=170,
    )
    sys.exit(proc.returncode)


if __name__ == "__main__":
    main()
