#!/usr/bin/env bash
# gpu_check.sh mode `prefetch`, sourced by gpu_check.sh (it sees OUT, gpus, modes, has, bench, mpi).
# The L2 prefetch experiment (CHAI_L2_PREFETCH_MB, off by default; issue #6): batch-1 decode leaves
# DRAM idle during split + append, attention and the norms between the weight-streaming GEMVs, and
# the knob prefetches the first N MiB of the next GEMV's weights into L2 meanwhile. Its tests (the
# op, its fork/join inside a recorded graph, bit-identical engine logits, the knob through the
# binary, also with the join at the step's end and per-line prefetches), then LLaMA-7B TPOT at
# batch 1 (PREFETCH_BATCHES; prompt 512), alternating, two rounds: off; joined before each GEMV
# (CHAI_L2_PREFETCH_JOIN=gemv) at 8 MiB; joined at the step's end at 8, 16 and 32 MiB; the same
# with per-line prefetches (CHAI_L2_PREFETCH_LINES=1) at 16 and 32 MiB.
# First run (2026-11-27, H200, joined before each GEMV, bulk prefetches): 0.28 ms slower at 8-16
# MiB, 0.58 ms at 24-32 (llama-7b-tp1-h200.md).
for t in l2_prefetch_gpu_test l2_prefetch_engine_gpu_test; do
  timeout 240 "build-gpu/tests/$t" --gtest_brief=1 > "$OUT/prefetch-$t.log" 2>&1
  echo "$t: exit $? $(grep -E '^\[  (PASSED|FAILED|  SKIPPED)' "$OUT/prefetch-$t.log" | tr '\n' ' ')"
done
for env in "CHAI_L2_PREFETCH_JOIN=end" "CHAI_L2_PREFETCH_JOIN=end CHAI_L2_PREFETCH_LINES=1"; do
  env $env timeout 240 build-gpu/tests/l2_prefetch_engine_gpu_test --gtest_brief=1 > "$OUT/prefetch-engine-variant.log" 2>&1
  echo "$env l2_prefetch_engine_gpu_test: exit $? $(grep -E '^\[  (PASSED|FAILED)' "$OUT/prefetch-engine-variant.log" | tr '\n' ' ')"
done
prefetch_e2e() {  # $1: a label for the output lines and files; the environment is the caller's
  timeout 150 build-gpu/chai bench --model configs/models/llama-7b.json --random-weights --device cuda --dtype fp16 \
    --max-seq-len 4096 --batch "${PREFETCH_BATCHES:-1}" --input-len 512 --output-len 128 --warmup 1 --iters 2 \
    2>"$OUT/prefetch-e2e-$1.err" | tee "$OUT/prefetch-e2e-$1.md" | grep "^| [0-9]" | cut -d'|' -f2-10 | sed "s/^/$1 /"
}
for round in 1 2; do
  CHAI_L2_PREFETCH_MB=0 prefetch_e2e "r$round-off"
  CHAI_L2_PREFETCH_MB=8 CHAI_L2_PREFETCH_JOIN=gemv prefetch_e2e "r$round-gemvjoin-mb8"
  for mb in 8 16 32; do
    CHAI_L2_PREFETCH_MB=$mb CHAI_L2_PREFETCH_JOIN=end prefetch_e2e "r$round-endjoin-mb$mb"
  done
  for mb in 16 32; do
    CHAI_L2_PREFETCH_MB=$mb CHAI_L2_PREFETCH_JOIN=end CHAI_L2_PREFETCH_LINES=1 prefetch_e2e "r$round-lines-endjoin-mb$mb"
  done
done
