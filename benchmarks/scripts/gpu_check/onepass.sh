#!/usr/bin/env bash
# gpu_check.sh mode `onepass`, sourced by gpu_check.sh (it sees OUT, gpus, modes, has, bench, mpi).
# Issue 7: CHAI in one pass of decode kernel 4 (CHAI_DECODE_V4_ONE_PASS=1: an MHA CHAI layer runs
# the dense pass, each head scoring with its representative's query and K) against the two passes.
# First paged_attention_gpu_test (every MHA CHAI case runs the one pass too) and engine_gpu_test
# in parallel, memcheck over the kernel-4 CHAI cases; then attention_bench under
# CHAI_DECODE_V4_ONE_PASS=0 and =1, alternating, ONEPASS_ROUNDS rounds (default 2; ONEPASS_BENCH:
# its arguments); then LLaMA-7B batch 16 at 4096 positions with the CHAI schedule under 0 and 1
# (`chai bench --compare`, which also times dense), unless ONEPASS_E2E=0.
parallel_gtests onepass paged_attention_gpu_test engine_gpu_test
log="$OUT/onepass-memcheck.log"
# (the harness runs each MHA CHAI case's kernel 4 in one pass too: no variable to set here)
filter='*DecodeHintUnequalClusters:*DecodeHintMixedDenseChai'
timeout 240 compute-sanitizer --tool memcheck --leak-check no --error-exitcode 9 \
  build-gpu/tests/paged_attention_gpu_test --gtest_brief=1 --gtest_filter="$filter" > "$log" 2>&1
echo "memcheck $filter: exit $? ($(grep -c 'Invalid' "$log") invalid accesses)"
for round in $(seq "${ONEPASS_ROUNDS:-2}"); do
  for v in 0 1; do
    CHAI_DECODE_V4_ONE_PASS=$v timeout 150 build-gpu/benchmarks/attention_bench \
      ${ONEPASS_BENCH:---batches 1,8,32 --contexts 1024,2048,4096,16384} > "$OUT/onepass-bench-$v-r$round.md" 2>&1
    grep -E "^\| [0-9]" "$OUT/onepass-bench-$v-r$round.md" | cut -d'|' -f2-9 | sed "s/^/r$round one_pass=$v /"
  done
done
[ "${ONEPASS_E2E:-1}" = 1 ] || return 0
for v in 0 1; do
  CHAI_DECODE_V4_ONE_PASS=$v timeout 300 build-gpu/chai bench --model configs/models/llama-7b.json --random-weights \
    --device cuda --dtype fp16 --max-seq-len 4096 --batch 16 --input-len 3968 --output-len 128 --warmup 1 --iters 2 \
    --chai configs/chai/llama-7b.json --compare 2>"$OUT/onepass-e2e-$v.err" | tee "$OUT/onepass-e2e-$v.md" |
    tail -1 | sed "s/^/one_pass=$v /"
done
