#!/usr/bin/env bash
# gpu_check.sh mode `abtpot`, sourced by gpu_check.sh (it sees OUT, gpus, modes, has, bench, mpi).
# A compile-time knob of the decode step end to end: build-gpu (defaults) against build-ab (AB_FLAGS),
# chai only, built while build-gpu's decode tests run (the Q|K|V append, fused-op and engine tests);
# then LLaMA-7B TPOT from the two builds in alternation, two rounds (ABTPOT_BATCHES, default 1,8;
# prompt 512). ABTPOT_AB_TESTS: test binaries of the variant to build and run too (e.g. ops_gpu_test).
# Unlike `abe2e`, everything runs with the defaults (PDL off).
: "${AB_FLAGS:?AB_FLAGS names the variant}"
read -ra ab_tests <<< "${ABTPOT_AB_TESTS:-}"  # the variant's own tests, built and run beside chai
build_variant build-ab "$AB_FLAGS" chai "${ab_tests[@]}" &
ab_build=$!
for t in qkv_append_gpu_test fused_ops_gpu_test engine_gpu_test; do
  timeout 300 "build-gpu/tests/$t" --gtest_brief=1 > "$OUT/abtpot-$t.log" 2>&1
  echo "$t: $(grep -E '^\[  (PASSED|FAILED)' "$OUT/abtpot-$t.log" | tr '\n' ' ')"
  grep -E "^\[  FAILED|Failure" -A3 "$OUT/abtpot-$t.log" | head -12
done
grep -h "bit-identical" "$OUT/abtpot-qkv_append_gpu_test.log"
wait "$ab_build" || return 0
for t in "${ab_tests[@]}"; do
  timeout 300 "build-ab/tests/$t" --gtest_brief=1 > "$OUT/abtpot-ab-$t.log" 2>&1
  echo "build-ab $t: $(grep -E '^\[  (PASSED|FAILED)' "$OUT/abtpot-ab-$t.log" | tr '\n' ' ')"
  grep -E "^\[  FAILED|Failure" -A3 "$OUT/abtpot-ab-$t.log" | head -12
done
for round in 1 2; do
  for b in build-gpu build-ab; do
    llama_tpot "$b/chai" "${ABTPOT_BATCHES:-1,8}" "abtpot-$b-r$round" "r$round $b"
  done
done
