#!/usr/bin/env bash
# gpu_check.sh mode `boundary`, sourced by gpu_check.sh (it sees OUT, gpus, modes, has, bench, mpi).
# Issue 6: what a batch-1 decode step loses at the boundaries between its weight-streaming GEMVs
# (benchmarks/boundary_bench.cu: LLaMA-7B's GEMV chain as one graph-captured kernel per GEMV,
# against one persistent kernel with grid barriers, with and without the next weights requested
# before each barrier), BOUNDARY_ROUNDS rounds (default 2; BOUNDARY_ARGS: its arguments); then
# the engine's LLaMA-7B batch-1 TPOT on the same card for scale (unless BOUNDARY_E2E=0).
for round in $(seq "${BOUNDARY_ROUNDS:-2}"); do
  timeout 240 build-gpu/benchmarks/boundary_bench ${BOUNDARY_ARGS:-} > "$OUT/boundary-r$round.md" 2>&1
  echo "boundary_bench round $round: exit $?"
  cat "$OUT/boundary-r$round.md"
done
[ "${BOUNDARY_E2E:-1}" = 1 ] && llama_tpot build-gpu/chai 1 boundary-e2e "engine LLaMA-7B"
