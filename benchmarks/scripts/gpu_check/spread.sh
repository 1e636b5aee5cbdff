#!/usr/bin/env bash
# gpu_check.sh mode `spread`, sourced by gpu_check.sh (it sees OUT, gpus, modes, has, bench, mpi).
# Every gpu-labelled test on a multi-GPU machine in about the time of the longest one: first the
# multi-GPU tests (mpirun, all GPUs, one after another), then the single-GPU binaries at once,
# each queue on its own GPU (CUDA_VISIBLE_DEVICES), with memcheck over the op tests in a queue of
# its own. One log per queue. On one GPU the queues share it (the multi-GPU tests skip): every
# gpu test in about 3 minutes on an H100 after the build (twenty-sixth session).
ctest --test-dir build-gpu -R "ipc_allreduce|chai_tp_gpu|tp_gpu" --output-on-failure --timeout 300 \
  > "$OUT/spread-mpi.log" 2>&1
grep -E "Test +#|tests passed" "$OUT/spread-mpi.log"
attn_subset="*DecodeDense:*DecodeChai:*DecodeGqaChai:*DecodeHintUnequalClusters:*DecodeMembersPerCta:*PrefillPrompts:*MixedBatch"
# Every single-GPU test (tests/gpu/*_test.cc; a hand-kept list missed l2_prefetch_gpu_test and
# qkv_append_gpu_test): the attention test, the longest, alone on queue 0; engine_gpu_test, the
# next longest, heads queue 1; the rest alternate between queues 1 and 2; memcheck is queue 3.
queues=("paged_attention_gpu_test" "engine_gpu_test" "" "memcheck")
i=0
for src in tests/gpu/*_test.cc; do
  t=$(basename "$src" .cc)
  [ "$t" = paged_attention_gpu_test ] || [ "$t" = engine_gpu_test ] && continue
  queues[$(( 1 + i % 2 ))]+=" $t"; i=$((i + 1))
done
for q in "${!queues[@]}"; do
  (
    export CUDA_VISIBLE_DEVICES=$(( q % gpus ))
    for t in ${queues[$q]}; do
      if [ "$t" = memcheck ]; then
        for m in ops_gpu_test fused_ops_gpu_test linear_fused_gpu_test paged_attention_gpu_test; do
          filter="*"; [ "$m" = paged_attention_gpu_test ] && filter="$attn_subset"
          timeout 240 compute-sanitizer --tool memcheck --leak-check no --error-exitcode 9 "build-gpu/tests/$m" \
            --gtest_brief=1 --gtest_filter="$filter" >> "$OUT/spread-q$q.log" 2>&1
          echo "memcheck $m: exit $?" >> "$OUT/spread-q$q.log"
        done
      else
        timeout 420 "build-gpu/tests/$t" --gtest_brief=1 >> "$OUT/spread-q$q.log" 2>&1
        echo "$t: exit $?" >> "$OUT/spread-q$q.log"
      fi
    done
  ) &
done
wait
grep -hE "^[a-z_]+: exit|^memcheck|^\[  (PASSED|FAILED)|tests ran" "$OUT"/spread-q*.log
