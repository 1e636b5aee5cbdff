#!/usr/bin/env bash
# One GPU-machine session: build with CUDA, run the gpu-labelled tests (and compute-sanitizer
# memcheck over the op tests), then the benchmarks. Logs and tables go to $OUT.
#   run(command="source .device-kit/env.sh && bash benchmarks/scripts/gpu_check.sh [test|bench|all]",
#       carry=[".device-kit"])
set -uo pipefail
what="${1:-all}"
OUT="${OUT:-/tmp/chai-out}"
mkdir -p "$OUT"
nvidia-smi -L | tee "$OUT/gpu.txt"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

if [ ! -f build-gpu/build.ninja ] || [ "$what" != bench ]; then
  cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCHS:-90}" \
    > "$OUT/configure.log" 2>&1 || { tail -30 "$OUT/configure.log"; exit 1; }
  start=$(date +%s)
  cmake --build build-gpu -j "$(nproc)" > "$OUT/build.log" 2>&1 || { grep -E "error|Error" -A4 "$OUT/build.log" | head -80; exit 1; }
  echo "build: $(( $(date +%s) - start )) s"
fi

if [ "$what" = test ] || [ "$what" = all ]; then
  ctest --test-dir build-gpu -L gpu --output-on-failure --timeout 300 > "$OUT/ctest-gpu.log" 2>&1
  grep -E "Passed|Failed|tests passed|FAILED|Failure" "$OUT/ctest-gpu.log" | tail -40
  for t in ${MEMCHECK_TESTS-ops_gpu_test paged_attention_gpu_test}; do
    [ -x "build-gpu/tests/$t" ] || continue
    timeout 240 compute-sanitizer --tool memcheck --leak-check no --error-exitcode 9 "build-gpu/tests/$t" \
      --gtest_brief=1 > "$OUT/memcheck-$t.log" 2>&1
    echo "memcheck $t: exit $? ($(grep -c 'Invalid' "$OUT/memcheck-$t.log") invalid accesses)"
  done
fi

if [ "$what" = bench ] || [ "$what" = all ]; then
  for b in gemm_bench attention_bench; do
    [ -x "build-gpu/benchmarks/$b" ] && timeout 300 "build-gpu/benchmarks/$b" > "$OUT/$b.md" 2>&1 && cat "$OUT/$b.md"
  done
fi

if [ "$what" = e2e ] || [ "$what" = all ]; then
  # LLaMA-7B shape, random weights, fp16, TP=1: the issue-6 table (dense), then CHAI (paper schedule).
  timeout 300 build-gpu/chai bench --model configs/models/llama-7b.json --random-weights --device cuda --dtype fp16 \
    --max-seq-len 4096 --batch ${E2E_BATCHES:-1,8,32,64} --input-len 512,2048 --output-len 128 --warmup 1 --iters 2 \
    --json "$OUT/llama7b-dense.json" 2>"$OUT/llama7b-dense.err" | tee "$OUT/llama7b-dense.md"
  tail -3 "$OUT/llama7b-dense.err"
fi

if [ "$what" = chai ] || [ "$what" = all ]; then
  # Issue 7: LLaMA-7B shape, batch 16, context 4096 (3968 prompt + 128 new), dense vs the paper schedule.
  for mode in off configs/chai/llama-7b.json; do
    tag=$([ "$mode" = off ] && echo dense || echo chai)
    timeout 300 build-gpu/chai bench --model configs/models/llama-7b.json --random-weights --device cuda --dtype fp16 \
      --max-seq-len 4096 --batch 16 --input-len 3968 --output-len 128 --warmup 1 --iters 2 --chai "$mode" \
      --json "$OUT/llama7b-b16-$tag.json" 2>"$OUT/llama7b-b16-$tag.err" | tee "$OUT/llama7b-b16-$tag.md"
    tail -2 "$OUT/llama7b-b16-$tag.err"
  done
fi
