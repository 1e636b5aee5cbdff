#!/usr/bin/env bash
# gpu_check.sh mode `passes`, sourced by gpu_check.sh (it sees OUT, gpus, modes, has, bench, mpi).
# Issue 7: where CHAI decode attention's time goes at the shapes below 90% of copy. The attention
# tests and engine tests first (the kernels this call times), then Nsight Compute's duration and
# DRAM bytes of every decode kernel-4 launch in attention_bench at each (batch, context) of
# PASSES_SHAPES (default 8:2048 8:4096 32:2048 8:16384), caches kept between kernels as in a step:
# the dense pass (<..., 0>), the CHAI scores pass (<..., 1>) and P·V pass (<..., 2>) each timed alone
# (ncu serialises them, so the P·V pass's early start does not show). Compare with the same call's
# attention_bench table (both passes in one graph).
parallel_gtests passes paged_attention_gpu_test engine_gpu_test
for shape in ${PASSES_SHAPES:-8:2048 8:4096 32:2048 8:16384}; do
  b=${shape%%:*} ctx=${shape##*:}
  timeout 120 build-gpu/benchmarks/attention_bench --batches "$b" --contexts "$ctx" > "$OUT/passes-bench-$b-$ctx.md" 2>&1
  grep -E "^\| [0-9]" "$OUT/passes-bench-$b-$ctx.md" | cut -d'|' -f2-9
  timeout 240 ncu --clock-control none --cache-control none --kernel-name-base demangled \
    --kernel-name "regex:DecodeV4Kernel" --metrics gpu__time_duration.sum,dram__bytes_read.sum,launch__grid_size \
    --csv build-gpu/benchmarks/attention_bench --batches "$b" --contexts "$ctx" --replays 1 \
    > "$OUT/passes-ncu-$b-$ctx.csv" 2>"$OUT/passes-ncu-$b-$ctx.err" || tail -3 "$OUT/passes-ncu-$b-$ctx.err"
  echo "B = $b, context $ctx: kernel-4 launches alone (ncu)"
  python3 benchmarks/scripts/ncu_kernels.py "$OUT/passes-ncu-$b-$ctx.csv"
done
