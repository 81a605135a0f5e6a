#!/usr/bin/env python3
"""Per-round ratios from an anchors.sh raw.tsv: for every cell (path x connections) and target,
the median µs of CPU 1 per request and p99, and the median over rounds of target / REF (the
rounds are interleaved, so a round's ratio cancels most of the box's drift between rounds).

    python3 bench/ratios.py OUT/raw.tsv [REF ...]

REF defaults to l4. Several REFs print one ratio column each. This is how bench/RESULTS.md
§34–§37 computed "median of per-round ratios (range)".
"""

import csv
import statistics
import sys


def load(path):
    cells = {}
    with open(path) as f:
        for row in csv.reader(f, delimiter="\t"):
            if not row or row[0].startswith("#") or row[0] == "proto":
                continue
            _, target, urlpath, conns, rep, rps = row[:6]
            p99_us, cpu1 = row[7], row[11]
            if float(rps) <= 0:
                continue
            us_per_req = float(cpu1) * 10000 / float(rps)  # % of one core -> µs per request
            cells.setdefault((urlpath, int(conns)), {}).setdefault(target, {})[int(rep)] = (us_per_req, float(p99_us) / 1000)
    return cells


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    refs = sys.argv[2:] or ["l4"]
    cells = load(sys.argv[1])
    print("path\tconns\ttarget\tus_per_req\tp99_ms\t" + "\t".join(f"/{r} (min-max)" for r in refs))
    for (urlpath, conns), targets in sorted(cells.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        for target, reps in targets.items():
            us = statistics.median(v[0] for v in reps.values())
            p99 = statistics.median(v[1] for v in reps.values())
            cols = []
            for ref in refs:
                base = targets.get(ref, {})
                rs = [reps[k][0] / base[k][0] for k in reps if k in base]
                cols.append(f"{statistics.median(rs):.2f} ({min(rs):.2f}-{max(rs):.2f})" if rs else "-")
            print(f"{urlpath}\t{conns}\t{target}\t{us:.1f}\t{p99:.2f}\t" + "\t".join(cols))


if __name__ == "__main__":
    main()
