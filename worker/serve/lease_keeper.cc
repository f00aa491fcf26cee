#include "worker/serve/lease_keeper.h"

#include <algorithm>

namespace madam::worker::serve {

namespace v1 = ::madam::v1;
using std::chrono::milliseconds;

void WrittenCheckpoints::Wrote(int64_t epoch, std::string name) {
  std::lock_guard<std::mutex> lock(mu_);
  written_[epoch] = std::move(name);
  // The trainer keeps the last two files; older names are gone from disk.
  while (written_.size() > 2) written_.erase(written_.begin());
}

std::string WrittenCheckpoints::Reportable(int64_t flushed_epoch) const {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = written_.rbegin(); it != written_.rend(); ++it) {
    if (it->first <= flushed_epoch) return it->second;
  }
  return "";
}

LeaseKeeper::LeaseKeeper(const CoordinatorClient* client, LeaseRef lease, int64_t lease_seconds,
                         double grace_seconds, std::function<std::string()> reportable,
                         LeaseState* state, Clock* clock)
    : client_(client), lease_(std::move(lease)), lease_seconds_(lease_seconds),
      period_(std::max<int64_t>(200, lease_seconds * 1000 / 3)),
      grace_(milliseconds(static_cast<int64_t>(
          std::max<double>(grace_seconds, static_cast<double>(lease_seconds)) * 1000))),
      reportable_(std::move(reportable)), state_(state), clock_(clock),
      thread_([this] { Loop(); }) {}

LeaseKeeper::~LeaseKeeper() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void LeaseKeeper::Loop() {
  auto last_ok = clock_->Now();
  bool unreachable_logged = false;
  const std::string grace_text =
      std::to_string(std::chrono::duration_cast<std::chrono::seconds>(grace_).count());
  // While the coordinator is unreachable, retry every kRetry rather than a
  // whole period: after a restart it extends running leases by only one
  // lease period (ARCHITECTURE.md section 5), and the renewal must land in
  // it even when reconnecting takes a while.
  constexpr std::chrono::milliseconds kRetry(250);
  auto wait = period_;
  std::unique_lock<std::mutex> lock(mu_);
  while (!clock_->WaitUntil(lock, cv_, clock_->Now() + wait, [this] { return stop_; })) {
    lock.unlock();
    v1::HeartbeatRequest req;
    SetLease(lease_, &req);
    req.set_checkpoint(reportable_());
    req.set_step(state_->step);
    req.set_progress(state_->progress);
    v1::HeartbeatResponse resp;
    grpc::Status s = client_->Heartbeat(req, &resp, period_);
    const auto since_ok = clock_->Now() - last_ok;
    wait = Retryable(s) ? std::min<std::chrono::milliseconds>(kRetry, period_) : period_;
    if (s.ok()) {
      if (unreachable_logged) {
        Log("run ", lease_.run_id, ": the coordinator is back; lease renewed");
      }
      unreachable_logged = false;
      last_ok = clock_->Now();
      if (resp.cancel_requested() && !state_->cancelled) {
        Log("run ", lease_.run_id, ": cancelled by the coordinator");
        state_->cancelled = true;
      }
    } else if (LeaseGone(s)) {
      Log("run ", lease_.run_id, ": lease refused (", Describe(s), "); stopping the run");
      state_->lease_lost = true;
    } else if (Retryable(s)) {
      if (since_ok > grace_) {
        Log("run ", lease_.run_id, ": the coordinator was unreachable for more than ", grace_text,
            " s (", Describe(s), "); stopping the run");
        state_->lease_lost = true;
      } else if (!unreachable_logged) {
        Log("run ", lease_.run_id, ": cannot renew the lease (", Describe(s),
            "); training on and retrying for up to ", grace_text, " s");
        unreachable_logged = true;
      }
    } else if (since_ok > std::chrono::seconds(lease_seconds_)) {
      Log("run ", lease_.run_id, ": could not renew the lease for ", std::to_string(lease_seconds_),
          " s (", Describe(s), "); stopping the run");
      state_->lease_lost = true;
    }
    lock.lock();
    if (state_->lease_lost) return;
  }
}

}  // namespace madam::worker::serve
