#!/usr/bin/env bash
# gpu_check.sh mode `tp`, sourced by gpu_check.sh (it sees OUT, gpus, modes, has, bench, mpi).
# Issue 8: all-reduce latency NCCL vs IPC one-shot (2 and 4 GPUs); LLaMA-7B fp16 at TP=1, 2, 4
# with the all-reduce term in the floor. Logs of every run go to $OUT/tp.log. First the multi-GPU
# tests (they skip on fewer GPUs than ranks).
# TP_TESTS="" skips them (a call after `spread`, which ran them).
if [ -n "${TP_TESTS-x}" ]; then
  ctest --test-dir build-gpu -R "${TP_TESTS:-ipc_allreduce|chai_tp_gpu|tp_gpu}" --output-on-failure --timeout 300 \
    > "$OUT/ctest-tp.log" 2>&1
  grep -E "Test +#|tests passed" "$OUT/ctest-tp.log"
fi
for np_ in 2 4; do
  [ "$gpus" -ge "$np_" ] || continue
  echo "all-reduce, $np_ GPUs"
  mpi "$np_" build-gpu/benchmarks/allreduce_bench fp16 2>>"$OUT/tp.log" | tee -a "$OUT/tp.log"
done
# TP:IPC:ALGO (IPC 0 = NCCL only; the one-shot path is off by default above 4 ranks).
for run in ${TP_RUNS-1:1:lamport 2:0:pull 2:1:lamport 4:0:pull 4:1:lamport}; do
  IFS=: read -r np_ ipc algo <<< "$run"
  [ "$gpus" -ge "$np_" ] || continue
  echo "LLaMA-7B TP=$np_ CHAI_IPC_ALLREDUCE=$ipc CHAI_IPC_ALLREDUCE_ALGO=$algo"
  mpi "$np_" -x CHAI_IPC_ALLREDUCE=$ipc -x CHAI_IPC_ALLREDUCE_ALGO=$algo -x CHAI_LOG_RANKS=1 build-gpu/chai bench \
    --model configs/models/llama-7b.json --random-weights --device cuda --dtype fp16 --batch 1,8 --input-len 512 \
    --output-len 64 --warmup 1 --iters 2 --json "$OUT/llama7b-tp$np_-ipc$ipc-$algo.json" 2>>"$OUT/tp.log" \
    | tee -a "$OUT/tp.log" | grep "^| [0-9]"
done
# CHAI at TP=4: the per-rank report of representatives and K bytes (the placement's balance).
if [ "$gpus" -ge 4 ]; then
  echo "LLaMA-7B CHAI TP=4 --stats"
  mpi 4 build-gpu/chai generate --model configs/models/llama-7b.json --random-weights --device cuda --dtype fp16 \
    --chai configs/chai/llama-7b.json --prompt-ids "$(seq -s, 100 611)" --max-new-tokens 16 --stats 2>&1 \
    | tee -a "$OUT/tp.log" | grep -E "^rank|placement|KV bytes|rror"
fi
