#!/usr/bin/env python3
"""Plots the elbow curves that `chai calibrate` writes (CSV: layer,k,error).

    python3 benchmarks/scripts/plot_elbow.py --csv configs/chai/NAME.elbow.csv \
        [--schedule configs/chai/NAME.json] --out NAME.elbow.png

Left: the summed k-means error of each layer against k (the authors' elbow plot). Right: the same
curves divided by their value at k = 1, where the knee of each layer (the "knee_clusters" of the
schedule file) is marked with a dot and the chosen cluster count ("layer_clusters") with a cross.
`chai calibrate --plot PNG` runs this script. Needs matplotlib (pip install matplotlib).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import defaultdict


def read_curves(path: str) -> dict[int, list[tuple[int, float]]]:
    curves: dict[int, list[tuple[int, float]]] = defaultdict(list)
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            curves[int(row["layer"])].append((int(row["k"]), float(row["error"])))
    for points in curves.values():
        points.sort()
    return dict(sorted(curves.items()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", required=True, help="elbow CSV from chai calibrate (layer,k,error)")
    parser.add_argument("--schedule", help="schedule JSON from chai calibrate (marks knees and chosen k)")
    parser.add_argument("--out", required=True, help="PNG to write")
    parser.add_argument("--title", default="CHAI elbow curves")
    args = parser.parse_args()
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plot_elbow.py: matplotlib is not installed (pip install matplotlib)", file=sys.stderr)
        return 1

    curves = read_curves(args.csv)
    if not curves:
        print(f"plot_elbow.py: {args.csv} has no rows", file=sys.stderr)
        return 1
    knees, chosen = {}, {}
    if args.schedule:
        with open(args.schedule) as f:
            schedule = json.load(f)
        knees = dict(enumerate(schedule.get("knee_clusters", [])))
        chosen = dict(enumerate(schedule.get("layer_clusters", [])))

    fig, (raw, norm) = plt.subplots(1, 2, figsize=(12, 4.5))
    cmap = plt.get_cmap("viridis")
    for i, (layer, points) in enumerate(curves.items()):
        color = cmap(i / max(1, len(curves) - 1))
        ks = [k for k, _ in points]
        errors = [e for _, e in points]
        first = errors[0] if errors[0] > 0 else 1.0
        raw.plot(ks, errors, marker=".", color=color, label=f"layer {layer}")
        norm.plot(ks, [e / first for e in errors], color=color, label=f"layer {layer}")
        for marks, style in ((knees, "o"), (chosen, "x")):
            k = marks.get(layer)
            if k is not None and 1 <= k <= len(errors):
                norm.plot([k], [errors[k - 1] / first], style, color=color, markersize=8)
    raw.set_xlabel("clusters k")
    raw.set_ylabel("k-means error (summed over samples)")
    raw.set_title(args.title)
    norm.set_xlabel("clusters k")
    norm.set_ylabel("error / error at k = 1")
    norm.set_title("normalised (o: knee, x: chosen)")
    for ax in (raw, norm):
        ax.grid(alpha=0.3)
        ax.set_xticks(sorted({k for points in curves.values() for k, _ in points}))
    raw.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    return 0


if __name__ == "__main__":
    sys.exit(main())
