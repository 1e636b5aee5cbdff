#!/usr/bin/env bash
# gpu_check.sh mode `pending`, sourced by gpu_check.sh (it sees OUT, gpus, modes, has, bench, mpi).
# Code on main that waits for a GPU, as of the twenty-fifth session (2026-11-28; 30 minutes of
# one-GPU H100 time, no 4-GPU machine lent): the 128-byte GEMV prefetch ran on H100s (level with
# 256 B there); the four-warp default of bb17882 was measured slower end to end on an H100 (it moved
# LLaMA-7B's Q|K|V into one wave, where the norm's L2 prefetch becomes 12288 heads of 512 B and
# gains 0.5% instead of 3%) and removed (a7d9650: l2_prefetch_gpu_test 5/5, fused_ops 7/7, TPOT
# equal to CHAI_GEMV_DEFAULT=width on an H100). Not yet run: a7d9650 on an H200 and on 4 GPUs
# (OPT-66B at TP 4 should time as e76ef37 did, ~1.22x on an H200: `gpu_check.sh basetp` or `opt66b`).
# Waiting on branch wip/gemv-hints (compiled with nvcc 13 and CPU-tested, never run on a GPU, so
# kept off main): the GEMV's L2 prefetch plan as CPU code with unit tests (gemv_grid::ReadsFirst,
# ChooseDefault); the CUDA PagedAttention entry split into five functions; and two run-time
# experiments: CHAI_GEMV_FOUR_WARPS=off|unhinted|all (the four-warp rule everywhere, or only where
# no kernel before the GEMV prefetched its first bytes, which the engine then tells the GEMV:
# OPT-66B's fc2 and LM head at TP 4) and CHAI_L2_PREFETCH=...,rows (a one-wave GEMV's hint as a
# prefix of rows, the form that gains 3% for several waves). On that branch, first `gpu_check.sh
# test` (every gpu-labelled test), then on 4 GPUs `TPENV_SETTINGS="default CHAI_GEMV_FOUR_WARPS=unhinted
# CHAI_GEMV_FOUR_WARPS=all" TPENV_LLAMA_SETTINGS="default CHAI_L2_PREFETCH=0,8,rows" TPENV_ROUNDS=2
# gpu_check.sh tpenv` (H200 and H100: at TP 4 every GEMV LLaMA-7B's norms prefetch for runs in one
# wave, so its hints are all heads today and the TP ratio, 2.20-2.25x on H200s, may gain), and on
# one GPU `ENVAB_SETTINGS="CHAI_GEMV_FOUR_WARPS=off CHAI_GEMV_FOUR_WARPS=all
# CHAI_GEMV_FOUR_WARPS=all+CHAI_L2_PREFETCH=0,6,rows" ENVAB_BATCHES=1,8 gpu_check.sh fusion`.
# Still from the twenty-fourth session: OPT-66B at TP 4 on 4 x H100 at the current
# GEMVs (`basetp`, BASE_TAR = git archive 36696ec), LLaMA-7B TP 4 over TP 1 in alternating rounds
# (`ratio`), and re-runs of `fusion`, `pdlab` and TP 4 `tpenv` now that the GEMVs stream faster.
# Lesson: a change of a default runs `ctest -L gpu` (gpu_check.sh test), not only the tests of the
# op it changes (bb17882 broke l2_prefetch_gpu_test unseen).
# Still never exercised: the copy measure's fallback below 1 GiB (AllocatePair; no run has lacked
# the room).
# Earlier, as of the eighteenth session:
# Main's kernels passed paged_attention_gpu_test 27/27 and engine_gpu_test 33/33 on H200s in
# the fifteenth to seventeenth sessions. The one-launch CHAI experiments (8d8d4c4) and four forms
# of the sequential cluster pass (383723f, 6dd9de9, 5bc95a5, 34bc8ea) ran there: correct, slower
# than the two passes everywhere (attention-decode-h200.md).
# Issue 8's all-reduce pushed by the GEMV (CHAI_ALLREDUCE_IN_GEMV; fd851c6, back on main at 575e38f)
# ran in the eighteenth session on 2 x H200 (tests, fixtures bit-identical, 0-1.2% faster: the
# default at TP = 2) and on 4 x H200 (np 4 tests and fixtures bit-identical; no gain at batch 1:
# off by default at TP = 3-4). Nothing waits for a GPU now. (The add + norm in the GEMV's last CTA,
# 759e9ab, ran the same session: slower, reverted by 8eed309.)
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
