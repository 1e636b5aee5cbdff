#!/usr/bin/env bash
# gpu_check.sh mode `throughput`, sourced by gpu_check.sh (it sees OUT, gpus, modes, has, bench, mpi).
# Issue 9: LLaMA-7B shape, 4096-token contexts at saturation, dense vs the paper schedule.
for mode in off configs/chai/llama-7b.json; do
  tag=$([ "$mode" = off ] && echo dense || echo chai)
  BENCH_TIMEOUT=400 bench --mode throughput --model configs/models/llama-7b.json --max-seq-len 4096 \
    --num-requests "${TPUT_REQUESTS:-144}" --input-len-dist "fixed:${TPUT_IN:-3584}" \
    --output-len-dist "fixed:${TPUT_OUTPUT:-512}" ${TPUT_KV_GB:+--kv-cache-gb $TPUT_KV_GB} --no-progress --chai "$mode" \
    --json "$OUT/tput-$tag.json" 2>"$OUT/tput-$tag.err" | tee "$OUT/tput-$tag.md"
  tail -2 "$OUT/tput-$tag.err"
done
