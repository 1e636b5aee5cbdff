#!/usr/bin/env bash
# gpu_check.sh mode `fusion`, sourced by gpu_check.sh (it sees OUT, gpus, modes, has, bench, mpi).
# The decode step's fusion modes end to end (issue 6): first the GPU tests of the ops and engine paths
# they switch between (the GEMV fusions, the Q|K|V append with and without the folded norm, decode
# attention, the engine's fused-decode test), in parallel, and memcheck over the folded-norm Q|K|V
# case; then LLaMA-7B TPOT under each CHAI_DECODE_FUSION value in FUSION_MODES (default: activation,
# the default, and all), alternating, two rounds (FUSION_BATCHES, default 1,8; prompt 512).
tests=(qkv_append_gpu_test fused_ops_gpu_test linear_fused_gpu_test engine_gpu_test paged_attention_gpu_test)
for t in "${tests[@]}"; do
  timeout 300 "build-gpu/tests/$t" --gtest_brief=1 > "$OUT/fusion-$t.log" 2>&1 &
done
wait
for t in "${tests[@]}"; do
  echo "$t: $(grep -E '^\[  (PASSED|FAILED)' "$OUT/fusion-$t.log" | tr '\n' ' ')"
  grep -E "^\[  FAILED|Failure" -A3 "$OUT/fusion-$t.log" | head -12
done
grep -h "identical fused and unfused" "$OUT/fusion-engine_gpu_test.log" | grep -c "all fusions and Q|K|V" |
  sed 's/^/engine fused-decode lines for kAll + Q|K|V append: /'
timeout 200 compute-sanitizer --tool memcheck --leak-check no --error-exitcode 9 build-gpu/tests/qkv_append_gpu_test \
  --gtest_brief=1 --gtest_filter='*FoldsTheRmsNorm*:*CapturesIntoAGraph*' > "$OUT/fusion-memcheck.log" 2>&1
echo "memcheck qkv_append_gpu_test (folded norm, graph): exit $? ($(grep -c 'Invalid' "$OUT/fusion-memcheck.log") invalid accesses)"
for round in 1 2; do
  for mode in ${FUSION_MODES:-activation all}; do
    CHAI_DECODE_FUSION=$mode timeout 150 build-gpu/chai bench --model configs/models/llama-7b.json --random-weights \
      --device cuda --dtype fp16 --max-seq-len 4096 --batch "${FUSION_BATCHES:-1,8}" --input-len 512 --output-len 128 \
      --warmup 1 --iters 2 2>"$OUT/fusion-e2e-$mode-r$round.err" | tee "$OUT/fusion-e2e-$mode-r$round.md" |
      grep "^| [0-9]" | cut -d'|' -f2-10 | sed "s/^/r$round CHAI_DECODE_FUSION=$mode /"
  done
done
