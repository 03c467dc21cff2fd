#!/usr/bin/env python3
"""Counts of a SyTest run, per area, from its TAP output (results) and its stderr (which file
each test number came from); with --check, the whitelisted tests that did not pass.

  summarize.py RUN.tap RUN.err [--whitelist FILE] [--check] [--passed OUT] [--failed OUT]

Area: the directory under tests/ (30rooms) or the file's stem for top-level files (11register).
"""
import argparse
import re
import sys
from collections import OrderedDict

RESULT = re.compile(r"^(ok|not ok) (\d+) (.*)$")
TEST_LINE = re.compile(r"^\s+Test (\d+) ")
FILE_LINE = re.compile(r"^(tests/\S+\.pl):$")


def test_name(text):
    """The bare test name of a TAP result line (no directive, no subtest count, no marker)."""
    text = re.sub(r" # (skip|TODO) .*$", "", text)
    text = text.replace("(expected fail) ", "", 1)
    return re.sub(r" \(\d+ subtests\)$", "", text).strip()


def area_of(path):
    parts = path.split("/")
    return parts[1] if len(parts) > 2 else parts[-1].removesuffix(".pl")


def read_areas(err_path):
    areas, current = {}, "?"
    with open(err_path, errors="replace") as f:
        for line in f:
            m = FILE_LINE.match(line.rstrip("\n"))
            if m:
                current = area_of(m.group(1))
                continue
            m = TEST_LINE.match(line)
            if m:
                areas[int(m.group(1))] = current
    return areas


def read_results(tap_path):
    results = OrderedDict()
    with open(tap_path, errors="replace") as f:
        for line in f:
            m = RESULT.match(line.rstrip("\n"))
            if not m:
                continue
            status, num, rest = m.groups()
            if status == "ok":
                outcome = "skip" if " # skip " in rest else "pass"
            else:
                outcome = "fail"
            results[int(num)] = (test_name(rest), outcome)
    return results


def main():
    p = argparse.ArgumentParser()
    p.add_argument("tap")
    p.add_argument("err")
    p.add_argument("--whitelist")
    p.add_argument("--check", action="store_true")
    p.add_argument("--require-all", action="store_true",
                   help="with --check: a whitelisted test that did not run at all fails too (full runs)")
    p.add_argument("--passed", help="write the names of passing tests here")
    p.add_argument("--failed", help="write area<TAB>name of failing tests here")
    a = p.parse_args()

    areas = read_areas(a.err)
    results = read_results(a.tap)
    table = OrderedDict()
    totals = {"pass": 0, "fail": 0, "skip": 0}
    for num, (name, outcome) in results.items():
        row = table.setdefault(areas.get(num, "?"), {"pass": 0, "fail": 0, "skip": 0})
        row[outcome] += 1
        totals[outcome] += 1

    print(f"{'area':<22} {'pass':>5} {'fail':>5} {'skip':>5} {'total':>6}")
    for area in sorted(table):
        r = table[area]
        print(f"{area:<22} {r['pass']:>5} {r['fail']:>5} {r['skip']:>5} {sum(r.values()):>6}")
    print(f"{totals['pass']} passed, {totals['fail']} failed, {totals['skip']} skipped")

    if a.passed:
        with open(a.passed, "w") as f:
            for name, outcome in results.values():
                if outcome == "pass":
                    f.write(name + "\n")
    if a.failed:
        with open(a.failed, "w") as f:
            for num, (name, outcome) in results.items():
                if outcome == "fail":
                    f.write(f"{areas.get(num, '?')}\t{name}\n")

    if a.check and a.whitelist:
        with open(a.whitelist) as f:
            wanted = [l.strip() for l in f if l.strip() and not l.startswith("#")]
        outcome_of = {}
        for name, outcome in results.values():
            # A name SyTest runs twice (rare) counts as passing only if every run passed.
            if outcome_of.get(name, "pass") == "pass":
                outcome_of[name] = outcome
        broken = [n for n in wanted if outcome_of.get(n) not in ("pass",) and n in outcome_of]
        missing = [n for n in wanted if n not in outcome_of]
        for n in broken:
            print(f"REGRESSION: {n} ({outcome_of[n]})")
        # Tests not run at all are regressions of a full run, not of a run of a few files.
        if a.require_all:
            broken += missing
            for n in missing:
                print(f"REGRESSION: {n} (not run)")
        elif missing:
            print(f"({len(missing)} whitelisted tests were not run)")
        if broken:
            print(f"--check: {len(broken)} whitelisted tests did not pass", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
