#include "server/metrics.h"

#include <grpcpp/support/interceptor.h>
#include <prometheus/text_serializer.h>
#include <spdlog/spdlog.h>

#include <utility>

#include "server/cost.h"
#include <vector>

#ifndef MADAM_VERSION
#define MADAM_VERSION "unknown"
#endif
#ifndef MADAM_GIT_REVISION
#define MADAM_GIT_REVISION "unknown"
#endif

namespace madam::server {
namespace {

constexpr RunState kAllRunStates[] = {RunState::kPending,  RunState::kRunning, RunState::kSucceeded,
                                      RunState::kDiverged, RunState::kFailed,  RunState::kCancelled};
constexpr const char* kAllSweepStates[] = {kSweepRunning, kSweepFinished, kSweepCancelled};

// Handlers range from sub-millisecond reads to SQLite commits that fsync.
const prometheus::Histogram::BucketBoundaries& RpcBuckets() {
  static const prometheus::Histogram::BucketBoundaries buckets = {
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
  return buckets;
}

// The worker calls that carry (run_id, lease_epoch): FAILED_PRECONDITION
// from them means a stale lease epoch was fenced off.
bool IsFencedWorkerCall(std::string_view method) {
  return method == "/madam.v1.WorkerApi/Heartbeat" || method == "/madam.v1.WorkerApi/ReportMetrics" ||
         method == "/madam.v1.WorkerApi/CompleteRun";
}

// "sw-0123abcd-00004" -> "sw-0123abcd".
std::string SweepOfRun(const std::string& run_id) {
  const auto dash = run_id.rfind('-');
  return dash == std::string::npos ? std::string() : run_id.substr(0, dash);
}

// Times one unary RPC from the arrival of its metadata to the status being
// sent. Created per call by the factory; gRPC drives it from one thread at a
// time.
class RpcTimingInterceptor final : public grpc::experimental::Interceptor {
 public:
  RpcTimingInterceptor(CoordinatorMetrics* metrics, grpc::experimental::ServerRpcInfo* info)
      : metrics_(metrics), method_(info->method() != nullptr ? info->method() : "unknown") {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    using grpc::experimental::InterceptionHookPoints;
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_INITIAL_METADATA)) {
      started_ = std::chrono::steady_clock::now();
    }
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      const double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
      metrics_->ObserveRpc(method_, seconds, methods->GetSendStatus().error_code());
    }
    methods->Proceed();
  }

 private:
  CoordinatorMetrics* metrics_;
  std::string method_;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
};

class RpcTimingInterceptorFactory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit RpcTimingInterceptorFactory(CoordinatorMetrics* metrics) : metrics_(metrics) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(grpc::experimental::ServerRpcInfo* info) override {
    // Streams (WatchSweep) live as long as a client watches: their duration
    // says nothing about latency, so only unary calls are timed.
    if (info->type() != grpc::experimental::ServerRpcInfo::Type::UNARY) return nullptr;
    return new RpcTimingInterceptor(metrics_, info);
  }

 private:
  CoordinatorMetrics* metrics_;
};

void IncrementBy(prometheus::Counter* counter, int64_t now, int64_t before) {
  if (now > before) counter->Increment(static_cast<double>(now - before));
}

}  // namespace

