#include "worker/serve/coordinator_client.h"

#include "common/status.h"

namespace madam::worker::serve {

namespace v1 = ::madam::v1;
using std::chrono::milliseconds;

std::string Describe(const grpc::Status& s) {
  // grpc::StatusCode and madam::StatusCode share their values.
  return std::string(StatusCodeName(static_cast<StatusCode>(s.error_code()))) + ": " +
         s.error_message();
}

bool Retryable(const grpc::Status& s) {
  return s.error_code() == grpc::StatusCode::UNAVAILABLE ||
         s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED ||
         s.error_code() == grpc::StatusCode::ABORTED;
}

bool LeaseGone(const grpc::Status& s) {
  return s.error_code() == grpc::StatusCode::FAILED_PRECONDITION ||
         s.error_code() == grpc::StatusCode::NOT_FOUND ||
         s.error_code() == grpc::StatusCode::PERMISSION_DENIED;
}

void CoordinatorClient::Prepare(grpc::ClientContext* ctx, milliseconds deadline) const {
  ctx->set_deadline(std::chrono::system_clock::now() + deadline);
  if (!token_.empty()) ctx->AddMetadata("authorization", "Bearer " + token_);
}

grpc::Status CoordinatorClient::RegisterWorker(const v1::RegisterWorkerRequest& req,
                                               v1::RegisterWorkerResponse* resp) const {
  grpc::ClientContext ctx;
  Prepare(&ctx, kCallDeadline);
  return stub_->RegisterWorker(&ctx, req, resp);
}

grpc::Status CoordinatorClient::AcquireRun(const v1::AcquireRunRequest& req,
                                           v1::AcquireRunResponse* resp) const {
  grpc::ClientContext ctx;
  Prepare(&ctx, kCallDeadline);
  return stub_->AcquireRun(&ctx, req, resp);
}

grpc::Status CoordinatorClient::Heartbeat(const v1::HeartbeatRequest& req,
                                          v1::HeartbeatResponse* resp,
                                          milliseconds deadline) const {
  grpc::ClientContext ctx;
  Prepare(&ctx, deadline);
  return stub_->Heartbeat(&ctx, req, resp);
}

grpc::Status CoordinatorClient::ReportMetrics(const v1::ReportMetricsRequest& req,
                                              v1::ReportMetricsResponse* resp) const {
  grpc::ClientContext ctx;
  Prepare(&ctx, kMetricsDeadline);
  return stub_->ReportMetrics(&ctx, req, resp);
}

grpc::Status CoordinatorClient::CompleteRun(const v1::CompleteRunRequest& req,
                                            v1::CompleteRunResponse* resp) const {
  grpc::ClientContext ctx;
  Prepare(&ctx, kCallDeadline);
  return stub_->CompleteRun(&ctx, req, resp);
}

}  // namespace madam::worker::serve
