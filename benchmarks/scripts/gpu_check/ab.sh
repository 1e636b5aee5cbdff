#!/usr/bin/env bash
# gpu_check.sh mode `ab`, sourced by gpu_check.sh (it sees OUT, gpus, modes, has, bench, mpi).
# A/B of compile-time kernel knobs: build-gpu (defaults) against build-ab (AB_FLAGS, e.g.
# -DCHAI_V4_CPASYNC=1) and, if set, build-ab2 (AB_FLAGS2), built side by side. The variants'
# decode tests, then attention_bench from every build in alternation (AB_BENCH: its arguments),
# then Nsight Compute at boost clocks (--clock-control none) for one dense kernel-4 launch of
# each at B=8, 16k: throughput sections and the L2 and DRAM throughput breakdowns, and the same
# for PyTorch SDPA (cuDNN) on that shape (unless AB_NCU=0).
start_variant_builds attention_bench paged_attention_gpu_test
wait_variant_builds || return 0
for b in "${builds[@]}"; do  # the variants' tests side by side
  timeout 240 "$b/tests/paged_attention_gpu_test" --gtest_brief=1 \
    --gtest_filter="${AB_TESTS:-*Decode*:*MixedBatch*:*OptTinyDocsShape*}" > "$OUT/ab-tests-$b.log" 2>&1 &
done
wait
for b in "${builds[@]}"; do
  echo "$b paged_attention_gpu_test: $(grep -E '^\[  (PASSED|FAILED)' "$OUT/ab-tests-$b.log" | tr '\n' ' ')"
  grep -E "^\[  FAILED|Failure" -A3 "$OUT/ab-tests-$b.log" | head -12
done
for round in 1 2; do
  for b in build-gpu "${builds[@]}"; do
    timeout 150 "$b/benchmarks/attention_bench" ${AB_BENCH:---batches 1,8,32 --contexts 1024,4096,16384} \
      > "$OUT/ab-$b-$round.md" 2>&1
    grep -E "^\| [0-9]" "$OUT/ab-$b-$round.md" | cut -d'|' -f2-9 | sed "s/^/$b r$round /"
  done
done
[ "${AB_NCU:-1}" = 1 ] || return 0  # AB_NCU=0: the tests and attention_bench only
metrics="--section SpeedOfLight --section WarpStateStats --clock-control none --metrics
  breakdown:lts__throughput.avg.pct_of_peak_sustained_elapsed,breakdown:dram__throughput.avg.pct_of_peak_sustained_elapsed,lts__t_tag_requests.sum,lts__t_sectors.sum,dram__bytes_read.sum"
for b in build-gpu "${builds[@]}"; do
  timeout 120 ncu $metrics --kernel-name DecodeV4Kernel --launch-skip 4 --launch-count 1 \
    "$b/benchmarks/attention_bench" --batches 8 --contexts 16384 --replays 2 > "$OUT/ab-ncu-$b.txt" 2>&1
  echo "ncu $b: exit $?"
  grep -E "DRAM Throughput|L2 Cache Throughput|Duration|lts__|dram__" "$OUT/ab-ncu-$b.txt" | sort -k3 -n -r | head -14
done
PYTHONUNBUFFERED=1 timeout 150 ncu $metrics --kernel-name regex:sdpa --launch-skip 4 --launch-count 1 \
  python3 benchmarks/scripts/sdpa_decode_bench.py --batches 8 --contexts 16384 --iters 2 > "$OUT/ab-ncu-sdpa.txt" 2>&1
echo "ncu sdpa: exit $?"
grep -E "DRAM Throughput|L2 Cache Throughput|Duration|lts__|dram__" "$OUT/ab-ncu-sdpa.txt" | sort -k3 -n -r | head -14
