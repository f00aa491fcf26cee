#include "worker/optimizers.h"

#include "worker/distributed.h"

#include <ATen/CPUGeneratorImpl.h>

#include <mutex>

#include <madam/optim/integer_madam.h>
#include <madam/optim/madam.h>

#include <algorithm>
#include <cmath>
#include <utility>

#include "worker/tasks/task.h"

namespace madam::worker {

void RunOptimizer::ClearGrads() {
  for (auto& p : params_) p.mutable_grad() = torch::Tensor();
}

void RunOptimizer::Step() {
  // Data parallel: every rank steps on the same summed gradient, so their
  // weights stay identical (ARCHITECTURE.md section 6); clipping sees it too.
  if (ranks_ != nullptr) ranks_->AllReduceGradients(params_);
  if (config_.grad_clip > 0) torch::nn::utils::clip_grad_norm_(params_, config_.grad_clip);
  if (ranks_ == nullptr || optimizer_->state().size() >= params_.size()) {
    optimizer_->step();
    return;
  }
  // A step that creates optimiser state may draw random numbers (B-bit
  // Madam's uniform first levels) from LibTorch's default CPU generator,
  // which the ranks (threads) share. Such a step draws instead from this
  // rank's own stream, seeded as a 1-rank run's default generator is at the
  // epoch's start (SeedStepRandomness): every rank draws what a 1-rank run
  // draws, and the ranks' weights stay the same.
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  at::Generator gen = at::detail::getDefaultCPUGenerator();
  const torch::Tensor saved = gen.get_state();
  if (step_rng_.defined()) gen.set_state(step_rng_);
  optimizer_->step();
  step_rng_ = gen.get_state();
  gen.set_state(saved);
}

void RunOptimizer::SeedStepRandomness(uint64_t seed) {
  step_rng_ = at::detail::createCPUGenerator(seed).get_state();
}

double RunOptimizer::lr() const { return optimizer_->param_groups().front().options().get_lr(); }

void RunOptimizer::save(torch::serialize::OutputArchive& archive) const { optimizer_->save(archive); }

void RunOptimizer::load(torch::serialize::InputArchive& archive) { optimizer_->load(archive); }

namespace {

// SGD, Adam and Madam: lr = max(lr / factor^decays, lr_min) x warm-up.
void SetAdditiveLr(torch::optim::Optimizer& optimizer, const RunConfig& c, int64_t decays,
                   double warmup_scale) {
  const double decayed = c.lr / std::pow(c.lr_decay_factor, static_cast<double>(decays));
  const double lr = std::max(decayed, c.lr_min) * warmup_scale;
  for (auto& group : optimizer.param_groups()) group.options().set_lr(lr);
}

// SGD and Adam have no sigma*: as a reference for optim/at_bound_fraction
// they get Madam's, p_scale x RMS of each initial tensor, fixed here and kept
// in checkpoints.
class ReferenceBounded : public RunOptimizer {
 public:
  ReferenceBounded(const RunConfig& config, std::vector<torch::Tensor> params)
      : RunOptimizer(config, std::move(params)) {
    torch::NoGradGuard no_grad;
    for (const auto& p : params_) {
      bounds_.push_back(config_.p_scale * p.detach().pow(2).mean().sqrt().item<double>());
    }
  }
  void SetSchedule(int64_t decays, double warmup_scale) override {
    SetAdditiveLr(*optimizer_, config_, decays, warmup_scale);
  }
  double BoundOf(size_t i) const override { return bounds_[i]; }
  void save(torch::serialize::OutputArchive& archive) const override {
    RunOptimizer::save(archive);
    archive.write("reference_bounds", torch::tensor(bounds_, torch::kDouble));
  }
  void load(torch::serialize::InputArchive& archive) override {
    RunOptimizer::load(archive);
    torch::Tensor bounds;
    archive.read("reference_bounds", bounds);
    bounds = bounds.to(torch::kCPU).contiguous();
    if (bounds.numel() != static_cast<int64_t>(bounds_.size())) {
      throw RunError("checkpoint does not match this task's model (" +
                     std::to_string(bounds.numel()) + " parameter tensors, expected " +
                     std::to_string(bounds_.size()) + ")");
    }
    for (size_t i = 0; i < bounds_.size(); ++i) bounds_[i] = bounds.data_ptr<double>()[i];
  }

