#!/usr/bin/env bash
# gpu_check.sh mode `blocks`, sourced by gpu_check.sh (it sees OUT, gpus, modes, has, bench, mpi).
# The KV block size against issue 7's dense-vs-SDPA target and end to end. Kernel 4 copies each
# (layer, side, head) block as one piece (8 KB at blocks of 32 positions, head_dim 128); SDPA reads
# one contiguous run per head, and our kernel on contiguous runs was 1.5-4% faster than on shuffled
# blocks (attention-decode-h200.md). Larger blocks make longer pieces. In one call: attention_bench
# at each of BLOCKS_SIZES (default 32 64 128) and sdpa_decode_bench.py, alternating for
# BLOCKS_ROUNDS rounds (default 2), compare_sdpa.py's table per block size; then LLaMA-7B TPOT
# (BLOCKS_BATCHES, default 1,8, prompt 512) at each of BLOCKS_E2E (default 32 64) in turn, BLOCKS_ROUNDS rounds, and
# (BLOCKS_CHAI=1) the CHAI comparison at batch 16, 3968 + 128 tokens, at each.
shapes=(--batches "${BLOCKS_ATTN_BATCHES:-1,8,32}" --contexts "${BLOCKS_CONTEXTS:-1024,2048,4096,16384}")
for round in $(seq "${BLOCKS_ROUNDS:-2}"); do
  for b in ${BLOCKS_SIZES:-32 64 128}; do
    timeout 150 build-gpu/benchmarks/attention_bench "${shapes[@]}" --block "$b" > "$OUT/blocks-ours-$b-$round.md" 2>&1 ||
      echo "attention_bench block $b round $round: exit $?"
  done
  PYTHONUNBUFFERED=1 timeout 300 python3 benchmarks/scripts/sdpa_decode_bench.py "${shapes[@]}" \
    > "$OUT/blocks-sdpa-$round.md" 2>&1 || echo "sdpa_decode_bench round $round: exit $?"
done
for b in ${BLOCKS_SIZES:-32 64 128}; do
  echo "== blocks of $b"
  python3 benchmarks/scripts/compare_sdpa.py --ours "$OUT"/blocks-ours-"$b"-*.md --sdpa "$OUT"/blocks-sdpa-*.md |
    tee "$OUT/blocks-vs-sdpa-$b.md"
done
for round in $(seq "${BLOCKS_ROUNDS:-2}"); do
  for b in ${BLOCKS_E2E:-32 64}; do
    timeout 150 build-gpu/chai bench --model configs/models/llama-7b.json --random-weights --device cuda --dtype fp16 \
      --max-seq-len 4096 --batch "${BLOCKS_BATCHES:-1,8}" --input-len 512 --output-len 128 --warmup 1 --iters 2 \
      --kv-block-size "$b" 2>"$OUT/blocks-e2e-$b-r$round.err" | tee "$OUT/blocks-e2e-$b-r$round.md" |
      grep "^| [0-9]" | cut -d'|' -f2-10 | sed "s/^/r$round block=$b /"
  done
done
[ "${BLOCKS_CHAI:-0}" = 1 ] || return 0
for b in ${BLOCKS_E2E:-32 64}; do
  timeout 200 build-gpu/chai bench --model configs/models/llama-7b.json --random-weights --device cuda --dtype fp16 \
    --max-seq-len 4096 --batch 16 --input-len 3968 --output-len 128 --warmup 1 --iters 2 \
    --chai configs/chai/llama-7b.json --compare --kv-block-size "$b" 2>"$OUT/blocks-chai-$b.err" |
    tee "$OUT/blocks-chai-$b.md" | tail -4 | sed "s/^/block=$b /"
done
