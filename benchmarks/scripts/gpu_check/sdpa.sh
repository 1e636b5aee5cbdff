#!/usr/bin/env bash
# gpu_check.sh mode `sdpa`, sourced by gpu_check.sh (it sees OUT, gpus, modes, has, bench, mpi).
# Issue 7: PyTorch SDPA (and CHAI in plain PyTorch) on the attention_bench shapes.
PYTHONUNBUFFERED=1 timeout 300 python3 benchmarks/scripts/sdpa_decode_bench.py ${SDPA_ARGS:-} | tee "$OUT/sdpa.md"
