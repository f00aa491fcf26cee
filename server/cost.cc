#include "server/cost.h"

#include "common/devices.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace madam::server {
namespace {

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

}  // namespace

SweepCost ComputeSweepCost(const std::vector<RunTiming>& runs, const std::vector<WorkerDevices>& workers,
                           const std::string& sweep_device, int64_t max_concurrent, int64_t now_ms,
                           int64_t fresh_ms) {
  SweepCost cost;
  std::map<std::string, std::vector<double>> finished;
  std::vector<double> all_finished;
  for (const RunTiming& r : runs) {
    if (r.state == RunState::kPending) ++cost.pending;
    if (r.state == RunState::kRunning) ++cost.running;
    if (r.started_at_ms <= 0) continue;
    double seconds = 0;
    if (r.state == RunState::kRunning) {
      seconds = std::max<int64_t>(0, now_ms - r.started_at_ms) / 1000.0;
    } else if (IsTerminal(r.state) && r.ended_at_ms >= r.started_at_ms) {
      seconds = (r.ended_at_ms - r.started_at_ms) / 1000.0;
    }
    cost.device_seconds += seconds;
    if (r.state == RunState::kSucceeded || r.state == RunState::kDiverged) {
      if (r.ended_at_ms < r.started_at_ms) continue;
      finished[r.task].push_back(seconds);
      all_finished.push_back(seconds);
    }
  }
  for (const auto& [task, times] : finished) cost.median_run_seconds[task] = Median(times);

  // Slots, and the most devices one connected worker of the sweep's kind
  // has: a run needing more than that waits for a bigger worker.
  int64_t widest = 0;
  for (const WorkerDevices& w : workers) {
    if (now_ms - w.last_seen_ms > fresh_ms || w.device.empty()) continue;
    // A registered list is of one kind (RegisterWorker refuses mixed ones).
    const std::string kind = DeviceListKind(w.device);
    const int64_t own = sweep_device == "any" || sweep_device.empty() || kind == sweep_device
                            ? DeviceListSize(w.device)
                            : 0;
    cost.slots += own;
    widest = std::max(widest, own);
  }
  if (max_concurrent > 0) cost.slots = std::min(cost.slots, max_concurrent);
  int64_t blocked = 0, blocked_devices = 0;
  for (const RunTiming& r : runs) {
    if (r.state == RunState::kPending && r.devices > widest) {
      ++blocked;
      blocked_devices = std::max(blocked_devices, r.devices);
    }
  }
  if (blocked > 0 && widest > 0) {
    cost.waiting_because = std::to_string(blocked) + " pending run(s) need " +
                           std::to_string(blocked_devices) +
                           " devices; no connected worker has more than " + std::to_string(widest);
  }

  const int64_t left = cost.pending + cost.running;
  if (left == 0) {
    cost.eta_seconds = 0;
    return cost;
  }
  if (blocked > 0 && blocked == cost.pending && cost.running == 0 && widest > 0) {
    cost.eta_unknown_because = cost.waiting_because;
    return cost;
  }
  if (all_finished.empty()) {
    cost.eta_unknown_because = "no run has finished yet";
    return cost;
  }
  if (cost.slots == 0) {
    cost.eta_unknown_because = "no connected worker takes its runs";
    return cost;
  }
  const double overall = Median(all_finished);
  auto median_of = [&](const std::string& task) {
    auto it = cost.median_run_seconds.find(task);
    return it == cost.median_run_seconds.end() ? overall : it->second;
  };
  // Device-seconds left: a run on D devices holds D slots for its time.
  double remaining = 0;
  int64_t left_devices = 0;
  for (const RunTiming& r : runs) {
    const int64_t d = std::max<int64_t>(1, r.devices);
    if (r.state == RunState::kPending) {
      remaining += median_of(r.task) * static_cast<double>(d);
      left_devices += d;
    }
    if (r.state == RunState::kRunning) {
      const double elapsed = r.started_at_ms > 0 ? std::max<int64_t>(0, now_ms - r.started_at_ms) / 1000.0 : 0;
      remaining += std::max(0.0, median_of(r.task) - elapsed) * static_cast<double>(d);
      left_devices += d;
    }
  }
  cost.eta_seconds = remaining / static_cast<double>(std::min(cost.slots, left_devices));
  return cost;
}

// A run's `devices` parameter; 1 when unset (common/run_config.h).
int64_t RunDevices(const RunParams& params) {
  auto it = params.find("devices");
  return it != params.end() && it->second.is_number() ? std::max<int64_t>(1, static_cast<int64_t>(it->second.number)) : 1;
}

Result<SweepCost> LoadSweepCost(Store& store, const SweepRow& sweep, int64_t now_ms) {
  auto runs = store.ListRuns(sweep.id);
  if (!runs.ok()) return runs.status();
  auto workers = store.ListWorkers();
  if (!workers.ok()) return workers.status();
  std::vector<RunTiming> timings;
  timings.reserve(runs->size());
  for (const RunRow& r : *runs) {
    auto task = r.params.find("task");
    timings.push_back({task != r.params.end() && task->second.is_string() ? task->second.text : "",
                       r.state, r.started_at_ms, r.ended_at_ms, RunDevices(r.params)});
  }
  std::vector<WorkerDevices> devices;
  for (const WorkerRow& w : *workers) devices.push_back({w.device, w.last_seen_ms});
  return ComputeSweepCost(timings, devices, sweep.device, sweep.max_concurrent, now_ms);
}

std::string DurationText(double seconds) {
  char buf[32];
  if (!std::isfinite(seconds) || seconds < 0) return "unknown";
  if (seconds < 90) {
    std::snprintf(buf, sizeof buf, "%.0f s", seconds);
  } else if (seconds < 5400) {
    std::snprintf(buf, sizeof buf, "%.0f min", seconds / 60);
  } else {
    std::snprintf(buf, sizeof buf, "%.1f h", seconds / 3600);
  }
  return buf;
}

}  // namespace madam::server
