"""Shared by the managed-identity probes: the identities in vm.yaml and the scrubbed
environment (Azure SDK variables would redirect or change the credential under test)."""

import os
from pathlib import Path

import yaml

VM_FILE = Path(__file__).resolve().parent.parent / "vm.yaml"
SCOPE = "https://management.azure.com/.default"
RESOURCE = "https://management.azure.com/"


def identities() -> dict:
    with open(VM_FILE, encoding="utf-8") as fh:
        return yaml.safe_load(fh)["vms"][0]["identities"]


def first_user_assigned() -> dict:
    return identities()["userAssigned"][0]


def scrub_azure_env() -> None:
    """Removes Azure SDK variables, but those named in AZIMDS_PROBE_KEEP_ENV (comma-separated:
    the endpoint override under test, test_endpoint_overrides.py)."""
    keep = set(filter(None, os.environ.get("AZIMDS_PROBE_KEEP_ENV", "").split(",")))
    for name in list(os.environ):
        if name.startswith(("AZURE_", "IDENTITY_", "MSI_", "IMDS_")) and name not in keep:
            del os.environ[name]
