// LiveRunTable: the coordinator's in-memory view of running runs — latest
// step, progress and metric values — fed by heartbeats and metric batches.
//
// It serves what must be cheap and live (sweep watch, and later the
// dashboard and per-run Prometheus gauges) without reading SQLite. It is a
// cache: nothing in it is needed for correctness, and it starts empty after a
// restart. Entries are removed when a run completes, so its size is bounded
// by the number of workers.
//
// Thread-safety: every method is safe to call from any thread (guarded by mu_).
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace madam::server {

struct LiveRun {
  int64_t step = 0;
  double progress = 0;              // 0..1
  std::map<std::string, double> latest;  // metric name -> value at the highest step seen
  std::map<std::string, int64_t> latest_step;
};

class LiveRunTable {
 public:
  void Heartbeat(const std::string& run_id, int64_t step, double progress);
  // `points` as (name, step, value).
  void Record(const std::string& run_id, const std::string& name, int64_t step, double value);
  void Remove(const std::string& run_id);
  std::optional<LiveRun> Get(const std::string& run_id) const;
  std::map<std::string, LiveRun> Snapshot() const;
  // Runs in the table now: the runs reporting to this coordinator.
  size_t Size() const;

 private:
  mutable std::mutex mu_;
  std::map<std::string, LiveRun> runs_;  // guarded by mu_
};

}  // namespace madam::server
