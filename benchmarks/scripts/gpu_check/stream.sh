#!/usr/bin/env bash
# gpu_check.sh mode `stream`, sourced by gpu_check.sh (it sees OUT, gpus, modes, has, bench, mpi).
# Issue 7: which form of streaming load keeps this card's DRAM busiest (benchmarks/stream_bench.cu:
# 16-byte loads into registers, cp.async with commit groups or mbarrier arrivals, bulk copies; the
# buffer in order or in shuffled 4 KB pages; 1, 2 or 4 CTAs per SM), then Nsight Compute at boost
# clocks on one launch of each form at 2 CTAs per SM over shuffled pages (STREAM_NCU: the specs),
# the same L2 and DRAM counters as `ab` compares between decode kernel 4 and cuDNN's SDPA; before
# that, a few forms with work between refills (STREAM_SPIN: nanoseconds per stage); last, L1TEX
# request counters by operation for kernel 4's dense pass against the synthetic form it uses.
timeout 240 build-gpu/benchmarks/stream_bench ${STREAM_ARGS:-} > "$OUT/stream.md" 2>&1
echo "stream_bench: exit $?"
cat "$OUT/stream.md"
timeout 120 build-gpu/benchmarks/stream_bench --page-kb 32 --only bulk:shuffled:2 > "$OUT/stream-bulk32.md" 2>&1
grep "^| bulk" "$OUT/stream-bulk32.md" | sed 's/^/32 KB pages: /'
# Work between refills (--spin-ns, a stand-in for kernel 4's math per stage): how much a form's
# stream loses when each stage is held that long before its slot is reissued.
for ns in ${STREAM_SPIN:-500 1000 2000}; do
  for spec in bulk:shuffled:2 cpasync_mbar:shuffled:2 cpasync_mbar:shuffled:4; do
    timeout 60 build-gpu/benchmarks/stream_bench --spin-ns "$ns" --only "$spec" 2>&1 | grep "^| [a-z]" | sed "s/^/spin $ns ns: /"
  done
done
metrics="--clock-control none --metrics dram__cycles_active.avg.pct_of_peak_sustained_elapsed,lts__t_tag_requests.sum,lts__t_sectors.sum,dram__bytes_read.sum,lts__ltcfabric2ltc_cycles_active.avg.pct_of_peak_sustained_elapsed,lts__xbar2lts_cycles_active.avg.pct_of_peak_sustained_elapsed,lts__lts2xbar_cycles_active_realtime.avg.pct_of_peak_sustained_elapsed,gpu__time_duration.sum"
for spec in ${STREAM_NCU:-ldg:shuffled:2 cpasync:shuffled:2 cpasync_mbar:shuffled:2 bulk:shuffled:2 cpasync_mbar:contig:2}; do
  timeout 120 ncu $metrics --kernel-name regex:Stream --launch-skip 1 --launch-count 1 \
    build-gpu/benchmarks/stream_bench --gib 2 --iters 1 --only "$spec" > "$OUT/stream-ncu-${spec//:/-}.txt" 2>&1
  echo "ncu $spec: exit $?"
  grep -E "dram__|lts__|gpu__time" "$OUT/stream-ncu-${spec//:/-}.txt" | awk '{print "   ", $1, $(NF)}'
done
# Where decode kernel 4's extra L2 requests come from (it sends 1.5x the synthetic forms' per byte):
# L1TEX requests and sectors by operation, kernel 4's dense pass (attention_bench, B = 8, 16k)
# against the synthetic cp.async form it uses.
l1metrics="--clock-control none --metrics l1tex__t_requests_pipe_lsu_mem_global_op_ldgsts.sum,l1tex__t_sectors_pipe_lsu_mem_global_op_ldgsts.sum,l1tex__t_requests_pipe_lsu_mem_global_op_ld.sum,l1tex__t_sectors_pipe_lsu_mem_global_op_ld.sum,l1tex__t_requests_pipe_lsu_mem_global_op_st.sum,l1tex__m_xbar2l1tex_read_sectors.sum,l1tex__m_l1tex2xbar_req.sum,lts__t_tag_requests.sum,lts__t_requests_srcunit_tex.sum,lts__t_sectors_srcunit_tex.sum,gpu__time_duration.sum"
timeout 120 ncu $l1metrics --kernel-name regex:Stream --launch-skip 1 --launch-count 1 \
  build-gpu/benchmarks/stream_bench --gib 2 --iters 1 --only cpasync_mbar:shuffled:2 > "$OUT/stream-l1-synthetic.txt" 2>&1
echo "ncu l1 synthetic: exit $?"
grep -E "l1tex__|lts__|gpu__time" "$OUT/stream-l1-synthetic.txt" | awk '{print "   ", $1, $(NF)}'
if [ -x build-gpu/benchmarks/attention_bench ]; then
  timeout 150 ncu $l1metrics --kernel-name DecodeV4Kernel --launch-skip 4 --launch-count 1 \
    build-gpu/benchmarks/attention_bench --batches 8 --contexts 16384 --replays 2 > "$OUT/stream-l1-kernel4.txt" 2>&1
  echo "ncu l1 kernel 4 dense: exit $?"
  grep -E "l1tex__|lts__|gpu__time" "$OUT/stream-l1-kernel4.txt" | awk '{print "   ", $1, $(NF)}'
fi