 private:
  std::vector<double> bounds_;
};

class SgdOptimizer final : public ReferenceBounded {
 public:
  SgdOptimizer(const RunConfig& config, std::vector<torch::Tensor> params)
      : ReferenceBounded(config, std::move(params)) {
    optimizer_ = std::make_unique<torch::optim::SGD>(
        params_, torch::optim::SGDOptions(config_.lr)
                     .momentum(config_.momentum)
                     .weight_decay(config_.weight_decay));
  }
};

class AdamOptimizer final : public ReferenceBounded {
 public:
  AdamOptimizer(const RunConfig& config, std::vector<torch::Tensor> params)
      : ReferenceBounded(config, std::move(params)) {
    optimizer_ = std::make_unique<torch::optim::Adam>(
        params_, torch::optim::AdamOptions(config_.lr)
                     .betas({config_.adam_beta1, config_.adam_beta2})
                     .eps(config_.adam_eps)
                     .weight_decay(config_.weight_decay));
  }
};

class MadamOptimizer final : public RunOptimizer {
 public:
  MadamOptimizer(const RunConfig& config, std::vector<torch::Tensor> params)
      : RunOptimizer(config, std::move(params)) {
    optimizer_ = std::make_unique<madam::optim::Madam>(
        params_, madam::optim::MadamOptions(config_.lr)
                     .beta(config_.beta)
                     .g_bound(config_.g_bound)
                     .p_scale(config_.p_scale));
  }
  void SetSchedule(int64_t decays, double warmup_scale) override {
    SetAdditiveLr(*optimizer_, config_, decays, warmup_scale);
  }
  double BoundOf(size_t i) const override {
    const auto* s = static_cast<const madam::optim::Madam&>(*optimizer_).param_state(params_[i]);
    return s ? s->max() : 0.0;
  }
};

class IntegerMadamOptimizer final : public RunOptimizer {
 public:
  IntegerMadamOptimizer(const RunConfig& config, std::vector<torch::Tensor> params)
      : RunOptimizer(config, std::move(params)) {
    optimizer_ = std::make_unique<madam::optim::IntegerMadam>(
        params_, madam::optim::IntegerMadamOptions(config_.base_lr)
                     .lr_factor(config_.lr / config_.base_lr)
                     .bits(config_.bits)
                     .init(config_.init)
                     .p_scale(config_.p_scale)
                     .g_bound(config_.g_bound)
                     .beta(config_.beta));
  }
  // A decay divides lr_factor (eta / eta0) by lr_factor_decay; set_lr keeps
  // base_lr and floors lr_factor at 1. B-bit Madam has no warm-up (its rate
  // is a whole number of levels per step; warmup_epochs does not apply).
  void SetSchedule(int64_t decays, double /*warmup_scale*/) override {
    const double eta =
        std::max(config_.lr / std::pow(config_.lr_factor_decay, static_cast<double>(decays)),
                 config_.lr_min);
    for (auto& group : optimizer_->param_groups()) group.options().set_lr(eta);
  }
  double BoundOf(size_t i) const override {
    const auto* s =
        static_cast<const madam::optim::IntegerMadam&>(*optimizer_).param_state(params_[i]);
    return s ? s->max() : 0.0;
  }
  bool LevelShares(size_t i, double* at_top, double* at_bottom) const override {
    const auto* s =
        static_cast<const madam::optim::IntegerMadam&>(*optimizer_).param_state(params_[i]);
    if (s == nullptr || !s->levels().defined() || s->levels().numel() == 0) return false;
    auto k = madam::optim::DecodeLevels(s->levels());
    const double n = static_cast<double>(k.numel());
    const int64_t max_level = (int64_t{1} << config_.bits) - 1;
    *at_top = static_cast<double>(k.eq(0).sum().item<int64_t>()) / n;
    *at_bottom = static_cast<double>(k.eq(max_level).sum().item<int64_t>()) / n;
    return true;
  }
};

template <typename T>
std::unique_ptr<RunOptimizer> Make(const RunConfig& config, std::vector<torch::Tensor> params) {
  return std::make_unique<T>(config, std::move(params));
}

using Factory = std::unique_ptr<RunOptimizer> (*)(const RunConfig&, std::vector<torch::Tensor>);

// One implementation per catalogue optimiser name.
const std::vector<std::pair<std::string_view, Factory>>& Registry() {
  static const std::vector<std::pair<std::string_view, Factory>> registry = {
      {"sgd", &Make<SgdOptimizer>},
      {"adam", &Make<AdamOptimizer>},
      {"madam", &Make<MadamOptimizer>},
      {"int_madam", &Make<IntegerMadamOptimizer>},
  };
  return registry;
}

}  // namespace

std::unique_ptr<RunOptimizer> MakeOptimizer(const RunConfig& config,
                                            std::vector<torch::Tensor> params) {
  for (const auto& [name, make] : Registry()) {
    if (name == config.optimizer) return make(config, std::move(params));
  }
  throw RunError("optimizer \"" + config.optimizer + "\" has no implementation in this worker");
}

std::vector<std::string_view> ImplementedOptimizers() {
  std::vector<std::string_view> out;
  for (const auto& entry : Registry()) out.push_back(entry.first);
  return out;
}

}  // namespace madam::worker
