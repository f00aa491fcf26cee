// madamd: the coordinator. Parses flags and wires the Store, the gRPC
// services and the lease reaper together (ARCHITECTURE.md section 3).
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>

#include "server/coordinator_service.h"
#include "server/live_runs.h"
#include "server/store.h"
#include "server/worker_service.h"

namespace {

struct MadamdOptions {
  std::string listen = "127.0.0.1:7070";
  std::string db = "madam.db";
  int64_t lease_seconds = 30;
  std::string checkpoint_dir;
  bool insecure = false;
};

// True for 127.0.0.0/8, localhost and [::1] listen addresses.
bool IsLoopback(const std::string& address) {
  const auto colon = address.rfind(':');
  std::string host = colon == std::string::npos ? address : address.substr(0, colon);
  if (!host.empty() && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

// Reclaims overdue leases every `period` until stopped.
class LeaseReaper {
 public:
  LeaseReaper(madam::server::Store* store, madam::server::LiveRunTable* live,
              std::chrono::milliseconds period)
      : store_(store), live_(live), period_(period), thread_([this] { Loop(); }) {}
  ~LeaseReaper() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

 private:
  void Loop() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!cv_.wait_for(lock, period_, [this] { return stop_; })) {
      lock.unlock();
      auto reclaimed = store_->ExpireLeases();
      if (!reclaimed.ok()) {
        spdlog::warn("lease expiry failed: {}", reclaimed.status().ToString());
      } else if (*reclaimed > 0) {
        spdlog::info("reclaimed {} expired lease(s)", *reclaimed);
      }
      // Forget live entries of runs that are no longer running.
      for (const auto& [run_id, unused] : live_->Snapshot()) {
        auto run = store_->GetRun(run_id);
        if (!run.ok() || run->state != madam::server::RunState::kRunning) live_->Remove(run_id);
      }
      lock.lock();
    }
  }

  madam::server::Store* store_;
  madam::server::LiveRunTable* live_;
  std::chrono::milliseconds period_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;  // guarded by mu_
  std::thread thread_;
};

}  // namespace

int main(int argc, char** argv) {
  MadamdOptions opts;
  CLI::App app{"madamd: the madam coordinator (sweeps, leases, metrics)"};
  app.add_option("--listen", opts.listen, "gRPC address host:port (port 0 picks a free one)")
      ->capture_default_str();
  app.add_option("--db", opts.db, "SQLite database file")->capture_default_str();
  app.add_option("--lease-seconds", opts.lease_seconds, "lease duration; workers heartbeat every third")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{86400}));
  app.add_option("--checkpoint-dir", opts.checkpoint_dir,
                 "directory workers write run checkpoints under (shared storage for resume "
                 "across machines); empty: each worker's own");
  app.add_flag("--insecure", opts.insecure,
               "allow listening beyond loopback without credentials");
  CLI11_PARSE(app, argc, argv);

  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ madamd: %v");
  if (!IsLoopback(opts.listen) && !opts.insecure) {
    std::fprintf(stderr,
                 "madamd: refusing to listen on %s beyond loopback without credentials; pass "
                 "--insecure to do it anyway\n",
                 opts.listen.c_str());
    return 2;
  }
  if (!opts.checkpoint_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(opts.checkpoint_dir, ec);
    if (ec) {
      std::fprintf(stderr, "madamd: cannot create --checkpoint-dir %s: %s\n",
                   opts.checkpoint_dir.c_str(), ec.message().c_str());
      return 1;
    }
    opts.checkpoint_dir = std::filesystem::absolute(opts.checkpoint_dir).string();
  }

  // Signals are taken by one thread (sigwait), so block them everywhere first.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  madam::server::StoreOptions store_options;
  store_options.path = opts.db;
  auto store = madam::server::Store::Open(store_options);
  if (!store.ok()) {
    std::fprintf(stderr, "madamd: cannot open database %s: %s\n", opts.db.c_str(),
                 store.status().ToString().c_str());
    return 1;
  }
  madam::server::LiveRunTable live;
  madam::server::CoordinatorService coordinator(store->get(), &live, madam::SweepLimits{});
  madam::server::WorkerServiceOptions worker_options;
  worker_options.lease_seconds = opts.lease_seconds;
  worker_options.checkpoint_dir = opts.checkpoint_dir;
  madam::server::WorkerService worker(store->get(), &live, worker_options);

  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(opts.listen, grpc::InsecureServerCredentials(), &port);
  builder.SetMaxReceiveMessageSize(16 << 20);
  builder.SetMaxSendMessageSize(64 << 20);
  // Keepalive: find dead peers within a minute; let clients ping while idle.
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 60000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 20000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.RegisterService(&coordinator);
  builder.RegisterService(&worker);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    std::fprintf(stderr, "madamd: cannot listen on %s (address in use or invalid?)\n",
                 opts.listen.c_str());
    return 1;
  }
  const std::string host = opts.listen.substr(0, opts.listen.rfind(':'));
  // Tests and scripts read this line to learn the port when --listen ends in :0.
  std::printf("madamd: listening on %s:%d (db %s, lease %llds)\n", host.c_str(), port,
              opts.db.c_str(), static_cast<long long>(opts.lease_seconds));
  std::fflush(stdout);

  const auto reap_period =
      std::chrono::milliseconds(std::clamp<int64_t>(opts.lease_seconds * 1000 / 5, 200, 2000));
  auto reaper = std::make_unique<LeaseReaper>(store->get(), &live, reap_period);

  std::thread signal_thread([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    spdlog::info("signal {}: shutting down", sig);
    coordinator.Shutdown();
    server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  });
  server->Wait();
  signal_thread.join();
  reaper.reset();
  spdlog::info("stopped");
  return 0;
}
