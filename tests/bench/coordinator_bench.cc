// Coordinator benchmark: a real madamd on loopback, driven over gRPC by
// simulated workers (threads). Prints
//   ingestion   metric points/s stored, with every acknowledged point then
//               counted in the SQLite file;
//   scheduling  time to submit and expand a 10,000-run sweep, and lease
//               grants/s;
//   trials      full trials/s (acquire, one report of 10 intermediate values,
//               complete), the unit compared with Optuna by
//               coordinator_vs_optuna.sh.
// A program, not a timed test.
//
//   load        (--only load) W workers each send a batch every 100 ms for S
//               seconds; checks no errors, madamd's RSS flat within 10% after
//               warm-up and ReportMetrics p99 latency under 50 ms, and exits 1
//               when one fails (ARCHITECTURE.md section 5).
//   coordinator_bench MADAMD [--workers N] [--seconds S] [--batch B]
//                     [--runs R] [--only ingest|schedule|trials|load|fleet]
//                     [--points-per-second P] [--quick]
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <condition_variable>
#include <queue>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "madam/v1/coordinator.grpc.pb.h"
#include "madam/v1/worker.grpc.pb.h"
#include "tests/support/child_process.h"
#include "worker/serve/metric_uploader.h"

namespace {

namespace v1 = madam::v1;
using Clock = std::chrono::steady_clock;

struct Options {
  std::string madamd;
  int workers = 8;
  double seconds = 5;
  int batch = 1000;
  int runs = 10000;
  std::string only;
  // fleet: points one simulated run produces per second. The trainer logs
  // about 5 points every 10 steps, so 25/s is a GPU run at 50 steps/s; a
  // CPU Fashion-MNIST run logs ~250/s.
  double points_per_second = 25;
};

// Every call has a deadline, so a stalled coordinator shows up as errors
// rather than a hung benchmark.
void SetDeadline(grpc::ClientContext* ctx) {
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
}

// The phase being measured, for the watchdog's message.
std::atomic<const char*> g_phase{"start"};
std::atomic<pid_t> g_madamd_pid{0};

// Ends the benchmark at once with a message, killing madamd first: it
// shares the test runner's output, which would stay open otherwise.
[[noreturn]] void Fatal(const std::string& message) {
  std::fprintf(stderr, "coordinator_bench: %s\n", message.c_str());
  if (g_madamd_pid > 0) kill(g_madamd_pid, SIGKILL);
  std::_Exit(1);
}

// Ends the benchmark (and its madamd, which would otherwise keep the test
// runner's output open) if it runs far past its expected time.
void StartWatchdog(double limit_seconds) {
  std::thread([limit_seconds] {
    std::this_thread::sleep_for(std::chrono::duration<double>(limit_seconds));
    std::fprintf(stderr, "coordinator_bench: still running after %.0f s, in phase %s; giving up\n",
                 limit_seconds, g_phase.load());
    if (g_madamd_pid > 0) kill(g_madamd_pid, SIGKILL);
    std::_Exit(3);
  }).detach();
}

double Since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::string GridSweep(int runs, const std::string& name) {
  return "name: " + name +
         "\ntask: synthetic-mlp\nparams: {optimizer: madam}\ngrid:\n"
         "  lr: {linear: {from: 0.001, to: 0.1, count: " +
         std::to_string(runs) + "}}\n";
}

std::string Submit(v1::Coordinator::Stub* client, const std::string& text, double* seconds) {
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  v1::SubmitSweepRequest req;
  req.set_file_name("bench.yaml");
  req.set_spec_text(text);
  v1::SubmitSweepResponse resp;
  const auto start = Clock::now();
  grpc::Status s = client->SubmitSweep(&ctx, req, &resp);
  if (seconds) *seconds = Since(start);
  if (!s.ok()) Fatal("submit failed: " + s.error_message());
  return resp.sweep_id();
}

// Transient refusals (a connection still coming up, a momentarily full
// thread quota) are retried with a short backoff, as a real worker does.
bool Transient(const grpc::Status& s) {
  return s.error_code() == grpc::StatusCode::UNAVAILABLE ||
         s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED;
}

std::string Register(v1::WorkerApi::Stub* stub, int i) {
  v1::RegisterWorkerRequest req;
  req.set_name("bench-" + std::to_string(i));
  req.set_device("cpu");
  grpc::Status s;
  for (int attempt = 0; attempt < 20; ++attempt) {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    v1::RegisterWorkerResponse resp;
    s = stub->RegisterWorker(&ctx, req, &resp);
    if (s.ok()) return resp.worker_id();
    if (!Transient(s)) break;
    std::fprintf(stderr, "coordinator_bench: RegisterWorker refused (%d %s); retrying\n",
                 static_cast<int>(s.error_code()), s.error_message().c_str());
    std::this_thread::sleep_for(std::chrono::milliseconds(50 * (attempt + 1)));
  }
  Fatal("RegisterWorker failed: " + std::to_string(s.error_code()) + " " + s.error_message());
}

bool Acquire(v1::WorkerApi::Stub* stub, const std::string& worker, v1::AcquireRunResponse* lease) {
  v1::AcquireRunRequest req;
  req.set_worker_id(worker);
  req.set_device("cpu");
  for (int attempt = 0; attempt < 20; ++attempt) {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    grpc::Status s = stub->AcquireRun(&ctx, req, lease);
    if (s.ok()) return lease->has_run();
    if (!Transient(s)) {
      std::fprintf(stderr, "coordinator_bench: AcquireRun failed (%d %s)\n",
                   static_cast<int>(s.error_code()), s.error_message().c_str());
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50 * (attempt + 1)));
  }
  return false;
}

