// Fused CPU kernels for one optimiser step over a contiguous float32 tensor.
//
// Each kernel is one pass over memory: the second-moment update, the
// normalised gradient and the multiplicative (or level) update happen per
// element, vectorised by the compiler (kernels.cc is built with -O3 and
// cloned for AVX2), and split across threads with at::parallel_for. The
// arithmetic follows the reference implementation's operation order, so
// results match the eager tensor-op path to within exp()'s rounding.
//
// Torch-free on purpose: raw pointers in, no tensors, so this header is cheap.
#pragma once

#include <cstdint>

namespace madam {
namespace optim {
namespace detail {

struct NormalisedGradArgs {
  float beta;                // second-moment decay
  float one_minus_beta;
  float bias_correction;     // 1 - beta^t
  float g_bound;             // clamp on g_hat
};

struct MadamStepArgs {
  NormalisedGradArgs grad;
  float neg_lr;              // -eta
  float max;                 // sigma*
};

// p <- clamp(p * exp(-lr * g_hat * sign(p)), +-max); updates v in place.
void MadamStep(float* p, const float* g, float* v, int64_t n, const MadamStepArgs& args);

struct IntegerMadamStepArgs {
  NormalisedGradArgs grad;
  float lr_factor;           // eta / eta0
  float neg_base_lr;         // -eta0
  float sigma;               // sigma*
  float max_level;           // 2^B - 1
};

// k <- clamp(k + round(g_hat * lr_factor) * sign(p), 0, max_level);
// p <- sign(p) * sigma * exp(-eta0 * k). `levels` holds k's 16-bit pattern.
void IntegerMadamStep(float* p, const float* g, float* v, int16_t* levels, int64_t n,
                      const IntegerMadamStepArgs& args);

// p <- sign(p) * sigma * exp(-eta0 * k): puts every weight on its ladder.
void ApplyLevels(float* p, const int16_t* levels, int64_t n, float neg_base_lr, float sigma);

// exp(x) for float, accurate to about 2 ulp for x in [-87, 88]; inputs
// outside are clamped to that range. Exposed for tests.
float FastExp(float x);

}  // namespace detail
}  // namespace optim
}  // namespace madam
