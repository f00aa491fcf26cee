// store_ingest_bench: throughput of the coordinator's SQLite store on a real
// file, through the same Store API the gRPC service uses.
//
//   store_ingest_bench [--dir DIR] [--threads N] [--batch B] [--seconds S]
//                      [--metrics-full-sync 0|1]
//
// Prints, for a fresh database:
//   - CreateSweep of a 10,000-run sweep (seconds);
//   - lease grants/s (AcquireRun from N threads until the sweep is drained);
//   - AppendMetrics points/s: N simulated workers, each streaming batches of
//     B points for one run for S seconds; every acknowledged point is then
//     counted back from SQLite and must all be there.
// A program, not a timed test (STYLE.md 10).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "server/store.h"

namespace {

using madam::ParamValue;
using madam::server::Lease;
using madam::server::MetricPoint;
using madam::server::NewRun;
using madam::server::NewSweep;
using madam::server::Store;
using madam::server::StoreOptions;
using Clock = std::chrono::steady_clock;

double Since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

NewSweep MakeSweep(int runs) {
  NewSweep s;
  s.name = "bench";
  s.spec_text = "name: bench\n";
  s.metric_name = "test/error";
  s.metric_goal = "minimize";
  s.runs.reserve(runs);
  for (int i = 0; i < runs; ++i) {
    NewRun run;
    run.params["task"] = ParamValue::String("fmnist-mlp");
    run.params["optimizer"] = ParamValue::String(i % 3 == 0 ? "sgd" : i % 3 == 1 ? "adam" : "madam");
    run.params["lr"] = ParamValue::Number(1e-4 * (1 + i % 9));
    run.params["epochs"] = ParamValue::Number(3);
    run.params["batch_size"] = ParamValue::Number(128);
    run.params["seed"] = ParamValue::Number(i / 27);
    run.labels["cell"] = std::to_string(i % 27);
    s.runs.push_back(std::move(run));
  }
  return s;
}

void Die(const madam::Status& s, const char* what) {
  std::fprintf(stderr, "store_ingest_bench: %s: %s\n", what, s.ToString().c_str());
  std::exit(1);
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir = std::filesystem::temp_directory_path().string();
  int threads = 8;
  int batch = 500;
  double seconds = 5;
  bool metrics_full_sync = false;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    if (flag == "--dir") dir = argv[i + 1];
    else if (flag == "--threads") threads = std::atoi(argv[i + 1]);
    else if (flag == "--batch") batch = std::atoi(argv[i + 1]);
    else if (flag == "--seconds") seconds = std::atof(argv[i + 1]);
    else if (flag == "--metrics-full-sync") metrics_full_sync = std::atoi(argv[i + 1]) != 0;
    else {
      std::fprintf(stderr, "usage: store_ingest_bench [--dir DIR] [--threads N] [--batch B] [--seconds S] "
                           "[--metrics-full-sync 0|1]\n");
      return 2;
    }
  }
  const std::string path = dir + "/madam-store-bench.db";
  for (const char* suffix : {"", "-wal", "-shm", ".lock"}) std::filesystem::remove(path + suffix);

  StoreOptions options;
  options.path = path;
  options.metrics_full_sync = metrics_full_sync;
  auto opened = Store::Open(options);
  if (!opened.ok()) Die(opened.status(), "open");
  std::unique_ptr<Store> store = std::move(opened).value();

  // 1. Submission of a 10,000-run sweep.
  NewSweep spec = MakeSweep(10000);
  auto start = Clock::now();
  auto sweep = store->CreateSweep(spec);
  if (!sweep.ok()) Die(sweep.status(), "create sweep");
  std::printf("create_sweep_10k_runs_seconds %.4f\n", Since(start));

