#include "worker/serve_command.h"

#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
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

bool LeaseGone(const grpc::Status& s) {
  return s.error_code() == grpc::StatusCode::FAILED_PRECONDITION ||
         s.error_code() == grpc::StatusCode::NOT_FOUND;
}

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
// batches, so training never waits on the network (except Flush, once per
// epoch). A refused batch under a stale lease marks the lease lost.
//
// Thread-safety: Write and Flush are called from the training thread; the
// upload loop runs on its own thread; shared fields are guarded by mu_.
class MetricUploader final : public MetricSink {
 public:
  // `step` and `progress` are read when a batch is sent, for live progress.
  MetricUploader(v1::WorkerApi::Stub* stub, const Calls* calls, std::string run_id,
                 int64_t lease_epoch, std::atomic<bool>* lease_lost,
                 const std::atomic<int64_t>* step, const std::atomic<double>* progress)
      : stub_(stub), calls_(calls), run_id_(std::move(run_id)), lease_epoch_(lease_epoch),
        lease_lost_(lease_lost), step_(step), progress_(progress), thread_([this] { Loop(); }) {}

  ~MetricUploader() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      closing_ = true;
    }
    wake_.notify_all();
    thread_.join();
  }

  void Write(const MetricPoint& point) override {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(point);
    ++written_;
    if (queue_.size() >= kBatchPoints) wake_.notify_one();
  }

  // Waits until every point written so far is stored by the coordinator.
  // False when the lease was lost or the process is stopping first.
  bool Flush() {
    std::unique_lock<std::mutex> lock(mu_);
    const int64_t target = written_;
    flush_requested_ = true;
    wake_.notify_one();
    while (acked_ < target) {
      if (*lease_lost_ || g_stop) return false;
      done_.wait_for(lock, milliseconds(100));
    }
    return true;
  }

 private:
  static constexpr size_t kBatchPoints = 2000;
  static constexpr milliseconds kInterval{250};

  void Loop() {
    Backoff backoff;
    std::unique_lock<std::mutex> lock(mu_);
    while (true) {
      wake_.wait_for(lock, kInterval, [this] {
        return closing_ || flush_requested_ || queue_.size() >= kBatchPoints;
      });
      flush_requested_ = false;
      if (queue_.empty()) {
        if (closing_) return;
        continue;
      }
      v1::ReportMetricsRequest req;
      req.set_run_id(run_id_);
      req.set_lease_epoch(lease_epoch_);
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
      bool stored = false;
      while (!*lease_lost_) {
        grpc::ClientContext ctx;
        calls_->Prepare(&ctx, milliseconds(30000));
        v1::ReportMetricsResponse resp;
        grpc::Status s = stub_->ReportMetrics(&ctx, req, &resp);
        if (s.ok()) {
          stored = true;
          backoff.Reset();
          break;
        }
        if (LeaseGone(s)) {
          Log("run ", run_id_, ": metrics refused (", Describe(s), "); the lease is gone, stopping the run");
          *lease_lost_ = true;
          break;
        }
        if (!Retryable(s)) {
          // A batch the coordinator can never take: say so and move on
          // rather than block the run forever.
          Log("run ", run_id_, ": metric batch rejected (", Describe(s), "); dropped");
          break;
        }
        if (g_stop && closing_) break;
        backoff.Wait();
      }
      lock.lock();
      (void)stored;
      queue_.erase(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(n));
      acked_ += static_cast<int64_t>(n);
      done_.notify_all();
      if (*lease_lost_) {
        // Nothing more will be accepted under this lease.
        acked_ += static_cast<int64_t>(queue_.size());
        queue_.clear();
      }
    }
  }

  v1::WorkerApi::Stub* stub_;
  const Calls* calls_;
  const std::string run_id_;
  const int64_t lease_epoch_;
  std::atomic<bool>* lease_lost_;
  const std::atomic<int64_t>* step_;
  const std::atomic<double>* progress_;

  std::mutex mu_;
  std::condition_variable wake_;  // the upload loop waits on it
  std::condition_variable done_;  // Flush waits on it
  std::deque<MetricPoint> queue_;  // guarded by mu_
  int64_t written_ = 0;            // guarded by mu_
  int64_t acked_ = 0;              // guarded by mu_: stored, dropped or abandoned
  bool flush_requested_ = false;   // guarded by mu_
  bool closing_ = false;           // guarded by mu_
  std::thread thread_;             // last: starts after the fields above exist
};

// Heartbeats a lease every third of its duration from its own thread; marks
// the lease lost when the coordinator refuses it or it cannot be renewed for
// a whole lease period, and records a cancel request.
class Heartbeater {
 public:
  struct Shared {
    std::atomic<bool> lease_lost{false};
    std::atomic<bool> cancelled{false};
    std::atomic<int64_t> step{0};
    std::atomic<double> progress{0};
    // Epochs whose metric points are all stored: only their checkpoints are
    // advertised, so a resumed attempt never leaves a gap before it.
    std::atomic<int64_t> flushed_epoch{0};
  };

  Heartbeater(v1::WorkerApi::Stub* stub, const Calls* calls, std::string run_id,
              int64_t lease_epoch, int64_t lease_seconds, std::string checkpoint_dir,
              Shared* shared)
      : stub_(stub), calls_(calls), run_id_(std::move(run_id)), lease_epoch_(lease_epoch),
        lease_seconds_(lease_seconds), checkpoint_dir_(std::move(checkpoint_dir)),
        shared_(shared), thread_([this] { Loop(); }) {}

  ~Heartbeater() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

