#!/usr/bin/env bash
# gpu_check.sh mode `vssdpa`, sourced by gpu_check.sh (it sees OUT, gpus, modes, has, bench, mpi).
# Issue 7's "dense attention at least as fast as PyTorch SDPA", measured in one call on one card:
# attention_bench and sdpa_decode_bench.py on the same shapes, alternating for VSSDPA_ROUNDS
# rounds (default 3), then compare_sdpa.py's table of means and ratios. Shapes: VSSDPA_BATCHES
# (default 1,8,32) x VSSDPA_CONTEXTS (default 1024,2048,4096,16384).
shapes=(--batches "${VSSDPA_BATCHES:-1,8,32}" --contexts "${VSSDPA_CONTEXTS:-1024,2048,4096,16384}")
for round in $(seq "${VSSDPA_ROUNDS:-3}"); do
  timeout 150 build-gpu/benchmarks/attention_bench "${shapes[@]}" > "$OUT/vssdpa-ours-$round.md" 2>&1 ||
    echo "attention_bench round $round: exit $?"
  PYTHONUNBUFFERED=1 timeout 300 python3 benchmarks/scripts/sdpa_decode_bench.py "${shapes[@]}" \
    > "$OUT/vssdpa-sdpa-$round.md" 2>&1 || echo "sdpa_decode_bench round $round: exit $?"
done
head -1 "$OUT/vssdpa-ours-1.md" "$OUT/vssdpa-sdpa-1.md"
python3 benchmarks/scripts/compare_sdpa.py --ours "$OUT"/vssdpa-ours-*.md --sdpa "$OUT"/vssdpa-sdpa-*.md |
  tee "$OUT/vssdpa.md"
