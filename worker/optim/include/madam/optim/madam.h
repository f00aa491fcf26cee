// Madam: the multiplicative Adam of Bernstein et al., "Learning compositional
// functions via multiplicative weight updates" (NeurIPS 2020), Algorithm 1,
// as the authors' reference implementation runs it.
//
// For each parameter tensor p with gradient g, at step t:
//   on the first step   sigma* = p_scale * RMS(p)
//   v     <- beta * v + (1 - beta) * g^2
//   g_hat <- g / sqrt(v / (1 - beta^t))      NaN -> 0, clamped to +-g_bound
//   p     <- p * exp(-lr * g_hat * sign(p))  then clamped to +-sigma*
// A weight's sign never changes (Dale's principle), and a weight that is
// exactly zero stays zero.
//
// Usage mirrors torch::optim::Adam:
//   madam::optim::Madam opt(model->parameters(), madam::optim::MadamOptions(0.01));
//   loss.backward(); opt.step();
//
// Contiguous float32 tensors take a fused step: on the CPU one vectorised
// (AVX-512 or AVX2, chosen at run time) and parallel pass per tensor; on CUDA,
// when the library was built with its CUDA kernels, one multi-tensor kernel
// per 32 tensors of a device. Both read p, g and v once and write p and v
// once, and give the same bits. Other tensors (double, strided, or CUDA
// without the kernels) take the same maths as tensor ops. Thread-compatible
// like every torch optimiser: one thread steps it at a time.
#pragma once

#include <torch/optim/optimizer.h>
#include <torch/optim/serialize.h>

#include <cstdint>
#include <memory>
#include <vector>

namespace madam {
namespace optim {

struct MadamOptions : public torch::optim::OptimizerCloneableOptions<MadamOptions> {
  MadamOptions(double lr = 0.01);  // NOLINT: implicit, as torch's options are
  TORCH_ARG(double, lr) = 0.01;       // eta
  TORCH_ARG(double, beta) = 0.999;    // second-moment decay
  TORCH_ARG(double, g_bound) = 10.0;  // eta*/eta: clamp on the normalised gradient
  TORCH_ARG(double, p_scale) = 3.0;   // sigma* = p_scale * RMS(initial p)

 public:
  void serialize(torch::serialize::InputArchive& archive) override;
  void serialize(torch::serialize::OutputArchive& archive) const override;
  friend bool operator==(const MadamOptions& lhs, const MadamOptions& rhs);
  ~MadamOptions() override = default;
  double get_lr() const override;
  void set_lr(const double lr) override;
};

struct MadamParamState : public torch::optim::OptimizerCloneableParamState<MadamParamState> {
  TORCH_ARG(int64_t, step) = 0;
  TORCH_ARG(double, max) = 0.0;  // sigma*, fixed on the first step
  TORCH_ARG(torch::Tensor, exp_avg_sq);

 public:
  void serialize(torch::serialize::InputArchive& archive) override;
  void serialize(torch::serialize::OutputArchive& archive) const override;
  friend bool operator==(const MadamParamState& lhs, const MadamParamState& rhs);
  ~MadamParamState() override = default;
};

class Madam : public torch::optim::Optimizer {
 public:
  // Throws c10::Error naming the option and its value when an option (the
  // defaults or any group's) is out of range.
  explicit Madam(std::vector<torch::optim::OptimizerParamGroup> param_groups,
                 MadamOptions defaults = {});
  explicit Madam(std::vector<torch::Tensor> params, MadamOptions defaults = {});

  // Skips parameters whose gradient is undefined; throws on a sparse gradient.
  torch::Tensor step(LossClosure closure = nullptr) override;
  void save(torch::serialize::OutputArchive& archive) const override;
  void load(torch::serialize::InputArchive& archive) override;

  // The state of `param`, or nullptr before its first step.
  const MadamParamState* param_state(const torch::Tensor& param) const;

 private:
  template <typename Self, typename Archive>
  static void serialize(Self& self, Archive& archive) {
    _TORCH_OPTIM_SERIALIZE_WITH_TEMPLATE_ARG(Madam);
  }
};

// Throws c10::Error naming the first out-of-range option.
void ValidateOptions(const MadamOptions& options);

}  // namespace optim
}  // namespace madam
