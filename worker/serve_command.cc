#include "worker/serve_command.h"

#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <functional>
#include <map>
#include <filesystem>
#include <iostream>
#include <sstream>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/recipe.h"
#include "common/run_config.h"
#include "common/tls_files.h"
#include "madam/v1/worker.grpc.pb.h"
#include "proto/param_convert.h"
#include "worker/fid.h"
#include "worker/trainer.h"

namespace madam::worker {
namespace {

namespace fs = std::filesystem;
namespace v1 = ::madam::v1;
using SteadyClock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Set from the signal handler; everything that waits polls it.
std::atomic<bool> g_stop{false};

extern "C" void OnStopSignal(int) { g_stop.store(true); }

// One line on stderr, written whole so lines from threads never interleave.
template <typename... Args>
void Log(const Args&... args) {
  std::ostringstream line;
  line << "madam-worker: ";
  (line << ... << args);
  line << "\n";
  std::cerr << line.str() << std::flush;
}

std::string Describe(const grpc::Status& s) {
  // grpc::StatusCode and madam::StatusCode share their values.
  return std::string(StatusCodeName(static_cast<StatusCode>(s.error_code()))) + ": " +
         s.error_message();
}

bool Retryable(const grpc::Status& s) {
  return s.error_code() == grpc::StatusCode::UNAVAILABLE ||
         s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED ||
         s.error_code() == grpc::StatusCode::ABORTED;
}

// The coordinator says this worker does not (or no longer) hold the lease:
// stale epoch, run gone, or another holder's lease (PERMISSION_DENIED).
bool LeaseGone(const grpc::Status& s) {
  return s.error_code() == grpc::StatusCode::FAILED_PRECONDITION ||
         s.error_code() == grpc::StatusCode::NOT_FOUND ||
         s.error_code() == grpc::StatusCode::PERMISSION_DENIED;
}

// What every call of one lease carries (ARCHITECTURE.md section 5).
struct LeaseRef {
  std::string run_id;
  int64_t epoch = 0;
  std::string worker_id;
  std::string secret;
};

// Sleeps up to `d`, waking early when the process is told to stop.
void InterruptibleSleep(milliseconds d) {
  const auto until = SteadyClock::now() + d;
  while (!g_stop && SteadyClock::now() < until) {
    std::this_thread::sleep_for(std::min<milliseconds>(
        milliseconds(50), std::chrono::duration_cast<milliseconds>(until - SteadyClock::now())));
  }
}

// Exponential backoff with jitter: 200 ms doubling to 5 s.
class Backoff {
 public:
  void Wait() {
    std::uniform_int_distribution<int64_t> jitter(0, delay_.count() / 4);
    InterruptibleSleep(delay_ + milliseconds(jitter(rng_)));
    delay_ = std::min(delay_ * 2, milliseconds(5000));
  }
  void Reset() { delay_ = milliseconds(200); }

 private:
  milliseconds delay_{200};
  std::mt19937_64 rng_{std::random_device{}()};
};

// Builds call contexts: deadline and bearer token.
class Calls {
 public:
  explicit Calls(std::string token) : token_(std::move(token)) {}
  void Prepare(grpc::ClientContext* ctx, milliseconds deadline) const {
    ctx->set_deadline(std::chrono::system_clock::now() + deadline);
    if (!token_.empty()) ctx->AddMetadata("authorization", "Bearer " + token_);
  }

 private:
  std::string token_;
};

// Streams a run's metric points to the coordinator from its own thread, in
// batches, so training never waits on the network. A refused batch under a
// stale lease marks the lease lost. A batch is dropped only when the
// coordinator calls it invalid (INVALID_ARGUMENT); while the coordinator is
// unreachable or its storage fails (UNAVAILABLE) the batch is retried and
// later points wait behind it, up to kMaxBufferedPoints (then Write blocks
// the training thread). Any other refusal, repeated kMaxRefusals times,
// fails the run: a run never ends SUCCEEDED with points it was told were not
// stored (section 5: no gaps).
//
// Thread-safety: Write, MarkEpoch and Flush are called from the training
// thread; the upload loop runs on its own thread; shared fields are guarded
// by mu_.
class MetricUploader final : public MetricSink {
 public:
  // `step` and `progress` are read when a batch is sent, for live progress.
  MetricUploader(v1::WorkerApi::Stub* stub, const Calls* calls, LeaseRef lease,
                 std::atomic<bool>* lease_lost, const std::atomic<int64_t>* step,
                 const std::atomic<double>* progress)
      : stub_(stub), calls_(calls), lease_(std::move(lease)), lease_lost_(lease_lost), step_(step),
        progress_(progress), thread_([this] { Loop(); }) {}

