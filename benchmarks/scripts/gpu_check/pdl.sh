#!/usr/bin/env bash
# gpu_check.sh mode `pdl`, sourced by gpu_check.sh (it sees OUT, gpus, modes, has, bench, mpi).
# The decode-step kernels again with Programmatic Dependent Launch on (CHAI_PDL=1; off by default),
# the attention test on the memcheck subset (every kernel path; the full test takes ~4 minutes).
for t in ops_gpu_test fused_ops_gpu_test linear_fused_gpu_test paged_attention_gpu_test engine_gpu_test; do
  [ -x "build-gpu/tests/$t" ] || continue
  filter="*"
  [ "$t" = paged_attention_gpu_test ] && filter="*DecodeDense:*DecodeChai:*DecodeGqaChai:*DecodeHintUnequalClusters:*DecodeMembersPerCta:*PrefillPrompts:*MixedBatch"
  CHAI_PDL=1 timeout 300 "build-gpu/tests/$t" --gtest_brief=1 --gtest_filter="$filter" >> "$OUT/pdl-tests.log" 2>&1
  echo "CHAI_PDL=1 $t: exit $? ($(grep -cE '^\[  FAILED  \]' "$OUT/pdl-tests.log") failed lines so far)"
done
