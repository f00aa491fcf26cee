// CoordinatorMetrics: madamd's Prometheus registry (ARCHITECTURE.md section 8).
//
// Every metric family is built once, in the constructor, and its handles are
// kept. Names follow Prometheus conventions: prefix `madam_`, base units
// (seconds), `_total` counters, few labels. What is exposed:
//
//   madam_build_info{version,revision}            gauge, always 1
//   madam_runs{state}                             gauge, runs by state (all sweeps)
//   madam_sweeps{state}                           gauge, sweeps by state
//   madam_sweep_progress_ratio{sweep}             gauge, finished/total of each *running* sweep
//   madam_sweep_device_seconds_total{sweep}      counter, device-seconds a *running* sweep's runs
//                                                 have taken (server/cost.h); grows by what the
//                                                 store's figure grows, series go when it ends
//   madam_workers_connected                       gauge, workers seen within the window
//   madam_leases_granted_total                    counter
//   madam_leases_expired_total                    counter
//   madam_leases_fenced_total                     counter, worker calls refused FAILED_PRECONDITION
//   madam_run_retries_total                       counter, runs sent back to PENDING
//   madam_metric_points_ingested_total            counter
//   madam_store_transactions_total                counter, committed group transactions
//   madam_store_queue_depth                       gauge, calls waiting for the writer
//   madam_rpc_duration_seconds{method}            histogram, unary gRPC handlers
//   madam_store_write_batch_duration_seconds      histogram, one group transaction
//   madam_run_train_loss{run}                     gauge  \
//   madam_run_test_metric{run}                    gauge   } running runs only; a run's
//   madam_run_samples_per_second{run}             gauge  /  series go when it ends
//
// Gauges of counts, the per-run gauges and the counters kept by the Store
// (leases, retries, points) are refreshed from the Store and the
// LiveRunTable at each scrape (Scrape()); RPC latencies and fenced calls are
// recorded as they happen by the gRPC interceptor (NewRpcInterceptorFactory()),
// write-batch latencies by the Store's on_transaction hook.
//
// Thread-safety: every method may be called from any thread. Observe* calls
// are lock-free apart from a short map lookup the first time a method name
// is seen; Scrape() serialises with other scrapes (guarded by scrape_mu_).
// The object must outlive the gRPC server and the Store that report into it.
#pragma once

#include <grpcpp/support/server_interceptor.h>
#include <grpcpp/support/status.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "server/clock.h"
#include "server/live_runs.h"
#include "server/store.h"

namespace madam::server {

struct CoordinatorMetricsOptions {
  std::string version;   // empty: the build's project version
  std::string revision;  // empty: the build's git revision
  // A worker whose last RPC is at most this old counts as connected. Idle
  // workers poll AcquireRun every ~0.5 s and busy ones heartbeat every third
  // of the lease, so the lease duration is a good window.
  std::chrono::seconds worker_connected_window{30};
  // The clock worker last-seen times are compared with: the Store's.
  // nullptr: SystemClock::Default(). Must outlive the object.
  Clock* clock = nullptr;
};

class CoordinatorMetrics {
 public:
  explicit CoordinatorMetrics(CoordinatorMetricsOptions options = {});
  ~CoordinatorMetrics();
  CoordinatorMetrics(const CoordinatorMetrics&) = delete;
  CoordinatorMetrics& operator=(const CoordinatorMetrics&) = delete;

  // For grpc::ServerBuilder::experimental().SetInterceptorCreators: times
  // every unary handler into madam_rpc_duration_seconds{method} and counts
  // fenced worker calls. The factory holds a pointer to this object.
  std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> NewRpcInterceptorFactory();

  // `method` as gRPC names it ("/madam.v1.WorkerApi/Heartbeat").
  void ObserveRpc(std::string_view method, double seconds, grpc::StatusCode code);
  void ObserveStoreTransaction(double seconds);

  // Refreshes the scrape-time metrics from `store` and `live`, then returns
  // the registry in the text exposition format 0.0.4. A failing Store query
  // leaves the affected gauges at their previous values.
  std::string Scrape(Store& store, const LiveRunTable& live);

  prometheus::Registry& registry() { return *registry_; }

 private:
  struct RunGauges {
    prometheus::Gauge* train_loss = nullptr;
    prometheus::Gauge* test_metric = nullptr;
    prometheus::Gauge* samples_per_second = nullptr;
  };

  void RefreshCounts(Store& store);               // REQUIRES: scrape_mu_ held
  void RefreshStoreCounters(const StoreStats& s);  // REQUIRES: scrape_mu_ held
  void RefreshRuns(Store& store, const LiveRunTable& live);  // REQUIRES: scrape_mu_ held
  prometheus::Histogram& RpcHistogram(std::string_view method);

  CoordinatorMetricsOptions options_;
  std::shared_ptr<prometheus::Registry> registry_;

  // Families and fixed handles: set in the constructor, immutable after.
  prometheus::Family<prometheus::Gauge>* runs_family_;
  std::map<RunState, prometheus::Gauge*> runs_by_state_;
  prometheus::Family<prometheus::Gauge>* sweeps_family_;
  std::map<std::string, prometheus::Gauge*> sweeps_by_state_;
  prometheus::Family<prometheus::Gauge>* sweep_progress_family_;
  prometheus::Family<prometheus::Counter>* sweep_device_seconds_family_;
  prometheus::Gauge* workers_connected_;
  prometheus::Counter* leases_granted_;
  prometheus::Counter* leases_expired_;
  prometheus::Counter* leases_fenced_;
  prometheus::Counter* run_retries_;
  prometheus::Counter* points_ingested_;
  prometheus::Counter* store_transactions_;
  prometheus::Counter* store_failed_commits_;
  prometheus::Gauge* store_queue_depth_;
  prometheus::Family<prometheus::Histogram>* rpc_duration_family_;
  prometheus::Histogram* store_batch_duration_;
  prometheus::Family<prometheus::Gauge>* run_train_loss_family_;
  prometheus::Family<prometheus::Gauge>* run_test_metric_family_;
  prometheus::Family<prometheus::Gauge>* run_samples_per_second_family_;

  std::mutex rpc_mu_;
  std::map<std::string, prometheus::Histogram*, std::less<>> rpc_histograms_;  // guarded by rpc_mu_

  std::mutex scrape_mu_;
  StoreStats last_stats_;                                          // guarded by scrape_mu_
  std::map<std::string, prometheus::Gauge*> sweep_progress_;       // guarded by scrape_mu_
  struct DeviceSeconds {
    prometheus::Counter* counter = nullptr;
    double counted = 0;  // the store figure last added up to
  };
  std::map<std::string, DeviceSeconds> sweep_device_seconds_;      // guarded by scrape_mu_
  std::map<std::string, RunGauges> run_gauges_;                    // guarded by scrape_mu_
  std::map<std::string, std::string> sweep_metric_name_;           // guarded by scrape_mu_
};

}  // namespace madam::server
