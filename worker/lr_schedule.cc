#include "worker/lr_schedule.h"

#include <algorithm>

namespace madam::worker {

LrSchedule::LrSchedule(const RunConfig& config) : config_(config) {}

int64_t LrSchedule::DecaysFor(int64_t epoch) const {
  if (config_.lr_schedule == "step") {
    return std::count_if(config_.lr_milestones.begin(), config_.lr_milestones.end(),
                         [epoch](int64_t m) { return m < epoch; });
  }
  if (config_.lr_schedule == "plateau") return state_.plateau_decays;
  return 0;
}

double LrSchedule::WarmupScale(int64_t steps_done, int64_t steps_per_epoch) const {
  const int64_t warmup_steps = config_.warmup_epochs * steps_per_epoch;
  if (warmup_steps <= 0 || steps_done >= warmup_steps) return 1.0;
  return static_cast<double>(steps_done + 1) / static_cast<double>(warmup_steps);
}

bool LrSchedule::ObserveValidation(double metric) {
  if (config_.lr_schedule != "plateau") return false;
  if (!state_.has_best || metric < state_.best) {
    state_.best = metric;
    state_.has_best = true;
    state_.bad_epochs = 0;
    return false;
  }
  if (++state_.bad_epochs < config_.lr_decay_patience) return false;
  ++state_.plateau_decays;
  state_.bad_epochs = 0;
  return true;
}

}  // namespace madam::worker
