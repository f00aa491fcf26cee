// What a sweep costs and when it ends: device-seconds spent, the median run
// time per task, and an ETA from the pending and running runs and the
// connected workers' devices (ARCHITECTURE.md section 8). Shared by the
// dashboard's sweep JSON, Prometheus' madam_sweep_device_seconds_total and
// `madamctl sweep show`. ComputeSweepCost is pure arithmetic on plain rows (no I/O, no
// clock: now is an argument); LoadSweepCost reads its rows from the Store.
// Thread-compatible.
//
//   device-seconds  per run: ended_at - started_at for a terminal run that
//                   started, now - started_at for a running one. started_at
//                   is the last grant (store.h RunRow), so a retried run
//                   counts its last attempt only.
//   median per task over the succeeded and diverged runs of that task (a
//                   failed or cancelled run stopped early: not a full run).
//   slots           devices of workers seen within fresh_ms whose kind the
//                   sweep takes (sweep device "any" takes both), one per
//                   device in a worker's list ("cuda:0,cuda:1" is two), at
//                   most max_concurrent when that is > 0.
//   ETA             (sum over pending runs of their task's median + sum over
//                   running runs of max(0, median - elapsed)), each times
//                   the run's devices, divided by min(slots, the devices of
//                   the pending and running runs). A task with no median
//                   yet takes the median over every finished run. Unknown
//                   (with why) when no run has finished or no slot is free
//                   for a sweep with work left; 0 when nothing is left.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "server/store.h"

namespace madam::server {

struct RunTiming {
  std::string task;
  RunState state = RunState::kPending;
  int64_t started_at_ms = 0;  // 0: never granted
  int64_t ended_at_ms = 0;    // 0: not terminal
  int64_t devices = 1;        // the run's `devices` parameter
};

struct WorkerDevices {
  std::string device;  // "cpu", "cuda:0", "cuda:0,cuda:1"
  int64_t last_seen_ms = 0;
};

struct SweepCost {
  double device_seconds = 0;
  std::map<std::string, double> median_run_seconds;  // by task
  int64_t pending = 0;
  int64_t running = 0;
  int64_t slots = 0;
  std::optional<double> eta_seconds;
  std::string eta_unknown_because;  // set when eta_seconds is empty
  // Set when pending runs need more devices than any connected worker of
  // the sweep's kind has: they wait, and this says so.
  std::string waiting_because;
};

constexpr int64_t kWorkerFreshMs = 30000;

SweepCost ComputeSweepCost(const std::vector<RunTiming>& runs, const std::vector<WorkerDevices>& workers,
                           const std::string& sweep_device, int64_t max_concurrent, int64_t now_ms,
                           int64_t fresh_ms = kWorkerFreshMs);

// The rows ComputeSweepCost takes, read from the Store: the sweep's runs and
// every registered worker.
Result<SweepCost> LoadSweepCost(Store& store, const SweepRow& sweep, int64_t now_ms);

// A run's `devices` parameter; 1 when unset.
int64_t RunDevices(const RunParams& params);
// "3.2 h", "14 min", "45 s": a duration as a person reads it.
std::string DurationText(double seconds);

}  // namespace madam::server
