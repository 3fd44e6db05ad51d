#!/usr/bin/env python3
"""Summary of scripts/bench-neighbour.sh's results (target/bench-neighbour/results.jsonl).

The first line says what ran (config); every other line is one phase of one round of one
binary, as examples/noisy_neighbour.rs prints it. Prints, per binary and phase, the median
over rounds of the victim's p50, p99 and max, the total of failed requests, the server's CPU
use and the load; then, per binary and attack, the attacked phase's p50 and p99 over the same
round's quiet phase (the median of those per-round ratios).

    python3 scripts/bench_neighbour_summary.py target/bench-neighbour/results.jsonl
"""

import json
import statistics
import sys


def median(values):
    values = [v for v in values if v is not None]
    return f"{statistics.median(values):.3f}" if values else "-"


def ratio(row, quiet, field):
    if row[field] is None or quiet is None or not quiet[field]:
        return None
    return row[field] / quiet[field]


def main(path):
    lines = [json.loads(line) for line in open(path)]
    config, rows = lines[0]["config"], lines[1:]
    print("config:", json.dumps(config))
    keys = []
    for row in rows:
        key = (row["binary"], row["phase"])
        if key not in keys:
            keys.append(key)

    print(f"{'binary':<22} {'phase':<16} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>9} "
          f"{'failed':>7} {'server CPU':>10} {'load':>5}  rounds")
    for binary, phase in keys:
        group = [r for r in rows if (r["binary"], r["phase"]) == (binary, phase)]
        print(f"{binary:<22} {phase:<16} {median(r['p50_ms'] for r in group):>8} "
              f"{median(r['p99_ms'] for r in group):>8} {median(r['max_ms'] for r in group):>9} "
              f"{sum(r['failed'] for r in group):>7} "
              f"{median(r['server_cpu'] for r in group):>10} "
              f"{median(r['load'] for r in group):>5}  {len(group)}")

    print()
    print("attacked / quiet in the same round, median over rounds (- : the victim got no answer)")
    print(f"{'binary':<22} {'phase':<16} {'p50':>7} {'p99':>7}")
    for binary, phase in keys:
        if phase == "quiet":
            continue
        pairs = []
        for row in rows:
            if (row["binary"], row["phase"]) != (binary, phase):
                continue
            quiet = next((q for q in rows if (q["binary"], q["round"], q["phase"])
                          == (binary, row["round"], "quiet")), None)
            pairs.append((ratio(row, quiet, "p50_ms"), ratio(row, quiet, "p99_ms")))
        print(f"{binary:<22} {phase:<16} {median(p for p, _ in pairs):>7} "
              f"{median(q for _, q in pairs):>7}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "target/bench-neighbour/results.jsonl")
