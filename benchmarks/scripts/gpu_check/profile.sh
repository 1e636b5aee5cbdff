#!/usr/bin/env bash
# gpu_check.sh mode `profile`, sourced by gpu_check.sh (it sees OUT, gpus, modes, has, bench, mpi).
# Per-kernel GPU time of one decode step (LLaMA-7B, fp16, input 512) under Nsight Compute, with
# graphs off so each kernel is timed alone; the sum is the step with no launch gaps (compare TPOT).
# PROFILE_CACHE=none keeps the caches between kernels (as in a real step; ncu's default, all,
# flushes them before each kernel, which inflates the small kernels' times).
for b in ${PROFILE_BATCHES:-1 8 32}; do
  CHAI_NO_GRAPHS=1 timeout 300 ncu --clock-control none --cache-control "${PROFILE_CACHE:-all}" --metrics gpu__time_duration.sum --csv \
    build-gpu/chai bench --model configs/models/llama-7b.json --random-weights --device cuda --dtype fp16 \
    --max-seq-len 4096 --batch "$b" --input-len ${PROFILE_INPUT:-512} --output-len 3 --warmup 0 --iters 1 \
    ${PROFILE_CHAI:+--chai $PROFILE_CHAI} > "$OUT/ncu-b$b.csv" 2>"/tmp/ncu-b$b.err"
  echo "### batch $b, input ${PROFILE_INPUT:-512} ${PROFILE_CHAI:+(CHAI $PROFILE_CHAI)}: kernels of the last decode step"
  python3 benchmarks/scripts/profile_step.py "$OUT/ncu-b$b.csv" --steps 2 | tee "$OUT/profile-b$b.md"
  [ "${PIPESTATUS[0]}" = 0 ] || tail -n 5 "/tmp/ncu-b$b.err"
  echo "### batch $b: one decoder layer's kernels in order (medians over the layers of the last 2 steps)"
  python3 benchmarks/scripts/profile_step.py "$OUT/ncu-b$b.csv" --steps 2 --layer | tee "$OUT/profile-layer-b$b.md"
  echo "### batch $b: kernels of the prefill (${PROFILE_INPUT:-512} tokens per sequence)"
  python3 benchmarks/scripts/profile_step.py "$OUT/ncu-b$b.csv" --prefill | tee "$OUT/profile-prefill-b$b.md"
done