int64_t CountMetricRows(const std::string& db_path) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) return -1;
  sqlite3_stmt* stmt = nullptr;
  int64_t n = -1;
  if (sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM metrics", -1, &stmt, nullptr) == SQLITE_OK &&
      sqlite3_step(stmt) == SQLITE_ROW) {
    n = sqlite3_column_int64(stmt, 0);
  }
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return n;
}

std::vector<std::shared_ptr<grpc::Channel>> Channels(const std::string& address, int n) {
  std::vector<std::shared_ptr<grpc::Channel>> out;
  for (int i = 0; i < n; ++i) {
    grpc::ChannelArguments args;
    args.SetInt("madam.bench.channel", i);  // a distinct channel (connection) per worker
    out.push_back(grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args));
  }
  return out;
}

void Ingest(const Options& o, const std::string& address, const std::string& db_path,
            v1::Coordinator::Stub* client) {
  Submit(client, GridSweep(std::max(o.workers, 2), "ingest"), nullptr);
  auto channels = Channels(address, o.workers);
  std::atomic<int64_t> acked{0}, errors{0};
  std::vector<std::thread> threads;
  const auto start = Clock::now();
  for (int w = 0; w < o.workers; ++w) {
    threads.emplace_back([&, w] {
      auto stub = v1::WorkerApi::NewStub(channels[w]);
      const std::string id = Register(stub.get(), w);
      v1::AcquireRunResponse lease;
      if (!Acquire(stub.get(), id, &lease)) {
        ++errors;
        return;
      }
      v1::ReportMetricsRequest req;
      req.set_run_id(lease.run_id());
      req.set_lease_epoch(lease.lease_epoch());
      req.set_worker_id(id);
      req.set_lease_secret(lease.lease_secret());
      int64_t step = 0;
      while (Since(start) < o.seconds) {
        req.clear_points();
        for (int i = 0; i < o.batch; ++i, ++step) {
          auto* p = req.add_points();
          p->set_name("train/loss");
          p->set_step(step);
          p->set_value(1.0 / static_cast<double>(step + 1));
          p->set_time(1.7e9);
        }
        grpc::ClientContext ctx;
        SetDeadline(&ctx);
        v1::ReportMetricsResponse resp;
        if (stub->ReportMetrics(&ctx, req, &resp).ok()) {
          acked += o.batch;
        } else {
          ++errors;
        }
        // Heartbeat now and then, as a real worker does.
        if (step % (o.batch * 20) == 0) {
          grpc::ClientContext hctx;
          SetDeadline(&hctx);
          v1::HeartbeatRequest hb;
          hb.set_run_id(lease.run_id());
          hb.set_lease_epoch(lease.lease_epoch());
          hb.set_worker_id(id);
          hb.set_lease_secret(lease.lease_secret());
          v1::HeartbeatResponse hresp;
          stub->Heartbeat(&hctx, hb, &hresp);
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  const double elapsed = Since(start);
  const int64_t rows = CountMetricRows(db_path);
  std::printf("ingestion: %d workers, batches of %d, %.1f s: %lld points acknowledged, %.0f points/s, "
              "%lld errors; rows in SQLite: %lld (%s)\n",
              o.workers, o.batch, elapsed, static_cast<long long>(acked.load()), acked / elapsed,
              static_cast<long long>(errors.load()), static_cast<long long>(rows),
              rows == acked ? "every acknowledged point stored" : "MISMATCH");
  std::printf("RESULT ingest_points_per_second %.0f\n", acked / elapsed);
  if (rows != acked) Fatal("acknowledged points missing from SQLite");
}

void Schedule(const Options& o, const std::string& address, v1::Coordinator::Stub* client) {
  double submit_seconds = 0;
  Submit(client, GridSweep(o.runs, "schedule"), &submit_seconds);
  std::printf("scheduling: submit + expand + store %d runs: %.3f s\n", o.runs, submit_seconds);
  std::printf("RESULT submit_seconds %.3f\n", submit_seconds);
  auto channels = Channels(address, o.workers);
  std::atomic<int64_t> grants{0};
  std::vector<std::thread> threads;
  const auto start = Clock::now();
  for (int w = 0; w < o.workers; ++w) {
    threads.emplace_back([&, w] {
      auto stub = v1::WorkerApi::NewStub(channels[w]);
      const std::string id = Register(stub.get(), 1000 + w);
      v1::AcquireRunResponse lease;
      while (Acquire(stub.get(), id, &lease)) {
        ++grants;
        lease.Clear();
      }
    });
  }
  for (auto& t : threads) t.join();
  const double elapsed = Since(start);
  std::printf("scheduling: %lld lease grants by %d workers in %.3f s: %.0f grants/s\n",
              static_cast<long long>(grants.load()), o.workers, elapsed, grants / elapsed);
  std::printf("RESULT grants_per_second %.0f\n", grants / elapsed);
}

// One trial = acquire, report 10 intermediate values, complete.
void Trials(const Options& o, const std::string& address, v1::Coordinator::Stub* client) {
  Submit(client, GridSweep(o.runs, "trials"), nullptr);
  auto channels = Channels(address, o.workers);
  std::atomic<int64_t> trials{0};
  std::vector<std::thread> threads;
  const auto start = Clock::now();
  for (int w = 0; w < o.workers; ++w) {
    threads.emplace_back([&, w] {
      auto stub = v1::WorkerApi::NewStub(channels[w]);
      const std::string id = Register(stub.get(), 2000 + w);
      v1::AcquireRunResponse lease;
      while (Acquire(stub.get(), id, &lease)) {
        v1::ReportMetricsRequest req;
        req.set_run_id(lease.run_id());
        req.set_lease_epoch(lease.lease_epoch());
        req.set_worker_id(id);
        req.set_lease_secret(lease.lease_secret());
        for (int step = 0; step < 10; ++step) {
          auto* p = req.add_points();
          p->set_name("test/error");
          p->set_step(step);
          p->set_value(10.0 - step);
          p->set_time(1.7e9);
        }
        grpc::ClientContext rctx;
        SetDeadline(&rctx);
        v1::ReportMetricsResponse rresp;
        stub->ReportMetrics(&rctx, req, &rresp);
        grpc::ClientContext cctx;
        SetDeadline(&cctx);
        v1::CompleteRunRequest done;
        done.set_run_id(lease.run_id());
        done.set_lease_epoch(lease.lease_epoch());
        done.set_worker_id(id);
        done.set_lease_secret(lease.lease_secret());
        done.set_outcome(v1::RUN_STATE_SUCCEEDED);
        (*done.mutable_final())["test/error"] = 1.0;
        v1::CompleteRunResponse cresp;
        if (stub->CompleteRun(&cctx, done, &cresp).ok()) ++trials;
        lease.Clear();
      }
    });
  }
  for (auto& t : threads) t.join();
  const double elapsed = Since(start);
  std::printf("trials: %lld trials (acquire, 10 values, complete) by %d workers in %.3f s: %.0f trials/s\n",
              static_cast<long long>(trials.load()), o.workers, elapsed, trials / elapsed);
  std::printf("RESULT trials_per_second %.0f\n", trials / elapsed);
}

int64_t RssKiB(pid_t pid) {
  std::FILE* f = std::fopen(("/proc/" + std::to_string(pid) + "/status").c_str(), "r");
  if (!f) return -1;
  char line[256];
  int64_t kib = -1;
  while (std::fgets(line, sizeof line, f)) {
    if (std::strncmp(line, "VmRSS:", 6) == 0) kib = std::atoll(line + 6);
  }
  std::fclose(f);
  return kib;
}

// Paced load: every worker sends one batch per interval, as real workers do.
bool Load(const Options& o, const std::string& address, pid_t madamd_pid,
          v1::Coordinator::Stub* client) {
  Submit(client, GridSweep(std::max(o.workers, 2), "load"), nullptr);
  auto channels = Channels(address, o.workers);
  std::atomic<int64_t> errors{0}, acked{0};
  std::vector<std::vector<double>> latencies(o.workers);
  std::vector<std::thread> threads;
  const auto start = Clock::now();
  const auto interval = std::chrono::milliseconds(100);
  for (int w = 0; w < o.workers; ++w) {
    threads.emplace_back([&, w] {
      auto stub = v1::WorkerApi::NewStub(channels[w]);
      const std::string id = Register(stub.get(), 3000 + w);
      v1::AcquireRunResponse lease;
      if (!Acquire(stub.get(), id, &lease)) {
        ++errors;
        return;
      }
      int64_t step = 0;
      auto next = Clock::now();
      while (Since(start) < o.seconds) {
        v1::ReportMetricsRequest req;
        req.set_run_id(lease.run_id());
        req.set_lease_epoch(lease.lease_epoch());
        req.set_worker_id(id);
        req.set_lease_secret(lease.lease_secret());
        for (int i = 0; i < o.batch; ++i, ++step) {
          auto* p = req.add_points();
          p->set_name(i % 2 ? "train/loss" : "optim/relative_update");
          p->set_step(step);
          p->set_value(1.0 / static_cast<double>(step + 1));
          p->set_time(1.7e9);
        }
        grpc::ClientContext ctx;
        SetDeadline(&ctx);
        v1::ReportMetricsResponse resp;
        const auto sent = Clock::now();
        if (stub->ReportMetrics(&ctx, req, &resp).ok()) {
          acked += o.batch;
          latencies[w].push_back(Since(sent));
        } else {
          ++errors;
        }
        next += interval;
        std::this_thread::sleep_until(next);
      }
    });
  }
  // Sample madamd's resident memory while the load runs.
  std::vector<std::pair<double, int64_t>> rss;
  while (Since(start) < o.seconds) {
    rss.emplace_back(Since(start), RssKiB(madamd_pid));
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  for (auto& t : threads) t.join();
  std::vector<double> all;
  for (const auto& l : latencies) all.insert(all.end(), l.begin(), l.end());
  std::sort(all.begin(), all.end());
  const double p50 = all.empty() ? 0 : all[all.size() / 2];
  const double p99 = all.empty() ? 0 : all[std::min(all.size() - 1, all.size() * 99 / 100)];
  // Warm-up: the first quarter (connections, caches). Flat: every later
  // sample within 10% of the first post-warm-up one.
  int64_t base = 0, peak = 0;
  for (const auto& [t, kib] : rss) {
    if (t < o.seconds / 4) continue;
    if (base == 0) base = kib;
    peak = std::max(peak, kib);
  }
  const double growth = base > 0 ? static_cast<double>(peak - base) / static_cast<double>(base) : 0;
  std::printf("load: %d workers x one batch of %d points per 100 ms for %.0f s: %lld points, "
              "%lld errors\n", o.workers, o.batch, o.seconds, static_cast<long long>(acked.load()),
              static_cast<long long>(errors.load()));
  std::printf("load: ReportMetrics latency p50 %.1f ms, p99 %.1f ms (%zu calls)\n", p50 * 1e3,
              p99 * 1e3, all.size());
  std::printf("load: madamd RSS after warm-up %lld KiB, peak %lld KiB (%+.1f%%)\n",
              static_cast<long long>(base), static_cast<long long>(peak), growth * 100);
  std::printf("RESULT load_p99_ms %.1f\nRESULT load_rss_growth_percent %.1f\n", p99 * 1e3,
              growth * 100);
  bool ok = true;
  if (errors > 0) { std::printf("FAIL: %lld errors\n", static_cast<long long>(errors.load())); ok = false; }
  if (p99 >= 0.050) { std::printf("FAIL: p99 %.1f ms >= 50 ms\n", p99 * 1e3); ok = false; }
  if (growth > 0.10) { std::printf("FAIL: RSS grew %.1f%% > 10%%\n", growth * 100); ok = false; }
  return ok;
}


// ---- fleet (--only fleet) ---------------------------------------------------
//
// W simulated workers at the real worker's cadence, every one on its own
// connection: each holds one lease, heartbeats every lease/3 (10 s at
// madamd's default 30 s lease) and uploads the points its training produced
// (--points-per-second each) on the worker's adaptive cadence
// (UploadCadence in worker/serve/metric_uploader.h): from 250 ms up to 5 s as
// madamd advises or calls slow down, a RESOURCE_EXHAUSTED batch kept and
// sent again. Calls are asynchronous (gRPC's callback API), driven by one
// timer thread, so 2,000 workers need no 2,000 threads. Reports heartbeat
// latency (the target: p99 under 1 s), ReportMetrics latency, points/s and
// errors, over the run after a warm-up of a quarter of it, and exits 1 when
// a heartbeat p99 reaches 1 s or any call fails.

struct FleetEvent {
  Clock::time_point at;
  int worker;
  bool heartbeat;  // else an upload
  bool operator>(const FleetEvent& o) const { return at > o.at; }
};

struct FleetWorker {
  std::unique_ptr<v1::WorkerApi::Stub> stub;
  std::string id;
  v1::AcquireRunResponse lease;
  madam::worker::serve::UploadCadence cadence;
  Clock::time_point produced_until;  // points up to here have been sent
  int64_t step = 0;
};

class Fleet {
 public:
  Fleet(const Options& o, std::vector<FleetWorker>* workers)
      : o_(o), workers_(*workers), warm_(Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                                              std::chrono::duration<double>(o.seconds / 4))) {}

  void Run() {
    const auto start = Clock::now();
    const auto end = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o_.seconds));
    std::mt19937 rng(7);
    // Real workers start at different moments: spread the first calls.
    for (int w = 0; w < static_cast<int>(workers_.size()); ++w) {
      workers_[w].produced_until = start;
      Push({start + Millis(rng() % 250), w, false});  // the cadence's floor
      Push({start + Millis(rng() % kHeartbeatMs), w, true});
    }
    std::unique_lock<std::mutex> lock(mu_);
    while (true) {
      if (events_.empty()) {
        cv_.wait_for(lock, std::chrono::milliseconds(50));
        if (Clock::now() >= end && in_flight_ == 0) break;
        continue;
      }
      const FleetEvent next = events_.top();
      if (next.at > Clock::now()) {
        cv_.wait_until(lock, std::min(next.at, end + std::chrono::seconds(30)));
        if (Clock::now() >= end && in_flight_ == 0) break;
        continue;
      }
      events_.pop();
      if (next.at >= end) {
        if (in_flight_ == 0) break;
        continue;
      }
      ++in_flight_;
      lock.unlock();
      if (next.heartbeat) {
        SendHeartbeat(next.worker);
      } else {
        SendUpload(next.worker);
      }
      lock.lock();
    }
    elapsed_ = Since(start);
  }

  bool Report() const {
    auto pct = [](std::vector<double> v, double q) {
      if (v.empty()) return 0.0;
      std::sort(v.begin(), v.end());
      return v[std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())))];
    };
    double interval_sum = 0;
    for (const FleetWorker& w : workers_) interval_sum += static_cast<double>(w.cadence.interval().count());
    const double measured = elapsed_ - o_.seconds / 4;
    std::printf("fleet: %zu workers, %.0f points/s each, %.0f s (stats after %.0f s of warm-up)\n",
                workers_.size(), o_.points_per_second, o_.seconds, o_.seconds / 4);
    std::printf("fleet: Heartbeat latency p50 %.1f ms, p99 %.1f ms, max %.1f ms (%zu calls)\n",
                pct(heartbeat_s_, 0.5) * 1e3, pct(heartbeat_s_, 0.99) * 1e3, pct(heartbeat_s_, 1.0) * 1e3,
                heartbeat_s_.size());
    std::printf("fleet: ReportMetrics latency p50 %.1f ms, p99 %.1f ms (%zu calls, %.0f calls/s)\n",
                pct(upload_s_, 0.5) * 1e3, pct(upload_s_, 0.99) * 1e3, upload_s_.size(),
                static_cast<double>(upload_s_.size()) / measured);
    std::printf("fleet: %.0f points/s stored; %lld batches deferred (RESOURCE_EXHAUSTED), %lld errors; "
                "mean upload interval at the end %.0f ms\n",
                static_cast<double>(points_) / measured, static_cast<long long>(deferred_),
                static_cast<long long>(errors_), interval_sum / static_cast<double>(workers_.size()));
    for (const auto& [code, n] : error_codes_) {
      std::printf("fleet:   error code %d: %lld\n", code, static_cast<long long>(n));
    }
    const double p99 = pct(heartbeat_s_, 0.99);
    std::printf("RESULT fleet_heartbeat_p99_ms %.1f\nRESULT fleet_points_per_second %.0f\n", p99 * 1e3,
                static_cast<double>(points_) / measured);
    bool ok = true;
    if (errors_ > 0) { std::printf("FAIL: %lld errors\n", static_cast<long long>(errors_)); ok = false; }
    if (p99 >= 1.0) { std::printf("FAIL: heartbeat p99 %.1f ms >= 1 s\n", p99 * 1e3); ok = false; }
    if (heartbeat_s_.empty()) { std::printf("FAIL: no heartbeat measured\n"); ok = false; }
    return ok;
  }

 private:
  static constexpr int64_t kHeartbeatMs = 10000;  // lease 30 s / 3, as the worker
  static constexpr int kNames = 8;

  static Clock::duration Millis(int64_t ms) { return std::chrono::milliseconds(ms); }

  void Push(FleetEvent e) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      events_.push(e);
    }
    cv_.notify_one();
  }

  void Done(FleetEvent next, bool measured_call, bool heartbeat, double seconds, const grpc::Status& s,
            int64_t points, bool deferred) {
    std::lock_guard<std::mutex> lock(mu_);
    --in_flight_;
    if (measured_call) {
      if (s.ok()) {
        (heartbeat ? heartbeat_s_ : upload_s_).push_back(seconds);
        points_ += points;
      } else if (deferred) {
        ++deferred_;
      } else {
        ++errors_;
        ++error_codes_[static_cast<int>(s.error_code())];
      }
    }
    events_.push(next);
    cv_.notify_one();
  }

  void SendHeartbeat(int w) {
    FleetWorker& fw = workers_[w];
    struct Call {
      grpc::ClientContext ctx;
      v1::HeartbeatRequest req;
      v1::HeartbeatResponse resp;
      Clock::time_point sent;
    };
    auto* call = new Call;
    call->req.set_run_id(fw.lease.run_id());
    call->req.set_lease_epoch(fw.lease.lease_epoch());
    call->req.set_worker_id(fw.id);
    call->req.set_lease_secret(fw.lease.lease_secret());
    call->ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(kHeartbeatMs));
    call->sent = Clock::now();
    fw.stub->async()->Heartbeat(&call->ctx, &call->req, &call->resp, [this, call, w](grpc::Status s) {
      const double took = Since(call->sent);
      Done({call->sent + Millis(kHeartbeatMs), w, true}, call->sent >= warm_, true, took, s, 0, false);
      delete call;
    });
  }

  void SendUpload(int w) {
    FleetWorker& fw = workers_[w];
    struct Call {
      grpc::ClientContext ctx;
      v1::ReportMetricsRequest req;
      v1::ReportMetricsResponse resp;
      Clock::time_point sent, produced_until;
      int64_t step_after = 0;
    };
    auto* call = new Call;
    const auto now = Clock::now();
    // The points the run produced since the last stored batch, up to the
    // cadence's batch cap (the rest wait, as in the worker's queue).
    const double owed = o_.points_per_second * std::chrono::duration<double>(now - fw.produced_until).count();
    const int64_t n = std::min<int64_t>(static_cast<int64_t>(owed), static_cast<int64_t>(fw.cadence.batch_cap()));
    call->req.set_run_id(fw.lease.run_id());
    call->req.set_lease_epoch(fw.lease.lease_epoch());
    call->req.set_worker_id(fw.id);
    call->req.set_lease_secret(fw.lease.lease_secret());
    static const char* kNamesList[kNames] = {"train/loss", "train/error", "optim/relative_update",
                                             "optim/grad_norm", "optim/weight_norm", "optim/lr",
                                             "optim/bits_used", "optim/clipped"};
    int64_t step = fw.step;
    for (int64_t i = 0; i < n; ++i, ++step) {
      auto* p = call->req.add_points();
      p->set_name(kNamesList[step % kNames]);
      p->set_step(step / kNames);
      p->set_value(1.0 / static_cast<double>(step + 1));
      p->set_time(1.7e9);
    }
    call->step_after = step;
    call->produced_until =
        n >= static_cast<int64_t>(owed)
            ? now
            : fw.produced_until + std::chrono::duration_cast<Clock::duration>(
                                      std::chrono::duration<double>(static_cast<double>(n) / o_.points_per_second));
    call->req.set_step(step / kNames);
    call->ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    call->sent = Clock::now();
    if (n == 0) {
      // Nothing produced yet: look again after one interval.
      std::lock_guard<std::mutex> lock(mu_);
      --in_flight_;
      events_.push({now + fw.cadence.interval(), w, false});
      delete call;
      return;
    }
    fw.stub->async()->ReportMetrics(&call->ctx, &call->req, &call->resp, [this, call, w, n](grpc::Status s) {
      FleetWorker& fw = workers_[w];
      const double took = Since(call->sent);
      const bool deferred = s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED;
      if (s.ok()) {
        fw.cadence.OnStored(std::chrono::milliseconds(static_cast<int64_t>(took * 1000)),
                            call->resp.upload_interval_ms());
      } else if (deferred) {
        fw.cadence.OnBusy();
      }
      if (s.ok()) {
        fw.step = call->step_after;
        fw.produced_until = call->produced_until;
      }
      // The worker waits one interval after an answer before its next batch.
      Done({Clock::now() + fw.cadence.interval(), w, false}, call->sent >= warm_, false, took, s,
           s.ok() ? n : 0, deferred);
      delete call;
    });
  }

  const Options& o_;
  std::vector<FleetWorker>& workers_;
  const Clock::time_point warm_;
  double elapsed_ = 0;

  std::mutex mu_;
  std::condition_variable cv_;
  std::priority_queue<FleetEvent, std::vector<FleetEvent>, std::greater<FleetEvent>> events_;  // guarded by mu_
  int64_t in_flight_ = 0;                                                                      // guarded by mu_
  std::vector<double> heartbeat_s_, upload_s_;                                                 // guarded by mu_
  int64_t points_ = 0, deferred_ = 0, errors_ = 0;                                             // guarded by mu_
  std::map<int, int64_t> error_codes_;                                                         // guarded by mu_
};

