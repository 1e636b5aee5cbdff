#!/usr/bin/env bash
# gpu_check.sh mode `pending`, sourced by gpu_check.sh (it sees OUT, gpus, modes, has, bench, mpi).
# Code on main that waits for a GPU (2026-11-26, eighth session): PdlWait releases the next grid
# (griddepcontrol.launch_dependents) once it returns; pre-wait work in the norm (L2 prefetch of
# its weights), SplitQkvAppend (the rotary inverse frequencies) and kernel 4 (its barriers);
# CHAI_GEMV_PREFETCH_STEPS. First the op, fused-op, PDL, engine and decode-attention tests with
# PDL off (the default) and on, then LLaMA-7B end to end with PDL off / on / on with the whole
# first group of each GEMV warp prefetched, alternating (PENDING_BATCHES, default 1,8).
tests=(ops_gpu_test fused_ops_gpu_test pdl_gpu_test engine_gpu_test paged_attention_gpu_test)
decode_filter="*Decode*:*MixedBatch*:*OptTinyDocsShape*:*PrefillPrompts*"
for pdl in 0 1; do
  for t in "${tests[@]}"; do
    filter="*"
    [ "$t" = paged_attention_gpu_test ] && filter="$decode_filter"
    CHAI_PDL=$pdl timeout 300 "build-gpu/tests/$t" --gtest_brief=1 --gtest_filter="$filter" \
      > "$OUT/pending-pdl$pdl-$t.log" 2>&1 &
  done
  wait
  for t in "${tests[@]}"; do
    echo "CHAI_PDL=$pdl $t: $(grep -E '^\[  (PASSED|FAILED)' "$OUT/pending-pdl$pdl-$t.log" | tr '\n' ' ')"
  done
done
variants=("CHAI_PDL=0" "CHAI_PDL=1" "CHAI_PDL=1 CHAI_GEMV_PREFETCH_STEPS=8")
for round in 1 2; do
  for v in "${variants[@]}"; do
    tag=$(echo "$v" | tr ' =' '_-')
    env $v timeout 240 build-gpu/chai bench --model configs/models/llama-7b.json --random-weights --device cuda \
      --dtype fp16 --max-seq-len 4096 --batch "${PENDING_BATCHES:-1,8}" --input-len 512 --output-len 128 --warmup 1 \
      --iters 2 2>"$OUT/pending-e2e-$tag-r$round.err" | tee "$OUT/pending-e2e-$tag-r$round.md" | grep "^| [0-9]" |
      cut -d'|' -f2-10 | sed "s/^/r$round $v /"
  done
done
