#!/usr/bin/env bash
# One GPU-machine session: build with CUDA, run the gpu-labelled tests (and compute-sanitizer
# memcheck over the op tests), then the benchmarks. Logs and tables go to $OUT, packed at exit
# into one results-*.tar.gz (see pack below).
#   run(command="source .device-kit/env.sh && bash benchmarks/scripts/gpu_check.sh MODE...",
#       carry=[".device-kit"])
# Modes (several may be given; `all` = test bench e2e chai): test, bench, sdpa, e2e, chai,
# throughput, tiny (opt-tiny-docs engine tests; need ./shared), pending (CUDA-path code not yet run on a GPU), pdl (tests under CHAI_PDL=1; also part of test), profile (per-kernel time of a decode
# step, ncu), tp (multi-GPU: all-reduce latency, LLaMA-7B TP scaling), opt66b (OPT-66B at TP=4),
# spread (every gpu test on a multi-GPU machine, single-GPU binaries in parallel, one GPU each),
# attnprof (dense decode attention vs SDPA: block layouts, Nsight Compute sections), ab (a kernel
# knob's A/B: AB_FLAGS).
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
mpi() { timeout "${BENCH_TIMEOUT:-240}" mpirun -np "$1" --oversubscribe --bind-to none -x NCCL_NVLS_ENABLE "${@:2}"; }

