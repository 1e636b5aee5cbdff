#!/usr/bin/env bash
# gpu_check.sh mode `b1attn`, sourced by gpu_check.sh (it sees OUT, gpus, modes, has, bench, mpi).
# Decode kernel 4's latency at batch 1 (issues 6 and 8: at 512 positions a chain of latencies,
# not a stream of its ~8 MB): build-gpu (defaults) against build-ab (AB_FLAGS, a compile-time
# variant) and build-ab2 (AB_FLAGS2, optional), built side by side while build-gpu's attention
# tests run (all of them, then memcheck over the kernel-4 subset). Then the dense kernel's SASS,
# attention_bench from every build in alternation (batch 1, 2, 8; 256-4096 positions), Nsight
# Compute's warp-state and source sections for one batch-1 launch, and LLaMA-7B TPOT (batch 1 and
# 8, prompt 512) from build-gpu and build-ab in alternation, two rounds. The CTA-wide merge
# (MergeGroupSplits) was measured this way, against the variants that issue the first copies
# before the score-map barrier and read the block ids before the copies (no gain; removed).
start_variant_builds attention_bench chai
timeout 300 build-gpu/tests/paged_attention_gpu_test --gtest_brief=1 > "$OUT/b1attn-tests.log" 2>&1
echo "paged_attention_gpu_test: exit $? $(grep -E '^\[  (PASSED|FAILED)' "$OUT/b1attn-tests.log" | tr '\n' ' ')"
grep -E "FAILED|Failure" -A3 "$OUT/b1attn-tests.log" | head -20
timeout 200 compute-sanitizer --tool memcheck --leak-check no --error-exitcode 9 build-gpu/tests/paged_attention_gpu_test \
  --gtest_brief=1 --gtest_filter='*DecodeKernel4DensePassMarksChaiGroups:*DecodeDense:*DecodeChai:*MixedBatch' \
  > "$OUT/b1attn-memcheck.log" 2>&1
echo "memcheck paged_attention (kernel-4 subset): exit $? ($(grep -c 'Invalid' "$OUT/b1attn-memcheck.log") invalid accesses)"
wait_variant_builds || return 0
fn=_ZN4chai4cuda5paged14DecodeV4KernelI6__halfLi128ELi0EEEvNS1_6ParamsE
for b in build-gpu build-ab; do
  obj=$(find "$b" -name 'paged_attention_fp16.cu.o' | head -1)
  cuobjdump -sass -fun "$fn" "$obj" > "$OUT/b1attn-sass-$b.txt" 2>&1
  echo "$b SASS: $(grep -c LDGSTS "$OUT/b1attn-sass-$b.txt") LDGSTS, $(grep -c 'LDG' "$OUT/b1attn-sass-$b.txt") LDG*"
done
for round in 1 2; do
  for b in build-gpu "${builds[@]}"; do
    timeout 120 "$b/benchmarks/attention_bench" --block 32 --batches 1,2,8 --contexts 256,512,1024,2048,4096 \
      > "$OUT/b1attn-$b-$round.md" 2>&1
    grep -E "^\| [0-9]" "$OUT/b1attn-$b-$round.md" | cut -d'|' -f2-5 | sed "s/^/$b r$round /"
  done
done
sections="--section WarpStateStats --section SourceCounters --section LaunchStats --section SpeedOfLight"
timeout 120 ncu $sections --clock-control none --kernel-name-base demangled --kernel-name regex:"DecodeV4Kernel<.*, 0>" --launch-skip 4 \
  --launch-count 1 -o "$OUT/b1attn-ncu" build-gpu/benchmarks/attention_bench --block 32 --batches 1 --contexts 512 \
  --replays 2 > "$OUT/b1attn-ncu.log" 2>&1
echo "ncu: exit $?"
ncu --import "$OUT/b1attn-ncu.ncu-rep" --page details > "$OUT/b1attn-ncu-details.txt" 2>&1
grep -E "Duration|Warp Cycles Per Issued|Stall|Registers|Achieved Occupancy" "$OUT/b1attn-ncu-details.txt" | head -20
ncu --import "$OUT/b1attn-ncu.ncu-rep" --page source --print-source sass --csv > "$OUT/b1attn-ncu-source.csv" 2>&1
echo "ncu source page: exit $? ($(wc -l < "$OUT/b1attn-ncu-source.csv") lines)"
for round in 1 2; do
  for b in build-gpu build-ab; do
    llama_tpot "$b/chai" "${B1ATTN_BATCHES:-1,8}" "b1attn-e2e-$b-r$round" "r$round $b"
  done
done
