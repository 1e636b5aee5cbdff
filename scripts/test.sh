#!/usr/bin/env bash
# Configures, builds and runs every test that this machine can run (unit and mpi; gpu tests
# run where a GPU is present and skip with a reason elsewhere). Extra arguments go to ctest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
build="${CHAI_BUILD_DIR:-build}"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release ${CHAI_CMAKE_ARGS:-}
cmake --build "$build" -j "$(nproc)"
# mpirun refuses to run as root unless told; CI and the GPU machines run as root.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
ctest --test-dir "$build" --output-on-failure -j "$(nproc)" "$@"
