#!/usr/bin/env bash
# gpu_check.sh mode `tpenv`, sourced by gpu_check.sh (it sees OUT, gpus, modes, has, bench, mpi).
# Run-time settings of a tensor-parallel decode step, end to end on 4 GPUs: first the multi-GPU
# tests (ctest -R TPENV_CTEST, default ipc_allreduce_fused|chai_tp_gpu), then OPT-66B at TP = 4,
# batch 1 (prompt 512, 128 new tokens, one timed iteration) under each setting of
# TPENV_SETTINGS in turn, TPENV_ROUNDS rounds (default 1), and LLaMA-7B at TP = 4 (batch 1 and 8)
# under each setting of TPENV_LLAMA_SETTINGS (default: the same) once. A setting is `default`
# (nothing set) or VAR=value pairs joined by '+' (values may hold commas). Logs: $OUT/tpenv-*.
ctest --test-dir build-gpu -R "${TPENV_CTEST:-ipc_allreduce_fused|chai_tp_gpu}" --output-on-failure --timeout 300 \
  > "$OUT/tpenv-ctest.log" 2>&1
grep -E "Test +#|tests passed" "$OUT/tpenv-ctest.log"
[ "$gpus" -ge 4 ] || { echo "tpenv: needs 4 GPUs"; return 0; }
tpenv_run() {  # $1: setting, $2: model, $3: batches, $4: tag
  local vars=() names=() v
  [ "$1" = default ] || read -ra vars <<< "${1//+/ }"
  for v in "${vars[@]}"; do names+=(-x "${v%%=*}"); done
  (
    for v in "${vars[@]}"; do export "${v?}"; done  # mpi is a function: the settings go through the environment
    BENCH_TIMEOUT=150 mpi 4 "${names[@]}" build-gpu/chai bench --model "configs/models/$2.json" --random-weights \
      --device cuda --dtype fp16 --batch "$3" --input-len 512 --output-len 128 --warmup 1 --iters 1 \
      --json "$OUT/tpenv-$4.json" 2>>"$OUT/tpenv.err"
  ) | tee "$OUT/tpenv-$4.md" | grep "^| [0-9]" | cut -d'|' -f2-10 | sed "s/^/$2 $1 /"
}
settings=${TPENV_SETTINGS:-default}
for round in $(seq "${TPENV_ROUNDS:-1}"); do
  i=0
  for setting in $settings; do tpenv_run "$setting" opt-66b 1 "opt66b-$i-r$round"; i=$((i + 1)); done
done
i=0
for setting in ${TPENV_LLAMA_SETTINGS:-$settings}; do tpenv_run "$setting" llama-7b 1,8 "llama-$i"; i=$((i + 1)); done
grep -E "copy bandwidth|rror" "$OUT/tpenv.err" | sort | uniq -c | head -n 8
