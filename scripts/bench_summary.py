#!/usr/bin/env python3
"""Summarise guest-plane benchmark results written by scripts/bench.sh.

    python3 scripts/bench_summary.py target/bench/results.json
        recomputes the "summary" of that file, writes it back, prints the tables.
    python3 scripts/bench_summary.py A/results.json B/results.json ...
        pools the runs of several files (same binaries, same settings) and prints the
        tables; nothing is written. Rounds are renumbered per file, so pairs stay paired.

Statistics:
  * medians (and min-max) per server and URL, over the runs not flagged "noisy" (all
    runs if every one is noisy);
  * the azimds/ceiling ratio two ways: median over median, and the median of the
    per-round paired ratios (the two servers' runs in one round are adjacent in time,
    so slow drift of the shared machine cancels; rounds with a noisy run are skipped).
    The paired CPU-per-request ratio is the least noisy figure.
"""

import json
import statistics
import sys

med = statistics.median
LABELS = (("json", "/metadata/instance"), ("text", "compute/vmId?format=text"))


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def summarise(runs):
    summary = {}
    for kind, _ in LABELS:
        summary[kind] = {}
        for srv in ("azimds", "ceiling"):
            every = [x for x in runs if x["server"] == srv and x["url"] == kind]
            if not every:
                continue
            r = [x for x in every if not x.get("noisy")] or every
            summary[kind][srv] = {
                "runs": len(every),
                "runs_used": len(r),
                "rps_median": med(x["rps"] for x in r),
                "rps_min": min(x["rps"] for x in r),
                "rps_max": max(x["rps"] for x in r),
                "p50_ms_median": med(x["p50_ms"] for x in r),
                "p99_ms_median": med(x["p99_ms"] for x in r),
                "p99_ms_max": max(x["p99_ms"] for x in r),
                "cpu_us_per_req_median": med(x["cpu_us_per_req"] for x in r),
                "cpu_us_per_req_min": min(x["cpu_us_per_req"] for x in r),
                "cpu_us_per_req_max": max(x["cpu_us_per_req"] for x in r),
                "hwm_kb_max": max(x["hwm_after_kb"] for x in every),
                "client_cpu_s_median": med(x["client_cpu_s"] for x in r),
                "foreign_cpu_s_max": max(x["foreign_cpu_s"] for x in r),
                "noisy_runs_kept": sum(1 for x in every if x.get("noisy")),
            }
        a, c = summary[kind].get("azimds"), summary[kind].get("ceiling")
        if not (a and c):
            continue
        s = summary[kind]
        s["ratio_rps_azimds_over_ceiling"] = a["rps_median"] / c["rps_median"]
        s["ratio_cpu_per_req_azimds_over_ceiling"] = a["cpu_us_per_req_median"] / c["cpu_us_per_req_median"]
        pr, pc = [], []
        for rd in sorted({x["round"] for x in runs if x["url"] == kind}):
            d = {x["server"]: x for x in runs if x["round"] == rd and x["url"] == kind}
            if set(d) != {"azimds", "ceiling"} or any(x.get("noisy") for x in d.values()):
                continue
            pr.append(d["azimds"]["rps"] / d["ceiling"]["rps"])
            pc.append(d["azimds"]["cpu_us_per_req"] / d["ceiling"]["cpu_us_per_req"])
        if pr:
            s["paired_rounds"] = len(pr)
            s["paired_ratio_rps_median"] = med(pr)
            s["paired_ratio_rps_min"], s["paired_ratio_rps_max"] = min(pr), max(pr)
            s["paired_ratio_cpu_per_req_median"] = med(pc)
            s["paired_ratio_cpu_per_req_min"], s["paired_ratio_cpu_per_req_max"] = min(pc), max(pc)
    return summary


