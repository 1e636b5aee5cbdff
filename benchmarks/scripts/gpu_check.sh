#!/usr/bin/env bash
# One GPU-machine session: build with CUDA, run the gpu-labelled tests (and compute-sanitizer
# memcheck over the op tests), then the benchmarks. Logs and tables go to $OUT, packed at exit
# into one results-*.tar.gz (see pack below). Each mode is a file of gpu_check/ (sourced below).
#   run(command="source .device-kit/env.sh && bash benchmarks/scripts/gpu_check.sh MODE...",
#       carry=[".device-kit"])
# The machine's copy of .git can lag the files it gets (then every build calls itself the older
# commit, "-dirty"): start the command with CHAI_BUILD_REVISION=<the hash `git rev-parse --short=12
# HEAD` prints here> so that `chai --version`, the bench headers and their JSON name the tree built
# (cmake/build_info.cmake).
# Modes (several may be given; `all` = test bench e2e chai): test, bench, sdpa, e2e, chai,
# throughput, tiny (opt-tiny-docs engine tests; need ./shared), pending (CUDA-path code not yet run on a GPU), pdl (tests under CHAI_PDL=1; also part of test), profile (per-kernel time of a decode
# step, ncu), tp (multi-GPU: all-reduce latency, LLaMA-7B TP scaling), opt66b (OPT-66B at TP=4),
# spread (every gpu test on a multi-GPU machine, single-GPU binaries in parallel, one GPU each),
# attnprof (dense decode attention vs SDPA: block layouts, Nsight Compute sections), ab (a kernel
# knob's A/B: AB_FLAGS), abe2e (a decode-step knob's A/B end to end, LLaMA-7B TPOT: AB_FLAGS), splits
# (kernel 4's split cap at short contexts, attention_bench and LLaMA-7B batch 1), qkvappend (the
# Q|K|V GEMV that splits, rotates and appends in its epilogue: tests, LLaMA-7B off/on), b1attn
# (decode kernel 4's batch-1 latency chain: its tests, an A/B of the chain, SASS, ncu source view),
# fusion (the decode fusion modes: their op and engine tests, LLaMA-7B under each CHAI_DECODE_FUSION),
# pdlab (the same tests under CHAI_PDL=1, LLaMA-7B with PDL off and on), abtpot (a compile-time knob's
# LLaMA-7B TPOT A/B with the defaults otherwise: AB_FLAGS), l2ab (the L2 prefetch hints' tests and
# LLaMA-7B under CHAI_L2_PREFETCH budgets: L2AB_SETTINGS, L2AB_TESTS, L2AB_MEMCHECK; ENVAB_ROUNDS), pvearly
# (kernel 4's CHAI P·V pass released early: tests, memcheck, attention_bench and LLaMA-7B CHAI A/B),
# stream (which streaming load form keeps DRAM busiest: stream_bench and ncu counters per form),
# vssdpa (decode attention against PyTorch SDPA in one call: both benchmarks alternating, then the ratios),
# passes (the attention and engine tests, then each kernel-4 pass of CHAI decode attention timed alone, ncu),
# boundary (batch-1 GEMV chains: one kernel per GEMV against one persistent kernel with grid barriers),
# arpush (TP > 1: the row-parallel GEMVs push their partials into the IPC all-reduce themselves),
# gemvab (a compile-time GEMV knob, AB_FLAGS: its GEMV tests, `gemm_bench 10 shards` and LLaMA-7B TPOT
# from every build in turn),
# gemvshape (the GEMV default chosen by shape against by width: tests, gemm_bench shards, OPT-66B TP=4),
# tpprofile (per-kernel time of a TP=4 decode step on rank 0 under ncu: OPT-66B and LLaMA-7B),
# arnorm (the fused IPC all-reduce + norm with its row staged in shared memory or not: tests, TP=4 TPOT),
# ratio (TP=4 over TP=1 at batch 1, alternating rounds, after the GEMV and L2-hint tests one GPU each),
# basetp (this tree against a baseline tree, BASE_TAR, on the same host: multi-GPU and norm tests,
# then OPT-66B at TP=4 and LLaMA-7B at TP=4 and 1, batch 1, in turn), tpenv (run-time settings at TP=4:
# the multi-GPU tests, then OPT-66B and LLaMA-7B under each of TPENV_SETTINGS in turn), arbench (the IPC
# all-reduce benchmark, plain and fused with the add + norm, under each of ARBENCH_SETTINGS in turn),
# pipeline (pipelined greedy decode: its tests, memcheck, LLaMA-7B with it off and on), blocks (the KV
# block size: decode attention against SDPA per block size, LLaMA-7B TPOT at each), chaisplits (the
# split counts of the CHAI passes: tests under forced counts, attention_bench under each), treeab (a kernel
# change against a baseline tree, BASE_TAR: the attention tests, attention_bench alternating, the timeline),
# stalls (what kernel 4's passes and cuDNN's decode kernel stall on, Nsight Compute's warp-stall reasons).
set -uo pipefail
modes=" ${*:-all} "
[ "$modes" = " all " ] && modes=" test bench e2e chai "
has() { [[ "$modes" == *" $1 "* ]]; }
OUT="${OUT:-/tmp/chai-out}"
mkdir -p "$OUT"
# The device tool returns only a few files from $OUT: at exit everything this run left there is
# packed into one archive, results-TIME-PID.tar.gz (unpack with tar xzf; several runs in one call
# make several archives), unless GPU_CHECK_KEEP_FILES=1.
pack() {
  [ "${GPU_CHECK_KEEP_FILES:-0}" = 1 ] && return
  local name="results-$(date +%H%M%S)-$$.tar.gz" files
  files=$(cd "$OUT" && find . -maxdepth 1 -type f ! -name 'results-*.tar.gz' -printf '%f\n')
  [ -n "$files" ] || return
  (cd "$OUT" && echo "$files" | tar czf "$name" -T - && echo "$files" | xargs rm -f)
}
trap pack EXIT
nvidia-smi -L | tee "$OUT/gpu.txt"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

