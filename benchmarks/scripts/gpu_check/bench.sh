#!/usr/bin/env bash
# gpu_check.sh mode `bench`, sourced by gpu_check.sh (it sees OUT, gpus, modes, has, bench, mpi).
for b in gemm_bench attention_bench; do
  [ -x "build-gpu/benchmarks/$b" ] && timeout 300 "build-gpu/benchmarks/$b" > "$OUT/$b.md" 2>&1 && cat "$OUT/$b.md"
done
