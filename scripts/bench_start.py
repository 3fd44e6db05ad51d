#!/usr/bin/env python3
"""One start of azimds, timed from spawn to the first guest 200 (GET /metadata/instance from
127.0.0.1, polled every 10 ms from process start): prints one JSON object with ready_s, the
process's CPU seconds (utime + stime), VmRSS, VmHWM and RssAnon in MB when the first 200 came,
VmRSS again SETTLE seconds later, load_ms and what the server logged about the --vms file.

    scripts/bench_start.py [options] AZIMDS_BIN DATA_DIR LABEL [serve args...]   # e.g. --vms vms.json

Options (before AZIMDS_BIN):
    --port P          guest port (P + 1: control port); default 18490
    --cpu LIST        run the server under `taskset -c LIST` (default: unpinned)
    --log FILE        the server's stderr (default DATA_DIR.stderr)
    --settle S        seconds after the first 200 before the second RSS reading (default 1)
    --timeout S       give up after S seconds (default 900)
    --control-get PATH  after the RSS readings, GET PATH from the control API (bearer token from
                      DATA_DIR/control-token); repeatable; reports status, ETag and the body's
                      sha256 (and the body itself for /v1/status) under "control"
    --ready-control   wait for the control API's /readyz 200 instead of a guest 200 (a store with
                      no VM for 127.0.0.1, e.g. initialising an empty data directory)
    --expect-exit     the server is expected to exit without serving (a bad definitions file):
                      waits for the exit and reports exit_code, exit_s and the stderr tail

`--callers source-address` and `--rate-limit 0` are added unless the serve args give them.
Used by scripts/bench-scale.sh and scripts/bench-curve.sh; also fine on its own.
"""
import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

CLK_TCK = os.sysconf("SC_CLK_TCK")


def status(pid):
    d = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "RssAnon", "Threads"):
                n = int(v.split()[0])
                d[k] = n if k == "Threads" else round(n / 1024, 1)
    return d


def cpu(pid):
    with open(f"/proc/{pid}/stat") as fh:
        f = fh.read().rsplit(")", 1)[1].split()
    return round((int(f[11]) + int(f[12])) / CLK_TCK, 2)


def guest_ok(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"GET /metadata/instance?api-version=2025-04-07 HTTP/1.1\r\nHost: x\r\n"
                      b"Metadata: true\r\nConnection: close\r\n\r\n")
            return s.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def control_ready(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port + 1}/readyz", timeout=1) as r:
            return r.status == 200
    except (OSError, urllib.error.URLError):
        return False


def control_get(port, data, path):
    token = open(os.path.join(data, "control-token")).read().strip()
    req = urllib.request.Request(f"http://127.0.0.1:{port + 1}{path}", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            code, etag, body = r.status, r.headers.get("ETag"), r.read()
    except urllib.error.HTTPError as e:
        code, etag, body = e.code, e.headers.get("ETag"), e.read()
    got = {"status": code, "etag": etag, "sha256": hashlib.sha256(body).hexdigest()}
    if path == "/v1/status":
        got["body"] = json.loads(body)
    return got


def log_facts(text):
    """What the server said about the definitions file, from its log lines."""
    facts = {"not_parsed_again": "not parsed again" in text}
    m = re.findall(r"load_ms=(\d+)", text)
    facts["load_ms"] = int(m[-1]) if m else None
    m = re.search(r"VM definitions file applied.*", text)
    if m:
        for key in ("written", "deleted", "unchanged"):
            n = re.search(rf"\b{key}=(\d+)", m.group(0))
            facts[key] = int(n.group(1)) if n else None
    return facts


def parse_args(argv):
    opts = {"port": 18490, "cpu": None, "log": None, "settle": 1.0, "timeout": 900.0,
            "expect_exit": False, "ready_control": False, "control_get": []}
    while argv and argv[0].startswith("--"):
        flag = argv.pop(0)
        if flag in ("--expect-exit", "--ready-control"):
            opts[flag[2:].replace("-", "_")] = True
        elif flag == "--control-get" and argv:
            opts["control_get"].append(argv.pop(0))
        elif flag in ("--port", "--cpu", "--log", "--settle", "--timeout") and argv:
            v = argv.pop(0)
            opts[flag[2:]] = {"port": int, "settle": float, "timeout": float}.get(flag[2:], str)(v)
        else:
            sys.exit(f"unknown option {flag}\n{__doc__}")
    if len(argv) < 3:
        sys.exit(__doc__)
    return opts, argv[0], argv[1], argv[2], argv[3:]


def run(binary, data, extra, port=18490, cpu_list=None, log=None, settle=1.0, timeout=900.0, gets=(),
        ready_control=False):
    log = log or f"{data}.stderr"
    args = ["serve", "--listen", f"127.0.0.1:{port}", "--control", f"127.0.0.1:{port + 1}", "--data", data]
    if "--callers" not in extra:
        args += ["--callers", "source-address"]
    if "--rate-limit" not in extra:
        args += ["--rate-limit", "0"]
    cmd = (["taskset", "-c", cpu_list] if cpu_list else []) + [binary] + args + extra
    t0 = time.monotonic()
    with open(log, "w") as err:
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
    result = {"pid": p.pid}
    while True:
        if p.poll() is not None:
            t1 = time.monotonic()
            text = open(log, errors="replace").read()
            result.update(exit_code=p.returncode, exit_s=round(t1 - t0, 3), stderr_tail=text[-4000:],
                          **log_facts(text))
            return result
        if control_ready(port) if ready_control else guest_ok(port):
            break
        if time.monotonic() - t0 > timeout:
            p.kill()
            p.wait()
            result.update(exit_code=None, timeout=True, stderr_tail=open(log, errors="replace").read()[-4000:])
            return result
        time.sleep(0.01)
    t1 = time.monotonic()
    st, c = status(p.pid), cpu(p.pid)
    time.sleep(settle)
    result.update(ready_s=round(t1 - t0, 3), cpu_s=c, **st, VmRSS_settled=status(p.pid)["VmRSS"],
                  loadavg=os.getloadavg()[0], **log_facts(open(log, errors="replace").read()))
    if gets:
        result["control"] = {path: control_get(port, data, path) for path in gets}
    p.terminate()
    p.wait()
    return result


if __name__ == "__main__":
    opts, binary, data, label, extra = parse_args(sys.argv[1:])
    r = run(binary, data, extra, port=opts["port"], cpu_list=opts["cpu"], log=opts["log"],
            settle=opts["settle"], timeout=opts["timeout"], gets=opts["control_get"],
            ready_control=opts["ready_control"])
    r["label"] = label
    print(json.dumps(r), flush=True)
    if opts["expect_exit"]:
        sys.exit(0 if r.get("exit_code") not in (None, 0) else 1)
    if "ready_s" not in r:
        sys.stderr.write(r.get("stderr_tail", "")[-2000:] + "\n")
        sys.exit(1)
