#!/usr/bin/env python3
"""Decode attention, ours against PyTorch SDPA, from tables measured in the same call.

Reads attention_bench's markdown tables (`--ours`) and sdpa_decode_bench.py's (`--sdpa`), one file
per round, and prints one row per (batch, context): each side's mean time over the rounds, its
spread (min-max), and the ratios issue 7 asks about (dense kernel 4 against SDPA; our CHAI kernel
against CHAI written in PyTorch). Both benchmarks put batch, context and the dense time in columns
1-3 and the CHAI time in column 6 of their rows.
"""
import argparse
import statistics
import sys


def read_rows(paths):
    """{(batch, context): ([dense us per round], [chai us per round])} over the files given."""
    rows = {}
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for line in f:
                cells = [c.strip() for c in line.strip().strip("|").split("|")]
                if len(cells) < 6 or not cells[0].isdigit() or not cells[1].isdigit():
                    continue
                dense, chai = rows.setdefault((int(cells[0]), int(cells[1])), ([], []))
                dense.append(float(cells[2]))
                chai.append(float(cells[5]))
    return rows


def summary(times):
    return f"{statistics.mean(times):.1f} ({min(times):.1f}-{max(times):.1f})"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ours", nargs="+", required=True, help="attention_bench output, one file per round")
    parser.add_argument("--sdpa", nargs="+", required=True, help="sdpa_decode_bench.py output, one file per round")
    args = parser.parse_args()
    ours, sdpa = read_rows(args.ours), read_rows(args.sdpa)
    shapes = sorted(set(ours) & set(sdpa))
    if not shapes:
        sys.exit("compare_sdpa: no (batch, context) measured by both")
    print("| B | context | kernel 4 dense us | SDPA us | dense / SDPA | our CHAI us | torch CHAI us | CHAI / torch CHAI |")
    print("|---:|---:|---|---|---:|---|---|---:|")
    for shape in shapes:
        (od, oc), (sd, sc) = ours[shape], sdpa[shape]
        print(f"| {shape[0]} | {shape[1]} | {summary(od)} | {summary(sd)} | "
              f"{statistics.mean(od) / statistics.mean(sd):.3f} | {summary(oc)} | {summary(sc)} | "
              f"{statistics.mean(oc) / statistics.mean(sc):.3f} |")
    print(f"(means over {len(args.ours)} + {len(args.sdpa)} rounds, min-max in parentheses; a ratio below 1: ours "
          "faster)")


if __name__ == "__main__":
    main()