  // The newest checkpoint safe to resume from, or "".
  std::string ReportableCheckpoint() const {
    const std::string latest = FindLatestCheckpoint(checkpoint_dir_);
    if (latest.empty()) return "";
    const int64_t epoch = CheckpointEpoch(latest);
    return epoch >= 1 && epoch <= shared_->flushed_epoch ? latest : "";
  }

 private:
  void Loop() {
    const milliseconds period(std::max<int64_t>(200, lease_seconds_ * 1000 / 3));
    auto last_ok = SteadyClock::now();
    std::unique_lock<std::mutex> lock(mu_);
    while (!cv_.wait_for(lock, period, [this] { return stop_; })) {
      lock.unlock();
      v1::HeartbeatRequest req;
      req.set_run_id(run_id_);
      req.set_lease_epoch(lease_epoch_);
      req.set_checkpoint(ReportableCheckpoint());
      req.set_step(shared_->step);
      req.set_progress(shared_->progress);
      grpc::ClientContext ctx;
      calls_->Prepare(&ctx, period);
      v1::HeartbeatResponse resp;
      grpc::Status s = stub_->Heartbeat(&ctx, req, &resp);
      if (s.ok()) {
        last_ok = SteadyClock::now();
        if (resp.cancel_requested() && !shared_->cancelled) {
          Log("run ", run_id_, ": cancelled by the coordinator");
          shared_->cancelled = true;
        }
      } else if (LeaseGone(s)) {
        Log("run ", run_id_, ": lease refused (", Describe(s), "); stopping the run");
        shared_->lease_lost = true;
      } else if (SteadyClock::now() - last_ok > std::chrono::seconds(lease_seconds_)) {
        Log("run ", run_id_, ": could not renew the lease for ", std::to_string(lease_seconds_), " s (", Describe(s), "); stopping the run");
        shared_->lease_lost = true;
      }
      lock.lock();
      if (shared_->lease_lost) return;
    }
  }

  v1::WorkerApi::Stub* stub_;
  const Calls* calls_;
  const std::string run_id_;
  const int64_t lease_epoch_;
  const int64_t lease_seconds_;
  const std::string checkpoint_dir_;
  Shared* shared_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;  // guarded by mu_
  std::thread thread_;
};

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
    std::string resume = lease.resume_checkpoint();
    if (!resume.empty() && !fs::exists(resume)) {
      Log("run ", run_id, ": cannot reach checkpoint ", resume, "; starting from step 0");
      resume.clear();
    }
    if (!resume.empty()) Log("run ", run_id, ": resuming from ", resume);

    Heartbeater::Shared shared;
    RunSummary summary;
    {
      MetricUploader uploader(stub_.get(), &calls_, run_id, lease.lease_epoch(), &shared.lease_lost,
                              &shared.step, &shared.progress);
      Heartbeater heartbeater(stub_.get(), &calls_, run_id, lease.lease_epoch(),
                              std::max<int64_t>(1, lease.lease_seconds()), dir, &shared);
      RunHooks hooks;
      hooks.sink = &uploader;
      hooks.checkpoint_dir = dir;
      hooks.output_dir = dir;  // a GAN's sample grids stay beside its checkpoints
      if (!resume.empty()) hooks.resume_candidates = {resume};
      hooks.attempt = lease.attempt();
      hooks.should_stop = [&] { return shared.lease_lost || shared.cancelled || g_stop; };
      hooks.on_progress = [&](const ProgressInfo& info) {
        shared.step = info.step;
        if (info.total_steps > 0) {
          shared.progress = static_cast<double>(info.step) / static_cast<double>(info.total_steps);
        }
        if (info.epoch_end && uploader.Flush()) shared.flushed_epoch = info.epoch;
      };
      summary = trainer_->Run(*config, hooks);
      if (!shared.lease_lost) uploader.Flush();
    }
    if (shared.lease_lost) {
      Log("run ", run_id, ": lease lost; the coordinator will hand it out again");
      return;
    }
    v1::RunState outcome = v1::RUN_STATE_FAILED;
    if (summary.status == "succeeded") outcome = v1::RUN_STATE_SUCCEEDED;
    if (summary.status == "diverged") outcome = v1::RUN_STATE_DIVERGED;
    if (summary.status == "stopped") {
      if (!shared.cancelled) {
        Log("run ", run_id, ": stopped by a signal; its lease will expire and it will be re-leased");
        return;
      }
      outcome = v1::RUN_STATE_CANCELLED;
    }
    std::string checkpoint = summary.last_checkpoint;
    Complete(lease, outcome, summary.final, summary.error, checkpoint);
  }

  void Complete(const v1::AcquireRunResponse& lease, v1::RunState outcome,
                const std::map<std::string, double>& final, const std::string& error,
                const std::string& checkpoint) {
    v1::CompleteRunRequest req;
    req.set_run_id(lease.run_id());
    req.set_lease_epoch(lease.lease_epoch());
    req.set_outcome(outcome);
    req.mutable_final()->insert(final.begin(), final.end());
    req.set_error(error);
    req.set_checkpoint(checkpoint);
    Backoff backoff;
    const auto give_up = SteadyClock::now() + std::chrono::seconds(3 * std::max<int64_t>(1, lease.lease_seconds()));
    while (true) {
      grpc::ClientContext ctx;
      calls_.Prepare(&ctx, milliseconds(10000));
      v1::CompleteRunResponse resp;
      grpc::Status s = stub_->CompleteRun(&ctx, req, &resp);
      if (s.ok()) {
        Log("run ", lease.run_id(), ": ", v1::RunState_Name(outcome),
            (error.empty() ? std::string() : " (" + error + ")"));
        return;
      }
      if (!Retryable(s) || SteadyClock::now() > give_up || g_stop) {
        Log("run ", lease.run_id(), ": completion not recorded (", Describe(s), ")");
        return;
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
