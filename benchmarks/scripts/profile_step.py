#!/usr/bin/env python3
"""Per-kernel GPU time of one decode step, from an Nsight Compute CSV.

Usage: profile_step.py NCU_CSV [--steps N] [--prefill] [--layer]

The CSV comes from `ncu --clock-control none --metrics gpu__time_duration.sum --csv` over a run of
`chai bench` with CHAI_NO_GRAPHS=1 (ncu serialises kernels, so each duration is the kernel alone).
A forward pass starts with the embedding kernel, so the kernel list is cut there (the embedding
kernel's second use, gathering last rows for the LM head, stays with its pass); the last N passes
(decode steps) are averaged; with --prefill, the first pass (the prompts' prefill) is shown instead. Prints one row per kernel name: calls per step, microseconds per step,
share of the step. The sum is the GPU time of a step with no launch gaps: compare it with TPOT to
see what the host and the kernel boundaries cost. With --layer, one decoder layer's kernels in
order instead (the pass's repeating period after the embedding), each the median over the layers
and steps: the same kernel at different places of a layer (the o and down projections share a
GEMV configuration) gets its own row.
"""
import csv
import sys
from collections import OrderedDict


def KernelBaseName(full):
    """'void ns::(anonymous namespace)::Foo<__half, 4>(const T1 *, int)' -> 'Foo<__half, 4>'."""
    name = full.replace("(anonymous namespace)", "anon")
    depth = 0
    for i, ch in enumerate(name):  # cut at the parameter list: the first '(' outside template brackets
        depth += ch == "<"
        depth -= ch == ">"
        if ch == "(" and depth == 0:
            name = name[:i]
            break
    name = name.removeprefix("void ").strip()
    depth, start = 0, 0
    for i, ch in enumerate(name):  # drop the namespaces (the last '::' outside template brackets)
        depth += ch == "<"
        depth -= ch == ">"
        if depth == 0 and name.startswith("::", i):
            start = i + 2
    return name[start:]


def LayerPeriod(names):
    """The length of the repeating layer pattern at the start of names, and how many times it repeats."""
    for period in range(2, len(names) // 4 + 1):
        if all(names[i] == names[i + period] for i in range(3 * period)):
            reps = 1
            while (reps + 1) * period <= len(names) and names[reps * period:(reps + 1) * period] == names[:period]:
                reps += 1
            return period, reps
    return None, 0


def PrintLayer(segments):
    """One layer's kernels in order, each the median of its position over every layer and pass."""
    samples = None
    period = None
    for seg in segments:
        body = seg[1:]  # after the embedding
        # A few kernels may come before the first layer (the embedding's all-reduce at TP > 1, OPT's
        # position embedding and its add, the first norm): the pattern starts at most 4 kernels in.
        for skip in range(5):
            p, reps = LayerPeriod([name for _, name, _ in body[skip:]])
            if p is not None and reps >= 2:
                body = body[skip:]
                break
        if p is None or (period is not None and p != period):
            sys.exit("profile_step: no repeating layer pattern found")
        period = p
        if samples is None:
            samples = [[] for _ in range(p)]
            first_body = body
        for r in range(reps):
            for j in range(p):
                samples[j].append(body[r * p + j][2])
    names = [name for _, name, _ in first_body[:period]]
    print(f"| position | kernel | median us | min us | max us |")
    print(f"|---:|---|---:|---:|---:|")
    for j, name in enumerate(names):
        v = sorted(samples[j])
        print(f"| {j} | {name} | {v[len(v) // 2]:.2f} | {v[0]:.2f} | {v[-1]:.2f} |")
    total = sum(sorted(v)[len(v) // 2] for v in samples)
    print(f"| | **layer (sum of medians)** | {total:.2f} | | |")


def main():
    path = sys.argv[1]
    steps = int(sys.argv[sys.argv.index("--steps") + 1]) if "--steps" in sys.argv else 1
    kernels = []  # (id, name, microseconds)
    with open(path, newline="") as f:
        lines = [l for l in f if l.startswith('"')]  # ncu prints its own log lines before the CSV
    for row in csv.DictReader(lines):
        if row.get("Metric Name") != "gpu__time_duration.sum":
            continue
        value = float(row["Metric Value"].replace(",", ""))
        unit = row["Metric Unit"]
        scale = {"ns": 1e-3, "nsecond": 1e-3, "us": 1.0, "usecond": 1.0, "ms": 1e3, "msecond": 1e3, "s": 1e6, "second": 1e6}[unit]
        name = KernelBaseName(row["Kernel Name"])
        kernels.append((int(row["ID"]), name, value * scale))
    kernels.sort()
    # A greedy pass ends with the device argmax; what follows the last one (the bench's own GEMM-rate
    # measurement) belongs to no pass.
    ends = [i for i, (_, name, _) in enumerate(kernels) if "Argmax" in name]
    if ends:
        kernels = kernels[: ends[-1] + 1]
    cuts = [i for i, (_, name, _) in enumerate(kernels) if "Embedding" in name]
    segments = []
    for a, b in zip(cuts, cuts[1:] + [len(kernels)]):
        # The embedding kernel also gathers each sequence's last row before the LM head: a cut
        # followed by only a few kernels belongs to the pass before it.
        if segments and b - a < 8:
            segments[-1] += kernels[a:b]
        else:
            segments.append(kernels[a:b])
    if len(segments) < steps + 1:
        sys.exit(f"profile_step: found {len(segments)} forward passes, need more than {steps}")
    if "--prefill" in sys.argv:
        segments, steps = segments[:1], 1
    else:
        segments = segments[-steps:]
    if "--layer" in sys.argv:
        PrintLayer(segments)
        return
    per_name = OrderedDict()
    for seg in segments:
        for _, name, us in seg:
            calls, total = per_name.get(name, (0, 0.0))
            per_name[name] = (calls + 1, total + us)
    step_us = sum(t for _, t in per_name.values()) / steps
    print(f"| kernel | calls/step | us/step | share |")
    print(f"|---|---:|---:|---:|")
    for name, (calls, total) in sorted(per_name.items(), key=lambda kv: -kv[1][1]):
        print(f"| {name} | {calls / steps:.0f} | {total / steps:.1f} | {100 * total / steps / step_us:.1f}% |")
    print(f"| **sum (GPU time of one step, kernels back to back)** | {sum(c for c, _ in per_name.values()) / steps:.0f} "
          f"| {step_us:.1f} | |")


if __name__ == "__main__":
    main()
