#!/usr/bin/env bash
# gpu_check.sh mode `tpprofile`, sourced by gpu_check.sh (it sees OUT, gpus, modes, has, bench, mpi).
# Per-kernel GPU time of a tensor-parallel decode step: rank 0 of a TP = TPPROFILE_TP (default 4) run
# under Nsight Compute, graphs off (so each of its kernels is timed alone), the other ranks plain;
# batch 1, prompt 512, for each model of TPPROFILE_MODELS (default OPT-66B and LLaMA-7B), summarised
# by profile_step.py as the `profile` mode does. Rank 0's all-reduce kernels also wait for the
# other ranks, so their times are not the collective's own.
tp=${TPPROFILE_TP:-4}
if [ "$gpus" -ge "$tp" ]; then
  for model in ${TPPROFILE_MODELS:-configs/models/opt-66b.json configs/models/llama-7b.json}; do
    tag=$(basename "$model" .json)
    CHAI_NO_GRAPHS=1 mpi "$tp" -x CHAI_NO_GRAPHS bash -c '
      if [ "$OMPI_COMM_WORLD_RANK" = 0 ]; then
        exec ncu --clock-control none --cache-control none --metrics gpu__time_duration.sum --csv "$@"
      else
        exec "$@" > /dev/null
      fi' _ build-gpu/chai bench --model "$model" --random-weights --device cuda --dtype fp16 --batch 1 \
      --input-len 512 --output-len 3 --warmup 0 --iters 1 > "$OUT/tpprofile-$tag.csv" 2>"$OUT/tpprofile-$tag.err"
    echo "### $tag, TP=$tp, batch 1, input 512: rank 0's kernels of the last decode step"
    python3 benchmarks/scripts/profile_step.py "$OUT/tpprofile-$tag.csv" --steps 2 | tee "$OUT/tpprofile-$tag.md"
    [ "${PIPESTATUS[0]}" = 0 ] || tail -n 5 "$OUT/tpprofile-$tag.err"
    echo "### $tag, TP=$tp: one decoder layer's kernels in order (medians over the layers of the last 2 steps)"
    python3 benchmarks/scripts/profile_step.py "$OUT/tpprofile-$tag.csv" --steps 2 --layer |
      tee "$OUT/tpprofile-layer-$tag.md"
  done
fi
