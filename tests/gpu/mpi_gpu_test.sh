#!/usr/bin/env bash
# Runs a GPU test binary under mpirun with NP ranks, one per GPU. Skips (77) with a printed reason
# when fewer than NP GPUs are visible (CUDA_VISIBLE_DEVICES, else nvidia-smi).
#   tests/gpu/mpi_gpu_test.sh NP path/to/test [test flags]
set -uo pipefail
np="${1:?usage: mpi_gpu_test.sh NP path/to/test [flags]}"
bin="${2:?usage: mpi_gpu_test.sh NP path/to/test [flags]}"
shift 2
if [ -n "${CUDA_VISIBLE_DEVICES:-}" ]; then
  gpus=$(awk -F, '{print NF}' <<< "$CUDA_VISIBLE_DEVICES")
else
  gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
fi
if [ "$gpus" -lt "$np" ]; then echo "SKIP: $gpus GPU(s) visible; this test needs $np (one rank per GPU)"; exit 77; fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export NCCL_NVLS_ENABLE="${NCCL_NVLS_ENABLE:-0}"  # NVLink multicast stays off on shared hosts
forward=()
for v in $(compgen -e | grep -E '^(CHAI_|NCCL_|CUDA_)'); do forward+=(-x "$v"); done
exec mpirun -np "$np" --oversubscribe "${forward[@]}" "$bin" "$@"