gpus=$(nvidia-smi -L | wc -l)
export NCCL_NVLS_ENABLE=0  # NVLink multicast stays off on the shared machines
# ../shared (opt-tiny-docs, goldens) does not travel to the device machine; a copy in ./shared
# (ignored through .git/info/exclude, named in carry) does. Without it those tests skip.
[ -f shared/DESIGN.md ] && export CHAI_SHARED_DIR="$PWD/shared"
echo "CHAI_SHARED_DIR=${CHAI_SHARED_DIR:-(absent: opt-tiny-docs tests skip)}"
bench() { timeout "${BENCH_TIMEOUT:-300}" build-gpu/chai bench --random-weights --device cuda --dtype fp16 "$@"; }
# The A/B modes' variant builds: directory $1 with CMAKE_CUDA_FLAGS $2 and the targets after them,
# from scratch (on a machine kept warm, a build an earlier mode left there must not be timed as this
# variant); logs in $OUT. Non-zero, with the errors printed, when the build fails.
build_variant() {
  local dir=$1 flags=$2
  rm -rf "$dir"
  cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCHS:-90}" \
    -DCMAKE_CUDA_FLAGS="$flags" > "$OUT/configure-$dir.log" 2>&1 &&
    cmake --build "$dir" -j "$(nproc)" --target "${@:3}" > "$OUT/build-$dir.log" 2>&1 ||
    { echo "$dir ($flags): build failed"; grep -shE "error|Error" -A4 "$OUT/configure-$dir.log" "$OUT/build-$dir.log" |
        head -40; return 1; }
}
# Starts the A/B modes' variant builds in the background, each with the targets given: build-ab
# (AB_FLAGS, required) and, if AB_FLAGS2 is set, build-ab2. Sets `builds` (their directories) and
# `variant_pids`; wait_variant_builds then fails if any of them did.
start_variant_builds() {
  : "${AB_FLAGS:?AB_FLAGS names the variant}"
  builds=(build-ab)
  [ -n "${AB_FLAGS2:-}" ] && builds+=(build-ab2)
  variant_pids=()
  local b
  for b in "${builds[@]}"; do
    build_variant "$b" "$([ "$b" = build-ab ] && echo "$AB_FLAGS" || echo "$AB_FLAGS2")" "$@" &
    variant_pids+=($!)
  done
}
wait_variant_builds() {
  local pid failed=0
  for pid in "${variant_pids[@]}"; do wait "$pid" || failed=1; done
  return "$failed"
}
# Runs test binary $1 (brief output) into $OUT/$2.log; prints its pass/fail line and any failures
# under label $3.
run_gtest() {
  timeout 300 "$1" --gtest_brief=1 > "$OUT/$2.log" 2>&1
  echo "$3: $(grep -E '^\[  (PASSED|FAILED)' "$OUT/$2.log" | tr '\n' ' ')"
  grep -E "^\[  FAILED|Failure" -A3 "$OUT/$2.log" | head -12
}
# Runs the test binaries named after $1 (a log prefix) in parallel, brief output, under the
# VAR=value words of PARALLEL_TEST_ENV (each within GTEST_TIMEOUT seconds, default 300); then prints
# each one's pass/fail line and any failures.
parallel_gtests() {
  local tag=$1 t env_words=()
  read -ra env_words <<< "${PARALLEL_TEST_ENV:-}"
  for t in "${@:2}"; do
    env "${env_words[@]}" timeout "${GTEST_TIMEOUT:-300}" "build-gpu/tests/$t" --gtest_brief=1 > "$OUT/$tag-$t.log" 2>&1 &
  done
  wait
  for t in "${@:2}"; do
    echo "${PARALLEL_TEST_ENV:-}${PARALLEL_TEST_ENV:+ }$t: $(grep -E '^\[  (PASSED|FAILED)' "$OUT/$tag-$t.log" | tr '\n' ' ')"
    grep -E "^\[  FAILED|Failure" -A3 "$OUT/$tag-$t.log" | head -12
  done
}
# The A/B modes' end-to-end row: LLaMA-7B fp16 TPOT (prompt 512, 128 new tokens, 1 warm-up, 2 timed
# iterations) from chai binary $1 at batches $2, logs $OUT/$3.{md,err}, the table rows prefixed with
# $4; further arguments are VAR=value settings for the run.
llama_tpot() {
  local bin=$1 batches=$2 log=$3 label=$4
  env "${@:5}" timeout 150 "$bin" bench --model configs/models/llama-7b.json --random-weights --device cuda \
    --dtype fp16 --max-seq-len 4096 --batch "$batches" --input-len 512 --output-len 128 --warmup 1 --iters 2 \
    2>"$OUT/$log.err" | tee "$OUT/$log.md" | grep "^| [0-9]" | cut -d'|' -f2-10 | sed "s/^/$label /"
}
# llama_tpot from build-gpu and every variant build (`builds`) in turn, TPOT_ROUNDS rounds (2 unless
# set): logs $OUT/$1-BUILD-rROUND, batches $2.
builds_tpot() {
  local round b
  for round in $(seq "${TPOT_ROUNDS:-2}"); do
    for b in build-gpu "${builds[@]}"; do
      llama_tpot "$b/chai" "$2" "$1-$b-r$round" "r$round $b"
    done
  done
}
# Ranks get NCCL_NVLS_ENABLE, and CHAI_IPC_ALLREDUCE_MAX_BYTES where set (the IPC path's threshold).
mpi() {
  local pass=(-x NCCL_NVLS_ENABLE)
  [ -n "${CHAI_IPC_ALLREDUCE_MAX_BYTES:-}" ] && pass+=(-x CHAI_IPC_ALLREDUCE_MAX_BYTES)
  timeout "${BENCH_TIMEOUT:-240}" mpirun -np "$1" --oversubscribe --bind-to none "${pass[@]}" "${@:2}"
}

