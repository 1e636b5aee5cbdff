#!/usr/bin/env bash
# gpu_check.sh mode `chai`, sourced by gpu_check.sh (it sees OUT, gpus, modes, has, bench, mpi).
# Issue 7: LLaMA-7B shape, batch 16, context 4096 (3968 prompt + 128 new), dense vs the paper
# schedule in one process (`--compare`: the two modes alternate on one engine, and the last table
# gives the speedup beside the byte bound).
timeout 400 build-gpu/chai bench --model configs/models/llama-7b.json --random-weights --device cuda --dtype fp16 \
  --max-seq-len 4096 --batch 16 --input-len 3968 --output-len 128 --warmup 1 --iters 2 \
  --chai configs/chai/llama-7b.json --compare --json "$OUT/llama7b-b16-compare.json" \
  2>"$OUT/llama7b-b16-compare.err" | tee "$OUT/llama7b-b16-compare.md"
tail -2 "$OUT/llama7b-b16-compare.err"
