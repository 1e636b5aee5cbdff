#!/usr/bin/env python3
"""Summarise decode kernel 4's per-CTA timelines (attention_bench --timeline FILE, a build with
-DCHAI_V4_TIMELINE=1; kernels/cuda/v4_timeline.h has the words).

Per configuration and pass (dense; CHAI's scores and P·V passes): the launch's span, and over its
CTAs the median (10th-90th percentile) of each phase of a CTA's life in microseconds: init (the
barriers' set-up), items (the scores pass's search for its items), bounds (reading the sequence's
row and length; a scores CTA with several items: through its last item's), loads (the score heads, Q and the block-id window, met at a barrier), issue (the
first stages' copies), first data (issued to the first stage landed), stream (first stage to the
last stage consumed), end (the warps' merge and the output) and the whole CTA; then the gap between a CTA's exit and the next CTA's entry on the same
SM (CTAs after the first wave). SM clocks are converted to time with each CTA's own ratio of
global-timer to clock ticks.

    python3 benchmarks/scripts/v4_timeline.py FILE.csv
"""
import csv
import statistics
import sys
from collections import defaultdict


def pct(values, q):
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def fmt(values):
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    return f"{statistics.median(values):.2f} ({pct(values, 0.1):.2f}-{pct(values, 0.9):.2f})"


def summarise(rows):
    ctas = []
    for r in rows:
        e_ns, x_ns = int(r["entry_ns"]), int(r["exit_ns"])
        clk = {k: int(r[k]) for k in ("entry_clk", "init_clk", "bounds_clk", "barrier_clk", "issued_clk", "first_clk",
                                      "loop_end_clk", "exit_clk", "items_clk")}
        ticks = clk["exit_clk"] - clk["entry_clk"]
        if ticks <= 0 or x_ns <= e_ns or clk["first_clk"] == 0:
            continue  # a CTA without work (a scores CTA that found no item)
        searched = clk["items_clk"] != 0
        us_per_tick = (x_ns - e_ns) / ticks / 1e3
        ctas.append({
            "sm": int(r["sm"]), "entry": e_ns, "exit": x_ns,
            "init": (clk["init_clk"] - clk["entry_clk"]) * us_per_tick,
            "items": (clk["items_clk"] - clk["init_clk"]) * us_per_tick if searched else None,
            "bounds": (clk["bounds_clk"] - (clk["items_clk"] if searched else clk["init_clk"])) * us_per_tick,
            "loads": (clk["barrier_clk"] - clk["bounds_clk"]) * us_per_tick,
            "issue": (clk["issued_clk"] - clk["barrier_clk"]) * us_per_tick,
            "first": (clk["first_clk"] - clk["issued_clk"]) * us_per_tick,
            "stream": (clk["loop_end_clk"] - clk["first_clk"]) * us_per_tick,
            "end": (clk["exit_clk"] - clk["loop_end_clk"]) * us_per_tick,
            "total": (x_ns - e_ns) / 1e3,
        })
    if not ctas:
        return None
    t0 = min(c["entry"] for c in ctas)
    span = (max(c["exit"] for c in ctas) - t0) / 1e3
    gaps = []
    by_sm = defaultdict(list)
    for c in ctas:
        by_sm[c["sm"]].append(c)
    for sm_ctas in by_sm.values():
        for c in sm_ctas:
            before = [o["exit"] for o in sm_ctas if o is not c and o["exit"] <= c["entry"]]
            if before:
                gaps.append((c["entry"] - max(before)) / 1e3)
    return len(ctas), span, ctas, gaps


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: v4_timeline.py FILE.csv")
    groups = defaultdict(list)
    with open(sys.argv[1]) as f:
        for r in csv.DictReader(f):
            groups[(int(r["batch"]), int(r["context"]), int(r["block"]), r["layout"], r["pass"])].append(r)
    print("| B | context | block | layout | pass | CTAs | span us | init us | items us | bounds us | loads us | issue us | "
          "first data us | stream us | end us | CTA us | exit-to-entry gap us (CTAs) |")
    print("|---:|---:|---:|---|---|---:|---:|---|---|---|---|---|---|---|---|---|---|")
    for key in sorted(groups):
        got = summarise(groups[key])
        if got is None:
            continue
        n, span, ctas, gaps = got
        cols = [fmt([c[k] for c in ctas])
                for k in ("init", "items", "bounds", "loads", "issue", "first", "stream", "end", "total")]
        print(f"| {key[0]} | {key[1]} | {key[2]} | {key[3]} | {key[4]} | {n} | {span:.1f} | " + " | ".join(cols) +
              f" | {fmt(gaps)} ({len(gaps)}) |")


if __name__ == "__main__":
    main()