bool RunFleet(const Options& o, const std::string& address, v1::Coordinator::Stub* client) {
  Submit(client, GridSweep(std::max(o.workers, 2), "fleet"), nullptr);
  auto channels = Channels(address, o.workers);
  std::vector<FleetWorker> workers(o.workers);
  // Registration and the first lease, from a few threads: not measured.
  const auto start = Clock::now();
  std::atomic<int> next{0}, missing{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 16; ++t) {
    threads.emplace_back([&] {
      for (int w = next++; w < o.workers; w = next++) {
        workers[w].stub = v1::WorkerApi::NewStub(channels[w]);
        workers[w].id = Register(workers[w].stub.get(), 5000 + w);
        if (!Acquire(workers[w].stub.get(), workers[w].id, &workers[w].lease)) ++missing;
      }
    });
  }
  for (auto& t : threads) t.join();
  std::printf("fleet: %d workers registered and leased in %.1f s\n", o.workers, Since(start));
  if (missing > 0) Fatal(std::to_string(missing.load()) + " simulated workers got no lease");
  Fleet fleet(o, &workers);
  fleet.Run();
  return fleet.Report();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: coordinator_bench MADAMD [--workers N] [--seconds S] [--batch B] "
                         "[--runs R] [--only ingest|schedule|trials|load|fleet] [--points-per-second P] [--quick]\n");
    return 2;
  }
  Options o;
  o.madamd = argv[1];
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&] { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
    if (a == "--workers") o.workers = std::atoi(next().c_str());
    else if (a == "--seconds") o.seconds = std::atof(next().c_str());
    else if (a == "--batch") o.batch = std::atoi(next().c_str());
    else if (a == "--runs") o.runs = std::atoi(next().c_str());
    else if (a == "--only") o.only = next();
    else if (a == "--points-per-second") o.points_per_second = std::atof(next().c_str());
    else if (a == "--quick") { o.seconds = 1; o.runs = 500; o.workers = 4; }
    else {
      std::fprintf(stderr, "unknown argument %s\n", a.c_str());
      return 2;
    }
  }
  StartWatchdog(o.seconds * 3 + 90);
  madam::testing::TempDir dir;
  const std::string db = dir.path() + "/bench.db";
  // The fleet runs at madamd's default lease, as a real fleet would; the
  // other modes hold leases long so that nothing expires under load.
  std::vector<std::string> madamd_args = {"--max-leases-per-worker", "1024"};
  if (o.only != "fleet") madamd_args.insert(madamd_args.end(), {"--lease-seconds", "300"});
  auto madamd = madam::testing::StartMadamd(o.madamd, db, madamd_args);
  g_madamd_pid = madamd.process->pid();
  auto client = v1::Coordinator::NewStub(
      grpc::CreateChannel(madamd.address, grpc::InsecureChannelCredentials()));
  g_phase = "ingest";
  if (o.only.empty() || o.only == "ingest") Ingest(o, madamd.address, db, client.get());
  g_phase = "schedule";
  if (o.only.empty() || o.only == "schedule") Schedule(o, madamd.address, client.get());
  g_phase = "trials";
  if (o.only.empty() || o.only == "trials") Trials(o, madamd.address, client.get());
  g_phase = "load";
  if (o.only == "load" && !Load(o, madamd.address, madamd.process->pid(), client.get())) return 1;
  g_phase = "fleet";
  if (o.only == "fleet" && !RunFleet(o, madamd.address, client.get())) return 1;
  g_phase = "shutdown";
  return 0;
}
