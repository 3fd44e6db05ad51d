#!/usr/bin/env python3
"""One start of azimds, timed from spawn to the first guest 200 (GET /metadata/instance from
127.0.0.1): prints ready_s, the process CPU seconds, VmRSS, VmHWM, RssAnon (MB) as JSON.

    scripts/bench_start.py AZIMDS_BIN DATA_DIR LABEL [serve args...]   # e.g. --vms vms.json
"""
import os, socket, subprocess, sys, time, json

def status(pid):
    d = {}
    for line in open(f"/proc/{pid}/status"):
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM", "RssAnon"):
            d[k] = int(v.split()[0]) // 1024
    return d

def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")

def guest_ok(port):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=1)
        s.sendall(b"GET /metadata/instance?api-version=2025-04-07 HTTP/1.1\r\nHost: x\r\nMetadata: true\r\nConnection: close\r\n\r\n")
        data = s.recv(64)
        s.close()
        return data.startswith(b"HTTP/1.1 200")
    except OSError:
        return False

def run(binary, data, args, port=18490, keep=False):
    t0 = time.monotonic()
    p = subprocess.Popen([binary, "serve", "--listen", f"127.0.0.1:{port}", "--control", f"127.0.0.1:{port+1}",
                          "--data", data, "--callers", "source-address", "--rate-limit", "0"] + args,
                         stdout=subprocess.DEVNULL, stderr=open(f"{data}.stderr", "w"))
    hwm = 0
    while not guest_ok(port):
        if p.poll() is not None:
            print(open(f"{data}.stderr").read()[-2000:]); sys.exit(1)
        time.sleep(0.01)
    t1 = time.monotonic()
    st = status(p.pid)
    c = cpu(p.pid)
    if not keep:
        p.terminate(); p.wait()
    return {"ready_s": round(t1 - t0, 3), "cpu_s": c, **st}, p

if __name__ == "__main__":
    binary, data, mode = sys.argv[1:4]
    extra = sys.argv[4:]
    r, _ = run(binary, data, extra)
    print(json.dumps(r))
