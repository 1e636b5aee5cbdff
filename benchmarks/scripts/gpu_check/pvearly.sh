#!/usr/bin/env bash
# gpu_check.sh mode `pvearly`, sourced by gpu_check.sh (it sees OUT, gpus, modes, has, bench, mpi).
# Issue 7: decode kernel 4's CHAI P·V pass released early by its scores pass (PDL; it streams its
# first V stages while the scores pass finishes). First the tests of the decode-step paths changed
# since the last GPU run (attention, the L2 hints, the engine, fused ops) in parallel, memcheck over
# the early pass and the hints; then attention_bench under CHAI_DECODE_V4_PV_EARLY=0 / 1 / 1 with
# the scores pass planned for one resident CTA per SM, alternating, PVEARLY_ROUNDS rounds (default
# 2; PVEARLY_BENCH: its arguments); then LLaMA-7B batch 16 at 4096 positions with the CHAI schedule
# under 0 and 1 (PVEARLY_E2E_ROUNDS rounds, default 1; PVEARLY_E2E_BATCH, default 16) and dense
# (issue 7's end-to-end row; PVEARLY_E2E_DENSE=0 skips it), unless PVEARLY_E2E=0. PVEARLY_TESTS=0 skips
# the tests; AB_FLAGS (e.g. -DCHAI_V4_RING_KB=64) adds a variant build (build-ab) whose kernel-4
# CHAI tests run and whose attention_bench joins the alternation with the default settings.
if [ -n "${AB_FLAGS:-}" ]; then
  start_variant_builds attention_bench paged_attention_gpu_test
  wait_variant_builds || return 0
  timeout 240 build-ab/tests/paged_attention_gpu_test --gtest_brief=1 --gtest_filter='*ChaiKernel4*:*L2Hint*' \
    > "$OUT/pvearly-ab-tests.log" 2>&1
  echo "build-ab ($AB_FLAGS) kernel-4 CHAI tests: $(grep -E '^\[  (PASSED|FAILED)' "$OUT/pvearly-ab-tests.log" | tr '\n' ' ')"
fi
[ "${PVEARLY_TESTS:-1}" = 1 ] &&
  parallel_gtests pvearly paged_attention_gpu_test engine_gpu_test l2_prefetch_gpu_test fused_ops_gpu_test
checks=("paged_attention_gpu_test:*EarlyPv*:*L2Hint*" "l2_prefetch_gpu_test:*")
[ "${PVEARLY_TESTS:-1}" = 1 ] || checks=()
for i in "${!checks[@]}"; do
  check=${checks[$i]} bin=${checks[$i]%%:*}
  log="$OUT/pvearly-memcheck-$i-$bin.log"
  timeout 240 compute-sanitizer --tool memcheck --leak-check no --error-exitcode 9 \
    "build-gpu/tests/$bin" --gtest_brief=1 --gtest_filter="${check#*:}" > "$log" 2>&1
  echo "memcheck $check: exit $? ($(grep -c 'Invalid' "$log") invalid accesses)"
done
settings=("CHAI_DECODE_V4_PV_EARLY=0" "CHAI_DECODE_V4_PV_EARLY=1" "CHAI_DECODE_V4_PV_EARLY=1 CHAI_DECODE_V4_SCORE_CTAS_PER_SM=1")
bins=(build-gpu build-gpu build-gpu)
[ -n "${AB_FLAGS:-}" ] && settings+=("CHAI_DECODE_V4_PV_EARLY=1") && bins+=(build-ab)
for round in $(seq "${PVEARLY_ROUNDS:-2}"); do
  for i in "${!settings[@]}"; do
    read -ra vars <<< "${settings[$i]}"
    env "${vars[@]}" timeout 150 "${bins[$i]}/benchmarks/attention_bench" \
      ${PVEARLY_BENCH:---batches 1,8,32 --contexts 1024,2048,4096,16384} > "$OUT/pvearly-bench-$i-r$round.md" 2>&1
    grep -E "^\| [0-9]" "$OUT/pvearly-bench-$i-r$round.md" | cut -d'|' -f2-10 | sed "s/^/r$round s$i /"
  done
done
[ "${PVEARLY_E2E:-1}" = 1 ] || return 0
for round in $(seq "${PVEARLY_E2E_ROUNDS:-1}"); do
  for setting in "CHAI_DECODE_V4_PV_EARLY=0" "CHAI_DECODE_V4_PV_EARLY=1"; do
    log="$OUT/pvearly-e2e-${setting//=/-}-r$round"
    env "$setting" timeout 200 build-gpu/chai bench --model configs/models/llama-7b.json --random-weights \
      --device cuda --dtype fp16 --max-seq-len 4096 --batch "${PVEARLY_E2E_BATCH:-16}" --input-len 3968 \
      --output-len 128 --warmup 1 --iters 2 --chai configs/chai/llama-7b.json 2>"$log.err" | tee "$log.md" |
      grep "^| [0-9]" | cut -d'|' -f2-12 | sed "s/^/r$round $setting /"
  done
done
[ "${PVEARLY_E2E_DENSE:-1}" = 1 ] || return 0
timeout 200 build-gpu/chai bench --model configs/models/llama-7b.json --random-weights --device cuda --dtype fp16 \
  --max-seq-len 4096 --batch "${PVEARLY_E2E_BATCH:-16}" --input-len 3968 --output-len 128 --warmup 1 --iters 2 \
  --chai off 2>"$OUT/pvearly-e2e-dense.err" | tee "$OUT/pvearly-e2e-dense.md" | grep "^| [0-9]" | cut -d'|' -f2-12 |
  sed "s/^/dense /"
