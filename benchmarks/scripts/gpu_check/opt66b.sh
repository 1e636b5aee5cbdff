#!/usr/bin/env bash
# gpu_check.sh mode `opt66b`, sourced by gpu_check.sh (it sees OUT, gpus, modes, has, bench, mpi).
# Issue 8: OPT-66B at TP=4, dense vs CHAI (its own call: loading 66B random parameters per run
# and two runs take most of a 10-minute call). Logs go to $OUT/tp.log.
# OPT66B_MODES="off" or "configs/chai/opt-66b-perf.json" runs one of the two (each near 5 minutes).
for mode in ${OPT66B_MODES:-off configs/chai/opt-66b-perf.json}; do
  tag=$([ "$mode" = off ] && echo dense || echo chai)
  echo "OPT-66B TP=4 CHAI $mode"
  BENCH_TIMEOUT=${OPT66B_TIMEOUT:-300} mpi 4 build-gpu/chai bench --model configs/models/opt-66b.json --random-weights \
    --device cuda --dtype fp16 --batch 1,16 --input-len 512 --output-len 128 --warmup 1 --iters 1 --chai "$mode" \
    --json "$OUT/opt66b-tp4-$tag.json" 2>>"$OUT/tp.log" | tee -a "$OUT/tp.log" | grep "^|"
  grep -E "copy bandwidth|error" "$OUT/tp.log" | tail -n 2
done
