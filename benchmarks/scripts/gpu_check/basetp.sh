#!/usr/bin/env bash
# gpu_check.sh mode `basetp`, sourced by gpu_check.sh (it sees OUT, gpus, modes, has, bench, mpi).
# This tree against a baseline tree on the same host, at TP = 4 and TP = 1, batch 1. The baseline is
# BASE_TAR (default base-tree.tar.gz in the repository root, made with `git archive COMMIT | gzip`,
# kept out of git and named in carry), built into build-base (chai only) while this tree's
# multi-GPU tests (ctest -R BASETP_CTEST, default ipc_allreduce|chai_tp_gpu|tp_gpu) and norm op tests run (without a
# baseline tree, only those tests run). Then TPOT,
# baseline and this tree in turn: OPT-66B at TP = 4 (BASETP_OPT66B_ROUNDS, default 2; prompt 512,
# 128 new tokens, one timed iteration) and LLaMA-7B at TP = 4 and TP = 1 (BASETP_LLAMA_ROUNDS,
# default 1; batch 1 and 8; BASETP_LLAMA_TP, default "4 1", the TP sizes). Logs: $OUT/basetp-*.
base_tar=${BASE_TAR:-base-tree.tar.gz}
if [ -f "$base_tar" ]; then
  rm -rf base-src build-base && mkdir base-src && tar xzf "$base_tar" -C base-src
  (cmake -S base-src -B build-base -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCHS:-90}" \
    > "$OUT/basetp-configure.log" 2>&1 && cmake --build build-base -j "$(nproc)" --target chai \
    > "$OUT/basetp-build.log" 2>&1) &
  base_pid=$!
fi
ctest --test-dir build-gpu -R "${BASETP_CTEST:-ipc_allreduce|chai_tp_gpu|tp_gpu}" --output-on-failure --timeout 300 \
  > "$OUT/basetp-ctest.log" 2>&1
grep -E "Test +#|tests passed" "$OUT/basetp-ctest.log"
for t in ops_gpu_test fused_ops_gpu_test; do
  CUDA_VISIBLE_DEVICES=0 run_gtest "build-gpu/tests/$t" "basetp-$t" "$t"
done
[ -f "$base_tar" ] || { echo "basetp: no baseline tree $base_tar, tests only"; return 0; }
wait "$base_pid" || { echo "basetp: the baseline's build failed"; tail -20 "$OUT/basetp-build.log"; return 0; }
tpot() {  # $1: tree (base or this), $2: ranks, $3: model, $4: batches, $5: tag
  local bin=$([ "$1" = base ] && echo build-base/chai || echo build-gpu/chai)
  BENCH_TIMEOUT=${BASETP_TIMEOUT:-150} mpi "$2" "$bin" bench --model "configs/models/$3.json" --random-weights \
    --device cuda --dtype fp16 --batch "$4" --input-len 512 --output-len 128 --warmup 1 --iters 1 \
    --json "$OUT/basetp-$5.json" 2>>"$OUT/basetp.err" | tee "$OUT/basetp-$5.md" | grep "^| [0-9]" |
    cut -d'|' -f2-10 | sed "s/^/$3 TP=$2 $1 /"
}
if [ "$gpus" -ge 4 ]; then
  for round in $(seq "${BASETP_OPT66B_ROUNDS:-2}"); do
    for tree in base this; do tpot "$tree" 4 opt-66b 1 "opt66b-$tree-r$round"; done
  done
  for round in $(seq "${BASETP_LLAMA_ROUNDS:-1}"); do
    for np_ in ${BASETP_LLAMA_TP:-4 1}; do
      for tree in base this; do tpot "$tree" "$np_" llama-7b 1,8 "llama-tp$np_-$tree-r$round"; done
    done
  done
fi
grep -E "copy bandwidth|rror" "$OUT/basetp.err" | sort | uniq -c | head -n 8
