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
#include <vector>

#include "common/tls_files.h"
#include "server/auth.h"
#include "server/coordinator_service.h"
#include "server/fault_injection.h"
#include "server/dashboard_routes.h"
#include "server/http_server.h"
#include "server/metrics.h"
#include "server/live_runs.h"
#include "server/server_credentials.h"
#include "server/store.h"
#include "server/worker_service.h"

namespace {

struct MadamdOptions {
  std::string listen = "127.0.0.1:7070";
  std::string http = "127.0.0.1:7071";  // dashboard, /metrics, /api/v1; empty: none
  std::string db = "madam.db";
  int64_t lease_seconds = 30;
  double metric_calls_per_second = 2000;
  int64_t max_leases_per_worker = 0;  // 0: one per device the worker registered
  std::string checkpoint_dir;
  bool insecure = false;       // gRPC beyond loopback without tokens
  bool http_insecure = false;  // HTTP beyond loopback without tokens
  std::vector<std::string> http_allowed_hosts;
  std::string inject_store_fault_file;  // tests only
  // Security (ARCHITECTURE.md section 9); empty: off.
  std::string auth_tokens;
  std::string tls_cert;
  std::string tls_key;
  std::string tls_client_ca;
  std::string inject_lost_responses;  // tests only: "Method=N,..."
};

// Limits (ARCHITECTURE.md section 9). gRPC answers a larger request with
// RESOURCE_EXHAUSTED before any handler runs.
constexpr int kMaxReceiveMessageBytes = 16 << 20;
// One ResourceQuota for the whole server: transport buffers of all
// connections share this much memory, and at most this many threads serve
// sync calls (a call beyond that gets RESOURCE_EXHAUSTED).
constexpr size_t kServerMemoryQuotaBytes = size_t{512} << 20;
constexpr int kServerMaxThreads = 256;
// Concurrent calls per connection; a worker needs a handful.
constexpr int kMaxConcurrentStreams = 64;

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
      if (auto purged = store_->PurgeRerunMetrics(); !purged.ok()) {
        spdlog::warn("deleting the old metrics of rerun runs failed: {}", purged.status().ToString());
      }
      if (++ticks_ % kPruneEveryTicks == 0) {
        auto pruned = store_->PruneIdleWorkers(kWorkerIdleMillis);
        if (!pruned.ok()) {
          spdlog::warn("pruning idle workers failed: {}", pruned.status().ToString());
        } else if (*pruned > 0) {
          spdlog::info("forgot {} worker(s) not seen for a day", *pruned);
        }
      }
      // Forget live entries of runs that are no longer running.
      // One read for the whole fleet, not one per run.
      if (auto running = store_->RunningRunIds(); running.ok()) {
        for (const auto& [run_id, unused] : live_->Snapshot()) {
          if (running->count(run_id) == 0) live_->Remove(run_id);
        }
      }
      lock.lock();
    }
  }

  // Workers not seen for a day, holding no lease, are forgotten (section 9),
  // checked every 100 ticks.
  static constexpr int64_t kWorkerIdleMillis = int64_t{24} * 3600 * 1000;
  static constexpr int64_t kPruneEveryTicks = 100;

  madam::server::Store* store_;
  madam::server::LiveRunTable* live_;
  std::chrono::milliseconds period_;
  int64_t ticks_ = 0;  // reaper thread only
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
  CLI::Option* http_flag = app.add_option("--http", opts.http,
                 "HTTP address for the dashboard, /metrics and /api/v1 (port 0 picks a free one; "
                 "empty: no HTTP)")
      ->capture_default_str();
  app.add_option("--db", opts.db, "SQLite database file")->capture_default_str();
  app.add_option("--lease-seconds", opts.lease_seconds, "lease duration; workers heartbeat every third")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{86400}));
  app.add_option("--metric-calls-per-second", opts.metric_calls_per_second,
                 "ReportMetrics calls per second the whole fleet should stay under: workers are "
                 "advised to space their uploads to share it (0: no such advice)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1e6));
  app.add_option("--max-leases-per-worker", opts.max_leases_per_worker,
                 "RUNNING leases one worker may hold (0: one per device it registered)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{1024}));
  app.add_option("--checkpoint-dir", opts.checkpoint_dir,
                 "directory workers write run checkpoints under (shared storage for resume "
                 "across machines); empty: each worker's own");
  app.add_flag("--insecure", opts.insecure,
               "allow gRPC beyond loopback without --auth-tokens (anyone who can reach the "
               "port may submit, cancel and take runs); HTTP has --http-insecure");
  app.add_flag("--http-insecure", opts.http_insecure,
               "allow HTTP (dashboard, /metrics, /api/v1) beyond loopback without --auth-tokens");
  app.add_option("--http-allowed-hosts", opts.http_allowed_hosts,
                 "Host header values HTTP accepts besides loopback names and the --http host "
                 "(comma-separated; '*' accepts any): the DNS-rebinding guard")
      ->delimiter(',');
  app.add_option("--auth-tokens", opts.auth_tokens,
                 "file of `TOKEN ROLE` lines (roles admin, reader, worker; # comments); must not "
                 "be readable by group or others. Every call then needs `authorization: Bearer "
                 "TOKEN`");
  app.add_option("--tls-cert", opts.tls_cert, "PEM certificate chain: serve TLS (needs --tls-key)");
  app.add_option("--tls-key", opts.tls_key, "PEM private key for --tls-cert");
  app.add_option("--tls-client-ca", opts.tls_client_ca,
                 "PEM CA bundle: require client certificates signed by it (mutual TLS)");
  // Hidden: fault injection for the fault-tolerance tests.
  app.add_option("--inject-lost-responses", opts.inject_lost_responses)->group("");
  app.add_option("--inject-store-fault-file", opts.inject_store_fault_file)->group("");
  CLI11_PARSE(app, argc, argv);

  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ madamd: %v");
  if (!IsLoopback(opts.listen) && !opts.insecure && opts.auth_tokens.empty()) {
    std::fprintf(stderr,
                 "madamd: refusing to listen on %s beyond loopback without credentials; pass "
                 "--auth-tokens FILE (and --tls-cert/--tls-key), or --insecure to do it anyway\n",
                 opts.listen.c_str());
    return 2;
  }
  madam::server::ServerSecurityOptions security;
  if (!opts.auth_tokens.empty()) {
    auto tokens = madam::server::TokenTable::Load(opts.auth_tokens);
    if (!tokens.ok()) {
      std::fprintf(stderr, "madamd: %s\n", tokens.status().message().c_str());
      return 2;
    }
    security.tokens = std::make_shared<const madam::server::TokenTable>(std::move(*tokens));
  }
  if (auto pem = madam::LoadTlsPem("--tls-client-ca", opts.tls_client_ca, opts.tls_cert, opts.tls_key);
      !pem.ok()) {
    std::fprintf(stderr, "madamd: %s\n", pem.status().message().c_str());
    return 2;
  } else {
    security.tls = std::move(*pem);
  }
  auto credentials = madam::server::MakeServerCredentials(security);
  if (!credentials.ok()) {
    std::fprintf(stderr, "madamd: %s\n", credentials.status().message().c_str());
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

  // Observability (ARCHITECTURE.md section 8): the registry exists before
  // the Store and the gRPC server, which report into it, and outlives both.
  // HTTP beyond loopback needs tokens or its own --http-insecure (section 9).
  if (!opts.http.empty() && !IsLoopback(opts.http) && !opts.http_insecure && !security.tokens) {
    std::fprintf(stderr,
                 "madamd: refusing to serve HTTP on %s beyond loopback without credentials; pass "
                 "--auth-tokens FILE (HTTP then needs a reader token), or --http-insecure to do "
                 "it anyway\n",
                 opts.http.c_str());
    return 2;
  }
  madam::server::CoordinatorMetricsOptions metrics_options;
  metrics_options.worker_connected_window = std::chrono::seconds(std::max<int64_t>(opts.lease_seconds, 5));
  madam::server::CoordinatorMetrics metrics(metrics_options);

  madam::server::StoreOptions store_options;
  store_options.path = opts.db;
  store_options.max_leases_per_worker = opts.max_leases_per_worker;
  store_options.fault_file = opts.inject_store_fault_file;
  if (!opts.inject_store_fault_file.empty()) {
    spdlog::warn("fault injection: store writes fail while {} exists", opts.inject_store_fault_file);
  }
  store_options.on_transaction = [&metrics](double seconds) { metrics.ObserveStoreTransaction(seconds); };
  auto store = madam::server::Store::Open(store_options);
  if (!store.ok()) {
    std::fprintf(stderr, "madamd: cannot open database %s: %s\n", opts.db.c_str(),
                 store.status().ToString().c_str());
    return 1;
  }
  // Restart grace (section 5): workers that could not reach this process
  // while it was down get one lease period from now to come back.
  if (auto extended = (*store)->ExtendRunningLeases(opts.lease_seconds); !extended.ok()) {
    spdlog::warn("could not extend running leases: {}", extended.status().ToString());
  } else if (*extended > 0) {
    spdlog::info("extended {} running lease(s) by one lease period ({} s)", *extended, opts.lease_seconds);
  }
  madam::server::LiveRunTable live;
  madam::server::CoordinatorService coordinator(store->get(), &live, madam::SweepLimits{});
  madam::server::WorkerServiceOptions worker_options;
  worker_options.lease_seconds = opts.lease_seconds;
  worker_options.checkpoint_dir = opts.checkpoint_dir;
  worker_options.metric_calls_per_second = opts.metric_calls_per_second;
  madam::server::WorkerService worker(store->get(), &live, worker_options);

  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(opts.listen, *credentials, &port);
  builder.SetMaxReceiveMessageSize(kMaxReceiveMessageBytes);
  builder.SetMaxSendMessageSize(64 << 20);
  // Keepalive: find dead peers within a minute; let clients ping while idle.
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 60000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 20000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  // A client pinging more often than every 10 s gets two strikes, then GOAWAY.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 2);
  // Connections that never finish the (TLS) handshake are dropped.
  builder.AddChannelArgument(GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, kMaxConcurrentStreams);
  // A connection with no call for 15 minutes is closed (section 9): a
  // working worker calls every few seconds and a watch is a call, so only
  // abandoned connections go; a client reconnects on its next call.
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_IDLE_MS, 15 * 60 * 1000);
  // gRPC sets SO_REUSEPORT by default, which lets a second process bind the
  // same port and silently take half the connections: refuse to share.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  grpc::ResourceQuota quota("madamd");
  quota.Resize(kServerMemoryQuotaBytes);
  quota.SetMaxThreads(kServerMaxThreads);
  builder.SetResourceQuota(quota);
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  // RPC latency histograms and fenced-call counts (section 8). One
  // SetInterceptorCreators call below takes every interceptor: a second call
  // would replace the first.
  interceptors.push_back(metrics.NewRpcInterceptorFactory());
  if (!opts.inject_lost_responses.empty()) {
    auto injector = madam::server::LostResponseInjector::Parse(opts.inject_lost_responses);
    if (!injector.ok()) {
      std::fprintf(stderr, "madamd: %s\n", injector.status().message().c_str());
      return 2;
    }
    spdlog::warn("fault injection: losing responses {}", opts.inject_lost_responses);
    interceptors.push_back(std::move(*injector));
  }
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  builder.RegisterService(&coordinator);
  builder.RegisterService(&worker);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    std::fprintf(stderr, "madamd: cannot listen on %s (address in use or invalid%s?)\n",
                 opts.listen.c_str(),
                 security.tls.cert.empty() ? "" : ", or --tls-cert/--tls-key not a matching pair");
    return 1;
  }
  const std::string host = opts.listen.substr(0, opts.listen.rfind(':'));
  // Tests and scripts read this line to learn the port when --listen ends in :0.
  std::printf("madamd: listening on %s:%d (db %s, lease %llds)\n", host.c_str(), port,
              opts.db.c_str(), static_cast<long long>(opts.lease_seconds));
  std::fflush(stdout);
  spdlog::info("auth: {}; transport: {}",
               security.tokens ? std::to_string(security.tokens->size()) + " token(s) from " + opts.auth_tokens
                               : std::string("off (no --auth-tokens)"),
               security.tls.cert.empty() ? "plaintext"
                                         : security.tls.ca.empty() ? "TLS" : "mutual TLS");

  // HTTP: dashboard, /metrics and the JSON API on their own threads.
  madam::server::DashboardRoutes routes(store->get(), &live, &metrics);
  std::unique_ptr<madam::server::HttpServer> http;
  if (!opts.http.empty()) {
    madam::server::HttpServerOptions http_options;
    http_options.address = opts.http;
    http_options.allowed_hosts = opts.http_allowed_hosts;
    if (security.tokens) {
      // Section 9: with --auth-tokens, every HTTP route needs a reader (or
      // admin) token.
      http_options.authorize = [tokens = security.tokens](std::string_view token) {
        auto role = tokens->Find(token);
        return role.has_value() && madam::server::RolePermits(*role, madam::server::Role::kReader);
      };
    }
    auto started = madam::server::HttpServer::Start(
        http_options, [&routes](const madam::server::HttpRequest& r) { return routes.Handle(r); });
    if (started.ok()) {
      http = std::move(*started);
      // Tests and scripts read this line to learn the port when --http ends in :0.
      std::printf("madamd: http on %s:%d\n", opts.http.substr(0, opts.http.rfind(':')).c_str(),
                  http->port());
      std::fflush(stdout);
    } else if (http_flag->count() > 0) {
      std::fprintf(stderr, "madamd: cannot serve HTTP on %s: %s\n", opts.http.c_str(),
                   started.status().ToString().c_str());
      server->Shutdown();
      return 1;
    } else {
      // The default port is taken (often by another madamd on this machine):
      // the coordinator still serves gRPC; say how to get HTTP back.
      std::fprintf(stderr,
                   "madamd: warning: no dashboard or /metrics: cannot serve HTTP on the default %s "
                   "(%s); pass --http HOST:PORT (port 0 picks a free one)\n",
                   opts.http.c_str(), started.status().ToString().c_str());
    }
  }

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
  http.reset();
  reaper.reset();
  spdlog::info("stopped");
  return 0;
}
