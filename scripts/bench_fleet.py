#!/usr/bin/env python3
"""Driver of scripts/bench-fleet.sh (read it for the method): etcd and two azimds on loopback,
writes through A, reads through B until the write is served."""
import json, os, shutil, signal, socket, subprocess, sys, tempfile, time, http.client

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def start_etcd(d):
    c, p, m = free_port(), free_port(), free_port()
    u = lambda port: f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(["etcd", "--name", "b", "--data-dir", f"{d}/etcd",
        "--listen-client-urls", u(c), "--advertise-client-urls", u(c),
        "--listen-peer-urls", u(p), "--initial-advertise-peer-urls", u(p),
        "--initial-cluster", f"b={u(p)}", "--initial-cluster-state", "new",
        "--listen-metrics-urls", u(m), "--logger", "zap", "--log-outputs", f"{d}/etcd.log"])
    deadline = time.time() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", c), 0.2).close(); break
        except OSError:
            if time.time() > deadline: sys.exit("etcd did not start")
            time.sleep(0.02)
    return proc, f"127.0.0.1:{c}"

def start_azimds(binary, d, name, endpoint):
    data, log = f"{d}/{name}", f"{d}/{name}.log"
    # The fleet's key-encryption key (--store etcd:// requires one since the keys are shared
    # through etcd): one file for both hosts.
    kek = f"{d}/fleet.kek"
    if not os.path.exists(kek):
        with open(kek, "wb") as f: f.write(os.urandom(32))
        os.chmod(kek, 0o600)
    proc = subprocess.Popen([binary, "serve", "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0",
        "--data", data, "--rate-limit", "0", "--callers", "source-address", "--store",
        f"etcd://{endpoint}", "--etcd-prefix", "/bench/", "--host-name", name, "--kek-file", kek],
        stderr=open(log, "w"))
    deadline = time.time() + 30
    while time.time() < deadline and proc.poll() is None:
        for line in open(log):
            if "listen=" in line:
                field = lambda k: line.split(f" {k}=")[1].split()[0]
                token = open(f"{data}/control-token").read().strip()
                return proc, field("listen"), field("control"), token
        time.sleep(0.05)
    sys.exit(f"azimds {name} did not start:\n" + open(log).read())

def call(addr, method, path, body=None, token=None):
    host, port = addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    headers = {"Metadata": "true"}
    if token: headers["Authorization"] = f"Bearer {token}"
    if body is not None: headers["Content-Type"] = "application/json"
    conn.request(method, path, None if body is None else json.dumps(body), headers)
    r = conn.getresponse(); data = r.read(); conn.close()
    return r.status, data

def served_name(guest):
    try:
        status, data = call(guest, "GET", "/metadata/instance/compute/name?api-version=2021-02-01&format=text")
        return data.decode() if status == 200 else None
    except (http.client.RemoteDisconnected, ConnectionError):
        return None

def pct(xs, p):
    xs = sorted(xs); return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]

def main():
    binary, writes = sys.argv[1], int(sys.argv[2])
    d = tempfile.mkdtemp(prefix="azimds-bench-fleet-")
    procs = []
    try:
        etcd, endpoint = start_etcd(d); procs.append(etcd)
        a, _, control_a, token_a = start_azimds(binary, d, "a", endpoint); procs.append(a)
        b, guest_b, _, _ = start_azimds(binary, d, "b", endpoint); procs.append(b)
        vm = {"host": "b", "callers": ["127.0.0.1"], "instance": {"compute": {"name": "n0"}}}
        assert call(control_a, "PUT", "/v1/vms/v", vm, token_a)[0] == 201
        while served_name(guest_b) != "n0": pass
        visible, patches = [], []
        for i in range(1, writes + 1):
            name = f"n{i}"
            start = time.perf_counter()
            status, _ = call(control_a, "PATCH", "/v1/vms/v", {"instance": {"compute": {"name": name}}}, token_a)
            patched = time.perf_counter()
            assert status == 200, status
            while served_name(guest_b) != name: pass
            visible.append((time.perf_counter() - start) * 1000); patches.append((patched - start) * 1000)
        load = os.getloadavg()[0]
        print(f"fleet: {writes} writes through host A, served by host B (one etcd member, loopback; load {load:.2f})")
        for label, xs in (("write on A -> served by B", visible), ("PATCH on A acknowledged", patches)):
            print(f"  {label:28} p50 {pct(xs,50):6.2f} ms  p90 {pct(xs,90):6.2f} ms  p99 {pct(xs,99):6.2f} ms  max {max(xs):6.2f} ms")
    finally:
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
            try: p.wait(10)
            except subprocess.TimeoutExpired: p.kill(); p.wait()
        shutil.rmtree(d, ignore_errors=True)

main()
