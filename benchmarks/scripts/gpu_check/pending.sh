#!/usr/bin/env bash
# gpu_check.sh mode `pending`, sourced by gpu_check.sh (it sees OUT, gpus, modes, has, bench, mpi).
# Code on main that waits for a GPU: none as of 2026-11-26 (the last, the KV block size 32
# default, passed these checks: llama-7b-tp1-h200.md). Waiting as experiments instead: kernel 4's
# cp.async with the L2 prefetch qualifier and the CHAI passes on cp.async (AB_FLAGS=
# -DCHAI_V4_L2_128B=1 AB_FLAGS2=-DCHAI_V4_CPASYNC_CHAI=1 gpu_check.sh ab; the second needs its
# decode tests to pass first) and the IPC all-reduce for OPT-66B batch 16 (mpirun -x
# CHAI_IPC_ALLREDUCE_MAX_BYTES=524288).
# Meanwhile this mode is a quick check of the engine (needs ./shared): the engine, CHAI and table
# GPU tests, then LLaMA-7B at blocks 32 and 16 (batch 1-64; 'host: prepare' in the .err files).
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