  ~MetricUploader() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      closing_ = true;
    }
    wake_.notify_all();
    done_.notify_all();
    thread_.join();
  }

  void Write(const MetricPoint& point) override {
    std::unique_lock<std::mutex> lock(mu_);
    // Back-pressure while the coordinator is away: bounded memory.
    while (queue_.size() >= kMaxBufferedPoints && !*lease_lost_ && !failed_ && !g_stop) {
      done_.wait_for(lock, milliseconds(100));
    }
    if (*lease_lost_ || failed_) return;  // nothing more will be stored
    queue_.push_back(point);
    ++written_;
    if (queue_.size() >= kBatchPoints) wake_.notify_one();
  }

  // Records that every point of `epoch` has been written: FlushedEpoch
  // reaches it once they are all stored. Never waits.
  void MarkEpoch(int64_t epoch) {
    std::lock_guard<std::mutex> lock(mu_);
    epoch_marks_.emplace_back(epoch, written_);
    flush_requested_ = true;
    wake_.notify_one();
  }

  // The newest epoch whose points are all stored by the coordinator (0: none).
  int64_t FlushedEpoch() {
    std::lock_guard<std::mutex> lock(mu_);
    while (!epoch_marks_.empty() && epoch_marks_.front().second <= acked_) {
      flushed_epoch_ = epoch_marks_.front().first;
      epoch_marks_.pop_front();
    }
    return flushed_epoch_;
  }

  // Waits until every point written so far is stored by the coordinator.
  // False when the lease was lost, the uploads failed or the process is
  // stopping first.
  bool Flush() {
    std::unique_lock<std::mutex> lock(mu_);
    const int64_t target = written_;
    flush_requested_ = true;
    wake_.notify_one();
    while (acked_ < target) {
      if (*lease_lost_ || failed_ || g_stop) return false;
      done_.wait_for(lock, milliseconds(100));
    }
    return !failed_;
  }

  // Non-empty once the coordinator kept refusing batches: why the run failed.
  std::string Failure() {
    std::lock_guard<std::mutex> lock(mu_);
    return failure_;
  }
  bool failed() {
    std::lock_guard<std::mutex> lock(mu_);
    return failed_;
  }

 private:
  static constexpr size_t kBatchPoints = 2000;
  static constexpr size_t kMaxBufferedPoints = 1000000;  // ~100 MB of points
  static constexpr int kMaxRefusals = 8;
  static constexpr milliseconds kInterval{250};

