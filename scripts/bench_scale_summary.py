#!/usr/bin/env python3
"""Summary of a scripts/bench-scale.sh run: every figure of issue #16 beside its target and its
previous value, for each measured binary; printed and written to OUT/summary.md, with every
record in OUT/results.json.

    python3 scripts/bench_scale_summary.py target/bench-scale

The previous figures (PREVIOUS below) are copied from BENCHMARKS.md and bench/scale.md, each
with the commit and date of its run; edit them there and here together.
"""
import json
import os
import statistics
import sys

MB = 1024 * 1024
GIB_MB = 1024

# Previous figures, at 100,000 VMs unless said: (commit, date) of the run they come from.
PREVIOUS = {
    "start_wall": "1.05 s (`03ba46b`, 2026-12-02 07:30, quiet); 32–43 s (`2bea60b`, 2026-12-01, busy)",
    "start_cpu": "1.02 s (`03ba46b`, 2026-12-02); 16.7–17.2 s (`2bea60b`, 2026-12-01)",
    "start_rss": "576 MiB (`03ba46b`, 2026-12-02); 961 MB (`2bea60b`, 2026-12-01)",
    "touch_rss": "1,060 MiB (`03ba46b`, 2026-12-02); 5,149 MB (`0c536a9`, 2026-11-26, run D)",
    "import_json_wall": "10.48 s (`03ba46b`, 2026-12-02, quiet); 104 s (`2bea60b`, 2026-12-01, busy)",
    "import_json_cpu": "9.73 s (`03ba46b`, 2026-12-02); 32.0 s (`2bea60b`, 2026-12-01)",
    "import_json_peak": "1,332 MiB (`03ba46b`, 2026-12-02); 8,949 MB (`2bea60b`, 2026-12-01)",
    "import_yaml_wall": "36.8 s (`03ba46b`, 2026-12-02, quiet)",
    "import_yaml_cpu": "36.0 s (`03ba46b`, 2026-12-02)",
    "import_yaml_peak": "5,416 MiB (`03ba46b`, 2026-12-02)",
    "reimport_wall": "1.63 s, not parsed (`03ba46b`, 2026-12-02)",
    "bad_entry": "exit 1 after 8.6 s, named file, VM and path, store unchanged (`03ba46b`, 2026-12-02)",
    "per_vm_start": "5.7 KiB (`03ba46b`, 2026-12-02); ≈ 9.7 KiB (`2bea60b`, 2026-12-01)",
    "per_vm_touch": "10.7 KiB (`03ba46b`, 2026-12-02); ≈ 53 KiB (`0c536a9`, 2026-11-26)",
    "store_file": "789 MB (`03ba46b`, 2026-12-02); 570 MB (`2bea60b`, 2026-12-01)",
    "ratio_json": "0.996 (27 rounds pooled, `1599b7e`, 2026-11-26); 1.017 (1 × 3 s, `4b3dd11`)",
    "ratio_text": "1.001 (`1599b7e`, 2026-11-26); 0.997 (`4b3dd11`)",
    "write_visible": "PUT → visible p99 2.07 ms, ack → visible 0.39 ms (`03ba46b`, 2026-12-02); ack → visible 0.27 ms (`0c536a9`, 2026-11-26)",
    "idle_rss": "14.9 MiB (`03ba46b`, 2026-12-02); 12.2 MB (issue #2, 2026-11-26)",
    "ceiling_json": "0.80 (`c80e630`, 2026-12-02, busy); 0.90 pooled (issue #2, 2026-11-26)",
    "ceiling_text": "0.88 (`c80e630`, 2026-12-02); 0.91 pooled (issue #2, 2026-11-26)",
}


def load(out, name):
    path = os.path.join(out, name)
    return [json.loads(line) for line in open(path)] if os.path.exists(path) else []


def paired_ratio(runs, kind, a, b):
    """Median over rounds of a's req/s / b's req/s (the two runs of a round are close in time)."""
    rounds = {}
    for x in runs:
        if x["url"] == kind:
            rounds.setdefault(x["round"], {})[x["server"]] = x
    ratios = [r[a]["rps"] / r[b]["rps"] for r in rounds.values() if a in r and b in r]
    return (statistics.median(ratios), ratios) if ratios else (None, [])


def fmt_s(v):
    return "—" if v is None else f"{v:.2f} s"


def fmt_mb(v):
    return "—" if v is None else f"{v:,.0f} MB" if v >= 100 else f"{v:.1f} MB"


def verdict(value, ok):
    if value is None:
        return "—"
    return "yes" if ok(value) else "**NO**"


