// CoordinatorService: the client API (proto/madam/v1/coordinator.proto) as a
// thin adapter over the Store. Sweep files are parsed, validated and expanded
// here — the coordinator trusts no client (ARCHITECTURE.md section 4).
//
// Thread-safety: gRPC calls the handlers concurrently from its sync-server
// threads; the service holds no mutable state of its own (Store and
// LiveRunTable are thread-safe). Handlers block only on the Store's futures,
// never on a SQLite lock.
#pragma once

#include <atomic>
#include <map>
#include <mutex>
#include <string>

#include "common/sweep_spec.h"
#include "madam/v1/coordinator.grpc.pb.h"
#include "server/live_runs.h"
#include "server/store.h"

namespace madam::server {

class CoordinatorService final : public v1::Coordinator::Service {
 public:
  // A WatchSweep stream holds one of the sync server's threads for its whole
  // life; heartbeats and lease calls need those threads too. So at most
  // kMaxWatches streams are open at once, and at most kMaxWatchesPerToken
  // per bearer token (per caller when auth is off); past either cap a watch
  // is RESOURCE_EXHAUSTED at once (ARCHITECTURE.md section 9). With the
  // server's 256 threads this leaves ~190 for everything else.
  static constexpr int kMaxWatches = 64;
  static constexpr int kMaxWatchesPerToken = 16;

  // `store` and `live` must outlive the service.
  CoordinatorService(Store* store, LiveRunTable* live, SweepLimits limits);

  // Ends every WatchSweep stream at its next poll (server shutdown).
  void Shutdown() { shutting_down_ = true; }

  grpc::Status SubmitSweep(grpc::ServerContext* ctx, const v1::SubmitSweepRequest* req,
                           v1::SubmitSweepResponse* resp) override;
  grpc::Status ListSweeps(grpc::ServerContext* ctx, const v1::ListSweepsRequest* req,
                          v1::ListSweepsResponse* resp) override;
  grpc::Status GetSweep(grpc::ServerContext* ctx, const v1::GetSweepRequest* req,
                        v1::Sweep* resp) override;
  grpc::Status WatchSweep(grpc::ServerContext* ctx, const v1::WatchSweepRequest* req,
                          grpc::ServerWriter<v1::SweepProgress>* writer) override;
  grpc::Status CancelSweep(grpc::ServerContext* ctx, const v1::CancelSweepRequest* req,
                           v1::CancelSweepResponse* resp) override;
  grpc::Status RerunSweep(grpc::ServerContext* ctx, const v1::RerunSweepRequest* req,
                          v1::RerunSweepResponse* resp) override;
  grpc::Status ExportSweep(grpc::ServerContext* ctx, const v1::ExportSweepRequest* req,
                           v1::ExportSweepResponse* resp) override;
  grpc::Status ListRuns(grpc::ServerContext* ctx, const v1::ListRunsRequest* req,
                        v1::ListRunsResponse* resp) override;
  grpc::Status GetRun(grpc::ServerContext* ctx, const v1::GetRunRequest* req,
                      v1::Run* resp) override;
  grpc::Status GetRunMetrics(grpc::ServerContext* ctx, const v1::GetRunMetricsRequest* req,
                             v1::GetRunMetricsResponse* resp) override;
  grpc::Status ListWorkers(grpc::ServerContext* ctx, const v1::ListWorkersRequest* req,
                           v1::ListWorkersResponse* resp) override;
  // Computed by server/report.h (the one report code path).
  grpc::Status GetReport(grpc::ServerContext* ctx, const v1::GetReportRequest* req,
                         v1::Report* resp) override;
  // The two stages (ARCHITECTURE.md section 4): server/promote.h builds
  // the Table 1 file; ExtendSweep re-expands the stored file for new seeds.
  grpc::Status PromoteSweep(grpc::ServerContext* ctx, const v1::PromoteSweepRequest* req,
                            v1::PromoteSweepResponse* resp) override;
  grpc::Status ExtendSweep(grpc::ServerContext* ctx, const v1::ExtendSweepRequest* req,
                           v1::ExtendSweepResponse* resp) override;

 private:
  Status BuildProgress(const std::string& sweep_id, v1::SweepProgress* out);

  Store* store_;
  LiveRunTable* live_;
  SweepLimits limits_;
  std::atomic<bool> shutting_down_{false};
  std::mutex watch_mu_;
  int watches_ = 0;                          // guarded by watch_mu_
  std::map<std::string, int> watches_by_caller_;  // guarded by watch_mu_; keyed by a token digest
};

}  // namespace madam::server
