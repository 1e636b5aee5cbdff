#!/usr/bin/env bash
# gpu_check.sh mode `arpush`, sourced by gpu_check.sh (it sees OUT, gpus, modes, has, bench, mpi).
# Issue 8: the row-parallel GEMVs pushing their partial output into the peers' receive slots of
# the IPC all-reduce themselves (CHAI_ALLREDUCE_IN_GEMV=1: ops::LinearFused with a PeerMirror,
# then Communicator::AllReducePushedAddNorm, which only receives). Needs 2 or more GPUs.
#  1. ctest -R ipc_allreduce (np 2 and 4): MirroredGemvThenPushedAddNormEqualsUnfused among them.
#  2. The engine on the fixtures at TP = 2 and 4, fp16 and bf16, with it off and on: prompt logits
#     (a 5-token prompt: prefill also runs the GEMV) and the 8 greedy ids equal bit for bit;
#     then tests/gpu/tp_gpu_test.sh with it on (TP against TP = 1 within the usual tolerances).
#  3. LLaMA-7B batch 1 and 8, TP = 4 (and TP = 1 for the scaling ratio), off and on alternating,
#     ARPUSH_ROUNDS rounds (default 2).
[ "$gpus" -ge 2 ] || { echo "arpush: needs 2 or more GPUs ($gpus visible)"; return 0; }
ctest --test-dir build-gpu -R "ipc_allreduce" --output-on-failure --timeout 300 > "$OUT/arpush-ctest.log" 2>&1
grep -E "Test +#|tests passed" "$OUT/arpush-ctest.log"
grep -E "Mirrored|Failure" "$OUT/arpush-ctest.log" | sort | uniq -c | head -12
prompt=2,100,200,30,40  # the fixtures' vocabulary has 256 ids
same=0 differ=0
for np_ in 2 4; do
  [ "$gpus" -ge "$np_" ] || continue
  for model in llama-mha opt-postln; do
    for dtype in fp16 bf16; do
      for on in 0 1; do
        CHAI_ALLREDUCE_IN_GEMV=$on mpi "$np_" -x CHAI_ALLREDUCE_IN_GEMV build-gpu/chai generate \
          --model "tests/fixtures/$model" --device cuda --dtype "$dtype" --prompt-ids "$prompt" --max-new-tokens 8 \
          --ignore-eos --dump-logits --json "$OUT/arpush-$model-$dtype-tp$np_-$on.json" \
          > "$OUT/arpush-$model-$dtype-tp$np_-$on.log" 2>&1 || echo "arpush: $model $dtype TP=$np_ on=$on failed"
      done
      if [ ! -s "$OUT/arpush-$model-$dtype-tp$np_-0.json" ] || [ ! -s "$OUT/arpush-$model-$dtype-tp$np_-1.json" ]; then
        differ=$((differ + 1)); echo "arpush: $model $dtype TP=$np_: a run wrote no logits (see its .log)"
      elif cmp -s <(python3 -c "import json,sys;d=json.load(open(sys.argv[1]));print(d['output_ids'],d['prompt_logits'])" \
                    "$OUT/arpush-$model-$dtype-tp$np_-0.json") \
                <(python3 -c "import json,sys;d=json.load(open(sys.argv[1]));print(d['output_ids'],d['prompt_logits'])" \
                    "$OUT/arpush-$model-$dtype-tp$np_-1.json"); then
        same=$((same + 1))
      else
        differ=$((differ + 1)); echo "arpush: $model $dtype TP=$np_: logits or ids differ with the push in the GEMV"
      fi
    done
  done
done
echo "arpush engine: $same runs bit-identical, $differ differ"
CHAI_ALLREDUCE_IN_GEMV=1 timeout 600 bash tests/gpu/tp_gpu_test.sh build-gpu/chai > "$OUT/arpush-tp_gpu_test.log" 2>&1
echo "tp_gpu_test with CHAI_ALLREDUCE_IN_GEMV=1: exit $? ($(grep -c '^PASS' "$OUT/arpush-tp_gpu_test.log") PASS, $(grep -c '^FAIL' "$OUT/arpush-tp_gpu_test.log") FAIL)"
np_max=$([ "$gpus" -ge 4 ] && echo 4 || echo 2)
for round in $(seq "${ARPUSH_ROUNDS:-2}"); do
  for np_ in 1 "$np_max"; do
    for on in 0 1; do
      [ "$np_" = 1 ] && [ "$on" = 1 ] && continue  # TP = 1 has no all-reduce
      CHAI_ALLREDUCE_IN_GEMV=$on mpi "$np_" -x CHAI_ALLREDUCE_IN_GEMV build-gpu/chai bench \
        --model configs/models/llama-7b.json --random-weights --device cuda --dtype fp16 --batch 1,8 --input-len 512 \
        --output-len 64 --warmup 1 --iters 2 2>>"$OUT/arpush-bench.err" | tee -a "$OUT/arpush-bench.md" |
        grep "^| [0-9]" | cut -d'|' -f2-10 | sed "s/^/r$round TP=$np_ CHAI_ALLREDUCE_IN_GEMV=$on /"
    done
  done
done
