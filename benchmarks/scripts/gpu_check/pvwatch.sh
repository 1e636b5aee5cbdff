#!/usr/bin/env bash
# gpu_check.sh mode `pvwatch`, sourced by gpu_check.sh (it sees OUT, gpus, modes, has, bench, mpi).
# Issue 7: decode kernel 4's early CHAI P·V pass watching its scores pass stage by stage
# (CHAI_DECODE_V4_PV_WATCH, paged_attention_v4_progress.cuh) against waiting for the whole scores
# pass. First the attention and engine tests in parallel and memcheck over the early-pass test
# (PVWATCH_TESTS=0 skips both); then attention_bench under CHAI_DECODE_V4_PV_WATCH=0 / 1,
# alternating, PVWATCH_ROUNDS rounds (default 2; PVWATCH_BENCH: its arguments); then, unless
# PVWATCH_E2E=0, LLaMA-7B batch 16 at 3968 + 128 with the CHAI schedule under 0 / 1
# (PVWATCH_E2E_ROUNDS rounds, default 1).
if [ "${PVWATCH_TESTS:-1}" = 1 ]; then
  parallel_gtests pvwatch paged_attention_gpu_test engine_gpu_test
  log="$OUT/pvwatch-memcheck.log"
  timeout 300 compute-sanitizer --tool memcheck --leak-check no --error-exitcode 9 \
    build-gpu/tests/paged_attention_gpu_test --gtest_brief=1 --gtest_filter='*EarlyPv*' > "$log" 2>&1
  echo "memcheck *EarlyPv*: exit $? ($(grep -c 'Invalid' "$log") invalid accesses)"
fi
for round in $(seq "${PVWATCH_ROUNDS:-2}"); do
  for watch in 0 1; do
    CHAI_DECODE_V4_PV_WATCH=$watch timeout 150 build-gpu/benchmarks/attention_bench \
      ${PVWATCH_BENCH:---batches 1,8,32 --contexts 1024,2048,4096,16384} > "$OUT/pvwatch-bench-$watch-r$round.md" 2>&1
    grep -E "^\| [0-9]" "$OUT/pvwatch-bench-$watch-r$round.md" | cut -d'|' -f2-10 | sed "s/^/r$round w$watch /"
  done
done
[ "${PVWATCH_E2E:-1}" = 1 ] || return 0
for round in $(seq "${PVWATCH_E2E_ROUNDS:-1}"); do
  for watch in 0 1; do
    log="$OUT/pvwatch-e2e-$watch-r$round"
    CHAI_DECODE_V4_PV_WATCH=$watch timeout 200 build-gpu/chai bench --model configs/models/llama-7b.json \
      --random-weights --device cuda --dtype fp16 --max-seq-len 4096 --batch 16 --input-len 3968 --output-len 128 \
      --warmup 1 --iters 2 --chai configs/chai/llama-7b.json 2>"$log.err" | tee "$log.md" | grep "^| [0-9]" |
      cut -d'|' -f2-12 | sed "s/^/r$round watch=$watch /"
  done
done
