#!/usr/bin/env bash
# gpu_check.sh mode `ratio`, sourced by gpu_check.sh (it sees OUT, gpus, modes, has, bench, mpi).
# Issue 8's scaling target, TP = 4 over TP = 1 at batch 1 (LLaMA-7B fp16, prompt 512), as TP = 1 and
# TP = 4 runs in turn, RATIO_ROUNDS rounds (default 2). First RATIO_TESTS (single-GPU test binaries,
# default: the GEMV's and the L2 hint's), one per GPU in parallel. Logs: $OUT/ratio-*.
read -ra tests <<< "${RATIO_TESTS:-l2_prefetch_gpu_test ops_gpu_test linear_fused_gpu_test qkv_append_gpu_test}"
for i in "${!tests[@]}"; do
  CUDA_VISIBLE_DEVICES=$((i % gpus)) timeout 300 "build-gpu/tests/${tests[$i]}" --gtest_brief=1 \
    > "$OUT/ratio-${tests[$i]}.log" 2>&1 &
done
wait
for t in "${tests[@]}"; do
  echo "$t: $(grep -E '^\[  (PASSED|FAILED)' "$OUT/ratio-$t.log" | tr '\n' ' ')"
  grep -E "^\[  FAILED|Failure" -A3 "$OUT/ratio-$t.log" | head -12
done
if [ "$gpus" -ge 4 ]; then
  for round in $(seq "${RATIO_ROUNDS:-2}"); do
    for np_ in 1 4; do
      mpi "$np_" build-gpu/chai bench --model configs/models/llama-7b.json --random-weights --device cuda --dtype fp16 \
        --batch 1,8 --input-len 512 --output-len 64 --warmup 1 --iters 2 --json "$OUT/ratio-tp$np_-r$round.json" \
        2>>"$OUT/ratio.err" | tee "$OUT/ratio-tp$np_-r$round.md" | grep "^| [0-9]" | cut -d'|' -f2-9 |
        sed "s/^/r$round TP=$np_ /"
    done
  done
fi
