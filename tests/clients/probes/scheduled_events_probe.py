"""Microsoft's documented Python scheduled-events sample, on the standard library.

Executed by test_scheduled_events.py inside the test network namespace, where azimds listens
on 169.254.169.254:80. Usage: scheduled_events_probe.py OUT.json WORKDIR

The logic is the "Python Sample" of "Azure Metadata Service: Scheduled Events for Linux VMs"
(learn.microsoft.com, azure/virtual-machines/linux/scheduled-events): get_scheduled_events(),
confirm_scheduled_event(), log() and advanced_sample(), unchanged in what they send and decide:

  GET  http://169.254.169.254/metadata/scheduledevents?api-version=2020-07-01  (Metadata: true)
  POST the same URL with {"StartRequests": [{"EventId": ...}]}
  poll every second until DocumentIncarnation changes, then process every event of the
  document: Started -> log; EventSource User -> approve; Freeze shorter than 9 s -> approve;
  anything else -> the application's custom handling.

Differences, none of them on the wire's meaning:
* urllib instead of requests (standard library only). urllib's POST carries
  `Content-Type: application/x-www-form-urlencoded` where requests' `data=` sends none; IMDS
  parses the body as JSON either way (spec §6.4).
* The sample's "TODO Custom handling for impactful events" is filled in for Preempt (a Spot
  eviction, 30 s notice): this application checkpoints, then approves so the eviction proceeds.
* main() loops by itself instead of asking "Press 1 to poll" on stdin, and stops once an event
  it approved has gone from the document; an alarm bounds the run.
* Each document the sample processed is recorded (raw bytes, headers, time) for the test.
"""

import json
import signal
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from time import sleep

# ---------------------------------------------------------------- the documented sample
# The URL to access the metadata service
metadata_url = "http://169.254.169.254/metadata/scheduledevents"
# This must be sent otherwise the request will be ignored
header = {'Metadata': 'true'}
# Current version of the API
query_params = {'api-version': '2020-07-01'}


def get_scheduled_events():
    url = metadata_url + "?" + urllib.parse.urlencode(query_params)
    req = urllib.request.Request(url, headers=header)
    with urllib.request.urlopen(req, timeout=10) as resp:
        raw = resp.read()
        record_get(resp, raw)
    data = json.loads(raw)
    return data


def confirm_scheduled_event(event_id):
    # This payload confirms a single event with id event_id
    # You can confirm multiple events in a single request if needed
    payload = json.dumps({"StartRequests": [{"EventId": event_id}]})
    url = metadata_url + "?" + urllib.parse.urlencode(query_params)
    req = urllib.request.Request(url, data=payload.encode(), headers=header, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            status = resp.status
            body = resp.read().decode()
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read().decode()
    TRACE["approvals"].append({"event_id": event_id, "status": status, "body": body,
                               "at": time.time()})
    return status


def log(event):
    # This is an optional placeholder for logging events to your system
    print(event["Description"])
    TRACE["logged"].append({"event_id": event["EventId"], "status": event["EventStatus"]})
    return


def advanced_sample(last_document_incarnation):
    # Poll every second to see if there are new scheduled events to process
    # Since some events may have necessarily short warning periods, it is
    # recommended to poll frequently
    found_document_incarnation = last_document_incarnation
    while (last_document_incarnation == found_document_incarnation):
        sleep(1)
        payload = get_scheduled_events()
        found_document_incarnation = payload["DocumentIncarnation"]

    # We recommend processing all events in a document together,
    # even if you won't be actioning on them right away
    for event in payload["Events"]:

        # Events that have already started, logged for tracking
        if (event["EventStatus"] == "Started"):
            log(event)

        # Approve all user initiated events. These are typically created by an
        # administrator and approving them immediately can help to avoid delays
        # in admin actions
        elif (event["EventSource"] == "User"):
            confirm_scheduled_event(event["EventId"])

        # For this application, freeze events less that 9 seconds are considered
        # no impact. This will immediately approve them
        elif (event["EventType"] == "Freeze" and
              int(event["DurationInSeconds"]) >= 0 and
              int(event["DurationInSeconds"]) < 9):
            confirm_scheduled_event(event["EventId"])

        # Events that may be impactful (eg. Reboot or redeploy) may need custom
        # handling for your application
        else:
            custom_handling(event)
    print("Processed events from document: " + str(found_document_incarnation))
    return found_document_incarnation


# ---------------------------------------------------------------- this application
TRACE = {"gets": 0, "documents": [], "approvals": [], "logged": [], "checkpoints": []}
_last_get = {}


def record_get(resp, raw):
    TRACE["gets"] += 1
    _last_get.update(raw=raw.decode(), status=resp.status, at=time.time(),
                     headers={k.lower(): v for k, v in resp.headers.items()})


def custom_handling(event):
    """The sample's TODO: a Spot eviction is checkpointed, then approved."""
    if event["EventType"] == "Preempt":
        TRACE["checkpoints"].append(event["EventId"])
        confirm_scheduled_event(event["EventId"])
    else:
        log(event)


def done() -> bool:
    """An event this application approved has left the document."""
    approved = {a["event_id"] for a in TRACE["approvals"] if a["status"] == 200}
    if not approved or not TRACE["documents"]:
        return False
    listed = {e["EventId"] for e in json.loads(TRACE["documents"][-1]["raw"])["Events"]}
    return not (approved & listed)


def main():
    out_path = sys.argv[1]

    def give_up(signum, frame):
        raise TimeoutError("no removal of an approved event within 90 s")

    signal.signal(signal.SIGALRM, give_up)
    signal.alarm(90)
    # This will track the last set of events seen
    last_document_incarnation = "-1"
    try:
        while not done():
            last_document_incarnation = advanced_sample(last_document_incarnation)
            # The document the sample just processed is the last one it fetched.
            TRACE["documents"].append(dict(_last_get))
        TRACE["result"] = "removed"
    except TimeoutError as error:
        TRACE["result"] = str(error)
    with open(out_path, "w", encoding="utf-8") as fh:
        json.dump(TRACE, fh, indent=1)
    sys.exit(0 if TRACE["result"] == "removed" else 1)


if __name__ == "__main__":
    main()
