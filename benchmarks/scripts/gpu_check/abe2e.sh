#!/usr/bin/env bash
# gpu_check.sh mode `abe2e`, sourced by gpu_check.sh (it sees OUT, gpus, modes, has, bench, mpi).
# End-to-end A/B of compile-time knobs of the decode step: build-gpu (defaults) against build-ab
# (AB_FLAGS) and, if set, build-ab2 (AB_FLAGS2), built side by side (chai and the decode-step GPU
# tests). Each variant's op, fused-op, PDL and engine tests with CHAI_PDL=1 (the knobs so far act
# under PDL), then LLaMA-7B TPOT from every build in alternation, two rounds: the defaults with PDL
# off and on, each variant with PDL on (ABE2E_BATCHES, default 1,8; prompt 512).
# Example: AB_FLAGS=-DSOME_KNOB=1 AB_FLAGS2="-DSOME_KNOB=1 -DOTHER_KNOB=2" (the GEMV's register
# preload before the PDL wait ran this way on an H200: llama-7b-tp1-h200.md).
tests=(ops_gpu_test fused_ops_gpu_test linear_fused_gpu_test pdl_gpu_test engine_gpu_test)
start_variant_builds chai "${tests[@]}"
wait_variant_builds || return 0
for b in "${builds[@]}"; do
  for t in "${tests[@]}"; do
    CHAI_PDL=1 timeout 300 "$b/tests/$t" --gtest_brief=1 > "$OUT/abe2e-$b-$t.log" 2>&1 &
  done
  wait
  for t in "${tests[@]}"; do
    echo "$b CHAI_PDL=1 $t: $(grep -E '^\[  (PASSED|FAILED)' "$OUT/abe2e-$b-$t.log" | tr '\n' ' ')"
  done
done
runs=("build-gpu 0" "build-gpu 1")
for b in "${builds[@]}"; do runs+=("$b 1"); done
for round in 1 2; do
  for r in "${runs[@]}"; do
    read -r b pdl <<< "$r"
    CHAI_PDL=$pdl timeout 240 "$b/chai" bench --model configs/models/llama-7b.json --random-weights --device cuda \
      --dtype fp16 --max-seq-len 4096 --batch "${ABE2E_BATCHES:-1,8}" --input-len 512 --output-len 128 --warmup 1 \
      --iters 2 2>"$OUT/abe2e-$b-pdl$pdl-r$round.err" | tee "$OUT/abe2e-$b-pdl$pdl-r$round.md" | grep "^| [0-9]" |
      cut -d'|' -f2-10 | sed "s/^/r$round $b CHAI_PDL=$pdl /"
  done
done