CoordinatorMetrics::CoordinatorMetrics(CoordinatorMetricsOptions options)
    : options_(std::move(options)), registry_(std::make_shared<prometheus::Registry>()) {
  if (options_.version.empty()) options_.version = MADAM_VERSION;
  if (options_.revision.empty()) options_.revision = MADAM_GIT_REVISION;
  auto& r = *registry_;

  prometheus::BuildGauge()
      .Name("madam_build_info")
      .Help("Build of this madamd; the value is always 1")
      .Register(r)
      .Add({{"version", options_.version}, {"revision", options_.revision}})
      .Set(1);

  runs_family_ = &prometheus::BuildGauge().Name("madam_runs").Help("Runs by state, over all sweeps").Register(r);
  for (RunState state : kAllRunStates) {
    runs_by_state_[state] = &runs_family_->Add({{"state", RunStateName(state)}});
  }
  sweeps_family_ = &prometheus::BuildGauge().Name("madam_sweeps").Help("Sweeps by state").Register(r);
  for (const char* state : kAllSweepStates) sweeps_by_state_[state] = &sweeps_family_->Add({{"state", state}});
  sweep_progress_family_ = &prometheus::BuildGauge()
                                .Name("madam_sweep_progress_ratio")
                                .Help("Share of a running sweep's runs that have ended (0..1); only "
                                      "sweeps still running have a series")
                                .Register(r);
  sweep_device_seconds_family_ = &prometheus::BuildCounter()
                                      .Name("madam_sweep_device_seconds_total")
                                      .Help("Device-seconds a running sweep's runs have taken (terminal "
                                            "runs' started..ended, running runs' started..now); only "
                                            "sweeps still running have a series")
                                      .Register(r);
  workers_connected_ = &prometheus::BuildGauge()
                            .Name("madam_workers_connected")
                            .Help("Workers that called the coordinator within the connection window")
                            .Register(r)
                            .Add({});

  auto counter = [&r](const char* name, const char* help) {
    return &prometheus::BuildCounter().Name(name).Help(help).Register(r).Add({});
  };
  leases_granted_ = counter("madam_leases_granted_total", "Leases granted to workers");
  leases_expired_ = counter("madam_leases_expired_total", "Leases reclaimed because they were not renewed");
  leases_fenced_ = counter("madam_leases_fenced_total",
                           "Worker calls refused with FAILED_PRECONDITION (stale lease epoch)");
  run_retries_ = counter("madam_run_retries_total", "Runs sent back to pending for another attempt");
  points_ingested_ = counter("madam_metric_points_ingested_total", "Metric points written to the store");
  store_transactions_ = counter("madam_store_transactions_total", "Group transactions committed by the store");
  store_failed_commits_ = counter("madam_store_failed_commits_total",
                                  "Group transactions the store failed to commit (storage faults)");
  store_queue_depth_ = &prometheus::BuildGauge()
                            .Name("madam_store_queue_depth")
                            .Help("Store calls waiting for the writer thread")
                            .Register(r)
                            .Add({});

  rpc_duration_family_ = &prometheus::BuildHistogram()
                              .Name("madam_rpc_duration_seconds")
                              .Help("Time spent in unary gRPC handlers, by method")
                              .Register(r);
  store_batch_duration_ = &prometheus::BuildHistogram()
                               .Name("madam_store_write_batch_duration_seconds")
                               .Help("Time of one store group transaction, BEGIN to COMMIT")
                               .Register(r)
                               .Add({}, RpcBuckets());

  run_train_loss_family_ = &prometheus::BuildGauge()
                                .Name("madam_run_train_loss")
                                .Help("Latest train/loss of each running run")
                                .Register(r);
  run_test_metric_family_ = &prometheus::BuildGauge()
                                 .Name("madam_run_test_metric")
                                 .Help("Latest value of each running run's sweep metric (e.g. test/error)")
                                 .Register(r);
  run_samples_per_second_family_ = &prometheus::BuildGauge()
                                        .Name("madam_run_samples_per_second")
                                        .Help("Latest training throughput of each running run")
                                        .Register(r);

  // Every method the coordinator serves gets its series up front, so that
  // dashboards see zeros rather than gaps before the first call.
  for (const char* method :
       {"/madam.v1.Coordinator/SubmitSweep", "/madam.v1.Coordinator/ListSweeps", "/madam.v1.Coordinator/GetSweep",
        "/madam.v1.Coordinator/ListRuns", "/madam.v1.WorkerApi/RegisterWorker", "/madam.v1.WorkerApi/AcquireRun",
        "/madam.v1.WorkerApi/Heartbeat", "/madam.v1.WorkerApi/ReportMetrics", "/madam.v1.WorkerApi/CompleteRun"}) {
    RpcHistogram(method);
  }
}

CoordinatorMetrics::~CoordinatorMetrics() = default;

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
CoordinatorMetrics::NewRpcInterceptorFactory() {
  return std::make_unique<RpcTimingInterceptorFactory>(this);
}

