#!/usr/bin/env bash
# gpu_check.sh mode `qkvappend`, sourced by gpu_check.sh (it sees OUT, gpus, modes, has, bench, mpi).
# The Q|K|V GEMV with the split, rotary and cache append in its epilogue (ops::QkvLinearAppend,
# CHAI_DECODE_QKV_APPEND=1): its op test (against the CPU reference and the two ops it replaces,
# captured into a graph; memcheck), the fused-op and engine tests (the engine's fused-decode test
# runs an engine with it), then LLaMA-7B TPOT with it off and on, alternating, two rounds
# (QKV_APPEND_BATCHES, default 1,8; prompt 512).
tests=(qkv_append_gpu_test fused_ops_gpu_test engine_gpu_test)
for t in "${tests[@]}"; do
  timeout 300 "build-gpu/tests/$t" --gtest_brief=1 > "$OUT/qkvappend-$t.log" 2>&1
  echo "$t: exit $? $(grep -E '^\[  (PASSED|FAILED)' "$OUT/qkvappend-$t.log" | tr '\n' ' ')"
done
grep -h "bit-identical\|Q|K|V append" "$OUT"/qkvappend-*.log | sort | uniq -c | sort -rn | head -12
timeout 200 compute-sanitizer --tool memcheck --leak-check no --error-exitcode 9 build-gpu/tests/qkv_append_gpu_test \
  --gtest_brief=1 --gtest_filter='*CapturesIntoAGraph*' > "$OUT/qkvappend-memcheck.log" 2>&1
echo "memcheck qkv_append_gpu_test (graph case): exit $? ($(grep -c 'Invalid' "$OUT/qkvappend-memcheck.log") invalid accesses)"
for round in 1 2; do
  for on in 0 1; do
    llama_tpot build-gpu/chai "${QKV_APPEND_BATCHES:-1,8}" "qkvappend-e2e-$on-r$round" \
      "r$round CHAI_DECODE_QKV_APPEND=$on" "CHAI_DECODE_QKV_APPEND=$on"
  done
done
