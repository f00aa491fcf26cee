// Streaming a run's metric points to the coordinator (ARCHITECTURE.md
// sections 5 and 9): in batches, from a thread of its own, at a cadence the
// coordinator can slow down.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

#include "worker/serve/clock.h"
#include "worker/serve/coordinator_client.h"
#include "worker/trainer.h"  // MetricSink, MetricPoint (torch-free)

namespace madam::worker::serve {

// How often, and how much, the uploader sends: a pure policy, so it is
// tested on its own. A fleet of workers backs off together when madamd's
// write queue is long (ARCHITECTURE.md section 9: its inputs are bounded):
//   - the interval starts at kMinInterval and stays in [kMinInterval, kMaxInterval];
//   - a RESOURCE_EXHAUSTED answer (nothing stored) doubles it;
//   - a stored batch whose answer advises a longer interval raises it to that;
//   - a call slower than half the interval doubles it (a slow coordinator);
//   - a fast call with no advice decays it by kDecay towards the floor (or
//     towards the advice, when there is one below the interval);
//   - a batch holds kPointsPerMinInterval points per kMinInterval of
//     interval, at most kMaxBatchPoints (the protocol's per-call limit).
class UploadCadence {
 public:
  static constexpr std::chrono::milliseconds kMinInterval{250};
  static constexpr std::chrono::milliseconds kMaxInterval{5000};
  static constexpr size_t kPointsPerMinInterval = 2000;
  static constexpr size_t kMaxBatchPoints = 100000;
  static constexpr double kDecay = 0.75;

  // The wait between batches.
  std::chrono::milliseconds interval() const { return interval_; }
  // The most points one call carries; also how many queued points wake the
  // uploader before the interval has passed.
  size_t batch_cap() const;

  // A batch was stored; the call took `call_time` and the answer advised
  // `advised_ms` (ReportMetricsResponse.upload_interval_ms, 0: none).
  void OnStored(std::chrono::milliseconds call_time, int64_t advised_ms);
  // The coordinator answered RESOURCE_EXHAUSTED: over its write budget.
  void OnBusy();

 private:
  void Set(std::chrono::milliseconds interval);
  std::chrono::milliseconds interval_ = kMinInterval;
};

// Streams a run's metric points to the coordinator from its own thread, in
// batches, so training never waits on the network. A refused batch under a
// stale lease marks the lease lost. A batch is dropped only when the
// coordinator calls it invalid (INVALID_ARGUMENT); while the coordinator is
// unreachable or its storage fails (UNAVAILABLE) the batch is retried with
// backoff, and while it is over its write budget (RESOURCE_EXHAUSTED) it is
// resent after the lengthened interval; later points wait behind it, up to
// kMaxBufferedPoints (then Write blocks the training thread). Any other
// refusal, repeated kMaxRefusals times, fails the run: a run never ends
// SUCCEEDED with points it was told were not stored (section 5: no gaps).
//
// Thread-safety: Write, MarkEpoch and Flush are called from the training
// thread; FlushedEpoch from the lease keeper's; the upload loop runs on its
// own thread; shared fields are guarded by mu_.
class MetricUploader final : public MetricSink {
 public:
  static constexpr size_t kMaxBufferedPoints = 1000000;  // ~100 MB of points
  static constexpr int kMaxRefusals = 8;

  // `step` and `progress` are read when a batch is sent, for live progress.
  // Nothing is owned; everything must outlive the uploader.
  MetricUploader(const CoordinatorClient* client, LeaseRef lease, std::atomic<bool>* lease_lost,
                 const std::atomic<int64_t>* step, const std::atomic<double>* progress,
                 Clock* clock, const StopFlag* stop);
  ~MetricUploader() override;
  MetricUploader(const MetricUploader&) = delete;
  MetricUploader& operator=(const MetricUploader&) = delete;

  void Write(const MetricPoint& point) override;

  // Records that every point of `epoch` has been written: FlushedEpoch
  // reaches it once they are all stored. Sends at once. Never waits.
  void MarkEpoch(int64_t epoch);

  // The newest epoch whose points are all stored by the coordinator (0: none).
  int64_t FlushedEpoch();

  // Sends at once and waits until every point written so far is stored by
  // the coordinator. False when the lease was lost, the uploads failed or
  // the process is stopping first.
  bool Flush();

  // Non-empty once the coordinator kept refusing batches: why the run failed.
  std::string Failure();
  bool failed();

  // The cadence's current interval (for tests and logs).
  std::chrono::milliseconds upload_interval() const {
    return std::chrono::milliseconds(interval_ms_.load());
  }

 private:
  void Loop();
  // Sends `req` until it is stored, dropped or cannot be; returns the run's
  // failure text when refusals fail the run, else "".
  std::string Send(const madam::v1::ReportMetricsRequest& req, Backoff& backoff);
  void Publish();  // cadence_ -> interval_ms_, wake_points_

  const CoordinatorClient* client_;
  const LeaseRef lease_;
  std::atomic<bool>* lease_lost_;
  const std::atomic<int64_t>* step_;
  const std::atomic<double>* progress_;
  Clock* clock_;
  const StopFlag* stop_;

  UploadCadence cadence_;  // the upload thread's alone
  std::atomic<int64_t> interval_ms_;
  std::atomic<size_t> wake_points_;  // cadence_.batch_cap(), for Write

  std::mutex mu_;
  std::condition_variable wake_;  // the upload loop waits on it
  std::condition_variable done_;  // Flush and a blocked Write wait on it
  std::deque<MetricPoint> queue_;  // guarded by mu_
  int64_t written_ = 0;            // guarded by mu_
  int64_t acked_ = 0;              // guarded by mu_: stored or dropped as invalid
  std::deque<std::pair<int64_t, int64_t>> epoch_marks_;  // guarded by mu_: (epoch, written_)
  int64_t flushed_epoch_ = 0;      // guarded by mu_
  bool flush_requested_ = false;   // guarded by mu_
  std::atomic<bool> closing_{false};  // set under mu_; read by the retry loop without it
  bool failed_ = false;            // guarded by mu_
  std::string failure_;            // guarded by mu_
  std::thread thread_;             // last: starts after the fields above exist
};

}  // namespace madam::worker::serve
