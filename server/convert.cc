#include "server/convert.h"

#include "common/recipe.h"

namespace madam::server {

v1::RunState ToProto(RunState state) {
  switch (state) {
    case RunState::kPending: return v1::RUN_STATE_PENDING;
    case RunState::kRunning: return v1::RUN_STATE_RUNNING;
    case RunState::kSucceeded: return v1::RUN_STATE_SUCCEEDED;
    case RunState::kDiverged: return v1::RUN_STATE_DIVERGED;
    case RunState::kFailed: return v1::RUN_STATE_FAILED;
    case RunState::kCancelled: return v1::RUN_STATE_CANCELLED;
  }
  return v1::RUN_STATE_UNSPECIFIED;
}

std::optional<RunState> FromProto(v1::RunState state) {
  switch (state) {
    case v1::RUN_STATE_PENDING: return RunState::kPending;
    case v1::RUN_STATE_RUNNING: return RunState::kRunning;
    case v1::RUN_STATE_SUCCEEDED: return RunState::kSucceeded;
    case v1::RUN_STATE_DIVERGED: return RunState::kDiverged;
    case v1::RUN_STATE_FAILED: return RunState::kFailed;
    case v1::RUN_STATE_CANCELLED: return RunState::kCancelled;
    default: return std::nullopt;
  }
}

void ToProto(const RunCounts& counts, v1::RunCounts* out) {
  out->set_pending(counts.pending);
  out->set_running(counts.running);
  out->set_succeeded(counts.succeeded);
  out->set_diverged(counts.diverged);
  out->set_failed(counts.failed);
  out->set_cancelled(counts.cancelled);
}

void ToProto(const SweepRow& sweep, v1::Sweep* out, bool with_spec) {
  out->set_id(sweep.id);
  out->set_name(sweep.name);
  out->set_state(sweep.state);
  ToProto(sweep.counts, out->mutable_counts());
  out->set_metric_name(sweep.metric_name);
  out->set_metric_goal(sweep.metric_goal);
  out->set_max_concurrent(sweep.max_concurrent);
  out->set_max_attempts(sweep.max_attempts);
  out->set_device(sweep.device);
  out->set_created_at_ms(sweep.created_at_ms);
  if (with_spec) out->set_spec_text(sweep.spec_text);
  out->set_parent_sweep_id(sweep.parent_sweep_id);
  for (const std::string& reason : sweep.promotion_reasons) out->add_promotion_reasons(reason);
}

void ToProto(const RunRow& run, v1::Run* out) {
  out->set_id(run.id);
  out->set_sweep_id(run.sweep_id);
  out->set_index(run.index);
  out->set_state(ToProto(run.state));
  out->set_attempts(run.attempts);
  out->set_max_attempts(run.max_attempts);
  // Every parameter the run trains with, not only those its sweep set.
  ParamsToProto(ResolvedRunParams(run.params), out->mutable_params());
  out->mutable_labels()->insert(run.labels.begin(), run.labels.end());
  out->mutable_final()->insert(run.final.begin(), run.final.end());
  out->set_last_error(run.last_error);
  out->set_worker(run.lease_worker);
  out->set_lease_epoch(run.lease_epoch);
  out->set_started_at_ms(run.started_at_ms);
  out->set_ended_at_ms(run.ended_at_ms);
  out->set_cancel_requested(run.cancel_requested);
}

}  // namespace madam::server
