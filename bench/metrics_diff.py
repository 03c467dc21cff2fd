#!/usr/bin/env python3
"""The difference of Prometheus histograms between two reads of Myelin's metrics page:
the distribution of what happened between them (issue 22: commit times, queue waits,
checkpoints during a measured phase).

    curl -s http://127.0.0.1:18010/_myelin/metrics >before.txt
    ... the measured phase ...
    curl -s http://127.0.0.1:18010/_myelin/metrics >after.txt
    python3 bench/metrics_diff.py before.txt after.txt [--family myelin_db_] [--json]

For each histogram: count, mean, p50/p99/max as the upper bound of the bucket holding them
(exact to within a bucket), and the count above 10 ms.
"""
import argparse
import json
import re
import sys

LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)$')


def parse(path):
    """{(family, labels-without-le): {"buckets": {le: count}, "sum": x, "count": n}}"""
    histograms = {}
    for line in open(path):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = LINE.match(line)
        if not m:
            continue
        name, labels, value = m.group(1), m.group(3) or "", float(m.group(4))
        pairs = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        le = pairs.pop("le", None)
        key_labels = ",".join(f'{k}="{v}"' for k, v in sorted(pairs.items()))
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix):
                family = name[: -len(suffix)]
                entry = histograms.setdefault((family, key_labels), {"buckets": {}, "sum": 0.0, "count": 0.0})
                if suffix == "_bucket" and le is not None:
                    entry["buckets"][float("inf") if le == "+Inf" else float(le)] = value
                elif suffix == "_sum":
                    entry["sum"] = value
                elif suffix == "_count":
                    entry["count"] = value
    return {k: v for k, v in histograms.items() if v["buckets"]}


def quantile(bounds, cumulative, q):
    total = cumulative[-1]
    if total <= 0:
        return None
    rank = max(1.0, q * total)
    for bound, seen in zip(bounds, cumulative):
        if seen >= rank:
            return bound
    return bounds[-1]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--family", default="myelin_db_", help="only families starting with this")
    parser.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    args = parser.parse_args()
    before, after = parse(args.before), parse(args.after)
    out = {}
    for key in sorted(after):
        family, labels = key
        if not family.startswith(args.family):
            continue
        a = after[key]
        b = before.get(key, {"buckets": {}, "sum": 0.0, "count": 0.0})
        bounds = sorted(a["buckets"])
        cumulative = [a["buckets"][x] - b["buckets"].get(x, 0.0) for x in bounds]
        count = cumulative[-1]
        seconds = family.endswith("_seconds")
        scale = 1000.0 if seconds else 1.0   # durations in ms
        over_10ms = count - next((c for x, c in zip(bounds, cumulative) if x >= 0.01), count) if seconds else None
        top = None
        previous = 0.0
        for bound, seen in zip(bounds, cumulative):
            if seen > previous:
                top = bound
            previous = seen
        row = {
            "count": int(count),
            "mean": ((a["sum"] - b["sum"]) / count * scale) if count else None,
            "p50": (lambda v: v * scale if v is not None else None)(quantile(bounds, cumulative, 0.50)),
            "p99": (lambda v: v * scale if v is not None else None)(quantile(bounds, cumulative, 0.99)),
            "max_bucket": (top * scale if top is not None else None),
            "unit": "ms" if seconds else "",
        }
        if seconds:
            row["over_10ms"] = int(over_10ms)
        out[f"{family}{{{labels}}}"] = row
    if args.json:
        print(json.dumps(out))
        return
    fmt = lambda v: "-" if v is None else ("inf" if v == float("inf") else f"{v:g}")
    print(f"{'histogram':64} {'count':>7} {'mean':>9} {'p50':>7} {'p99':>7} {'max≤':>7} {'>10ms':>6}")
    for name, row in out.items():
        mean = "-" if row["mean"] is None else f"{row['mean']:.3f}"
        print(f"{name:64} {row['count']:>7} {mean:>9} {fmt(row['p50']):>7} {fmt(row['p99']):>7} "
              f"{fmt(row['max_bucket']):>7} {row.get('over_10ms', ''):>6}")
    print("(durations in ms; p50/p99/max are bucket upper bounds)")


if __name__ == "__main__":
    sys.exit(main())
