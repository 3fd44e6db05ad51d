#!/usr/bin/env python3
"""Table and plot of a scripts/bench-curve.sh run: OUT/points.jsonl -> OUT/curve.csv,
OUT/curve.md (printed too) and OUT/curve.png (three log-log panels: start time, import time,
RSS, each with a dashed line of linear growth through the smallest count).

    python3 scripts/bench_curve_plot.py target/bench-curve [--no-plot]

The exponent columns are log(y2 / y1) / log(n2 / n1) between a count and the one before:
1.0 is linear growth, below 1 is better than linear (fixed costs still dominate at small counts).
"""
import csv
import json
import math
import os
import sys

COLUMNS = ["count", "file_bytes", "store_bytes", "import_s", "import_cpu_s", "import_peak_mb",
           "start_s", "start_cpu_s", "start_rss_mb"]


def exponent(prev, cur, key):
    a, b = prev.get(key), cur.get(key)
    if not a or not b or a <= 0 or b <= 0:
        return "—"
    return f"{math.log(b / a) / math.log(cur['count'] / prev['count']):.2f}"


def table(points, skipped):
    lines = [
        "| VMs | file MB | import s (CPU s) | import peak RSS MB | start s, median (CPU s) | RSS after start MB "
        "| RSS per VM KiB | store MB | growth exponent: import s / peak / start s / RSS |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    prev = None
    for p in points:
        exps = " / ".join(exponent(prev, p, k) for k in ("import_s", "import_peak_mb", "start_s", "start_rss_mb")) if prev else "—"
        lines.append(
            f"| {p['count']:,} | {p['file_bytes'] / 1e6:,.1f} | {p['import_s']:.2f} ({p['import_cpu_s']:.2f}) "
            f"| {p['import_peak_mb']:,.1f} | {p['start_s']:.2f} ({p['start_cpu_s']:.2f}) | {p['start_rss_mb']:,.1f} "
            f"| {p['start_rss_mb'] * 1024 / p['count']:.1f} | {p['store_bytes'] / 1e6:,.1f} | {exps} |")
        prev = p
    for s in skipped:
        lines.append(f"| {s['count']:,} | skipped: {s['skipped']} | | | | | | | |")
    return "\n".join(lines) + "\n"


def plot(points, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = [p["count"] for p in points]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    panels = [
        ("start from the store (median)", "seconds", [("wall, spawn → first 200", "start_s"), ("CPU", "start_cpu_s")]),
        ("import into an empty store", "seconds", [("wall, spawn → first 200", "import_s"), ("CPU", "import_cpu_s")]),
        ("memory", "MB", [("RSS after start", "start_rss_mb"), ("import peak (VmHWM)", "import_peak_mb")]),
    ]
    for ax, (title, unit, series) in zip(axes, panels):
        for label, key in series:
            ys = [p[key] for p in points]
            ax.plot(n, ys, marker="o", label=label)
            if ys[0] > 0:
                ax.plot(n, [ys[0] * x / n[0] for x in n], linestyle="--", linewidth=0.8, color="grey")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("VMs")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.grid(True, which="both", linewidth=0.3)
        ax.legend(fontsize=8, title="dashed: linear growth", title_fontsize=7)
    fig.suptitle("azimds: start, import and RSS against the number of VMs (log-log)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(out, draw):
    rows = [json.loads(line) for line in open(os.path.join(out, "points.jsonl"))]
    points = sorted((r for r in rows if "skipped" not in r), key=lambda r: r["count"])
    skipped = [r for r in rows if "skipped" in r]
    with open(os.path.join(out, "curve.csv"), "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        for p in points:
            w.writerow([p[c] for c in COLUMNS])
    md = table(points, skipped)
    open(os.path.join(out, "curve.md"), "w").write(md)
    print(md)
    if draw and len(points) >= 2:
        plot(points, os.path.join(out, "curve.png"))
        print(f"plot: {os.path.join(out, 'curve.png')}")
    print(f"table: {os.path.join(out, 'curve.md')}; data: {os.path.join(out, 'curve.csv')}")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--no-plot"]
    if len(args) != 1:
        sys.exit(__doc__)
    main(args[0], "--no-plot" not in sys.argv)
