#!/usr/bin/env bash
# gpu_check.sh mode `pending`, sourced by gpu_check.sh (it sees OUT, gpus, modes, has, bench, mpi).
# Code on main that waits for a GPU: nothing as of the twelfth session (2026-11-27). The eleventh
# session's review fixes (l2_prefetch_gpu_test's alternate/split-K/CPU cases, the engine with
# attention's hint, CopyEngineDevice in stream.cc, IssueL2Prefetch's early return) ran on an H200
# (GPU-e7d1166c): every gpu-labelled test passed, memcheck over the hint tests clean; so did the early
# P·V pass of decode kernel 4 (`gpu_check.sh pvearly`; its test's review fixes at a586d23 too). Only
# test plumbing changed after that (DeviceMajor() in paged_attention_gpu_test, gpu_check's
# parallel_gtests); the next `test` or `pvearly` run covers it.
# Not yet run on a GPU: `chai bench --compare` (dense and CHAI alternating on one engine; the
# engine's decode graphs now keyed by attention policy too, so that the dense run neither takes
# CHAI's launch hints nor replays a CHAI graph): `gpu_check.sh chai` runs it for issue 7's row.
# One call covers all of it: MEMCHECK_TESTS="" gpu_check.sh test chai (no kernel changed since the
# last memcheck).
# Also the engine split into engine.cc / engine_step.cc (a move; the CPU engine tests pass, CUDA
# compile-checked): engine_gpu_test in the next `test` run covers its GPU paths (graph replay).
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
