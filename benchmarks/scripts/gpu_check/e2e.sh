#!/usr/bin/env bash
# gpu_check.sh mode `e2e`, sourced by gpu_check.sh (it sees OUT, gpus, modes, has, bench, mpi).
# LLaMA-7B shape, random weights, fp16, TP=1: the issue-6 table (dense), then CHAI (paper schedule).
timeout 300 build-gpu/chai bench --model configs/models/llama-7b.json --random-weights --device cuda --dtype fp16 \
  --max-seq-len 4096 --batch ${E2E_BATCHES:-1,8,32,64} --input-len 512,2048 --output-len 128 --warmup 1 --iters 2 \
  --json "$OUT/llama7b-dense.json" 2>"$OUT/llama7b-dense.err" | tee "$OUT/llama7b-dense.md"
tail -3 "$OUT/llama7b-dense.err"
# Prefill kernel 1 (CHAI_PREFILL_KERNEL=1; kernel 2 is the default): TTFT and prefill TFLOP/s at
# 512 and 2048 tokens, batch 1 and 8, against the table above.
CHAI_PREFILL_KERNEL=1 timeout 300 build-gpu/chai bench --model configs/models/llama-7b.json --random-weights \
  --device cuda --dtype fp16 --max-seq-len 4096 --batch 1,8 --input-len 512,2048 --output-len 8 --warmup 1 --iters 2 \
  2>&1 | grep -E "^\| [0-9]"
