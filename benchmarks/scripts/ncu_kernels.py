#!/usr/bin/env python3
"""Mean of each metric per kernel name, from an Nsight Compute CSV (`ncu --csv --metrics ...`).

Usage: ncu_kernels.py NCU_CSV
Prints a markdown table: kernel (template arguments kept, namespaces dropped), launches, and the
mean of every metric the CSV holds, in the CSV's units.
"""
import csv
import sys
from collections import OrderedDict


def main():
    lines = [l for l in open(sys.argv[1], newline="") if l.startswith('"')]  # ncu logs before the CSV
    table = OrderedDict()  # name -> metric -> [values]
    units = OrderedDict()
    launches = {}
    for row in csv.DictReader(lines):
        name = row["Kernel Name"].split("(")[0].replace("void ", "").split("::")[-1]
        metric = row["Metric Name"]
        units[metric] = row["Metric Unit"]
        table.setdefault(name, {}).setdefault(metric, []).append(float(row["Metric Value"].replace(",", "")))
        launches.setdefault(name, set()).add(row["ID"])
    print("| kernel | launches | " + " | ".join(f"{m} ({u})" for m, u in units.items()) + " |")
    print("|---|---:|" + "---:|" * len(units))
    for name, metrics in table.items():
        cells = [f"{sum(v) / len(v):.4g}" if (v := metrics.get(m)) else "-" for m in units]
        print(f"| {name} | {len(launches[name])} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
