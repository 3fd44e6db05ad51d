#!/usr/bin/env python3
"""Where a fleet host's CPU goes under guest load, etcd up and then killed (issue #11).

    python3 scripts/bench_fleet_threads.py target/release/azimds   # a --features fleet build
    ROUNDS=3 SECONDS_PER_ROUND=8 python3 scripts/bench_fleet_threads.py BINARY

One etcd member and one host (`--workers 1`, pinned to CPU 0) on loopback, one VM assigned to
it; `wrk -t1 -c64` on CPU 1 asks for /metadata/instance for each round. Each round reports the
requests served and the host's CPU per request, split by thread name from
/proc/PID/task/*/stat (`tokio-rt-worker`: the guest plane; `azimds-etcd`: the etcd client's
own runtime), ROUNDS rounds with etcd up, then ROUNDS with etcd SIGKILLed. CPU per request and
the etcd runtime's share do not depend on how busy the machine is; req/s does, so it is
printed but not compared. Cleans up its etcd, host and directory.
"""
import glob, http.client, json, os, shutil, socket, subprocess, sys, tempfile, time

ROUNDS = int(os.environ.get("ROUNDS", "3"))
SECONDS = int(os.environ.get("SECONDS_PER_ROUND", "8"))
TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    return port


def start_etcd(d):
    client, peer, metrics = free_port(), free_port(), free_port()
    url = lambda port: f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(["etcd", "--name", "t", "--data-dir", f"{d}/etcd",
        "--listen-client-urls", url(client), "--advertise-client-urls", url(client),
        "--listen-peer-urls", url(peer), "--initial-advertise-peer-urls", url(peer),
        "--initial-cluster", f"t={url(peer)}", "--initial-cluster-state", "new",
        "--listen-metrics-urls", url(metrics), "--logger", "zap", "--log-outputs", f"{d}/etcd.log"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", client), 0.2).close()
            return proc, f"127.0.0.1:{client}"
        except OSError:
            if time.time() > deadline: sys.exit("etcd did not start within 20 s")
            time.sleep(0.02)


def start_host(binary, d, endpoint):
    kek = f"{d}/kek"
    with open(kek, "wb") as f: f.write(os.urandom(32))
    os.chmod(kek, 0o600)
    log = f"{d}/host.log"
    proc = subprocess.Popen(["taskset", "-c", "0", binary, "serve", "--listen", "127.0.0.1:0",
        "--control", "127.0.0.1:0", "--data", f"{d}/host", "--rate-limit", "0",
        "--callers", "source-address", "--store", f"etcd://{endpoint}", "--etcd-prefix",
        "/threads/", "--host-name", "a", "--workers", "1", "--kek-file", kek,
        "--max-connections-per-caller", "80"],  # wrk's 64 connections come from one caller
        stdout=subprocess.DEVNULL, stderr=open(log, "w"))
    deadline = time.time() + 30
    while time.time() < deadline and proc.poll() is None:
        ready = [l for l in open(log) if " listen=" in l]
        if ready:
            field = lambda key: ready[0].split(f" {key}=")[1].split()[0]
            return proc, field("listen"), field("control"), open(f"{d}/host/control-token").read().strip()
        time.sleep(0.05)
    sys.exit("the host did not start:\n" + open(log).read())


def thread_ticks(pid):
    ticks = {}
    for task in glob.glob(f"/proc/{pid}/task/*/stat"):
        try:
            stat = open(task).read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        ticks[task] = (name, int(fields[11]) + int(fields[12]))  # utime + stime
    return ticks


def round_(pid, guest, label):
    before = thread_ticks(pid)
    out = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", "-c64", f"-d{SECONDS}s", "-H",
        "Metadata: true", f"http://{guest}/metadata/instance?api-version=2021-02-01"],
        capture_output=True, text=True, check=True).stdout
    after = thread_ticks(pid)
    if "Non-2xx" in out: sys.exit(f"{label}: answers other than 2xx:\n{out}")
    requests = int(next(l for l in out.splitlines() if "requests in" in l).split()[0])
    by_name = {}
    for task, (name, ticks) in after.items():
        by_name[name] = by_name.get(name, 0) + ticks - before.get(task, (name, 0))[1]
    total = sum(by_name.values()) / TICK
    split = ", ".join(f"{n} {t / TICK:.2f}" for n, t in sorted(by_name.items(), key=lambda x: -x[1]) if t)
    print(f"{label}: {requests} requests, {1e6 * total / requests:.2f} CPU-us per request "
          f"({total:.2f} CPU-s: {split or 'none'})", flush=True)
    return 1e6 * total / requests, by_name.get("azimds-etcd", 0) / TICK


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else "target/release/azimds"
    d = tempfile.mkdtemp(prefix="azimds-threads.")
    etcd = host = None
    try:
        etcd, endpoint = start_etcd(d)
        host, guest, control, token = start_host(binary, d, endpoint)
        h, p = control.rsplit(":", 1)
        c = http.client.HTTPConnection(h, int(p), timeout=10)
        c.request("PUT", "/v1/vms/v", json.dumps({"callers": ["127.0.0.1"], "host": "a",
            "instance": {"compute": {"name": "v"}}}),
            {"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        if c.getresponse().status != 201: sys.exit("PUT /v1/vms/v failed")
        time.sleep(2)
        up = [round_(host.pid, guest, f"etcd up, round {i + 1}") for i in range(ROUNDS)]
        etcd.kill(); etcd.wait(); time.sleep(3)
        down = [round_(host.pid, guest, f"etcd killed, round {i + 1}") for i in range(ROUNDS)]
        median = lambda xs: sorted(xs)[len(xs) // 2]
        print(f"CPU per request, median: {median([u for u, _ in up]):.2f} us up, "
              f"{median([k for k, _ in down]):.2f} us killed "
              f"({median([k for k, _ in down]) / median([u for u, _ in up]):.3f}x); "
              f"the etcd client's runtime: {sum(e for _, e in up):.2f} CPU-s up, "
              f"{sum(e for _, e in down):.2f} CPU-s killed, in {ROUNDS * SECONDS} s each")
    finally:
        for proc in (host, etcd):
            if proc and proc.poll() is None: proc.kill(); proc.wait()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
