#!/usr/bin/env bash
# gpu_check.sh mode `copysize`, sourced by gpu_check.sh (it sees OUT, gpus, modes, has, bench, mpi).
# Issue 7: does a bulk copy's size change how busy it keeps DRAM? First the synthetic stream
# (stream_bench's bulk form, 2 and 4 CTAs per SM, pages of 8 KB as blocks of 32 store a head's
# rows, and of 32 KB) with copies of COPYSIZE_KB each; then decode kernel 4 with each block's run
# split into copies of at most AB_FLAGS' / AB_FLAGS2' CHAI_V4_COPY_BYTES against the default (one
# copy per block and side), through mode `ab` without Nsight Compute.
: "${AB_FLAGS:=-DCHAI_V4_COPY_BYTES=2048}" "${AB_FLAGS2:=-DCHAI_V4_COPY_BYTES=1024}"
start_variant_builds attention_bench paged_attention_gpu_test  # built while the synthetic stream runs
for page in 8 32; do
  for copy in ${COPYSIZE_KB:-1 2 4 8 32}; do
    [ "$copy" -le "$page" ] || continue
    specs="bulk:contig:2 bulk:shuffled:2"
    [ "$page" = 8 ] && specs="$specs bulk:shuffled:4"
    for spec in $specs; do
      timeout 60 build-gpu/benchmarks/stream_bench --page-kb "$page" --copy-kb "$copy" --only "$spec" 2>&1 |
        grep "^| [a-z]" | sed "s/^/page $page KB, copies of $copy KB: /"
    done
  done
done
AB_NCU=0 AB_TESTS="${AB_TESTS:-*Kernel4*:*DecodeHint*:*MixedBatch*}" \
  AB_BENCH="${AB_BENCH:---batches 1,8,32 --contexts 1024,2048,4096,16384 --block 32}" run_mode ab
