#!/usr/bin/env bash
# gpu_check.sh mode `onepass`, sourced by gpu_check.sh (it sees OUT, gpus, modes, has, bench, mpi).
# Issue 7: CHAI in one launch of decode kernel 4, two experiments against the two passes:
# CHAI_DECODE_V4_ONE_PASS=1 (an MHA CHAI layer runs the dense pass, each head scoring with its
# representative's query and K) and CHAI_DECODE_V4_CLUSTER=1 (the cluster pass: one CTA per
# sequence, representative and four members, paged_attention_v4_cluster.cuh).
# First paged_attention_gpu_test (every MHA CHAI case runs the one pass too) and engine_gpu_test
# in parallel, memcheck over the kernel-4 CHAI cases; then attention_bench under
# the two passes, one pass and the cluster pass, alternating, ONEPASS_ROUNDS rounds (default 2;
# ONEPASS_BENCH: its arguments); then LLaMA-7B batch 16 at 4096 positions with the CHAI schedule
# under each (`chai bench --compare`, which also times dense), unless ONEPASS_E2E=0.
parallel_gtests onepass paged_attention_gpu_test engine_gpu_test
log="$OUT/onepass-memcheck.log"
# (the harness runs each MHA CHAI case's kernel 4 in one pass too: no variable to set here)
filter='*DecodeHintUnequalClusters:*DecodeHintMixedDenseChai'
timeout 240 compute-sanitizer --tool memcheck --leak-check no --error-exitcode 9 \
  build-gpu/tests/paged_attention_gpu_test --gtest_brief=1 --gtest_filter="$filter" > "$log" 2>&1
echo "memcheck $filter: exit $? ($(grep -c 'Invalid' "$log") invalid accesses)"
# The cluster pass (CHAI_DECODE_V4_CLUSTER=1, never run before): its cases on their own, with a
# short timeout (a wrong barrier phase would hang), then under memcheck.
filter='*DecodeChaiKernel4Shapes:*DecodeHintUnequalClusters:*DecodeHintMixedDenseChai'
CHAI_TEST_V4_CLUSTER=1 timeout 180 build-gpu/tests/paged_attention_gpu_test --gtest_brief=1 --gtest_filter="$filter" \
  > "$OUT/onepass-cluster-tests.log" 2>&1
echo "cluster pass tests: exit $? $(grep -E '^\[  (PASSED|FAILED)' "$OUT/onepass-cluster-tests.log" | tr '\n' ' ')"
grep -E "cluster pass max rel err|Failure" "$OUT/onepass-cluster-tests.log" | sort | uniq -c | sort -rn | head -12
CHAI_TEST_V4_CLUSTER=1 timeout 240 compute-sanitizer --tool memcheck --leak-check no --error-exitcode 9 \
  build-gpu/tests/paged_attention_gpu_test --gtest_brief=1 --gtest_filter='*DecodeHintUnequalClusters' \
  > "$OUT/onepass-cluster-memcheck.log" 2>&1
echo "memcheck cluster pass: exit $? ($(grep -c 'Invalid' "$OUT/onepass-cluster-memcheck.log") invalid accesses)"
settings=("CHAI_DECODE_V4_ONE_PASS=0" "CHAI_DECODE_V4_ONE_PASS=1" "CHAI_DECODE_V4_CLUSTER=1")
for round in $(seq "${ONEPASS_ROUNDS:-2}"); do
  for i in "${!settings[@]}"; do
    env "${settings[$i]}" timeout 150 build-gpu/benchmarks/attention_bench \
      ${ONEPASS_BENCH:---batches 1,8,32 --contexts 1024,2048,4096,16384} > "$OUT/onepass-bench-$i-r$round.md" 2>&1
    grep -E "^\| [0-9]" "$OUT/onepass-bench-$i-r$round.md" | cut -d'|' -f2-9 | sed "s/^/r$round ${settings[$i]} /"
  done
done
[ "${ONEPASS_E2E:-1}" = 1 ] || return 0
for v in "${settings[@]}"; do
  log="$OUT/onepass-e2e-${v//=/-}"
  env "$v" timeout 300 build-gpu/chai bench --model configs/models/llama-7b.json --random-weights \
    --device cuda --dtype fp16 --max-seq-len 4096 --batch 16 --input-len 3968 --output-len 128 --warmup 1 --iters 2 \
    --chai configs/chai/llama-7b.json --compare 2>"$log.err" | tee "$log.md" | tail -1 | sed "s/^/$v /"
done
