#include "madam/optim/integer_madam.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "detail/cuda_step.h"
#include "detail/kernels.h"
#include "detail/state_key.h"

namespace madam {
namespace optim {

IntegerMadamOptions::IntegerMadamOptions(double base_lr) : base_lr_(base_lr) {}

bool operator==(const IntegerMadamOptions& lhs, const IntegerMadamOptions& rhs) {
  return lhs.base_lr() == rhs.base_lr() && lhs.lr_factor() == rhs.lr_factor() &&
         lhs.bits() == rhs.bits() && lhs.p_scale() == rhs.p_scale() &&
         lhs.g_bound() == rhs.g_bound() && lhs.beta() == rhs.beta() && lhs.init() == rhs.init();
}

void IntegerMadamOptions::serialize(torch::serialize::OutputArchive& archive) const {
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(base_lr);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(lr_factor);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(bits);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(p_scale);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(g_bound);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(beta);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(init);
}

void IntegerMadamOptions::serialize(torch::serialize::InputArchive& archive) {
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, base_lr);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, lr_factor);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(int64_t, bits);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, p_scale);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, g_bound);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, beta);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(std::string, init);
}

double IntegerMadamOptions::get_lr() const { return base_lr() * lr_factor(); }

void IntegerMadamOptions::set_lr(const double lr) {
  // A decay of B-bit Madam lowers eta toward eta0 and never below (eta0 <= eta,
  // the paper's section 6; ARCHITECTURE.md section 1): the floor is this
  // optimiser's to keep, whatever schedule calls it. (Below 1 a step smaller
  // than one level would round to no step at all.) A NaN lr lands on the
  // floor too.
  const double factor = lr / base_lr();
  lr_factor(factor >= 1.0 ? factor : 1.0);
}

bool operator==(const IntegerMadamParamState& lhs, const IntegerMadamParamState& rhs) {
  return lhs.step() == rhs.step() && lhs.max() == rhs.max() &&
         torch::equal(lhs.levels(), rhs.levels()) &&
         torch::equal(lhs.exp_avg_sq(), rhs.exp_avg_sq());
}

void IntegerMadamParamState::serialize(torch::serialize::OutputArchive& archive) const {
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(step);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(max);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(levels);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(exp_avg_sq);
}

void IntegerMadamParamState::serialize(torch::serialize::InputArchive& archive) {
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(int64_t, step);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, max);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(torch::Tensor, levels);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(torch::Tensor, exp_avg_sq);
}

void ValidateOptions(const IntegerMadamOptions& o) {
  TORCH_CHECK(std::isfinite(o.base_lr()) && o.base_lr() > 0, "IntegerMadam: invalid base_lr ",
              o.base_lr(), " (must be finite and > 0)");
  TORCH_CHECK(std::isfinite(o.lr_factor()) && o.lr_factor() >= 1,
              "IntegerMadam: invalid lr_factor ", o.lr_factor(),
              " (must be finite and >= 1: the learning rate eta = base_lr * lr_factor = ",
              o.base_lr() * o.lr_factor(), " may not fall below base_lr ", o.base_lr(),
              ", as eta0 <= eta in the paper, section 6)");
  TORCH_CHECK(o.bits() >= 1 && o.bits() <= 16, "IntegerMadam: invalid bits ", o.bits(),
              " (must be in 1..16)");
  TORCH_CHECK(std::isfinite(o.p_scale()) && o.p_scale() > 0, "IntegerMadam: invalid p_scale ",
              o.p_scale(), " (must be finite and > 0)");
  TORCH_CHECK(std::isfinite(o.g_bound()) && o.g_bound() > 0, "IntegerMadam: invalid g_bound ",
              o.g_bound(), " (must be finite and > 0)");
  TORCH_CHECK(o.beta() >= 0 && o.beta() < 1, "IntegerMadam: invalid beta ", o.beta(),
              " (must be in [0, 1))");
  TORCH_CHECK(o.init() == "uniform" || o.init() == "nearest", "IntegerMadam: invalid init \"",
              o.init(), "\" (must be \"uniform\" or \"nearest\")");
}

IntegerMadam::IntegerMadam(std::vector<torch::optim::OptimizerParamGroup> param_groups,
                           IntegerMadamOptions defaults)
    : Optimizer(std::move(param_groups), std::make_unique<IntegerMadamOptions>(defaults)) {
  ValidateOptions(defaults);
  for (const auto& group : param_groups_) {
    ValidateOptions(static_cast<const IntegerMadamOptions&>(group.options()));
  }
}

IntegerMadam::IntegerMadam(std::vector<torch::Tensor> params, IntegerMadamOptions defaults)
    : IntegerMadam({torch::optim::OptimizerParamGroup(std::move(params))}, std::move(defaults)) {}

torch::Tensor DecodeLevels(const torch::Tensor& stored_levels) {
  // The int16 holds k's unsigned 16-bit pattern: add 2^16 to negatives.
  auto k = stored_levels.to(torch::kInt);
  return torch::where(k < 0, k + 65536, k);
}

