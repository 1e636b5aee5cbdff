#!/usr/bin/env bash
# gpu_check.sh mode `pending`, sourced by gpu_check.sh (it sees OUT, gpus, modes, has, bench, mpi).
# What was written without a GPU and waits for one (one single-GPU call; needs ./shared): the
# engine's KV block size is 32 by default (was 16): the engine and CHAI GPU tests at the new
# default, then LLaMA-7B at blocks 32 and 16 (batch 1-64; 'host: prepare' in the .err files).
timeout 300 build-gpu/tests/engine_gpu_test --gtest_brief=1 > "$OUT/pending-engine.log" 2>&1 &
timeout 300 build-gpu/tests/chai_cluster_gpu_test --gtest_brief=1 > "$OUT/pending-chai.log" 2>&1 &
timeout 300 build-gpu/tests/block_tables_gpu_test --gtest_brief=1 > "$OUT/pending-tables.log" 2>&1 &
wait
for f in engine chai tables; do
  echo "$f: $(grep -E '^\[  (PASSED|FAILED)' "$OUT/pending-$f.log" | tr '\n' ' ')"
done
for blk in 32 16; do
  timeout 240 build-gpu/chai bench --model configs/models/llama-7b.json --random-weights --device cuda --dtype fp16 \
    --max-seq-len 4096 --batch 1,8,32,64 --input-len 512 --output-len 128 --warmup 1 --iters 2 --kv-block-size "$blk" \
    2>"$OUT/pending-e2e-block$blk.err" | tee "$OUT/pending-e2e-block$blk.md" | grep "^| [0-9]" | cut -d'|' -f2-9 |
    sed "s/^/block $blk /"
  grep "^iter 2" "$OUT/pending-e2e-block$blk.err"
done
