// The per-element maths of Madam and B-bit Madam, written once for the CPU
// kernels (kernels.cc) and the CUDA kernels (cuda_kernels.cu).
//
// Every function is plain IEEE single-precision arithmetic in a fixed order:
// no fused multiply-add (kernels.cc is built with -ffp-contract=off, the CUDA
// file with -fmad=false), no approximate reciprocal or square root. So every
// CPU instruction set and the GPU compute bit-identical results, and the
// normalised gradient is bit-identical to the reference implementation's
// (tests/unit/optim/golden/make_golden.py: v / (1 - beta^t), sqrt, g / that),
// which matters for B-bit Madam: round(g_hat * eta/eta0) must agree at ties.
// Only exp differs from the reference's, by an ulp or two.
//
// Torch-free, so nvcc compiles it without LibTorch's headers.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "detail/step_args.h"

#if defined(__CUDACC__)
#define MADAM_OPTIM_ELEMENTWISE __host__ __device__ __forceinline__
#elif defined(__GNUC__)
#define MADAM_OPTIM_ELEMENTWISE inline __attribute__((always_inline))
#else
#define MADAM_OPTIM_ELEMENTWISE inline
#endif

namespace madam {
namespace optim {
namespace detail {

MADAM_OPTIM_ELEMENTWISE float FloatFromBits(int32_t bits) {
#if defined(__CUDA_ARCH__)
  return __int_as_float(bits);
#else
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
#endif
}

MADAM_OPTIM_ELEMENTWISE float SquareRoot(float x) {
#if defined(__CUDA_ARCH__)
  return sqrtf(x);  // correctly rounded: nvcc's default -prec-sqrt=true
#else
  return std::sqrt(x);
#endif
}

// Rounds to the nearest integer, ties to even, for |x| < 2^22: adding and
// subtracting 1.5 * 2^23 leaves the rounded value in round-to-nearest-even
// mode (every FPU's default). Unlike nearbyint this vectorises everywhere.
MADAM_OPTIM_ELEMENTWISE float RoundHalfEven(float x) {
  const float kMagic = 12582912.0f;  // 1.5 * 2^23
  return (x + kMagic) - kMagic;
}

// exp(r) for |r| <= ln2/2 by a degree-6 polynomial (Cephes expf
// coefficients).
MADAM_OPTIM_ELEMENTWISE float ExpPolynomial(float r) {
  float y = 1.9875691500e-4f;
  y = y * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  return y * (r * r) + r + 1.0f;
}

// exp(x) = 2^n * exp(r), n = round(x / ln 2), r = x - n ln 2 in [-ln2/2, ln2/2]:
// about 2 ulp for x in [-87, 88]; inputs outside are clamped to that range.
// Branch-free, so loops over it vectorise.
MADAM_OPTIM_ELEMENTWISE float Exp(float x) {
  const float kLog2e = 1.44269504088896341f;
  const float kLn2Hi = 0.693359375f;
  const float kLn2Lo = -2.12194440e-4f;
  x = x < -87.0f ? -87.0f : x;
  x = x > 88.0f ? 88.0f : x;
  const float n = RoundHalfEven(x * kLog2e);
  float r = x - n * kLn2Hi;
  r = r - n * kLn2Lo;
  return ExpPolynomial(r) * FloatFromBits((static_cast<int32_t>(n) + 127) << 23);
}

// For |x| <= kSmallExpBound, round(x / ln 2) is 0, so Exp(x) is
// ExpPolynomial(x) times 1 with r = x exactly: the same bits without the
// range reduction, about half of Exp's work. Madam's exponent is bounded by
// eta * g_bound (0.1 at the paper's defaults), so it mostly runs this one.
constexpr float kSmallExpBound = 0.34f;  // < ln2/2 = 0.3466
MADAM_OPTIM_ELEMENTWISE float ExpSmall(float x) { return ExpPolynomial(x); }

MADAM_OPTIM_ELEMENTWISE float Sign(float p) { return p > 0.0f ? 1.0f : (p < 0.0f ? -1.0f : 0.0f); }

// Written as compare-and-select in this order so that the vectoriser emits
// min/max; a NaN passes through.
MADAM_OPTIM_ELEMENTWISE float ClampAbs(float x, float bound) {
  x = x > bound ? bound : x;
  x = x < -bound ? -bound : x;
  return x;
}

// v <- beta v + (1 - beta) g^2;  g_hat = g / sqrt(v / (1 - beta^t)), NaN -> 0,
// clamped to +-g_bound (Algorithm 1 of the paper, as the authors run it).
MADAM_OPTIM_ELEMENTWISE float NormalisedGrad(float g, float& v, const NormalisedGradArgs& a) {
  const float v_new = a.beta * v + a.one_minus_beta * (g * g);
  v = v_new;
  float g_hat = g / SquareRoot(v_new / a.bias_correction);
  g_hat = g_hat != g_hat ? 0.0f : g_hat;
  return ClampAbs(g_hat, a.g_bound);
}

// Madam, in two halves so that a CPU kernel can run the division-heavy half
// and the exp-heavy half as separate passes over a block held in L1.
// The exponent: -eta * g_hat * sign(p).
MADAM_OPTIM_ELEMENTWISE float MadamExponent(float p, float g, float& v, const MadamStepArgs& a) {
  return (a.neg_lr * NormalisedGrad(g, v, a.grad)) * Sign(p);
}

// p * exp(exponent), clamped to +-sigma*. kSmall: REQUIRES
// |exponent| <= kSmallExpBound (then the result is the same).
template <bool kSmall = false>
MADAM_OPTIM_ELEMENTWISE float MadamWeight(float p, float exponent, float max) {
  return ClampAbs(p * (kSmall ? ExpSmall(exponent) : Exp(exponent)), max);
}

// B-bit Madam's levels: k, in 0 .. 2^16 - 1, is stored as the int16 holding
// its unsigned 16-bit pattern.
MADAM_OPTIM_ELEMENTWISE float DecodeLevel(int16_t stored) {
  return static_cast<float>(static_cast<uint16_t>(stored));
}
MADAM_OPTIM_ELEMENTWISE int16_t EncodeLevel(float k) {
  return static_cast<int16_t>(static_cast<uint16_t>(static_cast<int32_t>(k)));
}

// k <- clamp(k + round(g_hat * eta/eta0) * sign(p), 0, 2^B - 1); returns k.
MADAM_OPTIM_ELEMENTWISE float IntegerMadamLevel(float p, float g, float& v, int16_t stored,
                                                const IntegerMadamStepArgs& a) {
  // Bound the level step before rounding so RoundHalfEven stays exact; any
  // step this large saturates the ladder anyway.
  const float kMaxStep = 1048576.0f;  // 2^20
  const float step = ClampAbs(NormalisedGrad(g, v, a.grad) * a.lr_factor, kMaxStep);
  float k = DecodeLevel(stored) + RoundHalfEven(step) * Sign(p);
  k = k < 0.0f ? 0.0f : k;
  k = k > a.max_level ? a.max_level : k;
  return k;
}

// The weight on its ladder: sign(p) * sigma* * exp(-eta0 * k).
MADAM_OPTIM_ELEMENTWISE float LadderWeight(float p, float k, float neg_base_lr, float sigma) {
  return (Sign(p) * sigma) * Exp(neg_base_lr * k);
}

}  // namespace detail
}  // namespace optim
}  // namespace madam
