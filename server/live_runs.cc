#include "server/live_runs.h"

namespace madam::server {

void LiveRunTable::Heartbeat(const std::string& run_id, int64_t step, double progress) {
  std::lock_guard<std::mutex> lock(mu_);
  LiveRun& run = runs_[run_id];
  if (step >= run.step) run.step = step;
  run.progress = progress;
}

void LiveRunTable::Record(const std::string& run_id, const std::string& name, int64_t step,
                          double value) {
  std::lock_guard<std::mutex> lock(mu_);
  LiveRun& run = runs_[run_id];
  auto it = run.latest_step.find(name);
  if (it == run.latest_step.end() || step >= it->second) {
    run.latest_step[name] = step;
    run.latest[name] = value;
  }
  if (step > run.step) run.step = step;
}

void LiveRunTable::Remove(const std::string& run_id) {
  std::lock_guard<std::mutex> lock(mu_);
  runs_.erase(run_id);
}

std::optional<LiveRun> LiveRunTable::Get(const std::string& run_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = runs_.find(run_id);
  if (it == runs_.end()) return std::nullopt;
  return it->second;
}

std::map<std::string, LiveRun> LiveRunTable::Snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  return runs_;
}

size_t LiveRunTable::Size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return runs_.size();
}

}  // namespace madam::server
