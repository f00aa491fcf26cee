// WorkerService: the worker API (proto/madam/v1/worker.proto) as a thin
// adapter over the Store: registration, leases, heartbeats, metric batches
// and completion, every call after AcquireRun fenced by its lease epoch.
//
// ReportMetrics and Heartbeat are callback (reactor) methods: the handler
// queues its call on the Store's writer and returns; the writer finishes the
// RPC once the call has committed. No gRPC thread waits on SQLite on the hot
// paths, so a fleet's heartbeats need no thread each (ARCHITECTURE.md
// section 9). The other methods are synchronous and brief.
//
// Thread-safety: handlers run concurrently on gRPC threads; the service's own
// state is immutable after construction.
#pragma once

#include <cstdint>
#include <string>

#include "madam/v1/worker.grpc.pb.h"
#include "server/live_runs.h"
#include "server/store.h"

namespace madam::server {

struct WorkerServiceOptions {
  int64_t lease_seconds = 30;
  std::string checkpoint_dir;       // empty: workers keep their own checkpoints
  int64_t retry_after_ms = 500;     // told to idle workers
  int max_points_per_batch = 100000;
  // ReportMetrics calls per second the whole fleet should stay under; the
  // advice in each answer spaces every run's uploads to share it
  // (AdvisedUploadIntervalMs). 0: no fleet term.
  double metric_calls_per_second = 2000;
};

// The upload interval a ReportMetrics answer advises (section 9), in ms; 0
// for none (the worker's own 250 ms floor applies). The larger of two terms:
// the fleet's share, `live_runs` runs splitting `calls_per_second`; and the
// write queue's load (0..1 of its byte budget), which doubles the interval
// for every fifth of the budget in use past the first tenth. At most 5 s.
int64_t AdvisedUploadIntervalMs(int64_t live_runs, double calls_per_second, double queue_load);

class WorkerService final
    : public v1::WorkerApi::WithCallbackMethod_Heartbeat<
          v1::WorkerApi::WithCallbackMethod_ReportMetrics<v1::WorkerApi::Service>> {
 public:
  // `store` and `live` must outlive the service.
  WorkerService(Store* store, LiveRunTable* live, WorkerServiceOptions options);

  grpc::Status RegisterWorker(grpc::ServerContext* ctx, const v1::RegisterWorkerRequest* req,
                              v1::RegisterWorkerResponse* resp) override;
  grpc::Status AcquireRun(grpc::ServerContext* ctx, const v1::AcquireRunRequest* req,
                          v1::AcquireRunResponse* resp) override;
  grpc::ServerUnaryReactor* Heartbeat(grpc::CallbackServerContext* ctx, const v1::HeartbeatRequest* req,
                                      v1::HeartbeatResponse* resp) override;
  grpc::ServerUnaryReactor* ReportMetrics(grpc::CallbackServerContext* ctx,
                                          const v1::ReportMetricsRequest* req,
                                          v1::ReportMetricsResponse* resp) override;
  grpc::Status CompleteRun(grpc::ServerContext* ctx, const v1::CompleteRunRequest* req,
                           v1::CompleteRunResponse* resp) override;

 private:
  Store* store_;
  LiveRunTable* live_;
  WorkerServiceOptions options_;
};

}  // namespace madam::server
