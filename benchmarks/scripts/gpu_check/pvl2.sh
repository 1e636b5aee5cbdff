#!/usr/bin/env bash
# gpu_check.sh mode `pvl2`, sourced by gpu_check.sh (it sees OUT, gpus, modes, has, bench, mpi).
# Issue 7: kernel 4's early P·V pass fetching V into L2 while it waits for its scores pass
# (CHAI_DECODE_V4_PV_L2=N,M: N of its own stages past the ring, M of the CTA an SM count on). The
# early-pass test alone, then (unless PVL2_TESTS=0) the attention and engine tests, memcheck over
# the early-pass test, then attention_bench under each of PVL2_SETTINGS (space-separated values of
# the variable, "off" for unset) alternating, PVL2_ROUNDS rounds (default 2; PVL2_BENCH: the
# shapes), then LLaMA-7B batch 16 at 3968 + 128 with the CHAI schedule under off and PVL2_E2E
# (a value; unset: skipped).
timeout 200 build-gpu/tests/paged_attention_gpu_test --gtest_brief=1 --gtest_filter='*EarlyPv*' \
  > "$OUT/pvl2-test.log" 2>&1
echo "early-pass test: exit $? $(grep -E '^\[  (PASSED|FAILED)' "$OUT/pvl2-test.log" | tr '\n' ' ')"
grep -E "Failure" -A6 "$OUT/pvl2-test.log" | head -30
[ "${PVL2_TESTS:-1}" = 1 ] && parallel_gtests pvl2 paged_attention_gpu_test engine_gpu_test
log="$OUT/pvl2-memcheck.log"
timeout 240 compute-sanitizer --tool memcheck --leak-check no --error-exitcode 9 \
  build-gpu/tests/paged_attention_gpu_test --gtest_brief=1 --gtest_filter='*EarlyPv*' > "$log" 2>&1
echo "memcheck *EarlyPv*: exit $? ($(grep -c 'Invalid' "$log") invalid accesses)"
read -ra shapes <<< "${PVL2_BENCH:---batches 1,8,32 --contexts 1024,2048,4096,16384}"
read -ra settings <<< "${PVL2_SETTINGS:-off 4,0 8,0 4,4 8,8}"
for round in $(seq "${PVL2_ROUNDS:-2}"); do
  for setting in "${settings[@]}"; do
    if [ "$setting" = off ]; then vars=(-u CHAI_DECODE_V4_PV_L2); else vars=(CHAI_DECODE_V4_PV_L2="$setting"); fi
    env "${vars[@]}" timeout 150 build-gpu/benchmarks/attention_bench "${shapes[@]}" \
      > "$OUT/pvl2-bench-${setting/,/_}-r$round.md" 2>&1 || echo "attention_bench $setting r$round: exit $?"
    grep -E "^\| [0-9]" "$OUT/pvl2-bench-${setting/,/_}-r$round.md" | cut -d'|' -f2-10 | sed "s/^/r$round $setting /"
  done
done
[ -n "${PVL2_E2E:-}" ] || return 0
for setting in off "$PVL2_E2E"; do
  if [ "$setting" = off ]; then vars=(-u CHAI_DECODE_V4_PV_L2); else vars=(CHAI_DECODE_V4_PV_L2="$setting"); fi
  env "${vars[@]}" timeout 200 build-gpu/chai bench --model configs/models/llama-7b.json --random-weights \
    --device cuda --dtype fp16 --max-seq-len 4096 --batch 16 --input-len 3968 --output-len 128 --warmup 1 --iters 2 \
    --chai configs/chai/llama-7b.json --compare 2>"$OUT/pvl2-e2e-${setting/,/_}.err" |
    tee "$OUT/pvl2-e2e-${setting/,/_}.md" | grep "^| [0-9]" | cut -d'|' -f2-12 | sed "s/^/$setting chai16 /"
done
