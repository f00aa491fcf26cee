#include "worker/serve_command.h"

#include "common/devices.h"

#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "common/recipe.h"
#include "common/run_config.h"
#include "common/tls_files.h"
#include "madam/v1/worker.grpc.pb.h"
#include "proto/param_convert.h"
#include "worker/fid.h"
#include "worker/serve/clock.h"
#include "worker/serve/coordinator_client.h"
#include "worker/serve/lease_keeper.h"
#include "worker/serve/metric_uploader.h"
#include "worker/trainer.h"

namespace madam::worker {
namespace {

namespace fs = std::filesystem;
namespace v1 = ::madam::v1;
using serve::Backoff;
using serve::Clock;
using serve::CoordinatorClient;
using serve::Describe;
using serve::LeaseGone;
using serve::LeaseKeeper;
using serve::LeaseRef;
using serve::LeaseState;
using serve::Log;
using serve::MetricUploader;
using serve::Retryable;
using serve::StopFlag;
using serve::WrittenCheckpoints;
using std::chrono::milliseconds;

// The process's stop flag, for the SIGINT/SIGTERM handler (set by RunServe
// before the handler is installed). The handler only stores to lock-free
// atomics: async-signal-safe.
std::atomic<StopFlag*> g_signal_stop{nullptr};
static_assert(std::atomic<StopFlag*>::is_always_lock_free);

extern "C" void OnStopSignal(int) {
  StopFlag* stop = g_signal_stop.load();
  if (stop != nullptr) stop->Stop();
}
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
  // `clock` and `stop` are not owned; everything that waits uses them.
  Server(const ServeOptions& options, Trainer* trainer,
         std::shared_ptr<grpc::ChannelCredentials> credentials, Clock* clock, const StopFlag* stop)
      : options_(options), trainer_(trainer), clock_(clock), stop_(stop) {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(64 << 20);
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 200);
    // Reconnect within a second of madamd's return: its restart grace is one
    // lease period (ARCHITECTURE.md section 5).
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 30000);
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
    channel_ = grpc::CreateCustomChannel(options.coordinator, std::move(credentials), args);
    stub_ = v1::WorkerApi::NewStub(channel_);
    client_ = std::make_unique<CoordinatorClient>(stub_.get(), options.token);
  }

  int Serve() {
    const std::string device = trainer_->DeviceName();
    std::string name = options_.name;
    if (name.empty()) {
      char host[256] = {0};
      gethostname(host, sizeof host - 1);
      name = std::string(host) + ":" + device;
    }
    Backoff backoff(clock_, stop_);
    bool reported_unreachable = false;
    int runs_done = 0;
    auto idle_since = clock_->Now();
    while (!stop_->stopped()) {
      if (worker_id_.empty()) {
        v1::RegisterWorkerRequest req;
        req.set_name(name);
        req.set_device(device);
        req.set_info("madam-worker pid " + std::to_string(getpid()));
        v1::RegisterWorkerResponse resp;
        grpc::Status s = client_->RegisterWorker(req, &resp);
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
      grpc::Status s = client_->AcquireRun(req, &lease);
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
            std::chrono::duration<double>(clock_->Now() - idle_since).count() >
                options_.idle_exit_seconds) {
          Log("no run for ", std::to_string(options_.idle_exit_seconds), " s; exiting");
          break;
        }
        stop_->WaitFor(*clock_, milliseconds(std::clamp<int64_t>(lease.retry_after_ms(), 50, 10000)));
        continue;
      }
      RunLease(lease);
      ++runs_done;
      idle_since = clock_->Now();
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

    LeaseState shared;
    WrittenCheckpoints written;
    RunSummary summary;
    std::string upload_failure;
    {
      MetricUploader uploader(client_.get(), RefOf(lease), &shared.lease_lost, &shared.step,
                              &shared.progress, clock_, stop_);
      LeaseKeeper keeper(client_.get(), RefOf(lease), std::max<int64_t>(1, lease.lease_seconds()),
                         options_.coordinator_grace_seconds,
                         [&] { return written.Reportable(uploader.FlushedEpoch()); }, &shared,
                         clock_);
      RunHooks hooks;
      hooks.sink = &uploader;
      hooks.checkpoint_dir = dir;
      // A GAN's sample grids stay beside its checkpoints (and survive the
      // clean-up of a finished run, which removes checkpoint files only).
      hooks.output_dir = dir;
      hooks.resume_candidates = candidates;
      hooks.attempt = lease.attempt();
      // A data-parallel rank that hangs ends the attempt within about a
      // lease period (at least 10 s: ranks wait for one another at every
      // step, and a loaded machine must not trip that).
      hooks.collective_timeout_seconds =
          std::min(options_.collective_timeout_seconds,
                   std::max(10.0, static_cast<double>(lease.lease_seconds())));
      hooks.should_stop = [&] {
        return shared.lease_lost || shared.cancelled || stop_->stopped() || uploader.failed();
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
    serve::SetLease(RefOf(lease), &req);
    req.set_outcome(outcome);
    req.mutable_final()->insert(final.begin(), final.end());
    req.set_error(error.substr(0, 4096));
    req.set_checkpoint(checkpoint);
    Backoff backoff(clock_, stop_);
    const auto give_up =
        clock_->Now() +
        std::chrono::milliseconds(static_cast<int64_t>(
            1000 * std::max<double>(options_.coordinator_grace_seconds,
                                    3.0 * static_cast<double>(std::max<int64_t>(1, lease.lease_seconds())))));
    while (true) {
      v1::CompleteRunResponse resp;
      grpc::Status s = client_->CompleteRun(req, &resp);
      if (s.ok()) {
        Log("run ", lease.run_id(), ": ", v1::RunState_Name(outcome),
            (error.empty() ? std::string() : " (" + error + ")"));
        return true;
      }
      if (!Retryable(s) || clock_->Now() > give_up || stop_->stopped()) {
        Log("run ", lease.run_id(), ": completion not recorded (", Describe(s), ")");
        return false;
      }
      backoff.Wait();
    }
  }

  const ServeOptions& options_;
  Trainer* trainer_;
  Clock* clock_;
  const StopFlag* stop_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::WorkerApi::Stub> stub_;
  std::unique_ptr<CoordinatorClient> client_;
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
  app.add_option("--device", options.device,
                 "auto | cpu | cuda:N | cuda:0,cuda:1,... | all: the devices registered with madamd "
                 "(a run with devices N takes N of them)")
      ->capture_default_str();
  app.add_option("--devices", options.device, "the same as --device (--devices all)");
  app.add_option("--cpu-ranks", options.cpu_ranks,
                 "register this many CPU devices, for data-parallel runs on CPU (tests)")
      ->check(CLI::Range(0, 64));
  app.add_option("--collective-timeout", options.collective_timeout_seconds,
                 "seconds a data-parallel collective may wait before the attempt fails")
      ->check(CLI::Range(1.0, 86400.0))
      ->capture_default_str();
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
  // Static: the handler may still run while the process exits.
  static StopFlag stop;
  static serve::RealClock clock;
  g_signal_stop.store(&stop);
  struct sigaction action {};
  action.sa_handler = OnStopSignal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);

  WorkerOptions worker_options;
  worker_options.device = options.device;
  worker_options.cpu_ranks = options.cpu_ranks;
  worker_options.collective_timeout_seconds = options.collective_timeout_seconds;
  if (auto devices = ResolveWorkerDevices(options.device, options.cpu_ranks, 0); !devices.ok()) {
    std::fprintf(stderr, "madam-worker: --device %s: %s\n", options.device.c_str(),
                 devices.status().message().c_str());
    return 2;
  }
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
  Server server(options, &trainer, std::move(credentials), &clock, &stop);
  return server.Serve();
}

}  // namespace madam::worker
