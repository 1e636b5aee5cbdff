#!/usr/bin/env bash
# gpu_check.sh mode `chaisplits`, sourced by gpu_check.sh (it sees OUT, gpus, modes, has, bench, mpi).
# Issue 7's CHAI shapes below 90% of copy (B = 8 at 2k-4k, B = 32 at 2k): the split counts of kernel
# 4's two CHAI passes against the cost model's (which ignores that the P·V pass starts early, beside
# the scores pass). First the CHAI decode tests under forced split counts; then attention_bench
# (CHAISPLITS_BATCHES x CHAISPLITS_CONTEXTS, default 8,32 x 2048,4096) under each setting of
# CHAISPLITS_SETTINGS (`default` or VAR=value joined by '+'), alternating, CHAISPLITS_ROUNDS rounds.
for forced in "CHAI_DECODE_V4_SCORE_SPLITS=5 CHAI_DECODE_V4_PV_SPLITS=3" \
  "CHAI_DECODE_V4_SCORE_SPLITS=1 CHAI_DECODE_V4_PV_SPLITS=1" "CHAI_DECODE_V4_PV_SPLITS=64"; do
  log="$OUT/chaisplits-test-${forced//[ =]/-}.log"
  env $forced timeout 300 build-gpu/tests/paged_attention_gpu_test --gtest_brief=1 --gtest_filter='*Chai*:*Mixed*' \
    > "$log" 2>&1
  echo "paged_attention_gpu_test under $forced: $(grep -E '^\[  (PASSED|FAILED)' "$log" | tr '\n' ' ')"
  grep -E "Failure" -A3 "$log" | head -8
done
settings=${CHAISPLITS_SETTINGS:-default CHAI_DECODE_V4_PV_SPLITS=2 CHAI_DECODE_V4_PV_SPLITS=4 \
CHAI_DECODE_V4_SCORE_SPLITS=2 CHAI_DECODE_V4_SCORE_SPLITS=4 CHAI_DECODE_V4_SCORE_SPLITS=16 \
CHAI_DECODE_V4_SCORE_SPLITS=4+CHAI_DECODE_V4_PV_SPLITS=2}
for round in $(seq "${CHAISPLITS_ROUNDS:-2}"); do
  for setting in $settings; do
    vars=()
    [ "$setting" = default ] || read -ra vars <<< "${setting//+/ }"
    env "${vars[@]}" timeout 120 build-gpu/benchmarks/attention_bench --batches "${CHAISPLITS_BATCHES:-8,32}" \
      --contexts "${CHAISPLITS_CONTEXTS:-2048,4096}" > "$OUT/chaisplits-${setting//[=+]/-}-r$round.md" 2>&1
    grep "^| [0-9]" "$OUT/chaisplits-${setting//[=+]/-}-r$round.md" | cut -d'|' -f2,3,7,9 | tr '\n' ';' |
      sed "s/^/r$round $setting: /; s/$/\n/"
  done
done