namespace {

torch::Tensor EncodeLevels(const torch::Tensor& k) {
  auto k32 = k.to(torch::kInt);
  return torch::where(k32 > 32767, k32 - 65536, k32).to(torch::kShort);
}

// The first step's levels, from the weight as it stands.
torch::Tensor InitialLevels(const torch::Tensor& p, const IntegerMadamOptions& options,
                            double sigma) {
  const int64_t max_level = options.max_level();
  if (options.init() == "uniform") {
    return EncodeLevels(torch::randint(0, max_level + 1, p.sizes(),
                                       torch::TensorOptions().dtype(torch::kInt).device(p.device())));
  }
  // nearest: k = clamp(round(ln(sigma / |w|) / eta0), 0, 2^B - 1); w = 0 maps
  // to the smallest level (its sign of 0 keeps it at zero anyway).
  auto k = torch::round(torch::log(sigma / p.abs()) / options.base_lr());
  k = torch::nan_to_num(k, 0, static_cast<double>(max_level), 0).clamp_(0, max_level);
  return EncodeLevels(k);
}

// The same maths as the fused kernels, as tensor ops: for double and strided
// tensors, and CUDA tensors where the CUDA kernels are not built.
void EagerStep(torch::Tensor& p, const torch::Tensor& grad, IntegerMadamParamState& state,
               const IntegerMadamOptions& options, double bias_correction) {
  auto& v = state.exp_avg_sq();
  const double beta = options.beta();
  v.mul_(beta).add_(grad * grad, 1 - beta);
  auto g_hat = grad / (v / bias_correction).sqrt();
  g_hat.masked_fill_(g_hat.isnan(), 0).clamp_(-options.g_bound(), options.g_bound());
  const auto sign = torch::sign(p);
  auto k = DecodeLevels(state.levels()).to(p.scalar_type());
  k = (k + torch::round(g_hat * options.lr_factor()) * sign)
          .clamp_(0, static_cast<double>(options.max_level()));
  state.levels(EncodeLevels(k));
  p.copy_(sign * state.max() * torch::exp(-options.base_lr() * k));
}

bool CanFuseCpu(const torch::Tensor& p, const torch::Tensor& grad,
                const IntegerMadamParamState& state) {
  return p.device().is_cpu() && p.scalar_type() == torch::kFloat &&
         grad.scalar_type() == torch::kFloat && p.is_contiguous() &&
         state.exp_avg_sq().is_contiguous() && state.levels().is_contiguous() &&
         grad.sizes() == p.sizes();
}

detail::IntegerMadamStepArgs StepArgs(const IntegerMadamOptions& options, double bias_correction,
                                      double sigma) {
  detail::IntegerMadamStepArgs args;
  args.grad = detail::MakeNormalisedGradArgs(options.beta(), options.g_bound(), bias_correction);
  args.lr_factor = static_cast<float>(options.lr_factor());
  args.neg_base_lr = static_cast<float>(-options.base_lr());
  args.sigma = static_cast<float>(sigma);
  args.max_level = static_cast<float>(options.max_level());
  return args;
}

}  // namespace

torch::Tensor IntegerMadam::step(LossClosure closure) {
  torch::NoGradGuard no_grad;
  torch::Tensor loss = {};
  if (closure != nullptr) {
    at::AutoGradMode enable_grad(true);
    loss = closure();
  }
  // CUDA tensors are queued and stepped a batch at a time (detail/cuda_step.h).
  detail::CudaStepBatcher<detail::IntegerMadamStepArgs> cuda;
  for (auto& group : param_groups_) {
    const auto& options = static_cast<const IntegerMadamOptions&>(group.options());
    // Options can change after construction (add_param_group, a direct
    // setter): check them where they are used; a few comparisons per group.
    ValidateOptions(options);
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      const auto& grad = p.grad();
      TORCH_CHECK(!grad.is_sparse(),
                  "IntegerMadam does not support sparse gradients (parameter of shape ",
                  p.sizes(), "); use a dense gradient");
      auto data = p.detach();
      const auto key = detail::KeyOf(p);
      auto it = state_.find(key);
      if (it == state_.end()) {
        auto state = std::make_unique<IntegerMadamParamState>();
        state->max(options.p_scale() * (p * p).mean().sqrt().item<double>());
        state->exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Contiguous));
        state->levels(InitialLevels(data, options, state->max()).contiguous());
        // Put the weight on its ladder before its first update.
        data.copy_(torch::sign(data) * state->max() *
                   torch::exp(-options.base_lr() * DecodeLevels(state->levels()).to(p.scalar_type())));
        it = state_.emplace(key, std::move(state)).first;
      }
      auto& state = static_cast<IntegerMadamParamState&>(*it->second);
      state.step(state.step() + 1);
      const double bias_correction =
          1 - std::pow(options.beta(), static_cast<double>(state.step()));

      if (CanFuseCpu(p, grad, state)) {
        const auto g = grad.contiguous();
        detail::IntegerMadamStep(p.data_ptr<float>(), g.data_ptr<float>(),
                                 state.exp_avg_sq().data_ptr<float>(),
                                 state.levels().data_ptr<int16_t>(), p.numel(),
                                 StepArgs(options, bias_correction, state.max()));
        p.unsafeGetTensorImpl()->bump_version();
      } else if (detail::CanFuseCuda(p, grad, state.exp_avg_sq(), &state.levels())) {
        cuda.Add(p, grad, state.exp_avg_sq(), &state.levels(),
                 StepArgs(options, bias_correction, state.max()));
        p.unsafeGetTensorImpl()->bump_version();
      } else {
        EagerStep(data, grad, state, options, bias_correction);
      }
    }
  }
  cuda.Flush();
  return loss;
}

const IntegerMadamParamState* IntegerMadam::param_state(const torch::Tensor& param) const {
  auto it = state_.find(detail::KeyOf(param));
  if (it == state_.end()) return nullptr;
  return static_cast<const IntegerMadamParamState*>(it->second.get());
}

void IntegerMadam::save(torch::serialize::OutputArchive& archive) const {
  serialize(*this, archive);
}

void IntegerMadam::load(torch::serialize::InputArchive& archive) { serialize(*this, archive); }

}  // namespace optim
}  // namespace madam