# What to build: nothing for `sdpa` alone (PyTorch only), the few targets `attnprof` or `ab` run
# when alone (a whole build takes minutes of a 10-minute call), else everything.
targets=()
[ "$modes" = " attnprof " ] && targets=(--target attention_bench)
[ "$modes" = " ab " ] && targets=(--target attention_bench paged_attention_gpu_test gemm_bench)  # the variants build beside
[ "$modes" = " treeab " ] && targets=(--target attention_bench paged_attention_gpu_test)  # the baseline builds beside
[ "$modes" = " stalls " ] && targets=(--target attention_bench)
[ "$modes" = " abe2e " ] && targets=(--target chai ops_gpu_test fused_ops_gpu_test linear_fused_gpu_test pdl_gpu_test engine_gpu_test)
[ "$modes" = " splits " ] && targets=(--target chai attention_bench)
[ "$modes" = " qkvappend " ] && targets=(--target chai qkv_append_gpu_test fused_ops_gpu_test engine_gpu_test)
[ "$modes" = " b1attn " ] && targets=(--target chai attention_bench paged_attention_gpu_test)
[ "$modes" = " abtpot " ] && targets=(--target chai qkv_append_gpu_test fused_ops_gpu_test engine_gpu_test)
{ [ "$modes" = " fusion " ] || [ "$modes" = " pdlab " ]; } && targets=(--target chai qkv_append_gpu_test
  fused_ops_gpu_test linear_fused_gpu_test engine_gpu_test paged_attention_gpu_test pdl_gpu_test)
[ "$modes" = " pvearly " ] && targets=(--target chai attention_bench paged_attention_gpu_test engine_gpu_test
  l2_prefetch_gpu_test fused_ops_gpu_test)
[ "$modes" = " stream " ] && targets=(--target stream_bench attention_bench)
[ "$modes" = " vssdpa " ] && targets=(--target attention_bench)
[ "$modes" = " blocks " ] && targets=(--target attention_bench chai)
[ "$modes" = " chaisplits " ] && targets=(--target attention_bench paged_attention_gpu_test)
[ "$modes" = " boundary " ] && targets=(--target boundary_bench chai)
[ "$modes" = " tpprofile " ] && targets=(--target chai)
[ "$modes" = " ratio " ] && targets=(--target chai l2_prefetch_gpu_test ops_gpu_test linear_fused_gpu_test
  qkv_append_gpu_test)
