// B-bit Madam (IntegerMadam): Madam with every weight stored and updated in a
// logarithmic number system (Bernstein et al., NeurIPS 2020, section 4).
//
// A weight is w = sign(w) * sigma* * exp(-eta0 * k) with an integer level
// k in {0, ..., 2^B - 1}. With g_hat the normalised gradient exactly as Madam
// computes it (madam.h), each step does
//   k <- clamp(k + round(g_hat * lr_factor) * sign(w), 0, 2^B - 1)
//   w <- sign(w) * sigma* * exp(-eta0 * k)
// so the effective learning rate is eta = eta0 * lr_factor, and after every
// step every weight lies exactly on its ladder. round() is round-half-even,
// as torch.round.
//
// Levels are initialised on a tensor's first step: "uniform" draws k
// uniformly from the ladder (as the paper does), keeping each weight's sign;
// "nearest" rounds the existing weight onto the ladder,
// k = clamp(round(ln(sigma*/|w|) / eta0), 0, 2^B - 1).
//
// State per weight: the level as a 16-bit integer (kShort) and the float
// second moment, 6 bytes in all. For B <= 15 the stored int16 equals k; for
// B = 16 it holds k's unsigned 16-bit pattern (use levels() to read k).
//
// Steps are fused as Madam's are (madam.h): CPU kernels and, when built,
// CUDA kernels, reading and writing each weight, level and second moment once.
//
// Thread-compatible like every torch optimiser: one thread steps it at a time.
#pragma once

#include <torch/optim/optimizer.h>
#include <torch/optim/serialize.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace madam {
namespace optim {

struct IntegerMadamOptions
    : public torch::optim::OptimizerCloneableOptions<IntegerMadamOptions> {
  IntegerMadamOptions(double base_lr = 0.001);  // NOLINT: implicit, as torch's options are
  TORCH_ARG(double, base_lr) = 0.001;   // eta0: the ladder's spacing in log space
  TORCH_ARG(double, lr_factor) = 10.0;  // eta / eta0 >= 1 (a decay lowers it toward 1)
  TORCH_ARG(int64_t, bits) = 12;        // B, 1..16
  TORCH_ARG(double, p_scale) = 3.0;
  TORCH_ARG(double, g_bound) = 10.0;
  TORCH_ARG(double, beta) = 0.999;
  TORCH_ARG(std::string, init) = "uniform";  // "uniform" | "nearest"

 public:
  void serialize(torch::serialize::InputArchive& archive) override;
  void serialize(torch::serialize::OutputArchive& archive) const override;
  friend bool operator==(const IntegerMadamOptions& lhs, const IntegerMadamOptions& rhs);
  ~IntegerMadamOptions() override = default;
  // The effective learning rate eta = base_lr * lr_factor. set_lr changes
  // lr_factor, never base_lr, and floors it at 1: a scheduler decays eta
  // toward eta0 and never below (eta0 <= eta, the paper's section 6), so
  // callers need no floor of their own.
  double get_lr() const override;
  void set_lr(const double lr) override;
  int64_t max_level() const { return (int64_t{1} << bits()) - 1; }
};

struct IntegerMadamParamState
    : public torch::optim::OptimizerCloneableParamState<IntegerMadamParamState> {
  TORCH_ARG(int64_t, step) = 0;
  TORCH_ARG(double, max) = 0.0;        // sigma*
  TORCH_ARG(torch::Tensor, levels);    // kShort, k's 16-bit pattern
  TORCH_ARG(torch::Tensor, exp_avg_sq);

 public:
  void serialize(torch::serialize::InputArchive& archive) override;
  void serialize(torch::serialize::OutputArchive& archive) const override;
  friend bool operator==(const IntegerMadamParamState& lhs, const IntegerMadamParamState& rhs);
  ~IntegerMadamParamState() override = default;
};

class IntegerMadam : public torch::optim::Optimizer {
 public:
  // Throws c10::Error naming the option and its value when an option (the
  // defaults or any group's) is out of range.
  explicit IntegerMadam(std::vector<torch::optim::OptimizerParamGroup> param_groups,
                        IntegerMadamOptions defaults = {});
  explicit IntegerMadam(std::vector<torch::Tensor> params, IntegerMadamOptions defaults = {});

  // Skips parameters whose gradient is undefined; throws on a sparse gradient.
  torch::Tensor step(LossClosure closure = nullptr) override;
  void save(torch::serialize::OutputArchive& archive) const override;
  void load(torch::serialize::InputArchive& archive) override;

  // The state of `param`, or nullptr before its first step.
  const IntegerMadamParamState* param_state(const torch::Tensor& param) const;

 private:
  template <typename Self, typename Archive>
  static void serialize(Self& self, Archive& archive) {
    _TORCH_OPTIM_SERIALIZE_WITH_TEMPLATE_ARG(IntegerMadam);
  }
};

// k as an int32 tensor (on the levels' device), decoding the 16-bit pattern.
torch::Tensor DecodeLevels(const torch::Tensor& stored_levels);

// Throws c10::Error naming the first out-of-range option; lr_factor < 1
// (eta below eta0) is out of range, and its message names base_lr too.
void ValidateOptions(const IntegerMadamOptions& options);

}  // namespace optim
}  // namespace madam
