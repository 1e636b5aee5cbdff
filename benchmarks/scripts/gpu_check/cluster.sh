#!/usr/bin/env bash
# gpu_check.sh mode `cluster`, sourced by gpu_check.sh (it sees OUT, gpus, modes, has, bench, mpi).
# Issue 7: decode kernel 4's cluster pass (CHAI_DECODE_V4_CLUSTER=1: one CTA per sequence,
# representative and up to eight members, K then each member's V; paged_attention_v4_cluster.cuh)
# against the two passes. Its test cases first, alone and with a short timeout (a wrong barrier
# phase would hang), then under memcheck; the default suites (paged_attention_gpu_test,
# engine_gpu_test) beside; then attention_bench under both, alternating, CLUSTER_ROUNDS rounds
# (default 2; CLUSTER_BENCH: its arguments), then LLaMA-7B batch 16 at 4096 positions under each
# (`chai bench --compare`, which also times dense), unless CLUSTER_E2E=0; CLUSTER_NCU: see below.
# CLUSTER_AB_FLAGS="-D..." (e.g. -DCHAI_V4_CLUSTER_STAGE_KB=32) also builds that variant (build-ab,
# while the tests run), runs its cluster tests and adds it to the attention_bench rounds.
if [ -n "${CLUSTER_AB_FLAGS:-}" ]; then
  build_variant build-ab "$CLUSTER_AB_FLAGS" paged_attention_gpu_test attention_bench > "$OUT/cluster-ab-build.txt" 2>&1 &
fi
filter='*DecodeChaiKernel4Shapes:*DecodeHintUnequalClusters:*DecodeHintMixedDenseChai:*DecodeChai:*MixedBatch'
CHAI_TEST_V4_CLUSTER=1 timeout 180 build-gpu/tests/paged_attention_gpu_test --gtest_brief=1 --gtest_filter="$filter" \
  > "$OUT/cluster-tests.log" 2>&1
echo "cluster pass tests: exit $? $(grep -E '^\[  (PASSED|FAILED)' "$OUT/cluster-tests.log" | tr '\n' ' ')"
grep -E "cluster pass max rel err|Failure" "$OUT/cluster-tests.log" | sort | uniq -c | sort -rn | head -12
CHAI_TEST_V4_CLUSTER=1 timeout 240 compute-sanitizer --tool memcheck --leak-check no --error-exitcode 9 \
  build-gpu/tests/paged_attention_gpu_test --gtest_brief=1 --gtest_filter='*DecodeHintUnequalClusters' \
  > "$OUT/cluster-memcheck.log" 2>&1
echo "memcheck cluster pass: exit $? ($(grep -c 'Invalid' "$OUT/cluster-memcheck.log") invalid accesses)"
parallel_gtests cluster paged_attention_gpu_test engine_gpu_test  # its wait also waits for build-ab
runs=("build-gpu CHAI_DECODE_V4_CLUSTER=0" "build-gpu CHAI_DECODE_V4_CLUSTER=1")
if [ -n "${CLUSTER_AB_FLAGS:-}" ]; then
  cat "$OUT/cluster-ab-build.txt"
  if [ -x build-ab/benchmarks/attention_bench ]; then
    CHAI_TEST_V4_CLUSTER=1 timeout 180 build-ab/tests/paged_attention_gpu_test --gtest_brief=1 --gtest_filter="$filter" \
      > "$OUT/cluster-ab-tests.log" 2>&1
    echo "cluster pass tests ($CLUSTER_AB_FLAGS): exit $? $(grep -E '^\[  (PASSED|FAILED)' "$OUT/cluster-ab-tests.log" | tr '\n' ' ')"
    grep -E "Failure" -A3 "$OUT/cluster-ab-tests.log" | head -8
    runs+=("build-ab CHAI_DECODE_V4_CLUSTER=1")
  fi
fi
for round in $(seq "${CLUSTER_ROUNDS:-2}"); do
  for i in "${!runs[@]}"; do
    read -r dir setting <<< "${runs[$i]}"
    env "$setting" timeout 150 "$dir/benchmarks/attention_bench" \
      ${CLUSTER_BENCH:---batches 1,8,32 --contexts 1024,2048,4096,16384} > "$OUT/cluster-bench-$i-r$round.md" 2>&1
    grep -E "^\| [0-9]" "$OUT/cluster-bench-$i-r$round.md" | cut -d'|' -f2-9 | sed "s/^/r$round $dir $setting /"
  done
done
# CLUSTER_NCU=B:CONTEXT: one cluster-pass launch at that shape under Nsight Compute (throughput,
# occupancy, warp stall reasons), to see what bounds a stage.
if [ -n "${CLUSTER_NCU:-}" ]; then
  b=${CLUSTER_NCU%%:*} ctx=${CLUSTER_NCU##*:}
  CHAI_DECODE_V4_CLUSTER=1 timeout 240 ncu --clock-control none --kernel-name-base demangled --kernel-name "regex:DecodeV4ClusterKernel" \
    --launch-skip 2 --launch-count 1 --section SpeedOfLight --section Occupancy --section WarpStateStats \
    --section SchedulerStats --section LaunchStats build-gpu/benchmarks/attention_bench --batches "$b" \
    --contexts "$ctx" --replays 1 > "$OUT/cluster-ncu-$b-$ctx.txt" 2>&1 || tail -3 "$OUT/cluster-ncu-$b-$ctx.txt"
  grep -E "Duration|DRAM Throughput|Achieved Occupancy|Theoretical Occupancy|Block Limit|Warp Cycles Per Issued|Issue Slots Busy|No Eligible|Registers Per|Grid Size|Stall|stall" \
    "$OUT/cluster-ncu-$b-$ctx.txt" | head -30
fi
[ "${CLUSTER_E2E:-1}" = 1 ] || return 0
for v in CHAI_DECODE_V4_CLUSTER=0 CHAI_DECODE_V4_CLUSTER=1; do
  log="$OUT/cluster-e2e-${v//=/-}"
  env "$v" timeout 300 build-gpu/chai bench --model configs/models/llama-7b.json --random-weights \
    --device cuda --dtype fp16 --max-seq-len 4096 --batch 16 --input-len 3968 --output-len 128 --warmup 1 --iters 2 \
    --chai configs/chai/llama-7b.json --compare 2>"$log.err" | tee "$log.md" | tail -1 | sed "s/^/$v /"
done