  void Loop() {
    Backoff backoff;
    std::unique_lock<std::mutex> lock(mu_);
    while (true) {
      wake_.wait_for(lock, kInterval, [this] {
        return closing_ || flush_requested_ || queue_.size() >= kBatchPoints;
      });
      flush_requested_ = false;
      if (queue_.empty() || failed_) {
        if (closing_) return;
        continue;
      }
      v1::ReportMetricsRequest req;
      req.set_run_id(lease_.run_id);
      req.set_lease_epoch(lease_.epoch);
      req.set_worker_id(lease_.worker_id);
      req.set_lease_secret(lease_.secret);
      req.set_step(*step_);
      req.set_progress(*progress_);
      const size_t n = std::min(queue_.size(), size_t{20000});
      for (size_t i = 0; i < n; ++i) {
        const MetricPoint& p = queue_[i];
        v1::MetricPoint* out = req.add_points();
        out->set_name(p.name);
        out->set_step(p.step);
        out->set_value(p.value);
        out->set_time(p.time);
      }
      lock.unlock();
      int refusals = 0;
      std::string failure;
      while (!*lease_lost_) {
        grpc::ClientContext ctx;
        calls_->Prepare(&ctx, milliseconds(30000));
        v1::ReportMetricsResponse resp;
        grpc::Status s = stub_->ReportMetrics(&ctx, req, &resp);
        if (s.ok()) {
          backoff.Reset();
          break;
        }
        if (LeaseGone(s)) {
          Log("run ", lease_.run_id, ": metrics refused (", Describe(s),
              "); the lease is gone, stopping the run");
          *lease_lost_ = true;
          break;
        }
        if (s.error_code() == grpc::StatusCode::INVALID_ARGUMENT) {
          // A batch the coordinator can never take: say so and move on
          // rather than block the run forever.
          Log("run ", lease_.run_id, ": metric batch rejected (", Describe(s), "); dropped");
          break;
        }
        if (!Retryable(s) && ++refusals >= kMaxRefusals) {
          failure = "the coordinator refused metric batches " + std::to_string(refusals) +
                    " times (" + Describe(s) + ")";
          Log("run ", lease_.run_id, ": ", failure, "; failing the run");
          break;
        }
        if (g_stop && closing_) break;
        backoff.Wait();
      }
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

  v1::WorkerApi::Stub* stub_;
  const Calls* calls_;
  const LeaseRef lease_;
  std::atomic<bool>* lease_lost_;
  const std::atomic<int64_t>* step_;
  const std::atomic<double>* progress_;

  std::mutex mu_;
  std::condition_variable wake_;  // the upload loop waits on it
  std::condition_variable done_;  // Flush and a blocked Write wait on it
  std::deque<MetricPoint> queue_;  // guarded by mu_
  int64_t written_ = 0;            // guarded by mu_
  int64_t acked_ = 0;              // guarded by mu_: stored or dropped as invalid
  std::deque<std::pair<int64_t, int64_t>> epoch_marks_;  // guarded by mu_: (epoch, written_)
  int64_t flushed_epoch_ = 0;      // guarded by mu_
  bool flush_requested_ = false;   // guarded by mu_
  bool closing_ = false;           // guarded by mu_
  bool failed_ = false;            // guarded by mu_
  std::string failure_;            // guarded by mu_
  std::thread thread_;             // last: starts after the fields above exist
};

// The checkpoints this attempt wrote, for advertising: only a file this
// attempt made durable, and only once every metric point of its epoch is
// stored, is ever named to the coordinator (ARCHITECTURE.md section 5), so a
// resumed attempt never leaves a gap before it.
//
// Thread-safety: Wrote runs on the training thread, Reportable on the
// heartbeat thread; guarded by mu_.
class WrittenCheckpoints {
 public:
  void Wrote(int64_t epoch, std::string name) {
    std::lock_guard<std::mutex> lock(mu_);
    written_[epoch] = std::move(name);
    // The trainer keeps the last two files; older names are gone from disk.
    while (written_.size() > 2) written_.erase(written_.begin());
  }
  // The name of the newest checkpoint of an epoch <= flushed_epoch, or "".
  std::string Reportable(int64_t flushed_epoch) const {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = written_.rbegin(); it != written_.rend(); ++it) {
      if (it->first <= flushed_epoch) return it->second;
    }
    return "";
  }

 private:
  mutable std::mutex mu_;
  std::map<int64_t, std::string> written_;  // epoch -> file name
};

// Heartbeats a lease every third of its duration from its own thread; marks
// the lease lost when the coordinator refuses it, when it cannot be renewed
// for a whole lease period for any other error, or when the coordinator has
// been unreachable (UNAVAILABLE, deadline exceeded) for longer than the
// coordinator grace; records a cancel request.
class Heartbeater {
 public:
  struct Shared {
    std::atomic<bool> lease_lost{false};
    std::atomic<bool> cancelled{false};
    std::atomic<int64_t> step{0};
    std::atomic<double> progress{0};
  };

