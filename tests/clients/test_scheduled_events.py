"""Scheduled events with Microsoft's documented Python sample (probes/scheduled_events_probe.py).

The sample polls http://169.254.169.254/metadata/scheduledevents once a second in the test's
network namespace. The test schedules a Spot eviction (Preempt) for the VM through azimds'
control API once the sample has fetched the empty document, and completes it once the sample
has seen it Started; the control API's wait endpoint tells when the sample has fetched each
incarnation, so nothing here sleeps. What the sample saw must be what Azure shows (spec §6):
incarnations moving by one per change, NotBefore as RFC 1123 30 s after scheduling (Azure's
Preempt notice) while Scheduled and "" once Started, and the event gone once completed.
"""

import json
import math
import re
import subprocess
import sys
import time
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

import pytest

from conftest import PROBES, _probe_env, _tail

# Schedules events through azimds' control API.
pytestmark = pytest.mark.azimds_only

# §6.2: key order is fixed.
EVENT_KEYS = [
    "EventId", "EventStatus", "EventType", "ResourceType", "Resources", "NotBefore",
    "Description", "EventSource", "DurationInSeconds",
]
RFC1123 = re.compile(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug"
                     r"|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT$")
GUID_UPPER = re.compile(r"^[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}$")


def _wait_fetched(imds, vm_id: str, incarnation: int) -> None:
    status, body = imds.control(
        "GET", f"/v1/vms/{vm_id}/events/wait?incarnation={incarnation}&timeout=30", timeout=40)
    assert status == 200, f"the sample never fetched incarnation {incarnation}: {body}"


def test_documented_python_sample_approves_a_preempt_and_sees_it_go(imds, vm, tmp_path):
    status, body = imds.control("GET", "/v1/vms")
    assert status == 200, body
    [vm_id] = [v["id"] for v in body["vms"]]
    status, body = imds.control("GET", f"/v1/vms/{vm_id}/events")
    assert status == 200 and body["document"]["Events"] == [], body
    n0 = body["incarnation"]

    out = tmp_path / "out.json"
    probe = subprocess.Popen(
        ["ip", "netns", "exec", imds.ns, sys.executable,
         str(PROBES / "scheduled_events_probe.py"), str(out), str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_probe_env(),
    )
    try:
        _wait_fetched(imds, vm_id, n0)
        before = time.time()
        status, event = imds.control("POST", "/v1/events", {"type": "Preempt", "vms": [vm_id]})
        after = time.time()
        assert status == 201, event
        event_id = event["id"]
        # The sample sees it, approves it, and fetches the Started document.
        _wait_fetched(imds, vm_id, n0 + 2)
        status, started = imds.control("GET", f"/v1/events/{event_id}")
        assert status == 200, started
        assert started["status"] == "Started"
        assert started["startedAt"] < started["notBefore"], "the approval started it, not the clock"
        status, completed = imds.control("POST", f"/v1/events/{event_id}/complete")
        assert status == 200 and completed["changed"] is True, completed
        stdout, stderr = probe.communicate(timeout=60)
    finally:
        if probe.poll() is None:
            probe.kill()
            probe.communicate()
    assert probe.returncode == 0, f"exit {probe.returncode}\n{_tail(stderr)}\n{_tail(imds.log())}"
    trace = json.loads(out.read_text())

    # Every document the sample processed, in order: one incarnation per change.
    docs = [json.loads(d["raw"]) for d in trace["documents"]]
    assert [d["DocumentIncarnation"] for d in docs] == [n0, n0 + 1, n0 + 2, n0 + 3], docs
    for d, doc in zip(trace["documents"], docs):
        assert d["status"] == 200
        assert d["headers"]["content-type"] == "application/json; charset=utf-8"
        assert d["headers"]["etag"] == f'"{doc["DocumentIncarnation"]}"'
        assert d["raw"] == json.dumps(doc, separators=(",", ":")), "compact JSON"
    assert docs[0]["Events"] == [] and docs[3]["Events"] == [], docs

    [scheduled] = docs[1]["Events"]
    assert list(scheduled) == EVENT_KEYS
    assert GUID_UPPER.match(scheduled["EventId"]) and scheduled["EventId"] == event_id
    assert {k: scheduled[k] for k in EVENT_KEYS if k not in ("EventId", "NotBefore")} == {
        "EventStatus": "Scheduled",
        "EventType": "Preempt",
        "ResourceType": "VirtualMachine",
        "Resources": [vm["compute"]["name"]],
        "Description": "",
        "EventSource": "Platform",
        "DurationInSeconds": -1,
    }
    assert RFC1123.match(scheduled["NotBefore"]), scheduled["NotBefore"]
    not_before = parsedate_to_datetime(scheduled["NotBefore"]).timestamp()
    # At least Azure's 30 s Preempt notice (§6.5), rounded up to the whole second guests see.
    assert before + 30 <= not_before <= math.ceil(after + 30), "Preempt: 30 s notice (§6.5)"
    # The control API's RFC 3339 time (it may carry a fraction) is the same second.
    control_not_before = datetime.strptime(event["notBefore"][:19], "%Y-%m-%dT%H:%M:%S")
    assert control_not_before.replace(tzinfo=timezone.utc).timestamp() == not_before

    [running] = docs[2]["Events"]
    assert list(running) == EVENT_KEYS
    assert running == {**scheduled, "EventStatus": "Started", "NotBefore": ""}

    # The sample approved once (its Preempt handling), with a 200 and an empty body, within a
    # poll of seeing the event; it only logged the Started event.
    assert [(a["event_id"], a["status"], a["body"]) for a in trace["approvals"]] == [
        (event_id, 200, "")]
    assert trace["checkpoints"] == [event_id]
    assert trace["approvals"][0]["at"] - trace["documents"][1]["at"] < 1
    assert trace["logged"] == [{"event_id": event_id, "status": "Started"}]
    for n in (n0, n0 + 1, n0 + 2, n0 + 3):
        assert f"Processed events from document: {n}" in stdout, stdout
    assert trace["result"] == "removed"