def print_tables(res, summary, runs, lat, sources):
    cfg = res["config"]
    rounds = len({x["round"] for x in runs})
    print()
    print(
        f"azimds guest-plane benchmark: {rounds} rounds x {cfg['duration']}, "
        f"wrk -t1 -c{cfg['connections']} on CPU {cfg['client_cpu']}, "
        f"servers on CPU {cfg['server_cpu']} with {cfg['workers']} worker(s)"
        + (f"; pooled from {len(sources)} files" if len(sources) > 1 else "")
    )
    if len(sources) > 1:
        for p, d in sources.items():
            print(f"  {p}: started {d.get('started_unix')}, git {d['machine'].get('git')}, {d['config']['rounds']} rounds")
    b = res["bodies"]
    print(f"bodies: instance {b['json_bytes']} B, vmId {b['text_bytes']} B")
    print()
    hdr = (
        "| URL | server | runs used | req/s median (min-max) | p50 ms | p99 ms median (max) "
        "| CPU µs/req median (min-max) | peak RSS MB |"
    )
    print(hdr)
    print("|" + "---|" * (hdr.count("|") - 1))
    for kind, label in LABELS:
        for srv in ("azimds", "ceiling"):
            s = summary[kind].get(srv)
            if not s:
                continue
            print(
                f"| {label} | {srv} | {s['runs_used']}/{s['runs']} "
                f"| {s['rps_median']:,.0f} ({s['rps_min']:,.0f}-{s['rps_max']:,.0f}) "
                f"| {s['p50_ms_median']:.3f} | {s['p99_ms_median']:.3f} ({s['p99_ms_max']:.3f}) "
                f"| {s['cpu_us_per_req_median']:.2f} ({s['cpu_us_per_req_min']:.2f}-{s['cpu_us_per_req_max']:.2f}) "
                f"| {s['hwm_kb_max'] / 1024:.1f} |"
            )
    print()
    print("azimds / ceiling:")
    print("| URL | req/s, median/median | req/s, paired median (min-max) | CPU/req, median/median | CPU/req, paired median (min-max) | pairs |")
    print("|---|---|---|---|---|---|")
    for kind, label in LABELS:
        s = summary[kind]
        if "ratio_rps_azimds_over_ceiling" not in s:
            continue
        pairs = s.get("paired_rounds", 0)
        pr = (
            f"{s['paired_ratio_rps_median']:.3f} ({s['paired_ratio_rps_min']:.3f}-{s['paired_ratio_rps_max']:.3f})"
            if pairs
            else "-"
        )
        pc = (
            f"{s['paired_ratio_cpu_per_req_median']:.3f} ({s['paired_ratio_cpu_per_req_min']:.3f}-{s['paired_ratio_cpu_per_req_max']:.3f})"
            if pairs
            else "-"
        )
        print(
            f"| {label} | {s['ratio_rps_azimds_over_ceiling']:.3f} | {pr} "
            f"| {s['ratio_cpu_per_req_azimds_over_ceiling']:.3f} | {pc} | {pairs} |"
        )
    m = res["memory"]
    print()
    print(
        f"azimds idle RSS right after start: {m['azimds_idle_rss_kb_after_start'] / 1024:.1f} MB "
        f"({m['azimds_threads_after_start']} threads); peak {m['azimds_hwm_kb_end'] / 1024:.1f} MB; "
        f"ceiling idle {m['ceiling_idle_rss_kb_after_start'] / 1024:.1f} MB, peak {m['ceiling_hwm_kb_end'] / 1024:.1f} MB"
    )
    if lat:
        print()
        print("Fixed-rate latency (oha -q RATE --latency-correction, same absolute rate for both servers):")
        print(
            "| URL | server | target req/s | achieved req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms "
            "| non-2xx | server CPU s | foreign CPU s | noisy |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for x in lat:
            print(
                f"| {x['url']} | {x['server']} | {x['target_rps']:,} ({x['point']}) | {fmt(x['achieved_rps'], ',.0f')} "
                f"| {fmt(x['p50_ms'], '.3f')} | {fmt(x['p90_ms'], '.3f')} | {fmt(x['p99_ms'], '.3f')} "
                f"| {fmt(x['p99_9_ms'], '.3f')} | {fmt(x['max_ms'], '.3f')} | {x['non2xx']} "
                f"| {x['server_cpu_s']:.2f} | {x['foreign_cpu_s']:.2f} | {'yes' if x.get('noisy') else ''} |"
            )
            if x["errors"]:
                print(f"  WARNING: {x['server']} {x['url']}: errors {x['errors']}")
            if x["achieved_rps"] and x["achieved_rps"] < 0.97 * x["target_rps"]:
                print(f"  WARNING: {x['server']} {x['url']}: achieved rate is {x['achieved_rps'] / x['target_rps']:.1%} of target")
    print()
    nk = sum(1 for x in runs + lat if x.get("noisy"))
    if nk:
        print(f"WARNING: {nk} run(s) kept despite foreign CPU load (flagged 'noisy'; excluded from the medians where possible)")


def main(paths):
    if not paths:
        sys.exit(__doc__)
    docs = [json.load(open(p)) for p in paths]
    runs, lat = [], []
    for i, d in enumerate(docs):
        for x in d["runs"]:
            runs.append(dict(x, round=x["round"] + 1000 * i))
        lat.extend(d.get("latency", []))
    summary = summarise(runs)
    res = docs[0]
    if len(paths) == 1:
        res["summary"] = summary
        with open(paths[0], "w") as fh:
            json.dump(res, fh, indent=2)
    print_tables(res, summary, runs, lat, dict(zip(paths, docs)))
    if len(paths) == 1:
        print(f"results: {paths[0]}  (elapsed {res.get('elapsed_s')} s)")


if __name__ == "__main__":
    main(sys.argv[1:])
