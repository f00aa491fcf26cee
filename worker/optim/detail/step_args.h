// The per-tensor scalars of one fused optimiser step, already converted to
// float once on the host (ensmallen's rule: convert hyperparameters into the
// element type once). Shared by the CPU kernels (kernels.h) and the CUDA
// kernels (cuda_kernels.h); plain aggregates, so they can be kernel arguments.
#pragma once

namespace madam {
namespace optim {
namespace detail {

struct NormalisedGradArgs {
  float beta;             // second-moment decay
  float one_minus_beta;
  float bias_correction;  // 1 - beta^t
  float g_bound;          // clamp on g_hat
};

struct MadamStepArgs {
  NormalisedGradArgs grad;
  float neg_lr;  // -eta
  float max;     // sigma*
};

struct IntegerMadamStepArgs {
  NormalisedGradArgs grad;
  float lr_factor;    // eta / eta0
  float neg_base_lr;  // -eta0
  float sigma;        // sigma*
  float max_level;    // 2^B - 1
};

// The float scalars of the normalised gradient, converted once per tensor.
inline NormalisedGradArgs MakeNormalisedGradArgs(double beta, double g_bound,
                                                 double bias_correction) {
  NormalisedGradArgs args;
  args.beta = static_cast<float>(beta);
  args.one_minus_beta = static_cast<float>(1 - beta);
  args.bias_correction = static_cast<float>(bias_correction);
  args.g_bound = static_cast<float>(g_bound);
  return args;
}

}  // namespace detail
}  // namespace optim
}  // namespace madam
