#include "worker/serve/metric_uploader.h"

#include <algorithm>

namespace madam::worker::serve {

namespace v1 = ::madam::v1;
using std::chrono::milliseconds;

size_t UploadCadence::batch_cap() const {
  const auto cap = static_cast<size_t>(interval_.count()) * kPointsPerMinInterval /
                   static_cast<size_t>(kMinInterval.count());
  return std::clamp(cap, kPointsPerMinInterval, kMaxBatchPoints);
}

void UploadCadence::Set(milliseconds interval) {
  interval_ = std::clamp(interval, kMinInterval, kMaxInterval);
}

void UploadCadence::OnStored(milliseconds call_time, int64_t advised_ms) {
  const milliseconds advised(std::max<int64_t>(0, advised_ms));
  const bool slow = call_time * 2 > interval_;
  milliseconds next = interval_;
  if (advised > next) next = advised;
  if (slow) next = std::max(next, interval_ * 2);
  if (!slow && advised <= interval_) {
    // Fast, and no advice to wait longer: come back towards the floor, but
    // never below what the coordinator asked for.
    next = std::max(advised, milliseconds(static_cast<int64_t>(
                                 static_cast<double>(interval_.count()) * kDecay)));
  }
  Set(next);
}

void UploadCadence::OnBusy() { Set(interval_ * 2); }

MetricUploader::MetricUploader(const CoordinatorClient* client, LeaseRef lease,
                               std::atomic<bool>* lease_lost, const std::atomic<int64_t>* step,
                               const std::atomic<double>* progress, Clock* clock,
                               const StopFlag* stop)
    : client_(client), lease_(std::move(lease)), lease_lost_(lease_lost), step_(step),
      progress_(progress), clock_(clock), stop_(stop), interval_ms_(cadence_.interval().count()),
      wake_points_(cadence_.batch_cap()), thread_([this] { Loop(); }) {}

MetricUploader::~MetricUploader() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    closing_ = true;
  }
  wake_.notify_all();
  done_.notify_all();
  thread_.join();
}

void MetricUploader::Write(const MetricPoint& point) {
  std::unique_lock<std::mutex> lock(mu_);
  // Back-pressure while the coordinator is away: bounded memory. The lease
  // keeper marks the lease lost without a notification; the wait re-checks.
  clock_->WaitUntil(lock, done_, Clock::TimePoint::max(), [this] {
    return queue_.size() < kMaxBufferedPoints || *lease_lost_ || failed_ || stop_->stopped();
  });
  if (*lease_lost_ || failed_) return;  // nothing more will be stored
  queue_.push_back(point);
  ++written_;
  if (queue_.size() >= wake_points_) wake_.notify_one();
}

void MetricUploader::MarkEpoch(int64_t epoch) {
  std::lock_guard<std::mutex> lock(mu_);
  epoch_marks_.emplace_back(epoch, written_);
  flush_requested_ = true;
  wake_.notify_one();
}

int64_t MetricUploader::FlushedEpoch() {
  std::lock_guard<std::mutex> lock(mu_);
  while (!epoch_marks_.empty() && epoch_marks_.front().second <= acked_) {
    flushed_epoch_ = epoch_marks_.front().first;
    epoch_marks_.pop_front();
  }
  return flushed_epoch_;
}

bool MetricUploader::Flush() {
  std::unique_lock<std::mutex> lock(mu_);
  const int64_t target = written_;
  flush_requested_ = true;
  wake_.notify_one();
  clock_->WaitUntil(lock, done_, Clock::TimePoint::max(), [&] {
    return acked_ >= target || *lease_lost_ || failed_ || stop_->stopped();
  });
  return acked_ >= target && !*lease_lost_ && !failed_;
}

std::string MetricUploader::Failure() {
  std::lock_guard<std::mutex> lock(mu_);
  return failure_;
}

bool MetricUploader::failed() {
  std::lock_guard<std::mutex> lock(mu_);
  return failed_;
}

void MetricUploader::Publish() {
  interval_ms_ = cadence_.interval().count();
  wake_points_ = cadence_.batch_cap();
}

void MetricUploader::Loop() {
  Backoff backoff(clock_, stop_);
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    // A flush request (epoch end, Flush) sends at once whatever the
    // interval, so a checkpoint is advertised promptly.
    clock_->WaitUntil(lock, wake_, clock_->Now() + cadence_.interval(), [this] {
      return closing_ || flush_requested_ || queue_.size() >= cadence_.batch_cap();
    });
    flush_requested_ = false;
    if (queue_.empty() || failed_) {
      if (closing_) return;
      continue;
    }
    v1::ReportMetricsRequest req;
    SetLease(lease_, &req);
    req.set_step(*step_);
    req.set_progress(*progress_);
    const size_t n = std::min(queue_.size(), cadence_.batch_cap());
    for (size_t i = 0; i < n; ++i) {
      const MetricPoint& p = queue_[i];
      v1::MetricPoint* out = req.add_points();
      out->set_name(p.name);
      out->set_step(p.step);
      out->set_value(p.value);
      out->set_time(p.time);
    }
    lock.unlock();
    const std::string failure = Send(req, backoff);
    lock.lock();
    if (!failure.empty()) {
      failed_ = true;
      failure_ = failure;
    }
    queue_.erase(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(n));
    acked_ += static_cast<int64_t>(n);
    if (*lease_lost_ || failed_) {
      // Nothing more will be accepted under this lease; Flush and
      // FlushedEpoch see the failure through lease_lost_ / failed_.
      queue_.clear();
      epoch_marks_.clear();
      acked_ = -1;  // never "stored": no checkpoint is advertised past here
      done_.notify_all();
      if (closing_) return;
      continue;
    }
    done_.notify_all();
  }
}

std::string MetricUploader::Send(const v1::ReportMetricsRequest& req, Backoff& backoff) {
  int refusals = 0;
  while (!*lease_lost_) {
    v1::ReportMetricsResponse resp;
    const Clock::TimePoint start = clock_->Now();
    grpc::Status s = client_->ReportMetrics(req, &resp);
    if (s.ok()) {
      cadence_.OnStored(std::chrono::duration_cast<milliseconds>(clock_->Now() - start),
                        resp.upload_interval_ms());
      Publish();
      backoff.Reset();
      return "";
    }
    if (LeaseGone(s)) {
      Log("run ", lease_.run_id, ": metrics refused (", Describe(s),
          "); the lease is gone, stopping the run");
      *lease_lost_ = true;
      return "";
    }
    if (s.error_code() == grpc::StatusCode::INVALID_ARGUMENT) {
      // A batch the coordinator can never take: say so and move on rather
      // than block the run forever.
      Log("run ", lease_.run_id, ": metric batch rejected (", Describe(s), "); dropped");
      return "";
    }
    if (s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
      // Over madamd's write budget: nothing was stored and nothing is wrong
      // with the batch (not a refusal); the same batch again, later.
      cadence_.OnBusy();
      Publish();
      if (stop_->stopped() && closing_) return "";
      stop_->WaitFor(*clock_, cadence_.interval());
      continue;
    }
    if (!Retryable(s) && ++refusals >= kMaxRefusals) {
      const std::string failure = "the coordinator refused metric batches " +
                                  std::to_string(refusals) + " times (" + Describe(s) + ")";
      Log("run ", lease_.run_id, ": ", failure, "; failing the run");
      return failure;
    }
    if (stop_->stopped() && closing_) return "";
    backoff.Wait();
  }
  return "";
}

}  // namespace madam::worker::serve
