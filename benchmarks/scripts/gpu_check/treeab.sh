#!/usr/bin/env bash
# gpu_check.sh mode `treeab`, sourced by gpu_check.sh (it sees OUT, gpus, modes, has, bench, mpi).
# A kernel change's A/B against a baseline tree on the same card: BASE_TAR (default
# base-tree.tar.gz in the repository root, made with `git archive COMMIT | gzip`, kept out of git
# and named in carry) built into build-base beside build-gpu, and optionally a compile-time variant
# of this tree (TREEAB_FLAGS, build-ab). This tree's paged-attention tests (TREEAB_TESTS, a gtest
# filter, default all; the variant's under its decode filter), then attention_bench from every
# build in turn (TREEAB_BENCH: its arguments; TREEAB_ROUNDS rounds, default 2), then a per-CTA
# timeline (v4_timeline.py) of this tree built with TREEAB_TL_FLAGS (default the timeline marks
# alone) on TREEAB_TIMELINE (attention_bench arguments).
base_tar=${BASE_TAR:-base-tree.tar.gz}
[ -f "$base_tar" ] || {
  echo "treeab: no baseline tree $base_tar (make it with: git archive COMMIT | gzip > $base_tar; and name it in the" \
    "device call's carry: it is ignored by git, so it does not travel otherwise)"
  return 0
}
rm -rf base-src && mkdir base-src && tar xzf "$base_tar" -C base-src
(cmake -S base-src -B build-base -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCHS:-90}" \
  > "$OUT/treeab-configure-base.log" 2>&1 &&
  cmake --build build-base -j "$(nproc)" --target attention_bench > "$OUT/treeab-build-base.log" 2>&1) &
pids=($!)
build_variant build-tl "${TREEAB_TL_FLAGS:--DCHAI_V4_TIMELINE=1}" attention_bench &
pids+=($!)
trees=(build-base build-gpu)
if [ -n "${TREEAB_FLAGS:-}" ]; then
  build_variant build-ab "$TREEAB_FLAGS" attention_bench paged_attention_gpu_test &
  pids+=($!)
  trees+=(build-ab)
fi
timeout 300 build-gpu/tests/paged_attention_gpu_test --gtest_brief=1 --gtest_filter="${TREEAB_TESTS:-*}" \
  > "$OUT/treeab-tests.log" 2>&1
echo "paged_attention_gpu_test (${TREEAB_TESTS:-*}): $(grep -E '^\[  (PASSED|FAILED)' "$OUT/treeab-tests.log" | tr '\n' ' ')"
grep -E "^\[  FAILED|Failure" -A3 "$OUT/treeab-tests.log" | head -12
for pid in "${pids[@]}"; do wait "$pid" || { echo "treeab: a build failed"; tail -20 "$OUT"/treeab-build-base.log; return 0; }; done
if [ -n "${TREEAB_FLAGS:-}" ]; then
  timeout 300 build-ab/tests/paged_attention_gpu_test --gtest_brief=1 --gtest_filter='*Decode*:*MixedBatch*' \
    > "$OUT/treeab-tests-ab.log" 2>&1
  echo "build-ab ($TREEAB_FLAGS) paged_attention_gpu_test: $(grep -E '^\[  (PASSED|FAILED)' "$OUT/treeab-tests-ab.log" | tr '\n' ' ')"
  grep -E "^\[  FAILED|Failure" -A3 "$OUT/treeab-tests-ab.log" | head -12
fi
args=${TREEAB_BENCH:---batches 1,8,32 --contexts 1024,2048,4096 --block 32 --layout runs}
for round in $(seq "${TREEAB_ROUNDS:-2}"); do
  for b in "${trees[@]}"; do
    timeout 150 "$b/benchmarks/attention_bench" $args > "$OUT/treeab-$b-$round.md" 2>&1
    grep -E "^\| [0-9]" "$OUT/treeab-$b-$round.md" | cut -d'|' -f2-9 | sed "s/^/$b r$round /"
  done
done
timeout 100 build-tl/benchmarks/attention_bench ${TREEAB_TIMELINE:---batches 1,8,32 --contexts 1024,2048,4096 --block 32 \
  --layout runs} --timeline "$OUT/treeab-timeline.csv" > "$OUT/treeab-timeline.md" 2>&1
echo "timeline (${TREEAB_TL_FLAGS:--DCHAI_V4_TIMELINE=1}): exit $?"
python3 benchmarks/scripts/v4_timeline.py "$OUT/treeab-timeline.csv"
