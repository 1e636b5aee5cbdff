// The decode GEMV's launch arithmetic, free of CUDA so that the CPU tests check it: a launch
// configuration's grid over a weight (row blocks, splits of K), how evenly its warps share a CTA's
// span, how full its last wave is, and the default choice among the three configurations that have
// the fused kernels (kernels/cuda/gemv.cu launches them and explains the measurements behind the
// choice; gemv_kernel.cuh explains the layout).
#ifndef CHAI_KERNELS_GEMV_GRID_H_
#define CHAI_KERNELS_GEMV_GRID_H_

#include <cstdint>

namespace chai::gemv_grid {

// A configuration's template shape (warps per CTA, 16 * r rows per CTA, u 4-chunk steps per warp
// iteration, min_blocks CTAs per SM its registers allow) and how many of its CTAs an SM actually
// holds (the occupancy API's answer; min_blocks or more).
struct Config {
  int warps, r, u, min_blocks, ctas_per_sm;
};

// A GEMV's grid: row blocks of 16 * r rows of W (paired epilogues: 8 * r output columns, as many
// rows of each half), and over gridDim.y the splits of K, split_chunks 16-byte chunks each.
struct Grid {
  int64_t row_blocks = 0, splits = 1, split_chunks = 0;
};

// Fewer row blocks than SMs: split K over CTAs, up to one full wave at min_blocks CTAs per SM,
// each warp of a split keeping at least one full iteration (4 * u chunks).
Grid Plan(int64_t n, int64_t k, bool paired, const Config& c, int sms);

// How evenly a CTA's warps share its K span: a warp iteration streams 4 * u chunks of each row and
// the iterations go to the warps in turn, so the busiest warp has ceil(iterations / warps) of
// them; mean over busiest (1 = even).
double WarpBalance(const Config& c, const Grid& g);

// The share of the chip's resident CTAs (sms * ctas_per_sm) the grid's last wave fills, where the
// grid takes more than one wave (0 where it fits in one, or ends on a full wave).
double LastWaveFill(const Config& c, const Grid& g, int sms);

// Which of the narrow and wide fused configurations is the default for W [n, k]: by width (wide
// for n >= 8192), with the two exceptions by shape that gemv.cu's DefaultVariant explains, unless
// by_width_only. True: the wide one.
bool ChooseWide(int64_t k, int64_t n, const Config& narrow, const Config& wide, int sms, bool by_width_only);

// Whether a launch takes `four`, a configuration of four warps a CTA (with the fused kernels too),
// over `chosen`, the default: where the default leaves a CTA's warps under 4/5 of the busiest
// one's work and `four` shares better (OPT-66B's o at TP = 4, K = 2304: 18 iterations over 8 warps
// against over 4). gemv.cu's ChooseVariant explains the measurements.
bool FourWarpsShareBetter(int64_t k, int64_t n, const Config& chosen, const Config& four, int sms);

// Whether `four`'s grid fits in one wave of resident CTAs where the wide one's spills past one
// (LLaMA-7B's Q|K|V at TP = 1, its gate|up at TP = 2; OPT-66B's Q|K|V, fc1, fc2 and LM head at
// TP = 4): the rule CHAI_GEMV_FOUR_WARPS applies, by default only where no kernel before the
// launch prefetched its first bytes (gemv.cu says what was measured).
bool WideTakesFourWarps(int64_t k, int64_t n, const Config& wide, const Config& four, int sms);

// The run-time settings the default choice reads (gemv.cu: CHAI_GEMV_DEFAULT, CHAI_GEMV_FOUR_WARPS)
// and whether a kernel before the launch prefetched its first bytes (ops::LinearFusion).
enum class FourWarpsRule { kOff, kUnhinted, kAll };
// Rules{} applies no four-warp rule (kOff); the runtime's default is kUnhinted (gemv.cu's FourWarpsSetting).
struct Rules {
  bool by_width_only = false;
  FourWarpsRule four_warps = FourWarpsRule::kOff;
  bool first_bytes_in_l2 = false;
};

// The default configuration of a launch over W [n, k]: ChooseWide's, unless FourWarpsShareBetter
// moves it to `four`, or the wide one gives way to `four` by WideTakesFourWarps where the rule
// opts in (kAll; kUnhinted where the first bytes were not prefetched). by_width_only: ChooseWide's
// by width, and neither move.
enum class Pick { kNarrow, kWide, kFour };
Pick ChooseDefault(int64_t k, int64_t n, const Config& narrow, const Config& wide, const Config& four, int sms,
                   const Rules& rules = {});

}  // namespace chai::gemv_grid

#endif  // CHAI_KERNELS_GEMV_GRID_H_
