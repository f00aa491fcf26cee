#include "detail/kernels.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "detail/elementwise.h"

#if defined(__x86_64__) && defined(__GNUC__)
#define MADAM_OPTIM_X86_KERNELS 1
// GCC and clang compile a function for the instruction set its target
// attribute names and inline the always-inline maths into it, so each
// wrapper below is the same loop vectorised at that width.
#define MADAM_OPTIM_TARGET_AVX512 \
  __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,avx,fma,bmi,bmi2")))
#define MADAM_OPTIM_TARGET_AVX2 __attribute__((target("avx2,avx,fma,bmi,bmi2")))
#else
#define MADAM_OPTIM_X86_KERNELS 0
#endif

namespace madam {
namespace optim {
namespace detail {
namespace {

// Elements per parallel task: large enough that thread start-up is noise.
constexpr int64_t kGrainSize = 1 << 15;
// Elements per two-pass block: p, g, v and the block's buffer, 4 KiB in
// all, stay in L1 between the passes.
constexpr int64_t kBlock = 256;

template <bool kSmall>
MADAM_OPTIM_ELEMENTWISE void MadamBlock(float* __restrict p, const float* __restrict g,
                                        float* __restrict v, int64_t n, const MadamStepArgs& a) {
  alignas(64) float exponent[kBlock];
  for (int64_t i = 0; i < n; ++i) exponent[i] = MadamExponent(p[i], g[i], v[i], a);
  for (int64_t i = 0; i < n; ++i) p[i] = MadamWeight<kSmall>(p[i], exponent[i], a.max);
}

MADAM_OPTIM_ELEMENTWISE void MadamLoop(float* p, const float* g, float* v, int64_t begin,
                                       int64_t end, const MadamStepArgs& a) {
  // |exponent| <= eta * g_bound: when that is small, exp needs no range
  // reduction (elementwise.h, ExpSmall), and gives the same bits.
  const bool small = -a.neg_lr * a.grad.g_bound <= kSmallExpBound;
  for (int64_t b = begin; b < end; b += kBlock) {
    const int64_t n = std::min(kBlock, end - b);
    if (small) {
      MadamBlock<true>(p + b, g + b, v + b, n, a);
    } else {
      MadamBlock<false>(p + b, g + b, v + b, n, a);
    }
  }
}

MADAM_OPTIM_ELEMENTWISE void IntegerMadamBlock(float* __restrict p, const float* __restrict g,
                                               float* __restrict v, int16_t* __restrict levels,
                                               int64_t n, const IntegerMadamStepArgs& a) {
  alignas(64) float k[kBlock];
  for (int64_t i = 0; i < n; ++i) {
    k[i] = IntegerMadamLevel(p[i], g[i], v[i], levels[i], a);
    levels[i] = EncodeLevel(k[i]);
  }
  for (int64_t i = 0; i < n; ++i) p[i] = LadderWeight(p[i], k[i], a.neg_base_lr, a.sigma);
}

MADAM_OPTIM_ELEMENTWISE void IntegerMadamLoop(float* p, const float* g, float* v, int16_t* levels,
                                              int64_t begin, int64_t end,
                                              const IntegerMadamStepArgs& a) {
  for (int64_t b = begin; b < end; b += kBlock) {
    IntegerMadamBlock(p + b, g + b, v + b, levels + b, std::min(kBlock, end - b), a);
  }
}

using MadamRangeFn = void (*)(float*, const float*, float*, int64_t, int64_t,
                              const MadamStepArgs&);
using IntegerMadamRangeFn = void (*)(float*, const float*, float*, int16_t*, int64_t, int64_t,
                                     const IntegerMadamStepArgs&);

struct Kernels {
  MadamRangeFn madam;
  IntegerMadamRangeFn integer_madam;
};

// One set of range kernels per instruction set, each the same loops.
#define MADAM_OPTIM_DEFINE_KERNELS(Suffix, Target)                                                \
  Target void MadamRange##Suffix(float* p, const float* g, float* v, int64_t begin, int64_t end,  \
                                 const MadamStepArgs& a) {                                        \
    MadamLoop(p, g, v, begin, end, a);                                                            \
  }                                                                                               \
  Target void IntegerMadamRange##Suffix(float* p, const float* g, float* v, int16_t* levels,      \
                                        int64_t begin, int64_t end,                               \
                                        const IntegerMadamStepArgs& a) {                          \
    IntegerMadamLoop(p, g, v, levels, begin, end, a);                                             \
  }                                                                                               \
  constexpr Kernels k##Suffix##Kernels = {&MadamRange##Suffix, &IntegerMadamRange##Suffix};

MADAM_OPTIM_DEFINE_KERNELS(Baseline, )
#if MADAM_OPTIM_X86_KERNELS
MADAM_OPTIM_DEFINE_KERNELS(Avx2, MADAM_OPTIM_TARGET_AVX2)
MADAM_OPTIM_DEFINE_KERNELS(Avx512, MADAM_OPTIM_TARGET_AVX512)
#endif

const Kernels& KernelsFor(Isa isa) {
#if MADAM_OPTIM_X86_KERNELS
  if (isa == Isa::kAvx512) return kAvx512Kernels;
  if (isa == Isa::kAvx2) return kAvx2Kernels;
#endif
  (void)isa;
  return kBaselineKernels;
}

Isa ChooseIsa() {
  Isa best = Isa::kBaseline;
  for (Isa isa : {Isa::kAvx2, Isa::kAvx512}) {
    if (CpuSupports(isa)) best = isa;
  }
  if (const char* wanted = std::getenv("MADAM_OPTIM_ISA")) {
    for (Isa isa : {Isa::kBaseline, Isa::kAvx2, Isa::kAvx512}) {
      if (std::strcmp(wanted, IsaName(isa)) == 0 && CpuSupports(isa) &&
          static_cast<int>(isa) <= static_cast<int>(best)) {
        best = isa;
      }
    }
  }
  return best;
}

}  // namespace

const char* IsaName(Isa isa) {
  switch (isa) {
    case Isa::kAvx512:
      return "avx512";
    case Isa::kAvx2:
      return "avx2";
    case Isa::kBaseline:
      break;
  }
  return "baseline";
}

bool CpuSupports(Isa isa) {
  switch (isa) {
    case Isa::kBaseline:
      return true;
#if MADAM_OPTIM_X86_KERNELS
    case Isa::kAvx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
             __builtin_cpu_supports("bmi2");
    case Isa::kAvx512:
      return CpuSupports(Isa::kAvx2) && __builtin_cpu_supports("avx512f") &&
             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("avx512vl");
#else
    default:
      return false;
#endif
  }
  return false;
}

Isa ActiveIsa() {
  static const Isa isa = ChooseIsa();
  return isa;
}

float FastExp(float x) { return Exp(x); }

void MadamStep(float* p, const float* g, float* v, int64_t n, const MadamStepArgs& args, Isa isa) {
  const MadamRangeFn range = KernelsFor(isa).madam;
  at::parallel_for(0, n, kGrainSize, [&](int64_t begin, int64_t end) {
    range(p, g, v, begin, end, args);
  });
}

void IntegerMadamStep(float* p, const float* g, float* v, int16_t* levels, int64_t n,
                      const IntegerMadamStepArgs& args, Isa isa) {
  const IntegerMadamRangeFn range = KernelsFor(isa).integer_madam;
  at::parallel_for(0, n, kGrainSize, [&](int64_t begin, int64_t end) {
    range(p, g, v, levels, begin, end, args);
  });
}

}  // namespace detail
}  // namespace optim
}  // namespace madam
