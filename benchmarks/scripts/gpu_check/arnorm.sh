#!/usr/bin/env bash
# gpu_check.sh mode `arnorm`, sourced by gpu_check.sh (it sees OUT, gpus, modes, has, bench, mpi).
# The fused IPC all-reduce + add + norm receiving a decode row whole into shared memory before its
# norm (CHAI_IPC_ALLREDUCE_NORM_STAGED=1, the default) against receiving it inside the norm's first
# pass (=0): the multi-GPU tests (ctest: ipc_allreduce, chai_tp_gpu, tp_gpu; bit-identity of the
# fused kernel to the unfused pair), then LLaMA-7B at TP = 1 and at TP = 4 (batch 1 and 8) and
# OPT-66B at TP = 4 (batch 1; ARNORM_OPT66B=0 skips it) under each setting in turn, ARNORM_ROUNDS
# rounds (default 2; OPT-66B once a setting). Logs: $OUT/arnorm-*.
ctest --test-dir build-gpu -R "ipc_allreduce|chai_tp_gpu|tp_gpu" --output-on-failure --timeout 300 \
  > "$OUT/arnorm-ctest.log" 2>&1
grep -E "Test +#|tests passed" "$OUT/arnorm-ctest.log"
tp=$([ "$gpus" -ge 4 ] && echo 4 || echo 2)
llama() {  # $1: ranks, $2: setting, $3: tag
  CHAI_IPC_ALLREDUCE_NORM_STAGED=$2 mpi "$1" -x CHAI_IPC_ALLREDUCE_NORM_STAGED build-gpu/chai bench \
    --model configs/models/llama-7b.json --random-weights --device cuda --dtype fp16 --batch 1,8 --input-len 512 \
    --output-len 64 --warmup 1 --iters 2 --json "$OUT/arnorm-$3.json" 2>>"$OUT/arnorm.err" |
    tee "$OUT/arnorm-$3.md" | grep "^| [0-9]" | cut -d'|' -f2-9 | sed "s/^/TP=$1 staged=$2 /"
}
llama 1 1 llama-tp1
for round in $(seq "${ARNORM_ROUNDS:-2}"); do
  for setting in 0 1; do llama "$tp" "$setting" "llama-tp$tp-s$setting-r$round"; done
done
if [ "$gpus" -ge 4 ] && [ "${ARNORM_OPT66B:-1}" = 1 ]; then
  for setting in 0 1; do
    echo "OPT-66B TP=4 dense, CHAI_IPC_ALLREDUCE_NORM_STAGED=$setting"
    CHAI_IPC_ALLREDUCE_NORM_STAGED=$setting BENCH_TIMEOUT=${OPT66B_TIMEOUT:-150} mpi 4 \
      -x CHAI_IPC_ALLREDUCE_NORM_STAGED build-gpu/chai bench --model configs/models/opt-66b.json --random-weights \
      --device cuda --dtype fp16 --batch 1 --input-len 512 --output-len 128 --warmup 1 --iters 2 \
      --json "$OUT/arnorm-opt66b-s$setting.json" 2>>"$OUT/arnorm.err" | tee "$OUT/arnorm-opt66b-s$setting.md" |
      grep "^| [0-9]"
  done
fi
grep -E "copy bandwidth|rror" "$OUT/arnorm.err" | sort | uniq -c | head -n 8