[ "$modes" = " gemvshape " ] && targets=(--target chai gemm_bench ops_gpu_test qkv_append_gpu_test linear_fused_gpu_test)
[ "$modes" = " passes " ] && targets=(--target attention_bench paged_attention_gpu_test engine_gpu_test chai)
[ "$modes" = " gemvab " ] && targets=(--target chai gemm_bench ops_gpu_test)  # the variants build beside
[ "$modes" = " pipeline " ] && targets=(--target chai pipelined_decode_gpu_test engine_gpu_test chai_cluster_gpu_test
  block_tables_gpu_test)
[ "$modes" = " l2ab " ] && targets=(--target chai l2_prefetch_gpu_test paged_attention_gpu_test engine_gpu_test
  fused_ops_gpu_test)
# Always (re)build: on a machine kept warm the tree may have changed since the last call, and
# ninja rebuilds only what did.
if [ "$modes" != " sdpa " ]; then
  cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCHS:-90}" \
    > "$OUT/configure.log" 2>&1 || { tail -30 "$OUT/configure.log"; exit 1; }
  start=$(date +%s)
  cmake --build build-gpu -j "$(nproc)" "${targets[@]}" > "$OUT/build.log" 2>&1 ||
    { grep -E "error|Error" -A4 "$OUT/build.log" | head -80; exit 1; }
  echo "build: $(( $(date +%s) - start )) s"
fi

# The modes, one file each in gpu_check/, run in this order whatever the order asked.
modes_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/gpu_check"
run_mode() { source "$modes_dir/$1.sh"; }
has test && run_mode test
{ has test || has pdl; } && run_mode pdl
has pending && run_mode pending
has spread && run_mode spread
has tiny && run_mode tiny
has bench && run_mode bench
has e2e && run_mode e2e
has chai && run_mode chai
has profile && run_mode profile
has attnprof && run_mode attnprof
has ab && run_mode ab
has treeab && run_mode treeab
has stalls && run_mode stalls
has abe2e && run_mode abe2e
has qkvappend && run_mode qkvappend
has b1attn && run_mode b1attn
has abtpot && run_mode abtpot
has fusion && ENVAB_TAG=fusion run_mode envab
# Pipelined greedy decode (Engine::EnqueueGreedy): its tests and the engine's, memcheck over one
# fp16 case, then LLaMA-7B with CHAI_DECODE_PIPELINE=0 and 1 in turn (ENVAB_ROUNDS, ENVAB_BATCHES).
has pipeline && ENVAB_TAG=pipeline ENVAB_SETTINGS="${ENVAB_SETTINGS:-CHAI_DECODE_PIPELINE=0 CHAI_DECODE_PIPELINE=1}" \
  ENVAB_TESTS="${ENVAB_TESTS:-pipelined_decode_gpu_test engine_gpu_test chai_cluster_gpu_test block_tables_gpu_test}" \
  ENVAB_MEMCHECK="${ENVAB_MEMCHECK:-pipelined_decode_gpu_test:*llama_gqa_fp16* block_tables_gpu_test:*Staged*}" run_mode envab
has pdlab && ENVAB_TAG=pdlab ENVAB_SETTINGS="CHAI_PDL=0 CHAI_PDL=1" ENVAB_TEST_ENV="CHAI_PDL=1" run_mode envab
l2ab_tests="l2_prefetch_gpu_test paged_attention_gpu_test engine_gpu_test fused_ops_gpu_test"  # one line (envab's read)
has l2ab && ENVAB_TAG=l2ab ENVAB_TESTS="${L2AB_TESTS:-$l2ab_tests}" \
  ENVAB_MEMCHECK="${L2AB_MEMCHECK:-l2_prefetch_gpu_test:* paged_attention_gpu_test:*L2Hint*}" \
  ENVAB_SETTINGS="${L2AB_SETTINGS:-CHAI_L2_PREFETCH=0,0 CHAI_L2_PREFETCH=12,0 CHAI_L2_PREFETCH=0,6 \
  CHAI_L2_PREFETCH=12,6 CHAI_L2_PREFETCH=12,6,alt CHAI_L2_PREFETCH=20,10}" run_mode envab
has pvearly && run_mode pvearly
has passes && run_mode passes
has stream && run_mode stream
has boundary && run_mode boundary
has arpush && run_mode arpush
has gemvshape && run_mode gemvshape
has gemvab && run_mode gemvab
has basetp && run_mode basetp
has arbench && run_mode arbench
has tpenv && run_mode tpenv
has tpprofile && run_mode tpprofile
has arnorm && run_mode arnorm
has ratio && run_mode ratio
has splits && run_mode splits
has sdpa && run_mode sdpa
has vssdpa && run_mode vssdpa
has blocks && run_mode blocks
has chaisplits && run_mode chaisplits
has throughput && run_mode throughput
has tp && run_mode tp
{ has opt66b && [ "$gpus" -ge 4 ]; } && run_mode opt66b
exit 0
