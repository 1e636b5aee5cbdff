#!/usr/bin/env bash
# gpu_check.sh mode `abtpot`, sourced by gpu_check.sh (it sees OUT, gpus, modes, has, bench, mpi).
# A compile-time knob of the decode step end to end: build-gpu (defaults) against build-ab (AB_FLAGS)
# and, if set, build-ab2 (AB_FLAGS2), chai only, built while build-gpu's decode tests run (the Q|K|V append, fused-op and engine tests);
# then LLaMA-7B TPOT from the two builds in alternation, two rounds (ABTPOT_BATCHES, default 1,8;
# prompt 512). ABTPOT_AB_TESTS: test binaries of the variant to build and run too (e.g. ops_gpu_test).
# Unlike `abe2e`, everything runs with the defaults (PDL off).
read -ra ab_tests <<< "${ABTPOT_AB_TESTS:-}"  # the variants' own tests, built and run beside chai
start_variant_builds chai "${ab_tests[@]}"
for t in qkv_append_gpu_test fused_ops_gpu_test engine_gpu_test; do
  run_gtest "build-gpu/tests/$t" "abtpot-$t" "$t"
done
grep -h "bit-identical" "$OUT/abtpot-qkv_append_gpu_test.log"
wait_variant_builds || return 0
for b in "${builds[@]}"; do
  for t in "${ab_tests[@]}"; do
    run_gtest "$b/tests/$t" "abtpot-$b-$t" "$b $t"
  done
done
builds_tpot abtpot "${ABTPOT_BATCHES:-1,8}"
