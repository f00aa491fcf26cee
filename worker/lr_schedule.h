// LrSchedule: when a run's learning rate decays and warms up
// (ARCHITECTURE.md section 6), as counts the optimisers turn into rates
// (worker/optimizers.h: RunOptimizer::SetSchedule).
//
//   constant  no decay.
//   step      one decay after each epoch in lr_milestones: epoch m + 1 is the
//             first to train at the decayed rate (the authors' scripts decay
//             when epoch % 100 == 0, after that epoch's training).
//   plateau   one decay each time the validation metric has not improved for
//             lr_decay_patience epochs; never reads the test set.
//   warmup_epochs (any schedule): the rate ramps linearly per step over the
//             first warmup_epochs epochs, (step + 1) / (warmup steps), as the
//             authors' ImageNet script does.
//
// Torch-free; a plain value, thread-compatible.
#pragma once

#include <cstdint>

#include "common/run_config.h"

namespace madam::worker {

class LrSchedule {
 public:
  // What a checkpoint keeps, so a resumed run decays exactly as the
  // uninterrupted one.
  struct State {
    int64_t plateau_decays = 0;
    double best = 0;            // best validation metric so far (lower is better)
    bool has_best = false;
    int64_t bad_epochs = 0;     // epochs since it last improved
  };

  explicit LrSchedule(const RunConfig& config);

  // The decays in force while epoch `epoch` (1-based) trains.
  int64_t DecaysFor(int64_t epoch) const;
  // The warm-up scale for the step that follows `steps_done` steps of the
  // run; 1 once warm-up is over (or without one).
  double WarmupScale(int64_t steps_done, int64_t steps_per_epoch) const;
  // After an epoch's validation (lower is better): plateau bookkeeping.
  // Returns true when this epoch brought a decay.
  bool ObserveValidation(double metric);

  const State& state() const { return state_; }
  void Restore(const State& state) { state_ = state; }

 private:
  const RunConfig config_;
  State state_;
};

}  // namespace madam::worker