class Figures:
    """The figures of one binary, from the records of its starts."""

    def __init__(self, label, starts, touch, idle_ref):
        self.label = label
        mine = [s for s in starts if s.get("binary") == label]
        self.phase = {s["phase"]: s for s in mine}
        self.starts = [s for s in mine if s["phase"].startswith("start") and "ready_s" in s]
        self.touch = next((t for t in touch if t.get("binary") == label), None)
        self.idle = self.phase.get("idle")
        self.idle_ref = idle_ref

    def med(self, key):
        vals = [s[key] for s in self.starts if s.get(key) is not None]
        return statistics.median(vals) if vals else None

    def start_rss(self):
        vals = [max(s["VmRSS"], s["VmRSS_settled"]) for s in self.starts]
        return statistics.median(vals) if vals else None

    def get(self, phase, key):
        return self.phase.get(phase, {}).get(key)


def bad_entry_check(bad, starts, files):
    """Whether the bad file was refused as the contract says, and the store left as it was."""
    if not bad:
        return None, "not run"
    b = bad[0]
    index = files.get("bad_index")
    text = b.get("stderr_tail", "")
    checks = {
        "exit non-zero": b.get("exit_code") not in (None, 0),
        "names the file": b.get("file", "\0") in text,
        f"names VM {index}": f"VM {index} " in text or f"VM {index}:" in text,
        "names the JSON path": f"vms[{index}].instance.compute.zone" in text,
    }
    phase = {s["phase"]: s for s in starts if s.get("binary") == b.get("binary")}
    before, after = phase.get("bad-before", {}).get("control"), phase.get("bad-after", {}).get("control")
    if before and after:
        checks["store unchanged (VM count, ETags)"] = before == after and before["/v1/status"]["status"] == 200
    else:
        checks["store unchanged (VM count, ETags)"] = False
    count = before["/v1/status"]["body"].get("vms") if before else None
    detail = "; ".join(("" if ok else "NOT ") + name for name, ok in checks.items())
    detail += f"; exit {b.get('exit_code')} after {b.get('exit_s')} s; {count} VMs before and after"
    return all(checks.values()), detail


