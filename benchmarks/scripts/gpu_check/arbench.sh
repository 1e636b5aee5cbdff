#!/usr/bin/env bash
# gpu_check.sh mode `arbench`, sourced by gpu_check.sh (it sees OUT, gpus, modes, has, bench, mpi).
# The IPC all-reduce benchmark (benchmarks/allreduce_bench.cc: the plain variants' table, then the
# fused all-reduce + add + norm of decode rows against the plain all-reduce of the same bytes) at 4
# ranks (2 on a 2-GPU machine) under each of ARBENCH_SETTINGS in turn (default: `default`; a
# setting is `default` or VAR=value pairs joined by '+'), ARBENCH_ROUNDS rounds (default 1). First
# ipc_allreduce_fused_test under each setting (bit-identity of the fused kernel to the unfused
# pair; ARBENCH_CTEST=0 skips it). ARBENCH_PHASES=1 times the bench from a second build with -DCHAI_ARNORM_PHASES (its table
# then shows where the row's block spends the call), built in the background meanwhile.
# Logs: $OUT/arbench-*.
np_=$([ "$gpus" -ge 4 ] && echo 4 || echo 2)
settings=${ARBENCH_SETTINGS:-default}
bench_dir=build-gpu
if [ "${ARBENCH_PHASES:-0}" = 1 ]; then
  build_variant build-phases -DCHAI_ARNORM_PHASES allreduce_bench &
  phases_pid=$!
fi
arbench_run() {  # $1: setting, then the command; the setting's variables exported (and passed to ranks)
  local vars=() names=() v
  [ "$1" = default ] || read -ra vars <<< "${1//+/ }"
  for v in "${vars[@]}"; do names+=(-x "${v%%=*}"); done
  (
    for v in "${vars[@]}"; do export "${v?}"; done
    if [ "$2" = ctest ]; then
      ctest --test-dir build-gpu -R "ipc_allreduce_fused" --output-on-failure --timeout 300
    else
      BENCH_TIMEOUT=120 mpi "$np_" "${names[@]}" "$bench_dir/benchmarks/allreduce_bench" fp16 lamport:32
    fi
  )
}
i=0
for setting in $([ "${ARBENCH_CTEST:-1}" = 1 ] && echo "$settings"); do
  arbench_run "$setting" ctest > "$OUT/arbench-ctest-$i.log" 2>&1
  grep -E "Test +#|tests passed" "$OUT/arbench-ctest-$i.log" | sed "s/^/$setting: /"
  i=$((i + 1))
done
if [ -n "${phases_pid:-}" ]; then
  if wait "$phases_pid"; then bench_dir=build-phases; else echo "arbench: the phases build failed; timing build-gpu"; fi
fi
for round in $(seq "${ARBENCH_ROUNDS:-1}"); do
  i=0
  for setting in $settings; do
    echo "== $setting, round $round"
    arbench_run "$setting" bench 2>>"$OUT/arbench.err" | tee "$OUT/arbench-$i-r$round.md" | grep -A12 "^fused"
    i=$((i + 1))
  done
done
grep -E "rror" "$OUT/arbench.err" | sort | uniq -c | head -n 8
