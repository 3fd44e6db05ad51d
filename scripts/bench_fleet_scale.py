#!/usr/bin/env python3
"""Driver of scripts/bench-fleet-scale.sh (read it for the method and the knobs): a host's cold
start from an etcd holding COUNT VMs, and its guest throughput with etcd up against etcd down.

    scripts/bench_fleet_scale.py AZIMDS_BIN VMS_JSON OUT_DIR

VMS_JSON is examples/scale_vms.rs's output (`{"vms":[` then one VM per line). Every record goes
to OUT_DIR/records.jsonl (one JSON object per line, with "step"); the summary to stdout.
"""
import json, os, re, signal, shutil, socket, statistics, subprocess, sys, tempfile, time
import urllib.error, urllib.request

sys.dont_write_bytecode = True   # no scripts/__pycache__ from importing bench_start
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_start import cpu, guest_ok, status  # noqa: E402  (the same probes as bench-scale)

ENV = os.environ
COUNT_SERVED = [int(n) for n in ENV.get("SERVED", "1000 all").replace("all", "0").split()]
STARTS = int(ENV.get("STARTS", "3"))
SETTLE = float(ENV.get("SETTLE", "1"))
ROUNDS = int(ENV.get("ROUNDS", "3"))
DURATION = ENV.get("DURATION", "10s")
WARMUP = ENV.get("WARMUP", "2s")
CONNECTIONS = int(ENV.get("CONNECTIONS", "64"))
OUTAGE = ENV.get("OUTAGE", "kill")  # kill: SIGKILL, restarted after; stop: SIGSTOP/SIGCONT;
                                    # none: a control, etcd stays up in the "down" runs too
OUTAGE_SETTLE = float(ENV.get("OUTAGE_SETTLE", "3"))
SERVER_CPU, CLIENT_CPU = ENV.get("SERVER_CPU", "0"), ENV.get("CLIENT_CPU", "1")
PORT_BASE = int(ENV.get("PORT_BASE", "18700"))
QUOTA = int(ENV.get("QUOTA_BYTES", str(8 << 30)))
HOST = "bench-host"
OTHER_HOSTS = 99
PREFIX = "/bench/"
GUEST, CONTROL = PORT_BASE, PORT_BASE + 1
ETCD_PORTS = (PORT_BASE + 10, PORT_BASE + 11, PORT_BASE + 12)   # client, peer, metrics
ENDPOINT = f"127.0.0.1:{ETCD_PORTS[0]}"
CLK_TCK = os.sysconf("SC_CLK_TCK")

binary, vms_json, out = sys.argv[1], sys.argv[2], sys.argv[3]
records = open(os.path.join(out, "records.jsonl"), "a")


