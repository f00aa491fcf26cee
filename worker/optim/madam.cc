#include "madam/optim/madam.h"

#include <torch/torch.h>

#include <cmath>

#include "detail/cuda_step.h"
#include "detail/kernels.h"
#include "detail/state_key.h"

namespace madam {
namespace optim {

MadamOptions::MadamOptions(double lr) : lr_(lr) {}

bool operator==(const MadamOptions& lhs, const MadamOptions& rhs) {
  return lhs.lr() == rhs.lr() && lhs.beta() == rhs.beta() && lhs.g_bound() == rhs.g_bound() &&
         lhs.p_scale() == rhs.p_scale();
}

void MadamOptions::serialize(torch::serialize::OutputArchive& archive) const {
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(lr);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(beta);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(g_bound);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(p_scale);
}

void MadamOptions::serialize(torch::serialize::InputArchive& archive) {
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, lr);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, beta);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, g_bound);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, p_scale);
}

double MadamOptions::get_lr() const { return lr(); }
void MadamOptions::set_lr(const double lr) { this->lr(lr); }

bool operator==(const MadamParamState& lhs, const MadamParamState& rhs) {
  return lhs.step() == rhs.step() && lhs.max() == rhs.max() &&
         torch::equal(lhs.exp_avg_sq(), rhs.exp_avg_sq());
}

void MadamParamState::serialize(torch::serialize::OutputArchive& archive) const {
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(step);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(max);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(exp_avg_sq);
}

void MadamParamState::serialize(torch::serialize::InputArchive& archive) {
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(int64_t, step);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, max);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(torch::Tensor, exp_avg_sq);
}

void ValidateOptions(const MadamOptions& o) {
  TORCH_CHECK(std::isfinite(o.lr()) && o.lr() > 0, "Madam: invalid lr ", o.lr(),
              " (must be finite and > 0)");
  TORCH_CHECK(o.beta() >= 0 && o.beta() < 1, "Madam: invalid beta ", o.beta(),
              " (must be in [0, 1))");
  TORCH_CHECK(std::isfinite(o.g_bound()) && o.g_bound() > 0, "Madam: invalid g_bound ",
              o.g_bound(), " (must be finite and > 0)");
  TORCH_CHECK(std::isfinite(o.p_scale()) && o.p_scale() > 0, "Madam: invalid p_scale ",
              o.p_scale(), " (must be finite and > 0)");
}

Madam::Madam(std::vector<torch::optim::OptimizerParamGroup> param_groups, MadamOptions defaults)
    : Optimizer(std::move(param_groups), std::make_unique<MadamOptions>(defaults)) {
  ValidateOptions(defaults);
  for (const auto& group : param_groups_) {
    ValidateOptions(static_cast<const MadamOptions&>(group.options()));
  }
}

Madam::Madam(std::vector<torch::Tensor> params, MadamOptions defaults)
    : Madam({torch::optim::OptimizerParamGroup(std::move(params))}, std::move(defaults)) {}

namespace {

// The same maths as the fused kernels, as tensor ops: for double and strided
// tensors, and CUDA tensors where the CUDA kernels are not built. Operation
// order follows the reference implementation.
void EagerStep(torch::Tensor& p, const torch::Tensor& grad, torch::Tensor& v, double beta,
               double bias_correction, double lr, double g_bound, double max) {
  v.mul_(beta).add_(grad * grad, 1 - beta);
  auto g_hat = grad / (v / bias_correction).sqrt();
  g_hat.masked_fill_(g_hat.isnan(), 0).clamp_(-g_bound, g_bound);
  p.mul_(torch::exp(-lr * g_hat * torch::sign(p)));
  p.clamp_(-max, max);
}

bool CanFuseCpu(const torch::Tensor& p, const torch::Tensor& grad, const torch::Tensor& v) {
  return p.device().is_cpu() && p.scalar_type() == torch::kFloat &&
         grad.scalar_type() == torch::kFloat && p.is_contiguous() && v.is_contiguous() &&
         grad.sizes() == p.sizes();
}

detail::MadamStepArgs StepArgs(const MadamOptions& options, double bias_correction,
                               double max) {
  detail::MadamStepArgs args;
  args.grad = detail::MakeNormalisedGradArgs(options.beta(), options.g_bound(), bias_correction);
  args.neg_lr = static_cast<float>(-options.lr());
  args.max = static_cast<float>(max);
  return args;
}

}  // namespace

torch::Tensor Madam::step(LossClosure closure) {
  torch::NoGradGuard no_grad;
  torch::Tensor loss = {};
  if (closure != nullptr) {
    at::AutoGradMode enable_grad(true);
    loss = closure();
  }
  // CUDA tensors are queued and stepped a batch at a time (detail/cuda_step.h).
  detail::CudaStepBatcher<detail::MadamStepArgs> cuda;
  for (auto& group : param_groups_) {
    const auto& options = static_cast<const MadamOptions&>(group.options());
    // Options can change after construction (add_param_group, a direct
    // setter): check them where they are used; a few comparisons per group.
    ValidateOptions(options);
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      const auto& grad = p.grad();
      TORCH_CHECK(!grad.is_sparse(), "Madam does not support sparse gradients (parameter of shape ",
                  p.sizes(), "); use a dense gradient");
      const auto key = detail::KeyOf(p);
      auto it = state_.find(key);
      if (it == state_.end()) {
        auto state = std::make_unique<MadamParamState>();
        // sigma* = p_scale * RMS(p), computed as the reference does.
        state->max(options.p_scale() * (p * p).mean().sqrt().item<double>());
        state->exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Contiguous));
        it = state_.emplace(key, std::move(state)).first;
      }
      auto& state = static_cast<MadamParamState&>(*it->second);
      state.step(state.step() + 1);
      const double beta = options.beta();
      const double bias_correction = 1 - std::pow(beta, static_cast<double>(state.step()));
      auto& v = state.exp_avg_sq();

      if (CanFuseCpu(p, grad, v)) {
        const auto g = grad.contiguous();
        detail::MadamStep(p.data_ptr<float>(), g.data_ptr<float>(), v.data_ptr<float>(),
                          p.numel(), StepArgs(options, bias_correction, state.max()));
        // Raw writes bypass autograd's version counter; bump it as an
        // in-place op would, so stale saved tensors are still detected.
        p.unsafeGetTensorImpl()->bump_version();
      } else if (detail::CanFuseCuda(p, grad, v)) {
        cuda.Add(p, grad, v, nullptr, StepArgs(options, bias_correction, state.max()));
        p.unsafeGetTensorImpl()->bump_version();
      } else {
        auto data = p.detach();
        EagerStep(data, grad, v, beta, bias_correction, options.lr(), options.g_bound(),
                  state.max());
      }
    }
  }
  cuda.Flush();
  return loss;
}

const MadamParamState* Madam::param_state(const torch::Tensor& param) const {
  auto it = state_.find(detail::KeyOf(param));
  if (it == state_.end()) return nullptr;
  return static_cast<const MadamParamState*>(it->second.get());
}

void Madam::save(torch::serialize::OutputArchive& archive) const { serialize(*this, archive); }

void Madam::load(torch::serialize::InputArchive& archive) { serialize(*this, archive); }

}  // namespace optim
}  // namespace madam
