#include "detail/kernels.h"

#include <ATen/Parallel.h>

#include <cmath>
#include <cstring>

namespace madam {
namespace optim {
namespace detail {
namespace {

// Elements per parallel task: large enough that thread start-up is noise.
constexpr int64_t kGrainSize = 1 << 15;

// Rounds to the nearest integer, ties to even, for |x| < 2^22: adding and
// subtracting 1.5 * 2^23 leaves the rounded value (the FPU's default mode is
// round-to-nearest-even). Unlike nearbyint this vectorises on plain SSE2.
inline float RoundHalfEven(float x) {
  constexpr float kMagic = 12582912.0f;  // 1.5 * 2^23
  return (x + kMagic) - kMagic;
}

// exp(x) = 2^n * exp(r), n = round(x / ln 2), r = x - n ln 2 in [-ln2/2, ln2/2];
// exp(r) by a degree-6 polynomial (Cephes expf coefficients). Branch-free so
// the loops below vectorise.
inline float ExpInline(float x) {
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2Hi = 0.693359375f;
  constexpr float kLn2Lo = -2.12194440e-4f;
  x = x < -87.0f ? -87.0f : x;
  x = x > 88.0f ? 88.0f : x;
  const float n = RoundHalfEven(x * kLog2e);
  float r = x - n * kLn2Hi;
  r = r - n * kLn2Lo;
  float y = 1.9875691500e-4f;
  y = y * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = y * (r * r) + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return y * scale;
}

inline float Sign(float p) { return p > 0.0f ? 1.0f : (p < 0.0f ? -1.0f : 0.0f); }

// g_hat = g / sqrt(v / (1 - beta^t)), after v's update; NaN -> 0, clamped.
inline float NormalisedGrad(float g, float* v, const NormalisedGradArgs& a) {
  const float v_new = a.beta * *v + a.one_minus_beta * (g * g);
  *v = v_new;
  float g_hat = g / std::sqrt(v_new / a.bias_correction);
  g_hat = g_hat != g_hat ? 0.0f : g_hat;
  g_hat = g_hat > a.g_bound ? a.g_bound : g_hat;
  g_hat = g_hat < -a.g_bound ? -a.g_bound : g_hat;
  return g_hat;
}

__attribute__((target_clones("avx2", "default")))
void MadamRange(float* __restrict p, const float* __restrict g, float* __restrict v, int64_t begin,
                int64_t end, MadamStepArgs a) {
  for (int64_t i = begin; i < end; ++i) {
    const float g_hat = NormalisedGrad(g[i], &v[i], a.grad);
    const float s = Sign(p[i]);
    float w = p[i] * ExpInline((a.neg_lr * g_hat) * s);
    w = w > a.max ? a.max : w;
    w = w < -a.max ? -a.max : w;
    p[i] = w;
  }
}

__attribute__((target_clones("avx2", "default")))
void IntegerMadamRange(float* __restrict p, const float* __restrict g, float* __restrict v,
                       int16_t* __restrict levels, int64_t begin, int64_t end,
                       IntegerMadamStepArgs a) {
  // Bound the level step before rounding so RoundHalfEven stays exact; any
  // step this large saturates the ladder anyway.
  constexpr float kMaxStep = 1 << 20;
  for (int64_t i = begin; i < end; ++i) {
    const float g_hat = NormalisedGrad(g[i], &v[i], a.grad);
    const float s = Sign(p[i]);
    float step = g_hat * a.lr_factor;
    step = step > kMaxStep ? kMaxStep : step;
    step = step < -kMaxStep ? -kMaxStep : step;
    float k = static_cast<float>(static_cast<uint16_t>(levels[i]));
    k = k + RoundHalfEven(step) * s;
    k = k < 0.0f ? 0.0f : k;
    k = k > a.max_level ? a.max_level : k;
    levels[i] = static_cast<int16_t>(static_cast<uint16_t>(static_cast<int32_t>(k)));
    p[i] = (s * a.sigma) * ExpInline(a.neg_base_lr * k);
  }
}

__attribute__((target_clones("avx2", "default")))
void ApplyLevelsRange(float* __restrict p, const int16_t* __restrict levels, int64_t begin,
                      int64_t end, float neg_base_lr, float sigma) {
  for (int64_t i = begin; i < end; ++i) {
    const float k = static_cast<float>(static_cast<uint16_t>(levels[i]));
    p[i] = (Sign(p[i]) * sigma) * ExpInline(neg_base_lr * k);
  }
}

}  // namespace

float FastExp(float x) { return ExpInline(x); }

void MadamStep(float* p, const float* g, float* v, int64_t n, const MadamStepArgs& args) {
  at::parallel_for(0, n, kGrainSize, [&](int64_t begin, int64_t end) {
    MadamRange(p, g, v, begin, end, args);
  });
}

void IntegerMadamStep(float* p, const float* g, float* v, int16_t* levels, int64_t n,
                      const IntegerMadamStepArgs& args) {
  at::parallel_for(0, n, kGrainSize, [&](int64_t begin, int64_t end) {
    IntegerMadamRange(p, g, v, levels, begin, end, args);
  });
}

void ApplyLevels(float* p, const int16_t* levels, int64_t n, float neg_base_lr, float sigma) {
  at::parallel_for(0, n, kGrainSize, [&](int64_t begin, int64_t end) {
    ApplyLevelsRange(p, levels, begin, end, neg_base_lr, sigma);
  });
}

}  // namespace detail
}  // namespace optim
}  // namespace madam
