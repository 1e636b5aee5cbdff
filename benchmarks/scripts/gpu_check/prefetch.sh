#!/usr/bin/env bash
# gpu_check.sh mode `prefetch`, sourced by gpu_check.sh (it sees OUT, gpus, modes, has, bench, mpi).
# The L2 prefetch experiment (CHAI_L2_PREFETCH_MB, off by default; issue #6): batch-1 decode leaves
# DRAM idle during split + append, attention and the norms between the weight-streaming GEMVs, and
# the knob prefetches the first N MiB of the next GEMV's weights into L2 meanwhile. Its tests (the
# op, its fork/join inside a recorded graph, bit-identical engine logits, the knob through the
# binary; the engine test again under CHAI_PDL=1), then LLaMA-7B TPOT at batch 1 and 8 (prompt
# 512) with N = 0, 8, 16, 24, 32 in alternation, two rounds, and once each with
# CHAI_DECODE_FUSION=all at 0 and 16. About 12 benches of 15-25 s.
for t in l2_prefetch_gpu_test l2_prefetch_engine_gpu_test; do
  timeout 240 "build-gpu/tests/$t" --gtest_brief=1 > "$OUT/prefetch-$t.log" 2>&1
  echo "$t: exit $? $(grep -E '^\[  (PASSED|FAILED|  SKIPPED)' "$OUT/prefetch-$t.log" | tr '\n' ' ')"
done
CHAI_PDL=1 timeout 240 build-gpu/tests/l2_prefetch_engine_gpu_test --gtest_brief=1 \
  --gtest_filter='Fixtures/*' > "$OUT/prefetch-engine-pdl.log" 2>&1
echo "CHAI_PDL=1 l2_prefetch_engine_gpu_test: exit $? $(grep -E '^\[  (PASSED|FAILED)' "$OUT/prefetch-engine-pdl.log" | tr '\n' ' ')"
timeout 120 compute-sanitizer --tool memcheck --leak-check no --error-exitcode 9 build-gpu/tests/l2_prefetch_gpu_test \
  --gtest_brief=1 > "$OUT/prefetch-memcheck.log" 2>&1
echo "memcheck l2_prefetch_gpu_test: exit $? ($(grep -c 'Invalid' "$OUT/prefetch-memcheck.log") invalid accesses)"
prefetch_e2e() {  # $1: a label for the output lines and files; the environment is the caller's
  timeout 150 build-gpu/chai bench --model configs/models/llama-7b.json --random-weights --device cuda --dtype fp16 \
    --max-seq-len 4096 --batch "${PREFETCH_BATCHES:-1,8}" --input-len 512 --output-len 128 --warmup 1 --iters 2 \
    2>"$OUT/prefetch-e2e-$1.err" | tee "$OUT/prefetch-e2e-$1.md" | grep "^| [0-9]" | cut -d'|' -f2-10 | sed "s/^/$1 /"
}
for round in 1 2; do
  for mb in 0 8 16 24 32; do
    CHAI_L2_PREFETCH_MB=$mb prefetch_e2e "r$round-mb$mb"
  done
done
for mb in 0 16; do
  CHAI_DECODE_FUSION=all CHAI_L2_PREFETCH_MB=$mb prefetch_e2e "fusion-all-mb$mb"
done