  Heartbeater(v1::WorkerApi::Stub* stub, const Calls* calls, LeaseRef lease, int64_t lease_seconds,
              double grace_seconds, std::function<std::string()> reportable, Shared* shared)
      : stub_(stub), calls_(calls), lease_(std::move(lease)), lease_seconds_(lease_seconds),
        grace_(std::chrono::milliseconds(static_cast<int64_t>(
            std::max<double>(grace_seconds, static_cast<double>(lease_seconds)) * 1000))),
        reportable_(std::move(reportable)), shared_(shared), thread_([this] { Loop(); }) {}

  ~Heartbeater() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

 private:
  void Loop() {
    const milliseconds period(std::max<int64_t>(200, lease_seconds_ * 1000 / 3));
    auto last_ok = SteadyClock::now();
    bool unreachable_logged = false;
    std::unique_lock<std::mutex> lock(mu_);
    while (!cv_.wait_for(lock, period, [this] { return stop_; })) {
      lock.unlock();
      v1::HeartbeatRequest req;
      req.set_run_id(lease_.run_id);
      req.set_lease_epoch(lease_.epoch);
      req.set_worker_id(lease_.worker_id);
      req.set_lease_secret(lease_.secret);
      req.set_checkpoint(reportable_());
      req.set_step(shared_->step);
      req.set_progress(shared_->progress);
      grpc::ClientContext ctx;
      calls_->Prepare(&ctx, period);
      v1::HeartbeatResponse resp;
      grpc::Status s = stub_->Heartbeat(&ctx, req, &resp);
      const auto since_ok = SteadyClock::now() - last_ok;
      if (s.ok()) {
        if (unreachable_logged) Log("run ", lease_.run_id, ": the coordinator is back; lease renewed");
        unreachable_logged = false;
        last_ok = SteadyClock::now();
        if (resp.cancel_requested() && !shared_->cancelled) {
          Log("run ", lease_.run_id, ": cancelled by the coordinator");
          shared_->cancelled = true;
        }
      } else if (LeaseGone(s)) {
        Log("run ", lease_.run_id, ": lease refused (", Describe(s), "); stopping the run");
        shared_->lease_lost = true;
      } else if (Retryable(s)) {
        if (since_ok > grace_) {
          Log("run ", lease_.run_id, ": the coordinator was unreachable for more than ",
              std::to_string(std::chrono::duration_cast<std::chrono::seconds>(grace_).count()),
              " s (", Describe(s), "); stopping the run");
          shared_->lease_lost = true;
        } else if (!unreachable_logged) {
          Log("run ", lease_.run_id, ": cannot renew the lease (", Describe(s),
              "); training on and retrying for up to ",
              std::to_string(std::chrono::duration_cast<std::chrono::seconds>(grace_).count()), " s");
          unreachable_logged = true;
        }
      } else if (since_ok > std::chrono::seconds(lease_seconds_)) {
        Log("run ", lease_.run_id, ": could not renew the lease for ", std::to_string(lease_seconds_),
            " s (", Describe(s), "); stopping the run");
        shared_->lease_lost = true;
      }
      lock.lock();
      if (shared_->lease_lost) return;
    }
  }

