#!/usr/bin/env bash
# gpu_check.sh mode `spread`, sourced by gpu_check.sh (it sees OUT, gpus, modes, has, bench, mpi).
# Every gpu-labelled test on a multi-GPU machine in about the time of the longest one: first the
# multi-GPU tests (mpirun, all GPUs, one after another), then the single-GPU binaries at once,
# each queue on its own GPU (CUDA_VISIBLE_DEVICES), with memcheck over the op tests in a queue of
# its own. One log per queue.
ctest --test-dir build-gpu -R "ipc_allreduce|chai_tp_gpu|tp_gpu" --output-on-failure --timeout 300 \
  > "$OUT/spread-mpi.log" 2>&1
grep -E "Test +#|tests passed" "$OUT/spread-mpi.log"
attn_subset="*DecodeDense:*DecodeChai:*DecodeGqaChai:*DecodeHintUnequalClusters:*DecodeMembersPerCta:*PrefillPrompts:*MixedBatch"
queues=("paged_attention_gpu_test" "engine_gpu_test chai_cluster_gpu_test block_tables_gpu_test argmax_gpu_test"
  "ops_gpu_test fused_ops_gpu_test linear_fused_gpu_test pdl_gpu_test" "memcheck")
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
