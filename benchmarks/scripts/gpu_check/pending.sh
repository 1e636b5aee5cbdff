#!/usr/bin/env bash
# gpu_check.sh mode `pending`, sourced by gpu_check.sh (it sees OUT, gpus, modes, has, bench, mpi).
# Code on main that waits for a GPU, as of the thirteenth session (2026-11-27):
# - decode kernel 4's dense pass on bulk copies by default (683c301, CHAI_V4_CPASYNC=0): the
#   decode subset of paged_attention_gpu_test passed on that build (20/20, GPU-865d60e8), and
#   attention_bench timed it; not yet run: every other gpu test and memcheck over the attention
#   test with it, LLaMA-7B end to end (batch 1-64 at 512 and 2048, and the CHAI row), and SDPA in
#   the same call. Two calls cover it: `gpu_check.sh test chai` (memcheck: a kernel default
#   changed), then `gpu_check.sh vssdpa e2e`.
# - sdpa_decode_bench.py no longer copies each output into a fixed buffer (one kernel per call
#   fewer on SDPA's side), and the vssdpa mode with compare_sdpa.py: the `vssdpa` run above.
# - prepared, not yet run: the CHAI scores pass's own ring size, an experiment for issue 7's
#   B = 8 / 2k-4k rows (two 48 KB scores CTAs leave room for one P·V CTA per SM from the start):
#   CHAI_DECODE_V4_SCORE_CTAS_PER_SM=2 AB_FLAGS=-DCHAI_V4_SCORES_RING_KB=48 AB_BENCH="--batches
#   1,8,32 --contexts 2048,4096,16384" gpu_check.sh ab (the default build's PTX is unchanged).
# What the twelfth session left pending ran on an H200 (GPU-b5acc698, `MEMCHECK_TESTS=""
# gpu_check.sh test chai`): every gpu-labelled test and `chai bench --compare`. The 128-byte ring
# alignment (b89cbba) passed paged_attention_gpu_test 27/27 and engine_gpu_test (GPU-2669ac12).
# This mode re-checks the decode-step ops: the GEMV, fused-op, PDL, Q|K|V append, attention and
# engine tests (memcheck over the fused GEMVs), gemm_bench's fused tables, then (PENDING_E2E=1)
# LLaMA-7B end to end with CHAI_DECODE_FUSION=activation (the default) and =all, alternating
# (PENDING_BATCHES, default 1,8; prompts 512 and 2048).
parallel_gtests pending ops_gpu_test fused_ops_gpu_test linear_fused_gpu_test pdl_gpu_test engine_gpu_test \
  qkv_append_gpu_test paged_attention_gpu_test
grep -h "identical fused and unfused\|outputs differ from RmsNorm" "$OUT"/pending-*.log | head -20
timeout 240 compute-sanitizer --tool memcheck --leak-check no --error-exitcode 9 build-gpu/tests/linear_fused_gpu_test \
  --gtest_brief=1 > "$OUT/pending-memcheck-linear.log" 2>&1
echo "memcheck linear_fused_gpu_test: exit $? ($(grep -c 'Invalid' "$OUT/pending-memcheck-linear.log") invalid accesses)"
timeout 150 build-gpu/benchmarks/gemm_bench 10 fused > "$OUT/pending-gemm-fused.md" 2>&1
echo "gemm_bench fused: exit $?"; tail -32 "$OUT/pending-gemm-fused.md"
# The fusion modes end to end (measured in the tenth session: llama-7b-tp1-h100.md) only on request.
[ "${PENDING_E2E:-0}" = 1 ] || return 0
for round in 1 2; do
  for f in activation all; do
    CHAI_DECODE_FUSION=$f timeout 240 build-gpu/chai bench --model configs/models/llama-7b.json --random-weights \
      --device cuda --dtype fp16 --max-seq-len 4096 --batch "${PENDING_BATCHES:-1,8}" --input-len 512,2048 \
      --output-len 128 --warmup 1 --iters 2 2>"$OUT/pending-e2e-$f-r$round.err" | tee "$OUT/pending-e2e-$f-r$round.md" |
      grep "^| [0-9]" | cut -d'|' -f2-10 | sed "s/^/r$round fusion=$f /"
  done
done