  // 2. Lease grants from several threads until the sweep is drained.
  std::vector<std::string> workers;
  for (int t = 0; t < threads; ++t) {
    auto w = store->RegisterWorker("bench-" + std::to_string(t), "cpu");
    if (!w.ok()) Die(w.status(), "register worker");
    workers.push_back(w->id);
  }
  std::atomic<int64_t> grants{0};
  std::vector<std::vector<Lease>> leases(threads);
  start = Clock::now();
  {
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] {
        for (;;) {
          auto lease = store->AcquireRun(workers[t], "cpu", 600);
          if (!lease.ok()) Die(lease.status(), "acquire");
          if (!lease->has_value()) return;
          leases[t].push_back(**lease);
          ++grants;
        }
      });
    }
    for (auto& th : pool) th.join();
  }
  double grant_seconds = Since(start);
  std::printf("lease_grants %lld in %.3f s: %.0f grants/s (%d threads)\n",
              static_cast<long long>(grants.load()), grant_seconds, grants.load() / grant_seconds, threads);

  // 3. Metric ingestion: each thread streams batches for its own run.
  std::atomic<int64_t> acked{0};
  std::atomic<bool> stop{false};
  std::vector<std::vector<double>> latency_ms(threads);
  start = Clock::now();
  {
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] {
        const Lease& lease = leases[t].front();
        std::vector<MetricPoint> points(batch);
        int64_t step = 0;
        while (!stop.load(std::memory_order_relaxed)) {
          for (int i = 0; i < batch; ++i) {
            // Several series per step, as a worker reports them.
            points[i].name = i % 4 == 0 ? "train/loss" : i % 4 == 1 ? "lr" : i % 4 == 2 ? "optim/relative_update" : "samples_per_second";
            points[i].step = step + i / 4;
            points[i].value = 1.0 / (1 + step + i);
            points[i].time = 1.7e9 + step;
          }
          auto t0 = Clock::now();
          madam::Status s = store->AppendMetrics(lease.run_id, lease.lease_epoch, points, lease.holder());
          if (!s.ok()) Die(s, "append metrics");
          latency_ms[t].push_back(Since(t0) * 1000);
          acked += batch;
          step += (batch + 3) / 4;
        }
      });
    }
    std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
    stop = true;
    for (auto& th : pool) th.join();
  }
  double ingest_seconds = Since(start);
  std::vector<double> all;
  for (const auto& l : latency_ms) all.insert(all.end(), l.begin(), l.end());
  std::sort(all.begin(), all.end());
  auto pct = [&](double q) { return all.empty() ? 0.0 : all[static_cast<size_t>(q * (all.size() - 1))]; };
  std::printf("metrics_synchronous %s\n", metrics_full_sync ? "FULL" : "NORMAL");
  std::printf("append_metrics %lld points in %.3f s: %.0f points/s (%d threads, batch %d; call latency "
              "p50 %.1f ms, p99 %.1f ms, max %.1f ms)\n",
              static_cast<long long>(acked.load()), ingest_seconds, acked.load() / ingest_seconds, threads,
              batch, pct(0.5), pct(0.99), pct(1.0));
  madam::server::StoreStats stats = store->Stats();
  std::printf("writer: %lld transactions, %lld calls (%.1f calls/txn), %.3f s in transactions\n",
              static_cast<long long>(stats.transactions), static_cast<long long>(stats.calls),
              stats.transactions ? double(stats.calls) / stats.transactions : 0.0, stats.commit_seconds_total);

  // Every acknowledged point must be in SQLite after a restart.
  store.reset();
  opened = Store::Open(options);
  if (!opened.ok()) Die(opened.status(), "reopen");
  store = std::move(opened).value();
  int64_t stored = 0;
  for (int t = 0; t < threads; ++t) {
    auto points = store->GetMetrics(leases[t].front().run_id);
    if (!points.ok()) Die(points.status(), "read back");
    stored += static_cast<int64_t>(points->size());
  }
  std::printf("stored_points %lld acked_points %lld %s\n", static_cast<long long>(stored),
              static_cast<long long>(acked.load()), stored == acked.load() ? "OK" : "MISMATCH");
  madam::Status integrity = store->IntegrityCheck();
  std::printf("integrity_check %s\n", integrity.ok() ? "ok" : integrity.ToString().c_str());
  store.reset();
  for (const char* suffix : {"", "-wal", "-shm", ".lock"}) std::filesystem::remove(path + suffix);
  return stored == acked.load() && integrity.ok() ? 0 : 1;
}
