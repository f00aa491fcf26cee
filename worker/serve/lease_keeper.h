// Keeping a run's lease (ARCHITECTURE.md section 5): heartbeats, and the
// checkpoints that may be advertised in them.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "worker/serve/clock.h"
#include "worker/serve/coordinator_client.h"

namespace madam::worker::serve {

// The checkpoints this attempt wrote, for advertising: only a file this
// attempt made durable, and only once every metric point of its epoch is
// stored, is ever named to the coordinator (ARCHITECTURE.md section 5), so a
// resumed attempt never leaves a gap before it.
//
// Thread-safety: Wrote runs on the training thread, Reportable on the
// heartbeat thread; guarded by mu_.
class WrittenCheckpoints {
 public:
  void Wrote(int64_t epoch, std::string name);
  // The name of the newest checkpoint of an epoch <= flushed_epoch, or "".
  std::string Reportable(int64_t flushed_epoch) const;

 private:
  mutable std::mutex mu_;
  std::map<int64_t, std::string> written_;  // epoch -> file name
};

// What the lease keeper, the uploader and the training loop share about one
// lease.
struct LeaseState {
  std::atomic<bool> lease_lost{false};
  std::atomic<bool> cancelled{false};
  std::atomic<int64_t> step{0};
  std::atomic<double> progress{0};
};

// Heartbeats a lease every third of its duration (at least every 200 ms)
// from its own thread; marks the lease lost when the coordinator refuses it,
// when it cannot be renewed for a whole lease period for any other error, or
// when the coordinator has been unreachable (UNAVAILABLE, deadline exceeded)
// for longer than the coordinator grace (at least a lease period); records a
// cancel request. Each heartbeat names `reportable()`, the checkpoint that
// may be advertised.
//
// Thread-safety: construct and destroy on one thread; `state` is shared
// through its atomics.
class LeaseKeeper {
 public:
  // Nothing is owned; everything must outlive the keeper.
  LeaseKeeper(const CoordinatorClient* client, LeaseRef lease, int64_t lease_seconds,
              double grace_seconds, std::function<std::string()> reportable, LeaseState* state,
              Clock* clock);
  ~LeaseKeeper();  // stops heartbeating (the lease is left to expire or be completed)
  LeaseKeeper(const LeaseKeeper&) = delete;
  LeaseKeeper& operator=(const LeaseKeeper&) = delete;

  // Time between heartbeats, also each heartbeat's deadline.
  std::chrono::milliseconds period() const { return period_; }

 private:
  void Loop();

  const CoordinatorClient* client_;
  const LeaseRef lease_;
  const int64_t lease_seconds_;
  const std::chrono::milliseconds period_;
  const std::chrono::milliseconds grace_;
  std::function<std::string()> reportable_;
  LeaseState* state_;
  Clock* clock_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;  // guarded by mu_
  std::thread thread_;  // last: starts after the fields above exist
};

}  // namespace madam::worker::serve
