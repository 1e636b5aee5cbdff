#!/usr/bin/env bash
# gpu_check.sh mode `treeab`, sourced by gpu_check.sh (it sees OUT, gpus, modes, has, bench, mpi).
# A kernel change's A/B against a baseline tree on the same card: BASE_TAR (default
# base-tree.tar.gz in the repository root, made with `git archive COMMIT | gzip`, kept out of git;
# untracked files travel to the device machine) built into build-base, and this tree built with the
# kernel-4 timeline marks (build-tl), both beside build-gpu. This tree's paged-attention tests
# (TREEAB_TESTS, a gtest filter, default all), then attention_bench from both trees in turn
# (TREEAB_BENCH: its arguments; TREEAB_ROUNDS rounds, default 2), then this tree's per-CTA timeline
# (v4_timeline.py) on TREEAB_TIMELINE (attention_bench arguments).
base_tar=${BASE_TAR:-base-tree.tar.gz}
[ -f "$base_tar" ] || { echo "treeab: no baseline tree $base_tar"; return 0; }
rm -rf base-src && mkdir base-src && tar xzf "$base_tar" -C base-src
(cmake -S base-src -B build-base -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCHS:-90}" \
  > "$OUT/treeab-configure-base.log" 2>&1 &&
  cmake --build build-base -j "$(nproc)" --target attention_bench > "$OUT/treeab-build-base.log" 2>&1) &
base_pid=$!
build_variant build-tl "-DCHAI_V4_TIMELINE=1" attention_bench &
tl_pid=$!
timeout 300 build-gpu/tests/paged_attention_gpu_test --gtest_brief=1 --gtest_filter="${TREEAB_TESTS:-*}" \
  > "$OUT/treeab-tests.log" 2>&1
echo "paged_attention_gpu_test (${TREEAB_TESTS:-*}): $(grep -E '^\[  (PASSED|FAILED)' "$OUT/treeab-tests.log" | tr '\n' ' ')"
grep -E "^\[  FAILED|Failure" -A3 "$OUT/treeab-tests.log" | head -12
wait "$base_pid" || { echo "treeab: the baseline's build failed"; tail -20 "$OUT/treeab-build-base.log"; return 0; }
wait "$tl_pid"
args=${TREEAB_BENCH:---batches 1,8,32 --contexts 1024,2048,4096 --block 32 --layout runs}
for round in $(seq "${TREEAB_ROUNDS:-2}"); do
  for b in build-base build-gpu; do
    timeout 150 "$b/benchmarks/attention_bench" $args > "$OUT/treeab-$b-$round.md" 2>&1
    grep -E "^\| [0-9]" "$OUT/treeab-$b-$round.md" | cut -d'|' -f2-9 | sed "s/^/$b r$round /"
  done
done
timeout 100 build-tl/benchmarks/attention_bench ${TREEAB_TIMELINE:---batches 1,8,32 --contexts 1024,2048,4096 --block 32 \
  --layout runs} --timeline "$OUT/treeab-timeline.csv" > "$OUT/treeab-timeline.md" 2>&1
echo "timeline: exit $?"
python3 benchmarks/scripts/v4_timeline.py "$OUT/treeab-timeline.csv"
