#!/usr/bin/env bash
# gpu_check.sh mode `stalls`, sourced by gpu_check.sh (it sees OUT, gpus, modes, has, bench, mpi).
# Issue 7: what a kernel-4 CTA waits on before its first data (the per-CTA timeline shows 3-7 us of
# item search in the CHAI scores pass and 4-5 us from entry to first data in the dense pass, more
# than their dependent loads explain). Nsight Compute's warp-stall reasons per issued instruction
# (no_instruction: instruction fetch; long_scoreboard: global loads; barrier; wait) and its sampled
# stall locations (SourceCounters) for one launch of each pass (dense, scores, P·V) at STALLS_SHAPE
# (attention_bench arguments, default B = 8, 2k, blocks in runs), then the same for cuDNN's SDPA
# decode kernel on that shape. The kernels' code sizes come from the cubin (cuobjdump).
shape=${STALLS_SHAPE:---batches 8 --contexts 2048 --layout runs}
reasons=no_instruction,long_scoreboard,barrier,wait,short_scoreboard,branch_resolving,membar,math_pipe_throttle,lg_throttle,mio_throttle,drain,sleeping,selected,not_selected,dispatch_stall,misc
metrics=""
for r in ${reasons//,/ }; do metrics+="smsp__average_warps_issue_stalled_${r}_per_issue_active.ratio,"; done
metrics+="smsp__inst_executed.sum,sm__cycles_elapsed.avg"
for pass in 0 1 2; do
  timeout 150 ncu --section SourceCounters --metrics "$metrics" --kernel-name-base demangled \
    --kernel-name "regex:DecodeV4Kernel<.*, $pass>" --launch-skip 3 --launch-count 1 \
    build-gpu/benchmarks/attention_bench $shape --replays 2 > "$OUT/stalls-pass$pass.txt" 2>&1
  echo "ncu pass $pass (0 dense, 1 scores, 2 P·V): exit $?"
  grep -E "stalled|inst_executed|cycles_elapsed|Duration" "$OUT/stalls-pass$pass.txt" | sort -k3 -g -r | head -12
  grep -A12 "Warp Stall Sampling" "$OUT/stalls-pass$pass.txt" | head -14
done
PYTHONUNBUFFERED=1 timeout 150 ncu --metrics "$metrics" --kernel-name "regex:flash|fmha|sdpa|attn|attention" \
  --launch-skip 4 --launch-count 1 python3 benchmarks/scripts/sdpa_decode_bench.py --batches 8 --contexts 2048 \
  --iters 2 > "$OUT/stalls-sdpa.txt" 2>&1
echo "ncu sdpa: exit $?"
grep -E "stalled|inst_executed|cycles_elapsed" "$OUT/stalls-sdpa.txt" | sort -k3 -g -r | head -12
cubin=$(find build-gpu/kernels -name 'paged_attention_fp16.cu.o' | head -1)
[ -n "$cubin" ] && cuobjdump -res-usage "$cubin" 2>/dev/null | grep -A1 "DecodeV4Kernel" | head -12
[ -n "$cubin" ] && cuobjdump -elf "$cubin" 2>/dev/null | grep -E "\.text\..*DecodeV4" | head -12
