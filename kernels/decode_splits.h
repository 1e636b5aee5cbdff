// Decode attention's split of the sequence over CTAs (flash-decoding), free of CUDA so that the CPU
// tests check it: into how many chunks the longest sequence of a batch is cut when each chunk
// index launches `busy` equal CTAs and `resident` CTAs fit on the chip at once. Decode kernels 2-4
// (kernels/cuda/paged_attention_decode_v2.cuh, _v3.cuh, _v4_shape.cuh) size their grids with it.
#ifndef CHAI_KERNELS_DECODE_SPLITS_H_
#define CHAI_KERNELS_DECODE_SPLITS_H_

#include <cstdint>

namespace chai::decode_splits {

constexpr int kChunkAlign = 64;  // chunks are multiples of this many positions
// A CTA's fixed work (plan, table window, merges) in positions: it favours fewer, longer chunks,
// where the waves tie and where many more short chunks would stream fewer positions per wave
// (decode_splits_test's CtaCostFavoursFewerLongerChunks).
constexpr int kCtaCost = 64;

struct Split {
  int chunk = kChunkAlign;  // positions per chunk (a multiple of kChunkAlign)
  int splits = 1;           // chunks of the longest sequence: ceil(max_len / chunk)
};

// A decode step is one launch of equal-work CTAs (for a batch of equal lengths), so its time is
// about waves x chunk, waves = ceil(busy * splits / resident), and a partial last wave costs as
// much as a full one: the split count s minimising ceil(busy * s / resident) * (chunk(s) +
// kCtaCost), over s up to ~16 waves (more waves make the last one's share small; beyond, only fixed
// costs) and one chunk per kChunkAlign positions; the first s wins a tie. `cap` > 0: at most that
// many splits (a tuning knob). Arguments below 1 count as 1.
Split Best(int64_t max_len, int64_t busy, int64_t resident, int64_t cap = 0);

}  // namespace chai::decode_splits

#endif  // CHAI_KERNELS_DECODE_SPLITS_H_
