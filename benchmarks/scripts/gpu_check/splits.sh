#!/usr/bin/env bash
# gpu_check.sh mode `splits`, sourced by gpu_check.sh (it sees OUT, gpus, modes, has, bench, mpi).
# Kernel 4's split count at short contexts, where its fixed costs dominate (batch 1, 512
# positions: ~11.5 us for ~2 us of K/V bytes on an H200, 32 layers of a 4.2 ms step): dense
# attention_bench at batch 1 and 8, contexts 512-4096, with CHAI_DECODE_V4_MAX_SPLITS unset (the
# cost model's choice) and capped at 1, 2 and 4; then LLaMA-7B batch 1 / prompt 512 end to end
# under each cap, alternating, two rounds.
for cap in 0 1 2 4; do
  CHAI_DECODE_V4_MAX_SPLITS=$cap timeout 150 build-gpu/benchmarks/attention_bench --batches 1,8 \
    --contexts 512,1024,2048,4096 > "$OUT/splits-bench-cap$cap.md" 2>&1
  grep -E "^\| [0-9]" "$OUT/splits-bench-cap$cap.md" | cut -d'|' -f2-6 | sed "s/^/cap $cap /"
done
for round in 1 2; do
  for cap in 0 1 2 4; do
    CHAI_DECODE_V4_MAX_SPLITS=$cap timeout 240 build-gpu/chai bench --model configs/models/llama-7b.json \
      --random-weights --device cuda --dtype fp16 --max-seq-len 4096 --batch 1 --input-len 512 --output-len 128 \
      --warmup 1 --iters 2 2>"$OUT/splits-e2e-cap$cap-r$round.err" | tee "$OUT/splits-e2e-cap$cap-r$round.md" |
      grep "^| [0-9]" | cut -d'|' -f2-10 | sed "s/^/r$round cap $cap /"
  done
done
