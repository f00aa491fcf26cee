// Fused CPU kernels for one optimiser step over a contiguous float32 tensor.
//
// Each kernel is one pass over memory (one read of p, g, v and the levels,
// one write of each): the second-moment update, the normalised gradient and
// the multiplicative (or level) update happen per element, split across
// threads with at::parallel_for. Within a thread the range is cut into
// blocks that stay in L1: a first pass over a block does the divisions and
// square roots, a second the exps, so that the two long dependency chains
// of an element overlap across many elements instead of queueing behind one
// another.
//
// The loops are vectorised by the compiler once per instruction set: AVX-512
// (16 floats), AVX2 (8) and the build's baseline (SSE2 on x86-64, NEON on
// arm64); the widest the CPU supports is chosen at run time. The maths is
// elementwise.h's, so every instruction set gives bit-identical results.
//
// Torch-free on purpose: raw pointers in, no tensors, so this header is cheap.
#pragma once

#include <cstdint>

#include "detail/step_args.h"

namespace madam {
namespace optim {
namespace detail {

enum class Isa { kBaseline, kAvx2, kAvx512 };

// "baseline", "avx2" or "avx512".
const char* IsaName(Isa isa);

// Whether this build has kernels for `isa` and this CPU can run them.
bool CpuSupports(Isa isa);

// The instruction set the kernels use unless told otherwise: the widest the
// CPU supports, or, when the environment variable MADAM_OPTIM_ISA names a
// narrower supported one ("baseline", "avx2"), that (for benchmarks and
// troubleshooting). Chosen once per process.
Isa ActiveIsa();

// p <- clamp(p * exp(-lr * g_hat * sign(p)), +-max); updates v in place.
// REQUIRES: CpuSupports(isa).
void MadamStep(float* p, const float* g, float* v, int64_t n, const MadamStepArgs& args,
               Isa isa = ActiveIsa());

// k <- clamp(k + round(g_hat * lr_factor) * sign(p), 0, max_level);
// p <- sign(p) * sigma * exp(-eta0 * k). `levels` holds k's 16-bit pattern.
// REQUIRES: CpuSupports(isa).
void IntegerMadamStep(float* p, const float* g, float* v, int16_t* levels, int64_t n,
                      const IntegerMadamStepArgs& args, Isa isa = ActiveIsa());

// exp(x) for float as the kernels compute it (elementwise.h): about 2 ulp
// for x in [-87, 88]; inputs outside are clamped to that range. For tests.
float FastExp(float x);

}  // namespace detail
}  // namespace optim
}  // namespace madam
