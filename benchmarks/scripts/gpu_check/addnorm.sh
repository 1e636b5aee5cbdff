#!/usr/bin/env bash
# gpu_check.sh mode `addnorm`, sourced by gpu_check.sh (it sees OUT, gpus, modes, has, bench, mpi).
# Issue 6: the o and down GEMVs ending with the residual add and the next norm (ops::LinearAddNorm,
# the last CTA of the GEMV does them; CHAI_DECODE_ADDNORM_IN_GEMV=1).
#  1. linear_add_norm_gpu_test (bit for bit against Linear + AddRmsNorm / AddLayerNorm, graphs),
#     under compute-sanitizer memcheck too; linear_fused_gpu_test and ops_gpu_test beside it.
#  2. The engine on the fixtures (LLaMA MHA / GQA / biases, OPT pre-LN / post-LN: the post-LN
#     norm writes over the residual), fp16 and bf16, off and on: the prompt logits (a 5-token
#     prompt: prefill runs the GEMV too) and 8 greedy ids equal bit for bit.
#  3. LLaMA-7B TPOT, off and on alternating, ADDNORM_ROUNDS rounds (default 2) at
#     ADDNORM_BATCHES (default 1,8).
parallel_gtests addnorm linear_add_norm_gpu_test linear_fused_gpu_test ops_gpu_test
timeout 300 compute-sanitizer --tool memcheck --leak-check no --error-exitcode 9 build-gpu/tests/linear_add_norm_gpu_test \
  --gtest_brief=1 > "$OUT/addnorm-memcheck.log" 2>&1
echo "memcheck linear_add_norm_gpu_test: exit $? ($(grep -c 'Invalid' "$OUT/addnorm-memcheck.log") invalid accesses)"
same=0 differ=0
for model in llama-mha llama-gqa llama-bias opt-preln opt-postln; do
  for dtype in fp16 bf16; do
    for on in 0 1; do
      CHAI_DECODE_ADDNORM_IN_GEMV=$on timeout 120 build-gpu/chai generate --model "tests/fixtures/$model" --device cuda \
        --dtype "$dtype" --prompt-ids 2,100,200,30,40 --max-new-tokens 8 --ignore-eos --dump-logits \
        --json "$OUT/addnorm-$model-$dtype-$on.json" > "$OUT/addnorm-$model-$dtype-$on.log" 2>&1 ||
        echo "addnorm: $model $dtype on=$on failed"
    done
    a="$OUT/addnorm-$model-$dtype-0.json" b="$OUT/addnorm-$model-$dtype-1.json"
    if [ ! -s "$a" ] || [ ! -s "$b" ]; then
      differ=$((differ + 1)); echo "addnorm: $model $dtype: a run wrote no logits (see its .log)"
    elif cmp -s <(python3 -c "import json,sys;d=json.load(open(sys.argv[1]));print(d['output_ids'],d['prompt_logits'])" "$a") \
                <(python3 -c "import json,sys;d=json.load(open(sys.argv[1]));print(d['output_ids'],d['prompt_logits'])" "$b"); then
      same=$((same + 1))
    else
      differ=$((differ + 1)); echo "addnorm: $model $dtype: logits or ids differ with the add + norm in the GEMV"
    fi
  done
done
echo "addnorm engine: $same runs bit-identical, $differ differ"
for round in $(seq "${ADDNORM_ROUNDS:-2}"); do
  for on in 0 1; do
    llama_tpot build-gpu/chai "${ADDNORM_BATCHES:-1,8}" "addnorm-e2e-$on-r$round" \
      "r$round CHAI_DECODE_ADDNORM_IN_GEMV=$on" "CHAI_DECODE_ADDNORM_IN_GEMV=$on"
  done
done