  v1::WorkerApi::Stub* stub_;
  const Calls* calls_;
  const LeaseRef lease_;
  const int64_t lease_seconds_;
  const std::chrono::milliseconds grace_;
  std::function<std::string()> reportable_;
  Shared* shared_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;  // guarded by mu_
  std::thread thread_;
};

// A checkpoint name as the coordinator stores it (epoch-<N>.pt): a bare file
// name, never a path. Anything else is ignored with a warning.
bool IsCheckpointName(const std::string& name) {
  return !name.empty() && name.find('/') == std::string::npos && name != "." && name != ".." &&
         CheckpointEpoch(name) >= 0 && fs::path(name).filename().string() == name;
}

// `dir`/`name` when it resolves to a file directly inside `dir` (no link or
// `..` leads elsewhere); "" otherwise. Never throws.
std::string ResolveInside(const std::string& dir, const std::string& name) {
  if (!IsCheckpointName(name)) return "";
  std::error_code ec;
  const fs::path base = fs::weakly_canonical(fs::absolute(dir, ec), ec);
  if (ec) return "";
  const fs::path resolved = fs::weakly_canonical(base / name, ec);
  if (ec || resolved.parent_path() != base) return "";
  return resolved.string();
}

// Removes a finished run's checkpoint directory: its epoch-<N>.pt files and
// leftover temporaries, then the directory itself if that leaves it empty.
// Only names this worker writes are removed, so a directory the coordinator
// named wrongly loses nothing else. Never throws.
void RemoveRunDirectory(const std::string& dir) {
  std::error_code ec;
  fs::directory_iterator it(dir, ec), end;
  std::vector<fs::path> doomed;
  for (; !ec && it != end; it.increment(ec)) {
    const std::string f = it->path().filename().string();
    if (CheckpointEpoch(f) >= 0 || (f.rfind("epoch-", 0) == 0 && f.find(".pt.tmp-") != std::string::npos)) {
      doomed.push_back(it->path());
    }
  }
  for (const fs::path& p : doomed) {
    std::error_code rm;
    fs::remove(p, rm);
  }
  std::error_code rm;
  fs::remove(dir, rm);  // only succeeds when empty
}

class Server {
 public:
  Server(const ServeOptions& options, Trainer* trainer,
         std::shared_ptr<grpc::ChannelCredentials> credentials)
      : options_(options), trainer_(trainer), calls_(options.token) {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(64 << 20);
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 200);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 30000);
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
    channel_ = grpc::CreateCustomChannel(options.coordinator, std::move(credentials), args);
    stub_ = v1::WorkerApi::NewStub(channel_);
  }

  int Serve() {
    const std::string device = trainer_->DeviceName();
    std::string name = options_.name;
    if (name.empty()) {
      char host[256] = {0};
      gethostname(host, sizeof host - 1);
      name = std::string(host) + ":" + device;
    }
    Backoff backoff;
    bool reported_unreachable = false;
    int runs_done = 0;
    auto idle_since = SteadyClock::now();
    while (!g_stop) {
      if (worker_id_.empty()) {
        v1::RegisterWorkerRequest req;
        req.set_name(name);
        req.set_device(device);
        req.set_info("madam-worker pid " + std::to_string(getpid()));
        v1::RegisterWorkerResponse resp;
        grpc::ClientContext ctx;
        calls_.Prepare(&ctx, milliseconds(10000));
        grpc::Status s = stub_->RegisterWorker(&ctx, req, &resp);
        if (!s.ok()) {
          if (!Retryable(s)) {
            Log("coordinator at ", options_.coordinator, " refused registration: ", Describe(s));
            return 1;
          }
          if (!reported_unreachable) {
            Log("cannot reach the coordinator at ", options_.coordinator, " (", Describe(s), "); retrying");
            reported_unreachable = true;
          }
          backoff.Wait();
          continue;
        }
        worker_id_ = resp.worker_id();
        reported_unreachable = false;
        backoff.Reset();
        Log("registered with ", options_.coordinator, " as ", worker_id_, " (", name + "", ", device ", device, ")");
      }
      v1::AcquireRunRequest req;
      req.set_worker_id(worker_id_);
      req.set_device(device);
      // One id per acquire, kept across retries: if a grant's response is
      // lost, the retry gets that same lease instead of orphaning it.
      if (acquire_request_id_.empty()) acquire_request_id_ = NewRequestId();
      req.set_request_id(acquire_request_id_);
      v1::AcquireRunResponse lease;
      grpc::ClientContext ctx;
      calls_.Prepare(&ctx, milliseconds(10000));
      grpc::Status s = stub_->AcquireRun(&ctx, req, &lease);
      if (!s.ok()) {
        if (s.error_code() == grpc::StatusCode::NOT_FOUND) {
          worker_id_.clear();  // the coordinator forgot us (new database): register again
          continue;
        }
        if (!reported_unreachable) {
          Log("cannot acquire a run from ", options_.coordinator, " (", Describe(s), "); retrying");
          reported_unreachable = Retryable(s);
        }
        backoff.Wait();
        continue;
      }
      acquire_request_id_.clear();
      reported_unreachable = false;
      backoff.Reset();
      if (!lease.has_run()) {
        if (options_.idle_exit_seconds > 0 &&
            std::chrono::duration<double>(SteadyClock::now() - idle_since).count() >
                options_.idle_exit_seconds) {
          Log("no run for ", std::to_string(options_.idle_exit_seconds), " s; exiting");
          break;
        }
        InterruptibleSleep(milliseconds(std::clamp<int64_t>(lease.retry_after_ms(), 50, 10000)));
        continue;
      }
      RunLease(lease);
      ++runs_done;
      idle_since = SteadyClock::now();
      if (options_.max_runs > 0 && runs_done >= options_.max_runs) break;
    }
    return 0;
  }

 private:
  LeaseRef RefOf(const v1::AcquireRunResponse& lease) const {
    return LeaseRef{lease.run_id(), lease.lease_epoch(), worker_id_, lease.lease_secret()};
  }

  void RunLease(const v1::AcquireRunResponse& lease) {
    const std::string& run_id = lease.run_id();
    Log("run ", run_id, ": leased (epoch ", std::to_string(lease.lease_epoch()), ", attempt ", std::to_string(lease.attempt()), ")");
    // The stored run's own parameters, resolved against this worker's
    // recipes (common/recipe.h); a parameter that does not apply to this
    // cell of its sweep is left out, as at submit.
    ResolveOptions resolve;
    resolve.drop_inapplicable = true;
    auto config = ResolveConfig(ParamsFromProto(lease.params()), resolve);
    if (!config.ok()) {
      Complete(lease, v1::RUN_STATE_FAILED, {}, config.status().message(), "");
      return;
    }
    const std::string dir = lease.checkpoint_dir().empty()
                                ? (fs::path(options_.checkpoint_dir) / run_id).string()
                                : lease.checkpoint_dir();
    // The coordinator hands out a checkpoint *name*; it is resolved here,
    // under this run's own directory, and must stay inside it (section 5).
    std::vector<std::string> candidates;
    int64_t resume_epoch = -1;
    if (!lease.resume_checkpoint().empty()) {
      const std::string resolved = ResolveInside(dir, lease.resume_checkpoint());
      std::error_code ec;
      if (resolved.empty()) {
        Log("run ", run_id, ": warning: ignoring resume checkpoint '",
            lease.resume_checkpoint().substr(0, 200), "' (not a checkpoint name inside ", dir,
            "); starting from step 0");
      } else {
        resume_epoch = CheckpointEpoch(resolved);
        if (fs::exists(resolved, ec)) candidates.push_back(resolved);
        // The ones before it, newest first: an unreadable checkpoint falls
        // back to the one before (or step 0), never fails the run.
        for (const std::string& older : ListCheckpoints(dir)) {
          if (CheckpointEpoch(older) < resume_epoch) candidates.push_back(older);
        }
        if (candidates.empty()) {
          Log("run ", run_id, ": warning: cannot reach checkpoint ", resolved, "; starting from step 0");
        }
      }
    }
    // Files of epochs past the resume point belong to an attempt whose
    // points were never all stored: they are not this attempt's, remove them.
    for (const std::string& stale : ListCheckpoints(dir)) {
      if (CheckpointEpoch(stale) > resume_epoch) {
        std::error_code ec;
        fs::remove(stale, ec);
      }
    }
    if (!candidates.empty()) Log("run ", run_id, ": resuming from ", candidates.front());

    Heartbeater::Shared shared;
    WrittenCheckpoints written;
    RunSummary summary;
    std::string upload_failure;
    {
      MetricUploader uploader(stub_.get(), &calls_, RefOf(lease), &shared.lease_lost, &shared.step,
                              &shared.progress);
      Heartbeater heartbeater(stub_.get(), &calls_, RefOf(lease),
                              std::max<int64_t>(1, lease.lease_seconds()),
                              options_.coordinator_grace_seconds,
                              [&] { return written.Reportable(uploader.FlushedEpoch()); }, &shared);
      RunHooks hooks;
      hooks.sink = &uploader;
      hooks.checkpoint_dir = dir;
      // A GAN's sample grids stay beside its checkpoints (and survive the
      // clean-up of a finished run, which removes checkpoint files only).
      hooks.output_dir = dir;
      hooks.resume_candidates = candidates;
      hooks.attempt = lease.attempt();
      hooks.should_stop = [&] {
        return shared.lease_lost || shared.cancelled || g_stop || uploader.failed();
      };
      hooks.on_checkpoint = [&](int64_t epoch, const std::string& path) {
        written.Wrote(epoch, fs::path(path).filename().string());
      };
      hooks.on_progress = [&](const ProgressInfo& info) {
        shared.step = info.step;
        if (info.total_steps > 0) {
          shared.progress = static_cast<double>(info.step) / static_cast<double>(info.total_steps);
        }
        if (info.epoch_end) uploader.MarkEpoch(info.epoch);
      };
      summary = trainer_->Run(*config, hooks);
      for (const std::string& w : summary.warnings) Log("run ", run_id, ": warning: ", w);
      if (!summary.resumed_from.empty()) Log("run ", run_id, ": resumed from ", summary.resumed_from);
      if (!shared.lease_lost) uploader.Flush();
      upload_failure = uploader.Failure();
    }
    if (shared.lease_lost) {
      Log("run ", run_id, ": lease lost; the coordinator will hand it out again");
      return;
    }
    v1::RunState outcome = v1::RUN_STATE_FAILED;
    if (summary.status == "succeeded") outcome = v1::RUN_STATE_SUCCEEDED;
    if (summary.status == "diverged") outcome = v1::RUN_STATE_DIVERGED;
    if (!upload_failure.empty()) {
      outcome = v1::RUN_STATE_FAILED;
      summary.error = upload_failure;
    } else if (summary.status == "stopped") {
      if (!shared.cancelled) {
        Log("run ", run_id, ": stopped by a signal; its lease will expire and it will be re-leased");
        return;
      }
      outcome = v1::RUN_STATE_CANCELLED;
    }
    const std::string checkpoint = written.Reportable(INT64_MAX);
    const bool recorded = Complete(lease, outcome, summary.final, summary.error, checkpoint);
    // A failed run may be retried and resume from its checkpoints; any other
    // end is final, and its checkpoints go (section 5).
    if (recorded && outcome != v1::RUN_STATE_FAILED && !options_.keep_checkpoints) {
      RemoveRunDirectory(dir);
    }
  }

  // True once the coordinator recorded the completion.
  bool Complete(const v1::AcquireRunResponse& lease, v1::RunState outcome,
                const std::map<std::string, double>& final, const std::string& error,
                const std::string& checkpoint) {
    v1::CompleteRunRequest req;
    req.set_run_id(lease.run_id());
    req.set_lease_epoch(lease.lease_epoch());
    req.set_worker_id(worker_id_);
    req.set_lease_secret(lease.lease_secret());
    req.set_outcome(outcome);
    req.mutable_final()->insert(final.begin(), final.end());
    req.set_error(error.substr(0, 4096));
    req.set_checkpoint(checkpoint);
    Backoff backoff;
    const auto give_up =
        SteadyClock::now() +
        std::chrono::milliseconds(static_cast<int64_t>(
            1000 * std::max<double>(options_.coordinator_grace_seconds,
                                    3.0 * static_cast<double>(std::max<int64_t>(1, lease.lease_seconds())))));
    while (true) {
      grpc::ClientContext ctx;
      calls_.Prepare(&ctx, milliseconds(10000));
      v1::CompleteRunResponse resp;
      grpc::Status s = stub_->CompleteRun(&ctx, req, &resp);
      if (s.ok()) {
        Log("run ", lease.run_id(), ": ", v1::RunState_Name(outcome),
            (error.empty() ? std::string() : " (" + error + ")"));
        return true;
      }
      if (!Retryable(s) || SteadyClock::now() > give_up || g_stop) {
        Log("run ", lease.run_id(), ": completion not recorded (", Describe(s), ")");
        return false;
      }
      backoff.Wait();
    }
  }

  const ServeOptions& options_;
  Trainer* trainer_;
  Calls calls_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::WorkerApi::Stub> stub_;
  std::string NewRequestId() {
    std::uniform_int_distribution<uint64_t> bits;
    char buf[40];
    std::snprintf(buf, sizeof buf, "%016llx%016llx", static_cast<unsigned long long>(bits(rng_)),
                  static_cast<unsigned long long>(bits(rng_)));
    return buf;
  }

  std::string worker_id_;
  std::string acquire_request_id_;  // of the acquire in flight (kept across retries)
  std::mt19937_64 rng_{std::random_device{}()};
};

}  // namespace

