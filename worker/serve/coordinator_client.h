// The worker's side of madamd's WorkerApi (proto/madam/v1/worker.proto): one
// method per RPC, each call with a deadline and, when a token is set, the
// "authorization: Bearer TOKEN" metadata (ARCHITECTURE.md section 9). It
// takes the stub interface, so tests drive it with the generated gMock stub.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdint>
#include <iostream>
#include <sstream>
#include <string>

#include "madam/v1/worker.grpc.pb.h"

namespace madam::worker::serve {

// One line on stderr, written whole so lines from threads never interleave.
template <typename... Args>
void Log(const Args&... args) {
  std::ostringstream line;
  line << "madam-worker: ";
  (line << ... << args);
  line << "\n";
  std::cerr << line.str() << std::flush;
}

// "CODE_NAME: message", for logs and run errors.
std::string Describe(const grpc::Status& s);

// The coordinator is unreachable or busy for a moment (UNAVAILABLE,
// DEADLINE_EXCEEDED, ABORTED): not a refusal; try again.
bool Retryable(const grpc::Status& s);

// The coordinator says this worker does not (or no longer) hold the lease:
// stale epoch (FAILED_PRECONDITION), run gone (NOT_FOUND), or another
// holder's lease (PERMISSION_DENIED) (ARCHITECTURE.md section 5).
bool LeaseGone(const grpc::Status& s);

// What every call of one lease carries (ARCHITECTURE.md section 5).
struct LeaseRef {
  std::string run_id;
  int64_t epoch = 0;
  std::string worker_id;
  std::string secret;
};

// Thread-safety: the methods are const and may be called from several
// threads at once (gRPC stubs are thread-safe).
class CoordinatorClient {
 public:
  static constexpr std::chrono::milliseconds kCallDeadline{10000};
  // A metric batch can be large and its store slow: a longer deadline.
  static constexpr std::chrono::milliseconds kMetricsDeadline{30000};

  // `stub` is not owned and must outlive this client. An empty `token`
  // sends no authorization metadata.
  CoordinatorClient(madam::v1::WorkerApi::StubInterface* stub, std::string token)
      : stub_(stub), token_(std::move(token)) {}

  grpc::Status RegisterWorker(const madam::v1::RegisterWorkerRequest& req,
                              madam::v1::RegisterWorkerResponse* resp) const;
  grpc::Status AcquireRun(const madam::v1::AcquireRunRequest& req,
                          madam::v1::AcquireRunResponse* resp) const;
  // A heartbeat is worth nothing after the next one is due: its deadline is
  // the caller's (the heartbeat period).
  grpc::Status Heartbeat(const madam::v1::HeartbeatRequest& req, madam::v1::HeartbeatResponse* resp,
                         std::chrono::milliseconds deadline) const;
  grpc::Status ReportMetrics(const madam::v1::ReportMetricsRequest& req,
                             madam::v1::ReportMetricsResponse* resp) const;
  grpc::Status CompleteRun(const madam::v1::CompleteRunRequest& req,
                           madam::v1::CompleteRunResponse* resp) const;

 private:
  // Deadline (from the system clock, as gRPC wants) and bearer token.
  void Prepare(grpc::ClientContext* ctx, std::chrono::milliseconds deadline) const;

  madam::v1::WorkerApi::StubInterface* stub_;
  std::string token_;  // never logged
};

// The lease fields of a request, from `lease`.
template <typename Request>
void SetLease(const LeaseRef& lease, Request* req) {
  req->set_run_id(lease.run_id);
  req->set_lease_epoch(lease.epoch);
  req->set_worker_id(lease.worker_id);
  req->set_lease_secret(lease.secret);
}

}  // namespace madam::worker::serve
