// RunOptimizer: the run's optimiser for one network behind one interface
// (ARCHITECTURE.md section 6), built by name from the catalogue through
// MakeOptimizer. The training loop and the tasks step, schedule and
// checkpoint it without knowing which optimiser it is.
//
// The schedule reaches an optimiser as (decays so far, warm-up scale): SGD,
// Adam and Madam set lr = max(lr / lr_decay_factor^decays, lr_min) x scale;
// B-bit Madam divides lr_factor by lr_factor_decay per decay instead, and
// its optimiser floors lr_factor at 1 (eta never below eta0: the paper,
// section 6) — no copy of that floor lives here.
//
// Thread-compatible, like the torch optimisers it wraps.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "common/run_config.h"

namespace madam::worker {

class RankGroup;  // worker/distributed.h

class RunOptimizer {
 public:
  virtual ~RunOptimizer() = default;

  // Drops the parameters' gradients (undefined is cheaper than zeroed;
  // backward then writes fresh ones).
  void ClearGrads();
  // Sums the gradients over the run's ranks when it has several
  // (SetRanks), clips their global norm to grad_clip when it is set, then
  // takes one step.
  void Step();
  // The run's ranks (not owned; null: one rank, the default).
  void SetRanks(RankGroup* ranks) { ranks_ = ranks; }
  // Data parallel: the seed of the random numbers a step that creates
  // optimiser state draws (see Step); the loop passes each epoch's seed.
  void SeedStepRandomness(uint64_t seed);
  // Applies the schedule: `decays` decays so far, and the warm-up scale
  // (1 outside warm-up).
  virtual void SetSchedule(int64_t decays, double warmup_scale) = 0;
  // The effective learning rate now (eta; base_lr x lr_factor for B-bit).
  double lr() const;
  // Parameter i's bound for optim/at_bound_fraction: sigma* from the
  // optimiser's state for the multiplicative ones (0 before their first
  // step), p_scale x RMS(initial tensor) as a reference for SGD and Adam.
  virtual double BoundOf(size_t i) const = 0;
  // B-bit optimisers: the shares of parameter i's weights whose level is at
  // the ladder's ends, 0 (|w| = sigma*) and 2^B - 1; false for the others
  // (and before the tensor's first step).
  virtual bool LevelShares(size_t /*i*/, double* /*at_top*/, double* /*at_bottom*/) const {
    return false;
  }

  const std::vector<torch::Tensor>& params() const { return params_; }
  torch::optim::Optimizer& torch_optimizer() { return *optimizer_; }
  const torch::optim::Optimizer& torch_optimizer() const { return *optimizer_; }

  virtual void save(torch::serialize::OutputArchive& archive) const;
  virtual void load(torch::serialize::InputArchive& archive);

 protected:
  RunOptimizer(const RunConfig& config, std::vector<torch::Tensor> params)
      : config_(config), params_(std::move(params)) {}

  const RunConfig config_;
  std::vector<torch::Tensor> params_;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  RankGroup* ranks_ = nullptr;
  torch::Tensor step_rng_;  // a CPU generator's state (SeedStepRandomness)
};

// The optimiser `config.optimizer` names over `params`. Throws RunError for
// a name without an implementation.
std::unique_ptr<RunOptimizer> MakeOptimizer(const RunConfig& config,
                                            std::vector<torch::Tensor> params);
// Every optimiser name with an implementation.
std::vector<std::string_view> ImplementedOptimizers();

}  // namespace madam::worker
