#!/usr/bin/env bash
# gpu_check.sh mode `pending`, sourced by gpu_check.sh (it sees OUT, gpus, modes, has, bench, mpi).
# Code on main that waits for a GPU, as of the sixteenth session (2026-11-27): none on one GPU.
# Main's kernels passed paged_attention_gpu_test 27/27 and engine_gpu_test 33/33 on H200s in
# the fifteenth and sixteenth sessions. The one-launch CHAI experiments (8d8d4c4) and three forms
# of the sequential cluster pass (383723f, 6dd9de9, 5bc95a5) ran there: correct, slower than the
# two passes (attention-decode-h200.md).
# Waiting for a GPU, off main: 34bc8ea, the cluster pass's fourth form (CHAI_DECODE_V4_CLUSTER=1):
# every block id of an item read into shared memory at its start, the item finder's map read in
# one batch of loads, and a compile-time stage size (CHAI_V4_CLUSTER_STAGE_KB=32: 32 KB stages at
# head_dim 128). Compiled for sm_90 (135 / 131 registers, no spills), never run; reverted by
# 6753173. Its index math passes tests/gpu/decode_v4_cluster_model.py at both stage sizes (numpy,
# no GPU). To run it: `git revert 6753173`, then `CLUSTER_ROUNDS=1 CLUSTER_NCU=32:4096
# CLUSTER_AB_FLAGS=-DCHAI_V4_CLUSTER_STAGE_KB=32 gpu_check.sh cluster` (its tests alone under a
# timeout, memcheck, the default suites, the 32 KB variant's build and tests, attention_bench for
# the two passes and both stage sizes, one ncu launch, LLaMA-7B against the two passes; about 9
# minutes). Keep it only if faster than the two passes.
# What the thirteenth session left ran on H200s: every gpu-labelled test, memcheck and the PDL
# reruns on the dense pass's bulk-copy default (GPU-07721f8b, `gpu_check.sh test chai`), LLaMA-7B
# end to end and SDPA in the same call (`gpu_check.sh vssdpa e2e`), and the 48 KB scores ring's
# A/B, which 224ca81 made the default (its PTX is the measured variant's; `ctest -L gpu` 16/16 on
# GPU-b7a00ec1). Multi-GPU (issue 8) last ran at 9bd49db (4 x H100) and 227128f (4 x H200): a
# `gpu_check.sh tp opt66b` on 4 GPUs would time the current kernels there.
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
