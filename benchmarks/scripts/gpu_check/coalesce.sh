#!/usr/bin/env bash
# gpu_check.sh mode `coalesce`, sourced by gpu_check.sh (it sees OUT, gpus, modes, has, bench, mpi).
# Issue 7: kernel 4 copying each run of consecutive block ids whole (build-ab, -DCHAI_V4_COALESCE=1)
# against one copy per block (build-gpu). While the variant builds: the synthetic bulk stream over
# 32 KB pages read in order with 8 KB and 32 KB copies, three processes each (does one copy per
# stage beat four?). Then both builds' kernel-4 decode tests side by side (the blocks-in-runs
# cases included), then attention_bench from each build in turn over both layouts (COALESCE_LAYOUTS),
# COALESCE_ROUNDS rounds, and SDPA on the same shapes once.
AB_FLAGS="${AB_FLAGS:--DCHAI_V4_COALESCE=1}"
start_variant_builds attention_bench paged_attention_gpu_test
for rep in 1 2 3; do
  for copy in 8 32; do
    timeout 60 build-gpu/benchmarks/stream_bench --page-kb 32 --copy-kb "$copy" --iters 9 --only bulk:contig:2 2>&1 |
      grep "^| bulk" | sed "s/^/contig 32 KB pages, copies of $copy KB, process $rep: /"
  done
done
wait_variant_builds || return 0
filter="${COALESCE_TESTS:-*Kernel4*:*MixedBatch*}"
for b in build-gpu build-ab; do
  timeout 300 "$b/tests/paged_attention_gpu_test" --gtest_brief=1 --gtest_filter="$filter" \
    > "$OUT/coalesce-tests-$b.log" 2>&1 &
done
wait
for b in build-gpu build-ab; do
  echo "$b paged_attention_gpu_test ($filter): $(grep -E '^\[  (PASSED|FAILED)' "$OUT/coalesce-tests-$b.log" | tr '\n' ' ')"
  grep -E "^\[  FAILED|Failure" -A3 "$OUT/coalesce-tests-$b.log" | head -12
done
shapes="--batches 1,8,32 --contexts 1024,2048,4096,16384"
for round in $(seq "${COALESCE_ROUNDS:-2}"); do
  for layout in ${COALESCE_LAYOUTS:-runs shuffled}; do
    for b in build-gpu build-ab; do
      timeout 150 "$b/benchmarks/attention_bench" $shapes --block 32 --layout "$layout" \
        > "$OUT/coalesce-$b-$layout-$round.md" 2>&1
      grep -E "^\| [0-9]" "$OUT/coalesce-$b-$layout-$round.md" | cut -d'|' -f2-9 | sed "s/^/$b $layout r$round /"
    done
  done
done
PYTHONUNBUFFERED=1 timeout 150 python3 benchmarks/scripts/sdpa_decode_bench.py $shapes > "$OUT/coalesce-sdpa.md" 2>&1
echo "sdpa: exit $?"
grep -E "^\| [0-9]" "$OUT/coalesce-sdpa.md" | sed "s/^/sdpa /"
