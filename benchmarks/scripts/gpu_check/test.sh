#!/usr/bin/env bash
# gpu_check.sh mode `test`, sourced by gpu_check.sh (it sees OUT, gpus, modes, has, bench, mpi).
ctest --test-dir build-gpu -L gpu --output-on-failure --timeout 600 > "$OUT/ctest-gpu.log" 2>&1
grep -E "Passed|Failed|tests passed|FAILED|Failure" "$OUT/ctest-gpu.log" | tail -40
for t in ${MEMCHECK_TESTS-ops_gpu_test fused_ops_gpu_test linear_fused_gpu_test paged_attention_gpu_test}; do
  [ -x "build-gpu/tests/$t" ] || continue
  # Under memcheck the attention test's long-context cases take many minutes: a subset that still
  # runs every kernel path (dense, CHAI, GQA, member split, several passes, prefill, mixed batches).
  filter="*"
  [ "$t" = paged_attention_gpu_test ] && filter="*DecodeDense:*DecodeKernel4DensePassMarksChaiGroups:*DecodeChai:*DecodeGqaChai:*DecodeHintUnequalClusters:*DecodeMembersPerCta:*PrefillPrompts:*MixedBatch"
  timeout 240 compute-sanitizer --tool memcheck --leak-check no --error-exitcode 9 "build-gpu/tests/$t" \
    --gtest_brief=1 --gtest_filter="$filter" > "$OUT/memcheck-$t.log" 2>&1
  code=$?
  echo "memcheck $t: exit $code$([ $code = 124 ] && echo ' (timed out)') ($(grep -c 'Invalid' "$OUT/memcheck-$t.log") invalid accesses)"
done
