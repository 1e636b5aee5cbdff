#!/usr/bin/env python3
"""PyTorch side of the decode-attention comparison (issue 7): SDPA dense decode, and CHAI written
in plain PyTorch, on the shapes of benchmarks/attention_bench.cc.

One query row per sequence attends over a contiguous KV cache (PyTorch has no paged cache; this
only favours it). Each case is captured in a CUDA graph as a run of calls that rotate over
several copies of the cache (together at least 4x the L2), as attention_bench does, and
replayed, so launch overhead is not counted against PyTorch and repeated calls do not find their
K/V in L2 (with one copy, a batch-1 cache of 1k positions, 16.8 MB, stayed L2-resident across
replays and SDPA was timed at L2 speed). Bytes are what each variant must read: dense K+V of every head; CHAI
K of the representatives + V of every head. Copy bandwidth is measured in the same run
(device-to-device copy of 1 GiB, read + write bytes), as chai's MeasureCopyBandwidth does.

    python3 benchmarks/scripts/sdpa_decode_bench.py [--batches 1,8,32] [--contexts 1024,4096,16384]
"""
import argparse

import torch
import torch.nn.functional as F

HEADS, HEAD_DIM, REPS = 32, 128, 4


def time_graph(fn, iters):
    """Mean microseconds of fn() replayed from a CUDA graph."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    graph.replay()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        graph.replay()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) * 1e3 / iters


def copy_bandwidth():
    src = torch.empty(1 << 29, dtype=torch.float16, device="cuda")  # 1 GiB
    dst = torch.empty_like(src)
    us = time_graph(lambda: dst.copy_(src), 20)
    return 2 * src.numel() * src.element_size() / (us * 1e-6)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--contexts", default="1024,4096,16384")
    parser.add_argument("--iters", type=int, default=50)
    args = parser.parse_args()
    torch.manual_seed(0)
    bw = copy_bandwidth()
    print(f"device {torch.cuda.get_device_name()}, torch {torch.__version__}, fp16, {HEADS} heads x {HEAD_DIM}, "
          f"CHAI {REPS} representatives; copy bandwidth {bw / 1e9:.0f} GB/s")
    print("| batch | context | SDPA us | SDPA GB/s | % copy BW | torch CHAI us | torch CHAI GB/s | % copy BW |")
    print("|---|---|---|---|---|---|---|---|")
    members = HEADS // REPS
    l2_bytes = getattr(torch.cuda.get_device_properties(0), "L2_cache_size", 50 << 20)
    for b in map(int, args.batches.split(",")):
        for ctx in map(int, args.contexts.split(",")):
            dense_bytes = 2 * b * HEADS * ctx * HEAD_DIM * 2
            chai_bytes = (b * REPS + b * HEADS) * ctx * HEAD_DIM * 2
            copies = int(min(16, max(1, -(-4 * l2_bytes // dense_bytes))))
            calls = max(copies, 8)
            q = torch.randn(b, HEADS, 1, HEAD_DIM, dtype=torch.float16, device="cuda")
            ks = [torch.randn(b, HEADS, ctx, HEAD_DIM, dtype=torch.float16, device="cuda") for _ in range(copies)]
            vs = [torch.randn_like(k) for k in ks]
            k_reps = [k[:, ::members].contiguous() for k in ks]  # CHAI keeps K of representatives only
            scale = HEAD_DIM ** -0.5

            # The outputs stay where PyTorch puts them (the graph's pool): a copy into a fixed buffer
            # would add a kernel per call that the kernels compared against do not run.
            def dense():
                for i in range(calls):
                    F.scaled_dot_product_attention(q, ks[i % copies], vs[i % copies])

            def chai():
                for i in range(calls):
                    # Representatives' scores once; each member reuses them with its own V.
                    s = torch.matmul(q[:, ::members], k_reps[i % copies].transpose(-1, -2)) * scale
                    p = torch.softmax(s.float(), dim=-1).to(torch.float16)
                    p = p.repeat_interleave(members, dim=1)  # [b, heads, 1, ctx]
                    torch.matmul(p, vs[i % copies])

            t_dense = time_graph(dense, args.iters) / calls
            t_chai = time_graph(chai, args.iters) / calls
            g_dense, g_chai = dense_bytes / (t_dense * 1e3), chai_bytes / (t_chai * 1e3)
            print(f"| {b} | {ctx} | {t_dense:.1f} | {g_dense:.0f} | {100 * g_dense * 1e9 / bw:.0f}% | "
                  f"{t_chai:.1f} | {g_chai:.0f} | {100 * g_chai * 1e9 / bw:.0f}% |")
            del q, ks, vs, k_reps
            torch.cuda.empty_cache()

if __name__ == "__main__":
    main()