prometheus::Histogram& CoordinatorMetrics::RpcHistogram(std::string_view method) {
  std::lock_guard<std::mutex> lock(rpc_mu_);
  auto it = rpc_histograms_.find(method);
  if (it != rpc_histograms_.end()) return *it->second;
  // "/madam.v1.WorkerApi/Heartbeat" -> "WorkerApi/Heartbeat": short, still unique.
  std::string label(method);
  if (!label.empty() && label.front() == '/') label.erase(0, 1);
  if (label.rfind("madam.v1.", 0) == 0) label.erase(0, 9);
  auto* histogram = &rpc_duration_family_->Add({{"method", label}}, RpcBuckets());
  rpc_histograms_.emplace(std::string(method), histogram);
  return *histogram;
}

void CoordinatorMetrics::ObserveRpc(std::string_view method, double seconds, grpc::StatusCode code) {
  RpcHistogram(method).Observe(seconds);
  if (code == grpc::StatusCode::FAILED_PRECONDITION && IsFencedWorkerCall(method)) leases_fenced_->Increment();
}

void CoordinatorMetrics::ObserveStoreTransaction(double seconds) { store_batch_duration_->Observe(seconds); }

std::string CoordinatorMetrics::Scrape(Store& store, const LiveRunTable& live) {
  {
    std::lock_guard<std::mutex> lock(scrape_mu_);
    RefreshCounts(store);
    RefreshStoreCounters(store.Stats());
    RefreshRuns(store, live);
  }
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

void CoordinatorMetrics::RefreshCounts(Store& store) {
  auto sweeps = store.ListSweeps();
  if (!sweeps.ok()) {
    spdlog::warn("metrics: cannot list sweeps: {}", sweeps.status().ToString());
  } else {
    RunCounts runs;
    std::map<std::string, int64_t> by_state;
    std::map<std::string, double> progress;  // running sweeps
    for (const SweepRow& sweep : *sweeps) {
      const RunCounts& c = sweep.counts;
      runs.pending += c.pending;
      runs.running += c.running;
      runs.succeeded += c.succeeded;
      runs.diverged += c.diverged;
      runs.failed += c.failed;
      runs.cancelled += c.cancelled;
      ++by_state[sweep.state];
      if (sweep.state == kSweepRunning) {
        const int64_t total = c.total();
        progress[sweep.id] = total == 0 ? 1.0 : static_cast<double>(total - c.pending - c.running) / total;
      }
    }
    runs_by_state_[RunState::kPending]->Set(static_cast<double>(runs.pending));
    runs_by_state_[RunState::kRunning]->Set(static_cast<double>(runs.running));
    runs_by_state_[RunState::kSucceeded]->Set(static_cast<double>(runs.succeeded));
    runs_by_state_[RunState::kDiverged]->Set(static_cast<double>(runs.diverged));
    runs_by_state_[RunState::kFailed]->Set(static_cast<double>(runs.failed));
    runs_by_state_[RunState::kCancelled]->Set(static_cast<double>(runs.cancelled));
    for (auto& [state, gauge] : sweeps_by_state_) gauge->Set(static_cast<double>(by_state[state]));

    for (auto it = sweep_progress_.begin(); it != sweep_progress_.end();) {
      if (progress.count(it->first) == 0) {
        sweep_progress_family_->Remove(it->second);
        it = sweep_progress_.erase(it);
      } else {
        ++it;
      }
    }
    for (const auto& [id, ratio] : progress) {
      auto& gauge = sweep_progress_[id];
      if (gauge == nullptr) gauge = &sweep_progress_family_->Add({{"sweep", id}});
      gauge->Set(ratio);
    }

    // Device-seconds of running sweeps. A counter only grows: it takes each
    // rise of the store's figure (a run regranted after a lost lease
    // restarts its started_at, so the figure can dip; the counter keeps
    // what was already spent).
    for (auto it = sweep_device_seconds_.begin(); it != sweep_device_seconds_.end();) {
      if (progress.count(it->first) == 0) {
        sweep_device_seconds_family_->Remove(it->second.counter);
        it = sweep_device_seconds_.erase(it);
      } else {
        ++it;
      }
    }
    const int64_t cost_now_ms = (options_.clock != nullptr ? options_.clock : SystemClock::Default())->NowMillis();
    for (const SweepRow& sweep : *sweeps) {
      if (sweep.state != kSweepRunning) continue;
      auto cost = LoadSweepCost(store, sweep, cost_now_ms);
      if (!cost.ok()) {
        spdlog::warn("metrics: cannot cost sweep {}: {}", sweep.id, cost.status().ToString());
        continue;
      }
      DeviceSeconds& d = sweep_device_seconds_[sweep.id];
      if (d.counter == nullptr) d.counter = &sweep_device_seconds_family_->Add({{"sweep", sweep.id}});
      if (cost->device_seconds > d.counted) {
        d.counter->Increment(cost->device_seconds - d.counted);
        d.counted = cost->device_seconds;
      }
    }
  }

  auto workers = store.ListWorkers();
  if (!workers.ok()) {
    spdlog::warn("metrics: cannot list workers: {}", workers.status().ToString());
  } else {
    const int64_t now_ms = (options_.clock != nullptr ? options_.clock : SystemClock::Default())->NowMillis();
    const int64_t window_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(options_.worker_connected_window).count();
    int64_t connected = 0;
    for (const WorkerRow& w : *workers) {
      if (now_ms - w.last_seen_ms <= window_ms) ++connected;
    }
    workers_connected_->Set(static_cast<double>(connected));
  }
}

void CoordinatorMetrics::RefreshStoreCounters(const StoreStats& s) {
  IncrementBy(leases_granted_, s.leases_granted, last_stats_.leases_granted);
  IncrementBy(leases_expired_, s.leases_expired, last_stats_.leases_expired);
  IncrementBy(run_retries_, s.retries, last_stats_.retries);
  IncrementBy(points_ingested_, s.metric_points, last_stats_.metric_points);
  IncrementBy(store_transactions_, s.transactions, last_stats_.transactions);
  IncrementBy(store_failed_commits_, s.failed_commits, last_stats_.failed_commits);
  store_queue_depth_->Set(static_cast<double>(s.queue_depth));
  last_stats_ = s;
}

void CoordinatorMetrics::RefreshRuns(Store& store, const LiveRunTable& live) {
  const std::map<std::string, LiveRun> running = live.Snapshot();
  for (auto it = run_gauges_.begin(); it != run_gauges_.end();) {
    if (running.count(it->first) != 0) {
      ++it;
      continue;
    }
    if (it->second.train_loss) run_train_loss_family_->Remove(it->second.train_loss);
    if (it->second.test_metric) run_test_metric_family_->Remove(it->second.test_metric);
    if (it->second.samples_per_second) run_samples_per_second_family_->Remove(it->second.samples_per_second);
    it = run_gauges_.erase(it);
  }
  // Forget metric names of sweeps with nothing running, so the cache stays
  // as small as the set of running runs.
  std::map<std::string, std::string> metric_names;
  for (const auto& [run_id, run] : running) {
    const std::string sweep_id = SweepOfRun(run_id);
    auto cached = sweep_metric_name_.find(sweep_id);
    if (cached != sweep_metric_name_.end()) {
      metric_names.emplace(sweep_id, cached->second);
    } else if (metric_names.count(sweep_id) == 0) {
      auto sweep = store.GetSweep(sweep_id);
      metric_names.emplace(sweep_id, sweep.ok() ? sweep->metric_name : std::string("test/error"));
    }
  }
  sweep_metric_name_ = std::move(metric_names);

  for (const auto& entry : running) {
    const std::string& run_id = entry.first;
    const LiveRun& run = entry.second;
    RunGauges& g = run_gauges_[run_id];
    auto set = [&](prometheus::Family<prometheus::Gauge>* family, prometheus::Gauge*& gauge,
                   const std::string& name) {
      auto value = run.latest.find(name);
      if (value == run.latest.end()) return;  // no series until there is a value
      if (gauge == nullptr) gauge = &family->Add({{"run", run_id}});
      gauge->Set(value->second);
    };
    set(run_train_loss_family_, g.train_loss, "train/loss");
    set(run_test_metric_family_, g.test_metric, sweep_metric_name_[SweepOfRun(run_id)]);
    set(run_samples_per_second_family_, g.samples_per_second, "samples_per_second");
  }
}

}  // namespace madam::server
