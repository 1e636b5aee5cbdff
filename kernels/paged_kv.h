// The paged KV cache as the attention ops see it, and the per-step batch layout.
//
// Storage is one pool of fixed-size blocks, each holding `block_size` positions of ONE head of
// ONE side (K or V) of one layer: [num_blocks, block_size, head_dim]. Per-head blocks are what
// let CHAI keep K for representatives only: a non-representative's K simply has no blocks, and
// the freed blocks become capacity for more sequences.
#ifndef CHAI_KERNELS_PAGED_KV_H_
#define CHAI_KERNELS_PAGED_KV_H_

#include <cstdint>

#include "kernels/l2_prefetch.h"
#include "kernels/tensor.h"

namespace chai {

// One layer's view of the cache for a batch of sequences.
struct PagedKv {
  Tensor pool;    // [num_blocks, block_size, head_dim], the run dtype, shared by all layers
  Tensor tables;  // int32 [rows, 2, kv_heads, max_blocks]: block ids of the sequence in row r, side
                  // (0 = K, 1 = V) and KV head g, in position order; -1 where there is no block
                  // (a dropped K head, or past the sequence's length). Row-major, contiguous.
  int block_size = 16;
  int kv_heads = 0;
  int max_blocks = 0;  // last dimension of `tables`
  // Launch hint: about how many query heads share each representative's scores in this layer
  // (CHAI: local heads / local clusters; 1: dense). Host-side, so nothing is read back and a
  // decode step stays capturable; a wrong value costs speed only, never correctness (the
  // kernels read the real membership from the score-head map). The CPU reference ignores it.
  int members_per_rep = 1;
  // Speed hint: weight bytes the kernel after attention streams (the o projection's first bytes,
  // ops::LinearReadsFirst), for the decode attention kernel to fetch into L2 once its own K/V
  // stream is done (kernels/l2_prefetch.h). Taken by decode kernel 4's dense and P·V passes on
  // sm_90; ignored by every other kernel and by the CPU reference.
  L2Prefetch then;
};

// Which rows of the step's activations belong to which sequence (int32 tensors on the op's
// device) plus host-side bounds for launch configuration.
struct BatchLayout {
  Tensor q_start;   // [num_seqs + 1]: sequence s owns rows [q_start[s], q_start[s+1])
  Tensor seq_lens;  // [num_seqs]: positions in the cache after this step's append; the n_s new
                    // rows of sequence s sit at positions seq_lens[s] - n_s .. seq_lens[s] - 1
  Tensor slots;     // [num_seqs] or undefined: the row of sequence s in the block tables and the
                    // score-head maps (persistent per-sequence rows); undefined means row s
  Tensor token_rows;  // [T] or undefined: row t's table row (slots[s] of its sequence s, or s); only
                      // QkvLinearAppend's one-kernel path reads it
  int num_seqs = 0;
  int max_new_tokens = 0;  // max n_s (1 for a decode step)
  int max_seq_len = 0;     // an upper bound of seq_lens (kernels may use it to size grids)
};

}  // namespace chai

#endif  // CHAI_KERNELS_PAGED_KV_H_
