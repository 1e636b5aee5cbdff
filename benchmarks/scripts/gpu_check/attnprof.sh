#!/usr/bin/env bash
# gpu_check.sh mode `attnprof`, sourced by gpu_check.sh (it sees OUT, gpus, modes, has, bench, mpi).
# Issue 7: why dense decode attention streams slower than PyTorch SDPA at long contexts. The
# dense kernel on shuffled blocks (the engine's case) and on contiguous runs (SDPA's layout),
# then Nsight Compute's throughput, memory and warp-state sections for one launch of each at
# batch AP_BATCH, context AP_CTX.
shape="--batches ${AP_BATCH:-8} --contexts ${AP_CTX:-16384}"
for layout in "--layout shuffled" "--layout runs" "--layout runs --block 64"; do
  echo "attention_bench $layout"
  timeout 120 build-gpu/benchmarks/attention_bench $layout --batches 8,32 --contexts 4096,16384 \
    > "$OUT/attnprof-bench-${layout//[ -]/}.md" 2>&1
  grep -E "^\| [0-9]" "$OUT/attnprof-bench-${layout//[ -]/}.md" | cut -d'|' -f2-9
done
sections="--section SpeedOfLight --section MemoryWorkloadAnalysis --section WarpStateStats --section Occupancy
  --section LaunchStats --section SchedulerStats"
timeout 180 ncu $sections --kernel-name-base demangled --kernel-name "regex:DecodeV4Kernel<.*, 0>" --launch-skip 4 \
  --launch-count 1 build-gpu/benchmarks/attention_bench $shape --replays 2 > "$OUT/attnprof-ncu-ours.txt" 2>&1
echo "ncu ours: exit $?"
grep -E "DRAM Throughput|Memory Throughput|Duration|Achieved Occupancy|Stall|Registers|Theoretical Occ|Warp Cycles" \
  "$OUT/attnprof-ncu-ours.txt" | head -30
PYTHONUNBUFFERED=1 timeout 180 ncu $sections --kernel-name "regex:flash|fmha|sdpa|attn|attention" --launch-skip 4 \
  --launch-count 2 python3 benchmarks/scripts/sdpa_decode_bench.py $shape --iters 2 > "$OUT/attnprof-ncu-sdpa.txt" 2>&1
echo "ncu sdpa: exit $?"
grep -E "^  [a-z_:]+.*\(|DRAM Throughput|Memory Throughput|Duration|Achieved Occupancy|Registers|Theoretical Occ|Warp Cycles|Block Size|Grid Size|Shared Memory" \
  "$OUT/attnprof-ncu-sdpa.txt" | head -40
