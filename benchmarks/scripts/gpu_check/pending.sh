#!/usr/bin/env bash
# gpu_check.sh mode `pending`, sourced by gpu_check.sh (it sees OUT, gpus, modes, has, bench, mpi).
# Code on main that waits for a GPU: none as of 2026-11-26 (eighth session; the folded RMSNorm of
# the decode GEMV passed these checks at 37c98f3: llama-7b-tp1-h200.md). Waiting as an experiment
# instead (compile-time, off by default, default PTX unchanged): the GEMV's first weight group
# loaded into registers before the PDL wait, with the early release that lets it overlap
#   AB_FLAGS="-DCHAI_GEMV_PDL_PRELOAD=1 -DCHAI_PDL_EARLY_RELEASE=1" AB_FLAGS2=-DCHAI_PDL_EARLY_RELEASE=1 \
#     gpu_check.sh abe2e
# (its u8 GEMVs spill 12-16 bytes under ptxas; run its tests before trusting its timings), and
# kernel 4's cp.async without the src-size operand for present blocks
#   AB_FLAGS=-DCHAI_V4_CP_NOZFILL=1 gpu_check.sh ab   (watch lts__t_tag_requests against SDPA's).
# Meanwhile this mode re-checks the folded norm: the GEMV, fused-op, PDL and engine tests
# (memcheck over the fused ops), gemm_bench's LinearFused table, then LLaMA-7B end to end with
# CHAI_DECODE_FUSION=silu (the default) and =all, alternating (PENDING_BATCHES, default 1,8;
# prompts 512 and 2048).
tests=(ops_gpu_test fused_ops_gpu_test linear_fused_gpu_test pdl_gpu_test engine_gpu_test)
for t in "${tests[@]}"; do
  timeout 300 "build-gpu/tests/$t" --gtest_brief=1 > "$OUT/pending-$t.log" 2>&1 &
done
wait
for t in "${tests[@]}"; do
  echo "$t: $(grep -E '^\[  (PASSED|FAILED)' "$OUT/pending-$t.log" | tr '\n' ' ')"
done
grep -h "identical fused and unfused\|outputs differ from RmsNorm" "$OUT"/pending-*.log | head -20
timeout 240 compute-sanitizer --tool memcheck --leak-check no --error-exitcode 9 build-gpu/tests/linear_fused_gpu_test \
  --gtest_brief=1 > "$OUT/pending-memcheck-linear.log" 2>&1
echo "memcheck linear_fused_gpu_test: exit $? ($(grep -c 'Invalid' "$OUT/pending-memcheck-linear.log") invalid accesses)"
timeout 120 build-gpu/benchmarks/gemm_bench 10 fused > "$OUT/pending-gemm-fused.md" 2>&1
echo "gemm_bench fused: exit $?"; tail -25 "$OUT/pending-gemm-fused.md"
for round in 1 2; do
  for f in silu all; do
    CHAI_DECODE_FUSION=$f timeout 240 build-gpu/chai bench --model configs/models/llama-7b.json --random-weights \
      --device cuda --dtype fp16 --max-seq-len 4096 --batch "${PENDING_BATCHES:-1,8}" --input-len 512,2048 \
      --output-len 128 --warmup 1 --iters 2 2>"$OUT/pending-e2e-$f-r$round.err" | tee "$OUT/pending-e2e-$f-r$round.md" |
      grep "^| [0-9]" | cut -d'|' -f2-10 | sed "s/^/r$round fusion=$f /"
  done
done
