#!/usr/bin/env bash
# gpu_check.sh mode `tiny`, sourced by gpu_check.sh (it sees OUT, gpus, modes, has, bench, mpi).
# The opt-tiny-docs engine tests alone (trained model, goldens in ./shared): half-precision
# parity and graphs-vs-eager decodes over length buckets.
timeout 300 build-gpu/tests/engine_gpu_test --gtest_filter='GpuOptTinyDocs*' > "$OUT/tiny.log" 2>&1
echo "opt-tiny-docs: exit $? $(grep -E '^\[  (PASSED|SKIPPED|FAILED)' "$OUT/tiny.log" | tr '\n' ' ')"
# CHAI's device clustering path on the trained model (fp32, 12 heads x 32), under memcheck: its
# cases share one engine, so block-table rows pass from one sequence to the next (a stale table
# entry once made ChaiClusterKernel trap here; fixed in 2223b2b).
timeout 240 compute-sanitizer --tool memcheck --leak-check no build-gpu/tests/chai_cluster_gpu_test \
  --gtest_filter='*OptTinyDocs*' > "$OUT/tiny-chai-memcheck.log" 2>&1
echo "chai_cluster_gpu_test OptTinyDocs under memcheck: exit $?"
grep -E "Invalid|at 0x|by thread|FAILED|OK \]" "$OUT/tiny-chai-memcheck.log" | head -20
