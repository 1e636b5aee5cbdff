#!/usr/bin/env bash
# gpu_check.sh mode `persist`, sourced by gpu_check.sh (it sees OUT, gpus, modes, has, bench, mpi).
# Issue 7: decode kernel 4's dense and P·V passes as a persistent grid (CHAI_DECODE_V4_PERSISTENT):
# its test alone, then (unless PERSIST_TESTS=0) the attention and engine tests, memcheck over its
# test, then attention_bench under CHAI_DECODE_V4_PERSISTENT=0 and =3 and PyTorch SDPA on the same shapes, alternating, PERSIST_ROUNDS rounds (default 2; PERSIST_BENCH: the shapes),
# then compare_sdpa.py per setting; then, unless PERSIST_E2E=0, LLaMA-7B under both settings: batch
# 16 at 3968 + 128 with the CHAI schedule and dense batch 1 and 32 at 512 + 128.
timeout 120 build-gpu/tests/paged_attention_gpu_test --gtest_brief=1 --gtest_filter='*Persistent*' \
  > "$OUT/persist-test.log" 2>&1
echo "persistent test: exit $? $(grep -E '^\[  (PASSED|FAILED)' "$OUT/persist-test.log" | tr '\n' ' ')"
grep -E "Failure" -A6 "$OUT/persist-test.log" | head -30
[ "${PERSIST_TESTS:-1}" = 1 ] && parallel_gtests persist paged_attention_gpu_test engine_gpu_test
log="$OUT/persist-memcheck.log"
timeout 240 compute-sanitizer --tool memcheck --leak-check no --error-exitcode 9 \
  build-gpu/tests/paged_attention_gpu_test --gtest_brief=1 --gtest_filter='*Persistent*' > "$log" 2>&1
echo "memcheck *Persistent*: exit $? ($(grep -c 'Invalid' "$log") invalid accesses)"
read -ra shapes <<< "${PERSIST_BENCH:---batches 1,8,32 --contexts 1024,2048,4096,16384}"
for round in $(seq "${PERSIST_ROUNDS:-2}"); do
  for setting in 0 3; do
    CHAI_DECODE_V4_PERSISTENT=$setting timeout 150 build-gpu/benchmarks/attention_bench "${shapes[@]}" \
      > "$OUT/persist-bench-$setting-r$round.md" 2>&1 || echo "attention_bench $setting r$round: exit $?"
    grep -E "^\| [0-9]" "$OUT/persist-bench-$setting-r$round.md" | cut -d'|' -f2-10 | sed "s/^/r$round p$setting /"
  done
  [ "${PERSIST_SDPA:-1}" = 1 ] || continue
  PYTHONUNBUFFERED=1 timeout 300 python3 benchmarks/scripts/sdpa_decode_bench.py "${shapes[@]}" \
    > "$OUT/persist-sdpa-r$round.md" 2>&1 || echo "sdpa_decode_bench r$round: exit $?"
done
if [ "${PERSIST_SDPA:-1}" = 1 ]; then
  for setting in 0 3; do
    echo "CHAI_DECODE_V4_PERSISTENT=$setting against SDPA:"
    python3 benchmarks/scripts/compare_sdpa.py --ours "$OUT"/persist-bench-$setting-r*.md \
      --sdpa "$OUT"/persist-sdpa-r*.md | tee "$OUT/persist-vssdpa-$setting.md"
  done
fi
[ "${PERSIST_E2E:-1}" = 1 ] || return 0
for setting in 0 3; do
  CHAI_DECODE_V4_PERSISTENT=$setting timeout 200 build-gpu/chai bench --model configs/models/llama-7b.json \
    --random-weights --device cuda --dtype fp16 --max-seq-len 4096 --batch 16 --input-len 3968 --output-len 128 \
    --warmup 1 --iters 2 --chai configs/chai/llama-7b.json --compare 2>"$OUT/persist-e2e-chai-$setting.err" |
    tee "$OUT/persist-e2e-chai-$setting.md" | grep "^| [0-9]" | cut -d'|' -f2-12 | sed "s/^/p$setting chai16 /"
  CHAI_DECODE_V4_PERSISTENT=$setting llama_tpot build-gpu/chai 1,32 "persist-e2e-dense-$setting" "p$setting"
done