def log(msg):
    print(f"[bench-fleet-scale {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def record(step, **d):
    d = {"step": step, "loadavg": os.getloadavg(), **d}
    records.write(json.dumps(d) + "\n")
    records.flush()
    return d


def port_free(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def write_layout(path, served):
    """The export file (docs/fleet.md "Moving between stores"): vm-local and every k-th VM
    assigned to HOST, the others spread over OTHER_HOSTS host names; served=0: all to HOST."""
    total = 0
    step = None
    with open(vms_json) as src, open(path, "w") as dst:
        dst.write(json.dumps({"kind": "header", "format": "azimds-store", "version": 1,
                              "backend": "redb", "keys": False}) + "\n")
        lines = [l for l in src if l.startswith("{\"callers\"")]
        count = len(lines)
        if served:
            step = count // served
        mine = 0
        for i, line in enumerate(lines):
            entry = json.loads(line.rstrip().rstrip(","))
            ours = not served or entry["id"] == "vm-local" or (i % step == 0 and mine < served - 1)
            if ours and entry["id"] != "vm-local" and served:
                mine += 1
            entry["host"] = HOST if ours else f"host-{i % OTHER_HOSTS + 1:02d}"
            dst.write(json.dumps({"kind": "vm", "id": entry["id"], "origin": "api", "entry": entry},
                                 separators=(",", ":")) + "\n")
            total += 1
    return total, (mine + 1 if served else total)


class Etcd:
    def __init__(self, d):
        self.dir, self.proc = d, None

    def start(self):
        c, p, m = ETCD_PORTS
        u = lambda port: f"http://127.0.0.1:{port}"
        t0 = time.monotonic()
        self.proc = subprocess.Popen(["etcd", "--name", "bench", "--data-dir", f"{self.dir}/data",
            "--listen-client-urls", u(c), "--advertise-client-urls", u(c),
            "--listen-peer-urls", u(p), "--initial-advertise-peer-urls", u(p),
            "--initial-cluster", f"bench={u(p)}", "--initial-cluster-state", "new",
            "--listen-metrics-urls", u(m), "--quota-backend-bytes", str(QUOTA),
            "--logger", "zap", "--log-outputs", f"{self.dir}/etcd.log"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while not self.healthy():
            if self.proc.poll() is not None or time.monotonic() - t0 > 60:
                sys.exit("etcd did not start:\n" + open(f"{self.dir}/etcd.log").read()[-3000:])
            time.sleep(0.05)
        return time.monotonic() - t0

    def healthy(self):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{ETCD_PORTS[2]}/health", timeout=1) as r:
                return json.load(r).get("health") == "true"
        except (OSError, ValueError):
            return False

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def db_size(self):
        out = subprocess.run(["etcdctl", "--endpoints", ENDPOINT, "endpoint", "status", "-w", "json"],
                             capture_output=True, text=True, check=True).stdout
        return json.loads(out)[0]["Status"]["dbSize"]


def import_file(path, kek):
    t0 = time.monotonic()
    p = subprocess.Popen([binary, "store", "import", "--store", f"etcd://{ENDPOINT}", "--etcd-prefix", PREFIX,
                          "--kek-file", kek, "--host-name", HOST, path],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    said = p.stdout.read().decode(errors="replace")
    _, code, usage = os.wait4(p.pid, 0)
    code = p.returncode = os.waitstatus_to_exitcode(code)
    if code != 0:
        sys.exit(f"import failed ({code}):\n{said[-3000:]}")
    return {"wall_s": round(time.monotonic() - t0, 2), "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "said": said.strip()[-500:]}


def spawn_host(data, kek, logfile, pinned):
    args = [binary, "serve", "--listen", f"127.0.0.1:{GUEST}", "--control", f"127.0.0.1:{CONTROL}",
            "--data", data, "--callers", "source-address", "--rate-limit", "0",
            "--store", f"etcd://{ENDPOINT}", "--etcd-prefix", PREFIX, "--kek-file", kek, "--host-name", HOST]
    if pinned:
        args = ["taskset", "-c", SERVER_CPU] + args + ["--workers", "1",
                "--max-connections-per-caller", str(CONNECTIONS + 16)]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=open(logfile, "w"))


def control(data, path):
    token = open(os.path.join(data, "control-token")).read().strip()
    req = urllib.request.Request(f"http://127.0.0.1:{CONTROL}{path}", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError as e:
        return None, str(e).encode()


def readyz():
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{CONTROL}/readyz", timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def busy_s():
    """Non-idle CPU seconds of the whole machine so far (all CPUs, /proc/stat)."""
    with open("/proc/stat") as fh:
        f = fh.readline().split()
    return sum(int(f[i]) for i in (1, 2, 3, 6, 7, 8)) / CLK_TCK


def timed_start(data, kek, logfile, etcd):
    """Spawn -> the ready line (the log line with ` listen=`) and -> the first guest 200; the
    host's CPU, etcd's CPU and the whole machine's in that time."""
    e0, b0 = cpu(etcd.proc.pid), busy_s()
    t0 = time.monotonic()
    p = spawn_host(data, kek, logfile, pinned=False)
    ready_line = None
    while True:
        if p.poll() is not None:
            sys.exit(f"the host exited ({p.returncode}):\n" + open(logfile).read()[-3000:])
        if ready_line is None and " listen=" in open(logfile, errors="replace").read():
            ready_line = time.monotonic() - t0
        if guest_ok(GUEST):
            break
        if time.monotonic() - t0 > 600:
            p.kill()
            sys.exit("the host did not serve within 600 s")
        time.sleep(0.01)
    first = time.monotonic() - t0
    etcd_cpu, busy = cpu(etcd.proc.pid) - e0, busy_s() - b0
    # The guest listener accepts just before the ready line is logged, so a guest 200 can
    # come first: wait for the line (up to 10 s) rather than report none.
    while ready_line is None and time.monotonic() - t0 < first + 10:
        if " listen=" in open(logfile, errors="replace").read():
            ready_line = time.monotonic() - t0
        else:
            time.sleep(0.005)
    if ready_line is None:
        sys.exit("the host served but logged no ready line:\n" + open(logfile).read()[-3000:])
    st, c = status(p.pid), cpu(p.pid)
    time.sleep(SETTLE)
    settled = status(p.pid)["VmRSS"]
    code, body = control(data, "/v1/status")
    served = None
    if code == 200:
        served = json.loads(body).get("vms")
        if isinstance(served, (list, dict)):
            served = len(served)
    stop(p)
    return {"ready_line_s": round(ready_line, 3), "first_200_s": round(first, 3), "cpu_s": c,
            "etcd_cpu_s": round(etcd_cpu, 2), "machine_busy_cpu_s": round(busy, 2),
            "rss_mb": st["VmRSS"], "rss_settled_mb": settled, "hwm_mb": st["VmHWM"],
            "threads": st["Threads"], "status_vms": served}


def to_ms(token):
    n = float(re.match(r"[0-9.]+", token).group(0))
    unit = token[len(re.match(r"[0-9.]+", token).group(0)):]
    return n / 1000 if unit == "us" else n * 1000 if unit == "s" else n


def wrk(duration, pid, tag):
    url = f"http://127.0.0.1:{GUEST}/metadata/instance?api-version=2025-04-07"
    c0, t0, b0 = cpu(pid), time.monotonic(), busy_s()
    ru0 = os.times()
    run = subprocess.run(["taskset", "-c", CLIENT_CPU, "wrk", "-t1", f"-c{CONNECTIONS}", f"-d{duration}",
                          "--latency", "-H", "Metadata: true", url], capture_output=True, text=True)
    c1, wall, busy = cpu(pid), time.monotonic() - t0, busy_s() - b0
    ru1 = os.times()
    client = (ru1.children_user - ru0.children_user) + (ru1.children_system - ru0.children_system)
    open(os.path.join(out, "raw", f"wrk-{tag}.txt"), "w").write(run.stdout + run.stderr)
    text = run.stdout
    rps = float(re.search(r"Requests/sec:\s+([0-9.]+)", text).group(1))
    lat = {m.group(1): to_ms(m.group(2)) for m in re.finditer(r"^\s+(50|99)%\s+(\S+)", text, re.M)}
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    requests = int(re.search(r"(\d+) requests in", text).group(1))
    return {"rps": rps, "requests": requests, "cpu_us_per_req": round((c1 - c0) * 1e6 / requests, 2),
            "client_cpu_s": round(client, 2), "foreign_cpu_s": round(max(0.0, busy - (c1 - c0) - client), 2), "p50_ms": lat.get("50"), "p99_ms": lat.get("99"),
            "non2xx": int(non2xx.group(1)) if non2xx else 0, "socket_errors": "Socket errors" in text,
            "server_cpu_s": round(c1 - c0, 2), "wall_s": round(wall, 2)}


def wait_ready(want, within):
    t0 = time.monotonic()
    while time.monotonic() - t0 < within:
        if readyz() == want:
            return round(time.monotonic() - t0, 2)
        time.sleep(0.1)
    return None


def outage(etcd, data, kek, served):
    log(f"outage: host pinned to CPU {SERVER_CPU} (--workers 1), wrk -t1 -c{CONNECTIONS} -d{DURATION} on CPU {CLIENT_CPU}; "
        f"etcd down = {dict(kill='SIGKILL, restarted after', stop='SIGSTOP, SIGCONT after', none='up all the same (a control)')[OUTAGE]}")
    p = spawn_host(data, kek, os.path.join(out, "raw", "host-outage.stderr"), pinned=True)
    while not guest_ok(GUEST):
        if p.poll() is not None:
            sys.exit("the outage host exited:\n" + open(os.path.join(out, "raw", "host-outage.stderr")).read()[-3000:])
        time.sleep(0.05)
    wait_ready(200, 30)
    wrk(WARMUP, p.pid, "warmup")
    runs = []
    try:
        for rnd in range(1, ROUNDS + 1):
            for state in (("up", "down") if rnd % 2 else ("down", "up")):
                extra = {}
                if state == "down" and OUTAGE != "none":
                    if OUTAGE == "kill":
                        etcd.kill()
                    else:
                        etcd.proc.send_signal(signal.SIGSTOP)
                    time.sleep(OUTAGE_SETTLE)
                    extra["readyz_before"] = readyz()
                else:
                    extra["readyz_before"] = readyz()
                r = wrk(DURATION, p.pid, f"{state}-r{rnd}")
                extra["readyz_after"] = readyz()
                if state == "down" and OUTAGE != "none":
                    t0 = time.monotonic()
                    if OUTAGE == "kill":
                        etcd.start()
                    else:
                        etcd.proc.send_signal(signal.SIGCONT)
                    back = wait_ready(200, 60)
                    extra["readyz_200_after_restore_s"] = None if back is None else round(time.monotonic() - t0, 2)
                runs.append(record("outage", served=served, round=rnd, etcd=state, outage=OUTAGE, **r, **extra))
                log(f"round {rnd} etcd {state:4}: {r['rps']:9.0f} req/s  p50 {r['p50_ms']:.3f} ms  p99 {r['p99_ms']:.3f} ms  "
                    f"server CPU {r['server_cpu_s']} s ({r['cpu_us_per_req']} us/req), foreign {r['foreign_cpu_s']} s  non-2xx {r['non2xx']}  readyz {extra['readyz_before']}->{extra['readyz_after']}"
                    f"  load {os.getloadavg()[0]:.2f}")
    finally:
        if etcd.proc and OUTAGE == "stop":
            etcd.proc.send_signal(signal.SIGCONT)
        stop(p)
    return runs


def main():
    os.makedirs(os.path.join(out, "raw"), exist_ok=True)
    for port in (GUEST, CONTROL, *ETCD_PORTS):
        if not port_free(port):
            sys.exit(f"port {port} is in use (set PORT_BASE)")
    summary = []
    for served in COUNT_SERVED:
        label = "all" if served == 0 else str(served)
        d = tempfile.mkdtemp(prefix=f"azimds-bench-fleet-scale-{label}-", dir=ENV.get("TMPDIR_BASE"))
        etcd = Etcd(d)
        try:
            kek = os.path.join(d, "kek")
            with open(kek, "wb") as fh:
                fh.write(os.urandom(32))
            os.chmod(kek, 0o600)
            path = os.path.join(d, "export.jsonl")
            total, ours = write_layout(path, served)
            log(f"layout {label}: {total} VMs, {ours} on {HOST}, the rest on {OTHER_HOSTS} other hosts; "
                f"export file {os.path.getsize(path) / 1e6:.1f} MB")
            etcd.start()
            imp = import_file(path, kek)
            os.remove(path)
            db = etcd.db_size()
            du = int(subprocess.run(["du", "-sb", f"{d}/data"], capture_output=True, text=True).stdout.split()[0])
            rec = record("import", served=label, vms=total, ours=ours, **imp, etcd_db_bytes=db, etcd_dir_bytes=du)
            log(f"import: {imp['wall_s']} s wall, {imp['cpu_s']} CPU-s, peak RSS {imp['peak_rss_mb']} MB; "
                f"etcd dbSize {db / 2**20:.0f} MiB (data dir {du / 2**20:.0f} MiB)")
            data = os.path.join(d, "host")
            starts = []
            for n in range(STARTS + 1):   # the first start makes the keys: reported apart
                s = timed_start(data, kek, os.path.join(out, "raw", f"start-{label}-{n}.stderr"), etcd)
                starts.append(record("start", served=label, n=n, first=(n == 0), **s))
                log(f"start {n}{' (first: makes keys)' if n == 0 else ''}: ready line {s['ready_line_s']:.2f} s, "
                    f"first 200 {s['first_200_s']:.2f} s, CPU {s['cpu_s']} s (etcd {s['etcd_cpu_s']} s, machine {s['machine_busy_cpu_s']} s), RSS {s['rss_mb']} MB "
                    f"({s['rss_settled_mb']} MB {SETTLE:g} s later), peak {s['hwm_mb']} MB, status vms {s['status_vms']}")
            runs = outage(etcd, data, kek, label) if ROUNDS > 0 and served else []
            summary.append((label, total, ours, rec, starts, runs))
        finally:
            etcd.kill()
            if os.path.exists(f"{d}/etcd.log"):   # kept: its slow-request warnings explain outliers
                shutil.copy(f"{d}/etcd.log", os.path.join(out, "raw", f"etcd-{label}.log"))
            shutil.rmtree(d, ignore_errors=True)
    print_summary(summary)


def print_summary(summary):
    med = statistics.median
    print(f"fleet at scale: one etcd member ({subprocess.run(['etcd', '--version'], capture_output=True, text=True).stdout.split()[2]}, "
          f"quota {QUOTA >> 30} GiB, fsync on), loopback; {os.cpu_count()} CPUs; load {os.getloadavg()[0]:.2f} at the end")
    for label, total, ours, imp, starts, runs in summary:
        rest = [s for s in starts if not s["first"]] or starts
        print(f"\n{total} VMs in etcd, {ours} served by this host:")
        print(f"  import (azimds store import, one txn per VM): {imp['wall_s']} s, {imp['cpu_s']} CPU-s, peak RSS "
              f"{imp['peak_rss_mb']} MB; etcd dbSize {imp['etcd_db_bytes'] / 2**20:.0f} MiB")
        print(f"  cold start, median of {len(rest)} (first start apart: ready line {starts[0]['ready_line_s']} s, "
              f"first 200 {starts[0]['first_200_s']} s):")
        print(f"    spawn -> ready line {med(s['ready_line_s'] for s in rest):.2f} s; -> first guest 200 "
              f"{med(s['first_200_s'] for s in rest):.2f} s (all: {', '.join(str(s['first_200_s']) for s in rest)}); "
              f"CPU {med(s['cpu_s'] for s in rest):.2f} s, etcd's CPU {med(s.get('etcd_cpu_s', 0) for s in rest):.2f} s, "
              f"whole machine {med(s.get('machine_busy_cpu_s', 0) for s in rest):.2f} CPU-s")
        print(f"    RSS after start {med(s['rss_mb'] for s in rest):.1f} MB, {SETTLE:g} s later "
              f"{med(s['rss_settled_mb'] for s in rest):.1f} MB; peak {med(s['hwm_mb'] for s in rest):.1f} MB; "
              f"load avg during starts {', '.join('%.2f' % s['loadavg'][0] for s in rest)}")
        if runs:
            up = [r["rps"] for r in runs if r["etcd"] == "up"]
            down = [r["rps"] for r in runs if r["etcd"] == "down"]
            pairs = [d["rps"] / u["rps"] for u, d in zip([r for r in runs if r["etcd"] == "up"],
                                                           [r for r in runs if r["etcd"] == "down"])]
            print(f"  guest throughput, etcd up vs etcd down ({OUTAGE}), {len(up)} rounds each, GET /metadata/instance:")
            fu = [r["foreign_cpu_s"] for r in runs if r["etcd"] == "up"]
            fd = [r["foreign_cpu_s"] for r in runs if r["etcd"] == "down"]
            print(f"    up   {med(up):9.0f} req/s (median; {', '.join(f'{x:.0f}' for x in up)}; "
                  f"foreign CPU-s {', '.join(f'{x:.1f}' for x in fu)})")
            print(f"    down {med(down):9.0f} req/s (median; {', '.join(f'{x:.0f}' for x in down)}; "
                  f"foreign CPU-s {', '.join(f'{x:.1f}' for x in fd)})")
            cu = [r["cpu_us_per_req"] for r in runs if r["etcd"] == "up"]
            cd = [r["cpu_us_per_req"] for r in runs if r["etcd"] == "down"]
            print(f"    server CPU per request: up {med(cu):.2f} us, down {med(cd):.2f} us (medians; down/up {med(cd) / med(cu):.3f}); "
                  f"foreign CPU per run (other processes) median {med(r['foreign_cpu_s'] for r in runs):.2f} s of {DURATION}")
            print(f"    down/up: {med(down) / med(up):.3f} (ratio of medians), {med(pairs):.3f} (median of per-round ratios); "
                  f"non-2xx {sum(r['non2xx'] for r in runs)}; readyz while down: "
                  f"{sorted({r['readyz_before'] for r in runs if r['etcd'] == 'down'})}; load avg "
                  f"{min(r['loadavg'][0] for r in runs):.2f}-{max(r['loadavg'][0] for r in runs):.2f}")


main()