# What to build: nothing for `sdpa` alone (PyTorch only), the few targets `pending` runs when it
# is the only mode (a whole build takes minutes of a 10-minute call), else everything.
targets=()
[ "$modes" = " pending " ] && targets=(--target chai engine_gpu_test chai_cluster_gpu_test block_tables_gpu_test)
[ "$modes" = " attnprof " ] && targets=(--target attention_bench)
[ "$modes" = " ab " ] && targets=(--target attention_bench paged_attention_gpu_test)  # the variants build beside
if [ "$modes" != " sdpa " ] && { [ ! -f build-gpu/chai ] || has test || [ ${#targets[@]} -gt 0 ]; }; then
  cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCHS:-90}" \
    > "$OUT/configure.log" 2>&1 || { tail -30 "$OUT/configure.log"; exit 1; }
  start=$(date +%s)
  cmake --build build-gpu -j "$(nproc)" "${targets[@]}" > "$OUT/build.log" 2>&1 ||
    { grep -E "error|Error" -A4 "$OUT/build.log" | head -80; exit 1; }
  echo "build: $(( $(date +%s) - start )) s"
fi

if has test; then
  ctest --test-dir build-gpu -L gpu --output-on-failure --timeout 600 > "$OUT/ctest-gpu.log" 2>&1
  grep -E "Passed|Failed|tests passed|FAILED|Failure" "$OUT/ctest-gpu.log" | tail -40
  for t in ${MEMCHECK_TESTS-ops_gpu_test fused_ops_gpu_test paged_attention_gpu_test}; do
    [ -x "build-gpu/tests/$t" ] || continue
    # Under memcheck the attention test's long-context cases take many minutes: a subset that still
    # runs every kernel path (dense, CHAI, GQA, member split, several passes, prefill, mixed batches).
    filter="*"
    [ "$t" = paged_attention_gpu_test ] && filter="*DecodeDense:*DecodeChai:*DecodeGqaChai:*DecodeHintUnequalClusters:*DecodeMembersPerCta:*PrefillPrompts:*MixedBatch"
    timeout 240 compute-sanitizer --tool memcheck --leak-check no --error-exitcode 9 "build-gpu/tests/$t" \
      --gtest_brief=1 --gtest_filter="$filter" > "$OUT/memcheck-$t.log" 2>&1
    code=$?
    echo "memcheck $t: exit $code$([ $code = 124 ] && echo ' (timed out)') ($(grep -c 'Invalid' "$OUT/memcheck-$t.log") invalid accesses)"
  done
fi

if has test || has pdl; then
  # The decode-step kernels again with Programmatic Dependent Launch on (CHAI_PDL=1; off by default),
  # the attention test on the memcheck subset (every kernel path; the full test takes ~4 minutes).
  for t in ops_gpu_test fused_ops_gpu_test paged_attention_gpu_test engine_gpu_test; do
    [ -x "build-gpu/tests/$t" ] || continue
    filter="*"
    [ "$t" = paged_attention_gpu_test ] && filter="*DecodeDense:*DecodeChai:*DecodeGqaChai:*DecodeHintUnequalClusters:*DecodeMembersPerCta:*PrefillPrompts:*MixedBatch"
    CHAI_PDL=1 timeout 300 "build-gpu/tests/$t" --gtest_brief=1 --gtest_filter="$filter" >> "$OUT/pdl-tests.log" 2>&1
    echo "CHAI_PDL=1 $t: exit $? ($(grep -cE '^\[  FAILED  \]' "$OUT/pdl-tests.log") failed lines so far)"
  done
fi

if has pending; then
  # What was written without a GPU and waits for one (one single-GPU call; needs ./shared): the
  # engine's KV block size is 32 by default (was 16): the engine and CHAI GPU tests at the new
  # default, then LLaMA-7B at blocks 32 and 16 (batch 1-64; 'host: prepare' in the .err files).
  timeout 300 build-gpu/tests/engine_gpu_test --gtest_brief=1 > "$OUT/pending-engine.log" 2>&1 &
  timeout 300 build-gpu/tests/chai_cluster_gpu_test --gtest_brief=1 > "$OUT/pending-chai.log" 2>&1 &
  timeout 300 build-gpu/tests/block_tables_gpu_test --gtest_brief=1 > "$OUT/pending-tables.log" 2>&1 &
  wait
  for f in engine chai tables; do
    echo "$f: $(grep -E '^\[  (PASSED|FAILED)' "$OUT/pending-$f.log" | tr '\n' ' ')"
  done
  for blk in 32 16; do
    timeout 240 build-gpu/chai bench --model configs/models/llama-7b.json --random-weights --device cuda --dtype fp16 \
      --max-seq-len 4096 --batch 1,8,32,64 --input-len 512 --output-len 128 --warmup 1 --iters 2 --kv-block-size "$blk" \
      2>"$OUT/pending-e2e-block$blk.err" | tee "$OUT/pending-e2e-block$blk.md" | grep "^| [0-9]" | cut -d'|' -f2-9 |
      sed "s/^/block $blk /"
    grep "^iter 2" "$OUT/pending-e2e-block$blk.err"
  done
fi

if has spread; then
  # Every gpu-labelled test on a multi-GPU machine in about the time of the longest one: first the
  # multi-GPU tests (mpirun, all GPUs, one after another), then the single-GPU binaries at once,
  # each queue on its own GPU (CUDA_VISIBLE_DEVICES), with memcheck over the op tests in a queue of
  # its own. One log per queue.
  ctest --test-dir build-gpu -R "ipc_allreduce|chai_tp_gpu|tp_gpu" --output-on-failure --timeout 300 \
    > "$OUT/spread-mpi.log" 2>&1
  grep -E "Test +#|tests passed" "$OUT/spread-mpi.log"
  attn_subset="*DecodeDense:*DecodeChai:*DecodeGqaChai:*DecodeHintUnequalClusters:*DecodeMembersPerCta:*PrefillPrompts:*MixedBatch"
  queues=("paged_attention_gpu_test" "engine_gpu_test chai_cluster_gpu_test block_tables_gpu_test argmax_gpu_test"
    "ops_gpu_test fused_ops_gpu_test pdl_gpu_test" "memcheck")
  for q in "${!queues[@]}"; do
    (
      export CUDA_VISIBLE_DEVICES=$(( q % gpus ))
      for t in ${queues[$q]}; do
        if [ "$t" = memcheck ]; then
          for m in ops_gpu_test fused_ops_gpu_test paged_attention_gpu_test; do
            filter="*"; [ "$m" = paged_attention_gpu_test ] && filter="$attn_subset"
            timeout 240 compute-sanitizer --tool memcheck --leak-check no --error-exitcode 9 "build-gpu/tests/$m" \
              --gtest_brief=1 --gtest_filter="$filter" >> "$OUT/spread-q$q.log" 2>&1
            echo "memcheck $m: exit $?" >> "$OUT/spread-q$q.log"
          done
        else
          timeout 420 "build-gpu/tests/$t" --gtest_brief=1 >> "$OUT/spread-q$q.log" 2>&1
          echo "$t: exit $?" >> "$OUT/spread-q$q.log"
        fi
      done
    ) &
  done
  wait
  grep -hE "^[a-z_]+: exit|^memcheck|^\[  (PASSED|FAILED)|tests ran" "$OUT"/spread-q*.log
fi

if has tiny; then
  # The opt-tiny-docs engine tests alone (trained model, goldens in ./shared): half-precision
  # parity and graphs-vs-eager decodes over length buckets.
  timeout 300 build-gpu/tests/engine_gpu_test --gtest_filter='GpuOptTinyDocs*' > "$OUT/tiny.log" 2>&1
  echo "opt-tiny-docs: exit $? $(grep -E '^\[  (PASSED|SKIPPED|FAILED)' "$OUT/tiny.log" | tr '\n' ' ')"
  # CHAI's device clustering path on the trained model (fp32, 12 heads x 32), under memcheck: its
  # cases share one engine, so block-table rows pass from one sequence to the next (a stale table
  # entry once made ChaiClusterKernel trap here; fixed in 2223b2b).
  timeout 240 compute-sanitizer --tool memcheck --leak-check no build-gpu/tests/chai_cluster_gpu_test \
    --gtest_filter='*OptTinyDocs*' > "$OUT/tiny-chai-memcheck.log" 2>&1
  echo "chai_cluster_gpu_test OptTinyDocs under memcheck: exit $?"
  grep -E "Invalid|at 0x|by thread|FAILED|OK \]" "$OUT/tiny-chai-memcheck.log" | head -20
fi

if has bench; then
  for b in gemm_bench attention_bench; do
    [ -x "build-gpu/benchmarks/$b" ] && timeout 300 "build-gpu/benchmarks/$b" > "$OUT/$b.md" 2>&1 && cat "$OUT/$b.md"
  done
fi

if has e2e; then
  # LLaMA-7B shape, random weights, fp16, TP=1: the issue-6 table (dense), then CHAI (paper schedule).
  timeout 300 build-gpu/chai bench --model configs/models/llama-7b.json --random-weights --device cuda --dtype fp16 \
    --max-seq-len 4096 --batch ${E2E_BATCHES:-1,8,32,64} --input-len 512,2048 --output-len 128 --warmup 1 --iters 2 \
    --json "$OUT/llama7b-dense.json" 2>"$OUT/llama7b-dense.err" | tee "$OUT/llama7b-dense.md"
  tail -3 "$OUT/llama7b-dense.err"
  # Prefill kernel 1 (CHAI_PREFILL_KERNEL=1; kernel 2 is the default): TTFT and prefill TFLOP/s at
  # 512 and 2048 tokens, batch 1 and 8, against the table above.
  CHAI_PREFILL_KERNEL=1 timeout 300 build-gpu/chai bench --model configs/models/llama-7b.json --random-weights \
    --device cuda --dtype fp16 --max-seq-len 4096 --batch 1,8 --input-len 512,2048 --output-len 8 --warmup 1 --iters 2 \
    2>&1 | grep -E "^\| [0-9]"
fi

if has chai; then
  # Issue 7: LLaMA-7B shape, batch 16, context 4096 (3968 prompt + 128 new), dense vs the paper schedule.
  for mode in off configs/chai/llama-7b.json; do
    tag=$([ "$mode" = off ] && echo dense || echo chai)
    timeout 300 build-gpu/chai bench --model configs/models/llama-7b.json --random-weights --device cuda --dtype fp16 \
      --max-seq-len 4096 --batch 16 --input-len 3968 --output-len 128 --warmup 1 --iters 2 --chai "$mode" \
      --json "$OUT/llama7b-b16-$tag.json" 2>"$OUT/llama7b-b16-$tag.err" | tee "$OUT/llama7b-b16-$tag.md"
    tail -2 "$OUT/llama7b-b16-$tag.err"
  done
fi

if has profile; then
  # Per-kernel GPU time of one decode step (LLaMA-7B, fp16, input 512) under Nsight Compute, with
  # graphs off so each kernel is timed alone; the sum is the step with no launch gaps (compare TPOT).
  for b in ${PROFILE_BATCHES:-1 8 32}; do
    CHAI_NO_GRAPHS=1 timeout 300 ncu --clock-control none --metrics gpu__time_duration.sum --csv \
      build-gpu/chai bench --model configs/models/llama-7b.json --random-weights --device cuda --dtype fp16 \
      --max-seq-len 4096 --batch "$b" --input-len ${PROFILE_INPUT:-512} --output-len 3 --warmup 0 --iters 1 \
      ${PROFILE_CHAI:+--chai $PROFILE_CHAI} > "$OUT/ncu-b$b.csv" 2>"/tmp/ncu-b$b.err"
    echo "### batch $b, input ${PROFILE_INPUT:-512} ${PROFILE_CHAI:+(CHAI $PROFILE_CHAI)}: kernels of the last decode step"
    python3 benchmarks/scripts/profile_step.py "$OUT/ncu-b$b.csv" --steps 2 | tee "$OUT/profile-b$b.md"
    [ "${PIPESTATUS[0]}" = 0 ] || tail -n 5 "/tmp/ncu-b$b.err"
    echo "### batch $b: kernels of the prefill (${PROFILE_INPUT:-512} tokens per sequence)"
    python3 benchmarks/scripts/profile_step.py "$OUT/ncu-b$b.csv" --prefill | tee "$OUT/profile-prefill-b$b.md"
  done
fi

if has attnprof; then
  # Issue 7: why dense decode attention streams slower than PyTorch SDPA at long contexts. The
  # dense kernel on shuffled blocks (the engine's case) and on contiguous runs (SDPA's layout),
  # then Nsight Compute's throughput, memory and warp-state sections for one launch of each at
  # batch AP_BATCH, context AP_CTX.
  shape="--batches ${AP_BATCH:-8} --contexts ${AP_CTX:-16384}"
  for layout in "--layout shuffled" "--layout runs" "--layout runs --block 64"; do
    echo "attention_bench $layout"
    timeout 120 build-gpu/benchmarks/attention_bench $layout --batches 8,32 --contexts 4096,16384 \
      > "$OUT/attnprof-bench-${layout//[ -]/}.md" 2>&1
    grep -E "^\| [0-9]" "$OUT/attnprof-bench-${layout//[ -]/}.md" | cut -d'|' -f2-9
  done
  sections="--section SpeedOfLight --section MemoryWorkloadAnalysis --section WarpStateStats --section Occupancy
    --section LaunchStats --section SchedulerStats"
  timeout 180 ncu $sections --kernel-name-base demangled --kernel-name "regex:DecodeV4Kernel<.*, 0>" --launch-skip 4 \
    --launch-count 1 build-gpu/benchmarks/attention_bench $shape --replays 2 > "$OUT/attnprof-ncu-ours.txt" 2>&1
  echo "ncu ours: exit $?"
  grep -E "DRAM Throughput|Memory Throughput|Duration|Achieved Occupancy|Stall|Registers|Theoretical Occ|Warp Cycles" \
    "$OUT/attnprof-ncu-ours.txt" | head -30
  PYTHONUNBUFFERED=1 timeout 180 ncu $sections --kernel-name "regex:flash|fmha|sdpa|attn|attention" --launch-skip 4 \
    --launch-count 2 python3 benchmarks/scripts/sdpa_decode_bench.py $shape --iters 2 > "$OUT/attnprof-ncu-sdpa.txt" 2>&1
  echo "ncu sdpa: exit $?"
  grep -E "^  [a-z_:]+.*\(|DRAM Throughput|Memory Throughput|Duration|Achieved Occupancy|Registers|Theoretical Occ|Warp Cycles|Block Size|Grid Size|Shared Memory" \
    "$OUT/attnprof-ncu-sdpa.txt" | head -40
fi

if has ab; then
  # A/B of compile-time kernel knobs: build-gpu (defaults) against build-ab (AB_FLAGS, e.g.
  # -DCHAI_V4_CPASYNC=1) and, if set, build-ab2 (AB_FLAGS2), built side by side. The variants'
  # decode tests, then attention_bench from every build in alternation (AB_BENCH: its arguments),
  # then Nsight Compute at boost clocks (--clock-control none) for one dense kernel-4 launch of
  # each at B=8, 16k: throughput sections and the L2 and DRAM throughput breakdowns, and the same
  # for PyTorch SDPA (cuDNN) on that shape.
  builds=(build-ab)
  [ -n "${AB_FLAGS2:-}" ] && builds+=(build-ab2)
  for b in "${builds[@]}"; do
    flags=$([ "$b" = build-ab ] && echo "${AB_FLAGS:?AB_FLAGS names the variant}" || echo "$AB_FLAGS2")
    ( cmake -S . -B "$b" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCHS:-90}" \
        -DCMAKE_CUDA_FLAGS="$flags" > "$OUT/configure-$b.log" 2>&1 &&
      cmake --build "$b" -j "$(nproc)" --target attention_bench paged_attention_gpu_test > "$OUT/build-$b.log" 2>&1 ||
      { grep -E "error|Error" -A4 "$OUT/build-$b.log" | head -40; } ) &
  done
  wait
  for b in "${builds[@]}"; do
    timeout 240 "$b/tests/paged_attention_gpu_test" --gtest_brief=1 \
      --gtest_filter="${AB_TESTS:-*Decode*:*MixedBatch*:*OptTinyDocsShape*}" > "$OUT/ab-tests-$b.log" 2>&1
    echo "$b paged_attention_gpu_test: exit $? $(grep -E '^\[  (PASSED|FAILED)' "$OUT/ab-tests-$b.log" | tr '\n' ' ')"
  done
  for round in 1 2; do
    for b in build-gpu "${builds[@]}"; do
      timeout 150 "$b/benchmarks/attention_bench" ${AB_BENCH:---batches 1,8,32 --contexts 1024,4096,16384} \
        > "$OUT/ab-$b-$round.md" 2>&1
      grep -E "^\| [0-9]" "$OUT/ab-$b-$round.md" | cut -d'|' -f2-9 | sed "s/^/$b r$round /"
    done
  done
  metrics="--section SpeedOfLight --section WarpStateStats --clock-control none --metrics
    breakdown:lts__throughput.avg.pct_of_peak_sustained_elapsed,breakdown:dram__throughput.avg.pct_of_peak_sustained_elapsed,lts__t_tag_requests.sum,lts__t_sectors.sum,dram__bytes_read.sum"
  for b in build-gpu "${builds[@]}"; do
    timeout 120 ncu $metrics --kernel-name DecodeV4Kernel --launch-skip 4 --launch-count 1 \
      "$b/benchmarks/attention_bench" --batches 8 --contexts 16384 --replays 2 > "$OUT/ab-ncu-$b.txt" 2>&1
    echo "ncu $b: exit $?"
    grep -E "DRAM Throughput|L2 Cache Throughput|Duration|lts__|dram__" "$OUT/ab-ncu-$b.txt" | sort -k3 -n -r | head -14
  done
  PYTHONUNBUFFERED=1 timeout 150 ncu $metrics --kernel-name regex:sdpa --launch-skip 4 --launch-count 1 \
    python3 benchmarks/scripts/sdpa_decode_bench.py --batches 8 --contexts 16384 --iters 2 > "$OUT/ab-ncu-sdpa.txt" 2>&1
  echo "ncu sdpa: exit $?"
  grep -E "DRAM Throughput|L2 Cache Throughput|Duration|lts__|dram__" "$OUT/ab-ncu-sdpa.txt" | sort -k3 -n -r | head -14
fi

if has sdpa; then
  # Issue 7: PyTorch SDPA (and CHAI in plain PyTorch) on the attention_bench shapes.
  PYTHONUNBUFFERED=1 timeout 300 python3 benchmarks/scripts/sdpa_decode_bench.py ${SDPA_ARGS:-} | tee "$OUT/sdpa.md"
fi

if has throughput; then
  # Issue 9: LLaMA-7B shape, 4096-token contexts at saturation, dense vs the paper schedule.
  for mode in off configs/chai/llama-7b.json; do
    tag=$([ "$mode" = off ] && echo dense || echo chai)
    BENCH_TIMEOUT=400 bench --mode throughput --model configs/models/llama-7b.json --max-seq-len 4096 \
      --num-requests "${TPUT_REQUESTS:-144}" --input-len-dist "fixed:${TPUT_IN:-3584}" \
      --output-len-dist "fixed:${TPUT_OUTPUT:-512}" ${TPUT_KV_GB:+--kv-cache-gb $TPUT_KV_GB} --no-progress --chai "$mode" \
      --json "$OUT/tput-$tag.json" 2>"$OUT/tput-$tag.err" | tee "$OUT/tput-$tag.md"
    tail -2 "$OUT/tput-$tag.err"
  done
fi

if has tp; then
  # Issue 8: all-reduce latency NCCL vs IPC one-shot (2 and 4 GPUs); LLaMA-7B fp16 at TP=1, 2, 4
  # with the all-reduce term in the floor. Logs of every run go to $OUT/tp.log. First the multi-GPU
  # tests (they skip on fewer GPUs than ranks).
  # TP_TESTS="" skips them (a call after `spread`, which ran them).
  if [ -n "${TP_TESTS-x}" ]; then
    ctest --test-dir build-gpu -R "${TP_TESTS:-ipc_allreduce|chai_tp_gpu|tp_gpu}" --output-on-failure --timeout 300 \
      > "$OUT/ctest-tp.log" 2>&1
    grep -E "Test +#|tests passed" "$OUT/ctest-tp.log"
  fi
  for np_ in 2 4; do
    [ "$gpus" -ge "$np_" ] || continue
    echo "all-reduce, $np_ GPUs"
    mpi "$np_" build-gpu/benchmarks/allreduce_bench fp16 2>>"$OUT/tp.log" | tee -a "$OUT/tp.log"
  done
  # TP:IPC:ALGO (IPC 0 = NCCL only; the one-shot path is off by default above 4 ranks).
  for run in ${TP_RUNS-1:1:lamport 2:0:pull 2:1:lamport 4:0:pull 4:1:lamport}; do
    IFS=: read -r np_ ipc algo <<< "$run"
    [ "$gpus" -ge "$np_" ] || continue
    echo "LLaMA-7B TP=$np_ CHAI_IPC_ALLREDUCE=$ipc CHAI_IPC_ALLREDUCE_ALGO=$algo"
    mpi "$np_" -x CHAI_IPC_ALLREDUCE=$ipc -x CHAI_IPC_ALLREDUCE_ALGO=$algo -x CHAI_LOG_RANKS=1 build-gpu/chai bench \
      --model configs/models/llama-7b.json --random-weights --device cuda --dtype fp16 --batch 1,8 --input-len 512 \
      --output-len 64 --warmup 1 --iters 2 --json "$OUT/llama7b-tp$np_-ipc$ipc-$algo.json" 2>>"$OUT/tp.log" \
      | tee -a "$OUT/tp.log" | grep "^| [0-9]"
  done
  # CHAI at TP=4: the per-rank report of representatives and K bytes (the placement's balance).
  if [ "$gpus" -ge 4 ]; then
    echo "LLaMA-7B CHAI TP=4 --stats"
    mpi 4 build-gpu/chai generate --model configs/models/llama-7b.json --random-weights --device cuda --dtype fp16 \
      --chai configs/chai/llama-7b.json --prompt-ids "$(seq -s, 100 611)" --max-new-tokens 16 --stats 2>&1 \
      | tee -a "$OUT/tp.log" | grep -E "^rank|placement|KV bytes|rror"
  fi
fi

if has opt66b && [ "$gpus" -ge 4 ]; then
  # Issue 8: OPT-66B at TP=4, dense vs CHAI (its own call: loading 66B random parameters per run
  # and two runs take most of a 10-minute call). Logs go to $OUT/tp.log.
  # OPT66B_MODES="off" or "configs/chai/opt-66b-perf.json" runs one of the two (each near 5 minutes).
  for mode in ${OPT66B_MODES:-off configs/chai/opt-66b-perf.json}; do
    tag=$([ "$mode" = off ] && echo dense || echo chai)
    echo "OPT-66B TP=4 CHAI $mode"
    BENCH_TIMEOUT=${OPT66B_TIMEOUT:-300} mpi 4 build-gpu/chai bench --model configs/models/opt-66b.json --random-weights \
      --device cuda --dtype fp16 --batch 1,16 --input-len 512 --output-len 128 --warmup 1 --iters 1 --chai "$mode" \
      --json "$OUT/opt66b-tp4-$tag.json" 2>>"$OUT/tp.log" | tee -a "$OUT/tp.log" | grep "^|"
    grep -E "copy bandwidth|error" "$OUT/tp.log" | tail -n 2
  done
fi