void AddServeFlags(CLI::App& app, ServeOptions& options) {
  app.add_option("--coordinator", options.coordinator, "madamd address host:port")
      ->envname("MADAM_COORDINATOR")
      ->capture_default_str();
  app.add_option("--device", options.device, "auto | cpu | cuda:N")->capture_default_str();
  app.add_option("--data-dir", options.data_dir, "datasets directory (default: per task)");
  app.add_option("--threads", options.threads, "intra-op threads (0: LibTorch's default)");
  app.add_option("--loader-threads", options.loader_threads,
                 "input-pipeline threads for image tasks (0: the cores left after --threads)");
  app.add_option("--name", options.name, "worker name shown by `madamctl worker list`");
  app.add_option("--token", options.token, "auth token (sent as a bearer token)")
      ->envname("MADAM_TOKEN");
  app.add_option("--tls-ca", options.tls_ca, "PEM CA bundle that signed madamd's certificate: use TLS")
      ->envname("MADAM_TLS_CA");
  app.add_option("--tls-cert", options.tls_cert, "PEM client certificate for mutual TLS (needs --tls-key)")
      ->envname("MADAM_TLS_CERT");
  app.add_option("--tls-key", options.tls_key, "PEM private key for --tls-cert")
      ->envname("MADAM_TLS_KEY");
  app.add_option("--checkpoint-dir", options.checkpoint_dir,
                 "checkpoint directory when the coordinator names none")
      ->capture_default_str();
  app.add_option("--fid-model", options.fid_model,
                 "TorchScript feature extractor for test/fid (tools/export_fid_inception.py)");
  app.add_option("--max-runs", options.max_runs, "exit after this many runs (0: serve until stopped)");
  app.add_option("--idle-exit", options.idle_exit_seconds,
                 "exit after this many seconds without a run (0: never)");
  app.add_flag("--keep-checkpoints", options.keep_checkpoints,
               "keep a finished run's checkpoint directory (default: delete it)");
  app.add_option("--coordinator-grace", options.coordinator_grace_seconds,
                 "seconds to keep training (buffering metrics) while the coordinator is "
                 "unreachable before giving a lease up")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 86400.0));
}

