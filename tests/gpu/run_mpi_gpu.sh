#!/usr/bin/env bash
# Runs an MPI test binary with one rank per GPU: skips (77) when fewer GPUs than ranks are visible.
#   tests/gpu/run_mpi_gpu.sh NP BINARY [ARGS...]   (environment passes through to the ranks)
set -uo pipefail
np="${1:?usage: run_mpi_gpu.sh NP BINARY [ARGS...]}"
shift
gpus=$(nvidia-smi -L 2>/dev/null | wc -l)
if [ "$gpus" -lt "$np" ]; then echo "SKIP: $gpus GPU(s) visible; this test needs $np"; exit 77; fi
export NCCL_NVLS_ENABLE=0  # NVLink multicast stays off on the shared machines
exec mpirun -np "$np" -x NCCL_NVLS_ENABLE -x CHAI_TEST_CUDA "$@"
