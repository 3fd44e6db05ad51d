"""Scheduled events with Microsoft's documented Python sample (probes/scheduled_events_probe.py),
and the Azure-Samples non-VNET discovery sample (probes/non_vnet_sample_probe.py) at the end.

The sample polls http://169.254.169.254/metadata/scheduledevents once a second in the test's
network namespace. The test schedules a Spot eviction (Preempt) for the VM through azimds'
control API once the sample has fetched the empty document, and completes it once the sample
has seen it Started; the control API's wait endpoint tells when the sample has fetched each
incarnation, so nothing here sleeps. What the sample saw must be what Azure shows (spec §6):
incarnations moving by one per change, NotBefore as RFC 1123 30 s after scheduling (Azure's
Preempt notice) while Scheduled and "" once Started, and the event gone once completed.
"""

import ast
import json
import math
import re
import subprocess
import sys
import threading
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


class Console:
    """The sample's terminal: what it printed so far, and a way to type an answer."""

    def __init__(self, proc):
        self.proc = proc
        self.text = ""
        self.seen = 0
        self.grew = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        while True:
            char = self.proc.stdout.read(1)
            if not char:
                break
            with self.grew:
                self.text += char
                self.grew.notify_all()

    def wait_for(self, prompt: str, timeout: float = 30) -> str:
        """Waits until `prompt` appears after what was already read; returns what came before."""
        with self.grew:
            found = self.grew.wait_for(lambda: prompt in self.text[self.seen:], timeout)
            assert found, f"no {prompt!r} after:\n{self.text[self.seen:]}"
            at = self.text.index(prompt, self.seen)
            before, self.seen = self.text[self.seen:at], at + len(prompt)
            return before

    def answer(self, line: str):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()


def _printed_document(output: str) -> dict:
    """The last `Scheduled Events Document:` the sample printed (a Python dict's str())."""
    text = output.rsplit("Scheduled Events Document:\n", 1)[1].split("\n", 1)[0]
    return ast.literal_eval(text)


def test_non_vnet_discovery_sample_discovers_polls_and_approves(imds, vm):
    """Azure-Samples' non-VNET sample (probes/non_vnet_sample_probe.py): discovery through the
    2017-03-01 preview, then its interactive loop: the test is the person at the console."""
    status, body = imds.control("GET", "/v1/vms")
    [vm_id] = [v["id"] for v in body["vms"]]
    name = vm["compute"]["name"]
    proc = subprocess.Popen(
        ["ip", "netns", "exec", imds.ns, sys.executable,
         str(PROBES / "non_vnet_sample_probe.py")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=_probe_env(),
    )
    console = Console(proc)
    try:
        # Discovery: the preview URL answered with a JSON document holding Events.
        console.wait_for(
            "Scheduled Events endpoint address = "
            "http://169.254.169.254/metadata/scheduledevents?api-version=2017-03-01\n")
        empty = _printed_document(console.wait_for("Press Enter to continue."))
        assert empty["Events"] == [] and isinstance(empty["DocumentIncarnation"], int)

        status, event = imds.control("POST", "/v1/events", {"type": "Reboot", "vms": [vm_id]})
        assert status == 201, event
        console.answer("")
        shown = console.wait_for("Approve event? (y / n): ")
        scheduled = _printed_document(shown)
        [seen] = scheduled["Events"]
        # §6.1: the preview prefixes resource names with `_`; the 2017-08-01 fields, in order.
        assert seen == {
            "EventId": event["id"], "EventStatus": "Scheduled", "EventType": "Reboot",
            "ResourceType": "VirtualMachine", "Resources": ["_" + name],
            "NotBefore": seen["NotBefore"],
        }
        assert list(seen) == ["EventId", "EventStatus", "EventType", "ResourceType",
                              "Resources", "NotBefore"]
        assert RFC1123.match(seen["NotBefore"])
        assert scheduled["DocumentIncarnation"] == empty["DocumentIncarnation"] + 1

        console.answer("y")
        approving = console.wait_for("Press Enter to continue.")
        assert "Approving with the following:\n" + str({
            "DocumentIncarnation": scheduled["DocumentIncarnation"],
            "StartRequests": [{"EventId": event["id"]}]}) in approving
        status, after = imds.control("GET", f"/v1/events/{event['id']}")
        assert status == 200 and after["status"] == "Started", after

        console.answer("")
        started = _printed_document(console.wait_for("Approve event? (y / n): "))
        [running] = started["Events"]
        assert (running["EventStatus"], running["NotBefore"]) == ("Started", "")
        console.answer("n")
        console.wait_for("Press Enter to continue.")
        status, done = imds.control("POST", f"/v1/events/{event['id']}/complete")
        assert status == 200, done
        console.answer("")
        gone = _printed_document(console.wait_for("Press Enter to continue."))
        assert gone["Events"] == []
        assert gone["DocumentIncarnation"] == started["DocumentIncarnation"] + 1
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0, _tail(proc.stderr.read())
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "The provided IP address is invalid" not in console.text, "discovery fell back"
