#!/usr/bin/env bash
# gpu_check.sh mode `gemvshape`, sourced by gpu_check.sh (it sees OUT, gpus, modes, has, bench, mpi,
# parallel_gtests). The decode GEMV's default chosen by shape (kernels/cuda/gemv.cu DefaultVariant)
# against the choice by width alone (CHAI_GEMV_DEFAULT=width): the GEMV and Q|K|V-append tests,
# gemm_bench's table of the TP shards (unless GEMVSHAPE_SHARDS=0), then (4 GPUs) OPT-66B dense at TP = 4, batch 1 and 16, prompt
# 512, under each setting in turn, GEMVSHAPE_ROUNDS rounds (default 2). Logs: $OUT/gemvshape-*.
parallel_gtests gemvshape ops_gpu_test qkv_append_gpu_test linear_fused_gpu_test
if [ "${GEMVSHAPE_SHARDS:-1}" = 1 ]; then
  timeout 200 build-gpu/benchmarks/gemm_bench 10 shards > "$OUT/gemvshape-shards.txt" 2>&1
  tail -n 19 "$OUT/gemvshape-shards.txt"
fi
if [ "$gpus" -ge 4 ]; then
  for round in $(seq "${GEMVSHAPE_ROUNDS:-2}"); do
    for setting in width shape; do
      echo "OPT-66B TP=4 dense, CHAI_GEMV_DEFAULT=$setting, round $round"
      CHAI_GEMV_DEFAULT=$setting BENCH_TIMEOUT=${OPT66B_TIMEOUT:-300} mpi 4 -x CHAI_GEMV_DEFAULT build-gpu/chai bench \
        --model configs/models/opt-66b.json --random-weights --device cuda --dtype fp16 --batch 1,16 --input-len 512 \
        --output-len 128 --warmup 1 --iters 2 --json "$OUT/gemvshape-opt66b-$setting-r$round.json" \
        2>>"$OUT/gemvshape-opt66b.err" | tee "$OUT/gemvshape-opt66b-$setting-r$round.md" | grep "^| [0-9]"
    done
  done
  grep -E "copy bandwidth|error" "$OUT/gemvshape-opt66b.err" | sort | uniq -c | head -n 5
fi
