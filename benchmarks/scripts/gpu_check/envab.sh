#!/usr/bin/env bash
# gpu_check.sh modes `fusion` and `pdlab`, sourced by gpu_check.sh (it sees OUT, gpus, modes, has,
# bench, mpi): an end-to-end A/B of run-time settings of the decode step (issue 6). First the GPU
# tests of the paths they switch between (the GEMV fusions, the Q|K|V append with and without the
# folded norm, decode attention, PDL, the engine's fused-decode test), in parallel, under
# ENVAB_TEST_ENV (assignments, e.g. CHAI_PDL=1), and memcheck over the folded-norm Q|K|V case; then
# LLaMA-7B TPOT under each setting of ENVAB_SETTINGS (space-separated; a setting is one or more
# VAR=value joined by '+': values may hold commas), alternating, ENVAB_ROUNDS rounds (default 2;
# ENVAB_BATCHES, default 1,8; prompt 512).
#   fusion: CHAI_DECODE_FUSION=activation (the default) against all.
#   pdlab:  CHAI_PDL=0 (the default) against 1, the tests under CHAI_PDL=1.
#   l2ab:   CHAI_L2_PREFETCH budgets (off, attention only, norms only, both, alternate, larger), the
#           tests of the hints (ENVAB_TESTS) and memcheck over them (ENVAB_MEMCHECK: binary:filter).
default_tests="qkv_append_gpu_test fused_ops_gpu_test linear_fused_gpu_test engine_gpu_test paged_attention_gpu_test"
read -ra tests <<< "${ENVAB_TESTS:-$default_tests pdl_gpu_test}"  # one line: read stops at a newline
read -ra test_env <<< "${ENVAB_TEST_ENV:-}"
tag=${ENVAB_TAG:-envab}  # the logs' prefix: the mode's name
PARALLEL_TEST_ENV="${ENVAB_TEST_ENV:-}" parallel_gtests "$tag" "${tests[@]}"
# ENVAB_MEMCHECK: space-separated binary:gtest-filter pairs (read as words: the filters' * never glob).
read -ra checks <<< "${ENVAB_MEMCHECK:-qkv_append_gpu_test:*FoldsTheRmsNorm*:*CapturesIntoAGraph*}"
for i in "${!checks[@]}"; do
  check=${checks[$i]} bin=${checks[$i]%%:*}
  log="$OUT/$tag-memcheck-$i-$bin.log"
  env "${test_env[@]}" timeout 200 compute-sanitizer --tool memcheck --leak-check no --error-exitcode 9 \
    "build-gpu/tests/$bin" --gtest_brief=1 --gtest_filter="${check#*:}" > "$log" 2>&1
  echo "memcheck $check: exit $? ($(grep -c 'Invalid' "$log") invalid accesses)"
done
for round in $(seq "${ENVAB_ROUNDS:-2}"); do
  for setting in ${ENVAB_SETTINGS:-CHAI_DECODE_FUSION=activation CHAI_DECODE_FUSION=all}; do
    read -ra vars <<< "${setting//+/ }"
    llama_tpot build-gpu/chai "${ENVAB_BATCHES:-1,8}" "$tag-e2e-${setting//[=,+]/-}-r$round" "r$round $setting" "${vars[@]}"
  done
done