int RunServe(const ServeOptions& options) {
  struct sigaction action {};
  action.sa_handler = OnStopSignal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);

  WorkerOptions worker_options;
  worker_options.device = options.device;
  worker_options.data_dir = options.data_dir;
  worker_options.threads = options.threads;
  worker_options.loader_threads = options.loader_threads;
  worker_options.fid_model = options.fid_model;
  if (!options.fid_model.empty()) {
    Status fid = CheckFidModel(options.fid_model);
    if (!fid.ok()) {
      std::fprintf(stderr, "madam-worker: %s\n", fid.message().c_str());
      return 2;
    }
  }
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  if (!options.tls_ca.empty() || !options.tls_cert.empty() || !options.tls_key.empty()) {
    auto pem = LoadTlsPem("--tls-ca", options.tls_ca, options.tls_cert, options.tls_key);
    if (!pem.ok()) {
      std::fprintf(stderr, "madam-worker: %s\n", pem.status().message().c_str());
      return 1;
    }
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = pem->ca;
    ssl.pem_cert_chain = pem->cert;
    ssl.pem_private_key = pem->key;
    credentials = grpc::SslCredentials(ssl);
  }
  Trainer trainer(worker_options);
  Server server(options, &trainer, std::move(credentials));
  return server.Serve();
}

}  // namespace madam::worker
