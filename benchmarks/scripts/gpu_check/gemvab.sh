#!/usr/bin/env bash
# gpu_check.sh mode `gemvab`, sourced by gpu_check.sh (it sees OUT, gpus, modes, has, bench, mpi).
# A compile-time knob of the decode GEMV at the kernel and end to end: build-gpu (defaults) against
# build-ab (AB_FLAGS, e.g. -DCHAI_GEMV_L2_HINT=128) and, if set, build-ab2 (AB_FLAGS2), each with
# ops_gpu_test, gemm_bench and chai. Each variant's GEMV tests against the CPU reference, then
# `gemm_bench 10 shards` (every configuration at the TP shards) from every build in turn, two
# rounds, then LLaMA-7B TPOT (batch GEMVAB_BATCHES, default 1; prompt 512) from every build in
# turn, TPOT_ROUNDS rounds (2 unless set).
start_variant_builds chai gemm_bench ops_gpu_test
wait_variant_builds || return 0
for b in build-gpu "${builds[@]}"; do
  run_gtest "$b/tests/ops_gpu_test" "gemvab-$b-ops" "$b ops_gpu_test"
done
for round in 1 2; do
  for b in build-gpu "${builds[@]}"; do
    timeout 150 "$b/benchmarks/gemm_bench" 10 shards > "$OUT/gemvab-$b-r$round.md" 2>&1
    grep -E "^copy bandwidth|^(llama|opt66b) " "$OUT/gemvab-$b-r$round.md" | sed "s/^/r$round $b /"
  done
done
builds_tpot gemvab-tpot "${GEMVAB_BATCHES:-1}"