def main(out):
    run = json.load(open(os.path.join(out, "run.json"))) if os.path.exists(os.path.join(out, "run.json")) else {}
    starts, runs, lat, touch, mem = (load(out, n) for n in ("starts.jsonl", "runs.jsonl", "latency.jsonl", "touch.jsonl", "memory.jsonl"))
    bad, files = load(out, "bad.jsonl"), (load(out, "files.jsonl") or [{}])[0]
    labels = run.get("labels") or sorted({s["binary"] for s in starts})
    count = run.get("count") or files.get("count")
    figs = {label: Figures(label, starts, touch, None) for label in labels}
    rows = []  # (figure, target, previous key, {label: (now text, met text)})

    def row(name, target, prev, value_of, show, ok=None, only_main=False):
        cells = {}
        for i, label in enumerate(labels):
            v = value_of(figs[label]) if not (only_main and i > 0) else None
            cells[label] = (show(v) if v is not None else "—", verdict(v, ok) if ok else "—")
        rows.append((name, target, PREVIOUS.get(prev, "—"), cells))

    n = run.get("starts", 5)
    row(f"start from the store: spawn → first guest 200, median of {n}", "< 2 s", "start_wall",
        lambda f: f.med("ready_s"), fmt_s, lambda v: v < 2)
    row("… its CPU seconds, median", "—", "start_cpu", lambda f: f.med("cpu_s"), fmt_s)
    row("RSS after start (the larger of at first 200 and 1 s later), median", "< 1 GiB", "start_rss",
        lambda f: f.start_rss(), fmt_mb, lambda v: v < GIB_MB)
    row("RSS after every VM was fetched once (examples/touch_all.rs)", "< 1 GiB", "touch_rss",
        lambda f: f.touch and f.touch["rss_after_kb"] / 1024, fmt_mb, lambda v: v < GIB_MB)
    for fmt_name, key in (("JSON", "json"), ("YAML", "yaml")):
        phase = f"import-{key}"
        row(f"import {fmt_name} into an empty store: spawn → first guest 200", "< 10 s", f"import_{key}_wall",
            lambda f, p=phase: f.get(p, "ready_s"), fmt_s, lambda v: v < 10)
        row("… its CPU seconds", "—", f"import_{key}_cpu", lambda f, p=phase: f.get(p, "cpu_s"), fmt_s)
        row("… its peak RSS (VmHWM)", "< 2 GiB", f"import_{key}_peak",
            lambda f, p=phase: f.get(p, "VmHWM"), fmt_mb, lambda v: v < 2 * GIB_MB)

    row("first start of a new data directory (keys and token made; before each import)", "reported", None,
        lambda f: f.get("init-data-json-" + f.label, "ready_s"),
        lambda v: f"{v:.2f} s")

    def reimport(f):
        r = f.phase.get("reimport")
        if not r or "ready_s" not in r:
            return None
        noop = r.get("not_parsed_again") or (r.get("written") == 0 and r.get("deleted") == 0)
        return (r["ready_s"], noop, r)

    def show_reimport(v):
        t, noop, r = v
        said = "log: not parsed again" if r.get("not_parsed_again") else (
            f"log: written={r.get('written')} deleted={r.get('deleted')} unchanged={r.get('unchanged')}")
        return f"{t:.2f} s ({r['cpu_s']:.2f} s CPU, peak {fmt_mb(r['VmHWM'])}); {said}"

    row("re-import of the unchanged file: spawn → first 200, and a no-op", "< 3 s, nothing parsed or written",
        "reimport_wall", reimport, show_reimport, lambda v: v[0] < 3 and v[1])
    ok, detail = bad_entry_check(bad, starts, files)
    rows.append(("a file with one bad entry (VM COUNT/2)", "exits non-zero naming the file, `VM <index>`, the JSON path; store unchanged",
                 PREVIOUS["bad_entry"], {labels[0]: (detail, "—" if ok is None else "yes" if ok else "**NO**"),
                                         **{l: ("—", "—") for l in labels[1:]}}))
    idle_main = figs[labels[0]].idle

    def per_vm(total_mb, f):
        idle = f.idle or idle_main
        if total_mb is None or not idle or not count:
            return None
        return (total_mb - max(idle["VmRSS"], idle["VmRSS_settled"])) * MB / count

    kib = lambda v: f"{v / 1024:.1f} KiB ({v:,.0f} B)"
    row("memory per VM after start: (RSS − idle RSS) / VMs", "reported", "per_vm_start",
        lambda f: per_vm(f.start_rss(), f), kib)
    row("memory per VM after every VM was fetched once", "reported", "per_vm_touch",
        lambda f: per_vm(f.touch and f.touch["rss_after_kb"] / 1024, f), kib)
    row("… of which anonymous (RssAnon after start, median)", "reported", None, lambda f: f.med("RssAnon"), fmt_mb)
    row("store file (azimds.redb)", "reported", "store_file",
        lambda f: f.starts and f.starts[-1].get("store_bytes") and f.starts[-1]["store_bytes"] / MB, fmt_mb)
    row("idle RSS: fresh server, demo VM only, --callers single --workers 1", "< 20 MB", "idle_rss",
        lambda f: f.idle and max(f.idle["VmRSS"], f.idle["VmRSS_settled"]), fmt_mb, lambda v: v < 20)
    for kind, name in (("json", "whole document"), ("text", "compute/vmId?format=text")):
        ratio, ratios = paired_ratio(runs, kind, "big", "one")
        rows.append((f"guest throughput, {count:,}-VM store / one-VM store, {name} (median of {len(ratios)} per-round ratios)",
                     "≥ 0.95", PREVIOUS[f"ratio_{kind}"],
                     {l: ((f"{ratio:.3f} ({min(ratios):.3f}–{max(ratios):.3f})", verdict(ratio, lambda v: v >= 0.95))
                          if ratio is not None and i == 0 else ("—", "—")) for i, l in enumerate(labels)}))
    big_lat = next((x for x in lat if x["server"] == "big"), None)
    rows.append(("write-to-visible p99 (PUT → visible; ack → visible), COUNT-VM store", "< 10 ms", PREVIOUS["write_visible"],
                 {l: ((f"{big_lat['put_to_visible_ms']['p99']:.3f} ms; {big_lat['visible_after_ack_ms']['p99']:.3f} ms "
                       f"({big_lat['samples']} samples, visible on first poll {big_lat['visible_on_first_poll']})",
                       verdict(big_lat["put_to_visible_ms"]["p99"], lambda v: v < 10))
                      if big_lat and i == 0 else ("—", "—")) for i, l in enumerate(labels)}))
    for kind, name in (("json", "whole document"), ("text", "compute/vmId?format=text")):
        ratio, ratios = paired_ratio(runs, kind, "one", "ceiling")
        rows.append((f"guest plane / raw-hyper ceiling, one-VM store, {name} (median of {len(ratios)} per-round ratios)",
                     "≥ 0.80 (#2), as before", PREVIOUS[f"ceiling_{kind}"],
                     {l: ((f"{ratio:.3f} ({min(ratios):.3f}–{max(ratios):.3f})", verdict(ratio, lambda v: v >= 0.80))
                          if ratio is not None and i == 0 else ("—", "—")) for i, l in enumerate(labels)}))

    lines = []
    p = lines.append
    p(f"# azimds scale benchmark: {count:,} VMs (+ vm-local)")
    p("")
    m = run.get("machine", {})
    loads = [s["loadavg"] for s in starts if s.get("loadavg") is not None]
    head = (f"Tree `{run.get('git_at_start', '?')}`{' with uncommitted src/ changes' if run.get('src_dirty_at_start') else ''}; "
            f"{m.get('nproc', '?')} CPUs ({m.get('cpu', '?')}), {m.get('mem_total_mb', 0):,} MB")
    if loads:
        head += f"; load average during the timed starts {min(loads):.1f}–{max(loads):.1f}"
    p(head + f"; {run.get('rounds', 0)} throughput rounds × {run.get('duration', '?')}; elapsed {run.get('elapsed_s', '?')} s.")
    if count and count < 100000:
        p("")
        p(f"The targets are for 100,000 VMs; at {count:,} VMs the met? column only checks the script end to end.")
    p("")
    hdr = "| figure | target | previous (commit, date) | " + " | ".join(f"now: {l} | met?" for l in labels) + " |"
    p(hdr)
    p("|" + "---|" * (hdr.count("|") - 1))
    for name, target, prev, cells in rows:
        p(f"| {name} | {target} | {prev} | " + " | ".join(f"{cells[l][0]} | {cells[l][1]}" for l in labels) + " |")
    p("")
    p("Every timed start (scripts/bench_start.py: spawn → first guest 200, polled every 10 ms):")
    p("")
    p("| binary | phase | first 200 s | CPU s | RSS MB | RSS 1 s later MB | peak MB | RssAnon MB | load_ms | log | load avg |")
    p("|---|---|---|---|---|---|---|---|---|---|---|")
    for s in starts:
        if "ready_s" not in s:
            continue
        said = "not parsed again" if s.get("not_parsed_again") else (
            f"written={s.get('written')} unchanged={s.get('unchanged')}" if s.get("written") is not None else "")
        p(f"| {s['binary']} | {s['phase']} | {s['ready_s']:.2f} | {s['cpu_s']:.2f} | {s['VmRSS']:.1f} | {s['VmRSS_settled']:.1f} "
          f"| {s['VmHWM']:.1f} | {s['RssAnon']:.1f} | {s.get('load_ms')} | {said} | {s.get('loadavg', 0):.1f} |")
    if bad:
        p("")
        p("The bad file's message (last lines of the server's stderr):")
        p("")
        p("```")
        p("\n".join(l for l in bad[0].get("stderr_tail", "").strip().splitlines()[-4:]))
        p("```")
    if runs:
        p("")
        p("| URL | server | req/s median (min–max) | p50 ms | p99 ms median | CPU µs/req | runs (noisy kept) |")
        p("|---|---|---|---|---|---|---|")
        for kind in ("json", "text"):
            for srv in ("big", "one", "ceiling"):
                r = [x for x in runs if x["server"] == srv and x["url"] == kind]
                if not r:
                    continue
                med = statistics.median
                p(f"| {kind} | {srv} | {med(x['rps'] for x in r):,.0f} ({min(x['rps'] for x in r):,.0f}–{max(x['rps'] for x in r):,.0f}) "
                  f"| {med(x['p50_ms'] for x in r):.3f} | {med(x['p99_ms'] for x in r):.3f} "
                  f"| {med(x['server_cpu_s'] * 1e6 / x['requests'] for x in r):.2f} | {len(r)} ({sum(1 for x in r if x['noisy'])}) |")
    for t in touch:
        p("")
        p(f"{t['binary']}: every VM fetched once: {t['requests']:,} VMs, {t['failures']} failures, {t['seconds']:.1f} s, "
          f"server CPU {t['server_cpu_s']:.1f} s; RSS {t['rss_before_kb'] / 1024:,.1f} → {t['rss_after_kb'] / 1024:,.1f} MB "
          f"(RssAnon {t['rss_anon_before_kb'] / 1024:,.1f} → {t['rss_anon_after_kb'] / 1024:,.1f} MB)")
    text = "\n".join(lines) + "\n"
    print(text)
    open(os.path.join(out, "summary.md"), "w").write(text)
    json.dump({"run": run, "files": files, "starts": starts, "bad": bad, "throughput_runs": runs, "latency": lat,
               "touch": touch, "memory": mem,
               "figures": [{"figure": r[0], "target": r[1], "previous": r[2], "now": {l: c[0] for l, c in r[3].items()},
                            "met": {l: c[1] for l, c in r[3].items()}} for r in rows]},
              open(os.path.join(out, "results.json"), "w"), indent=1)
    print(f"summary: {os.path.join(out, 'summary.md')}; every record: {os.path.join(out, 'results.json')}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
