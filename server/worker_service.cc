#include "server/worker_service.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "common/devices.h"
#include "server/convert.h"
#include "server/grpc_status.h"

namespace madam::server {

namespace {

// Section 9: every string a worker sends is bounded.
constexpr size_t kMaxWorkerNameBytes = 128;
constexpr size_t kMaxWorkerInfoBytes = 1024;
constexpr size_t kMaxMetricNameBytes = 128;
constexpr size_t kMaxErrorBytes = 4096;
// 64 devices of "cuda:NN," (common/devices.h).
constexpr size_t kMaxDeviceListBytes = 512;

bool Printable(const std::string& s) {
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) return false;
  }
  return true;
}

// Empty when `value` (the field `field`) is printable and at most `max`
// bytes; else the INVALID_ARGUMENT naming the field.
Status CheckText(const char* field, const std::string& value, size_t max) {
  if (value.size() > max) {
    return Status::InvalidArgument(std::string(field) + ": " + std::to_string(value.size()) +
                                   " bytes, over the limit of " + std::to_string(max));
  }
  if (!Printable(value)) {
    return Status::InvalidArgument(std::string(field) + ": contains control characters");
  }
  return Status::Ok();
}

// Cuts `text` to at most `max` bytes without splitting a UTF-8 sequence.
std::string Truncate(const std::string& text, size_t max) {
  if (text.size() <= max) return text;
  size_t cut = max;
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
  return text.substr(0, cut) + " [truncated]";
}

}  // namespace

int64_t AdvisedUploadIntervalMs(int64_t live_runs, double calls_per_second, double queue_load) {
  constexpr double kFloorMs = 250, kCeilingMs = 5000;
  double ms = 0;
  if (calls_per_second > 0 && live_runs > 0) {
    ms = static_cast<double>(live_runs) * 1000.0 / calls_per_second;
  }
  if (queue_load > 0.1) ms = std::max(ms, kFloorMs * std::exp2((queue_load - 0.1) * 5));
  if (ms <= kFloorMs) return 0;
  return std::llround(std::min(ms, kCeilingMs));  // 2^0.99999 x 250 is 500 ms, not 499
}

WorkerService::WorkerService(Store* store, LiveRunTable* live, WorkerServiceOptions options)
    : store_(store), live_(live), options_(std::move(options)) {}

grpc::Status WorkerService::RegisterWorker(grpc::ServerContext*,
                                           const v1::RegisterWorkerRequest* req,
                                           v1::RegisterWorkerResponse* resp) {
  if (req->device().empty()) {
    return ToGrpcStatus(Status::InvalidArgument("device is required (\"cpu\" or \"cuda:N\")"));
  }
  for (Status s : {CheckText("name", req->name(), kMaxWorkerNameBytes),
                   CheckText("device", req->device(), kMaxDeviceListBytes)}) {
    if (!s.ok()) return ToGrpcStatus(s);
  }
  if (auto devices = ParseDeviceList(req->device()); !devices.ok()) {
    return ToGrpcStatus(Status::InvalidArgument("device: " + devices.status().message()));
  }
  if (req->info().size() > kMaxWorkerInfoBytes) {
    return ToGrpcStatus(Status::InvalidArgument("info: " + std::to_string(req->info().size()) +
                                                " bytes, over the limit of " +
                                                std::to_string(kMaxWorkerInfoBytes)));
  }
  auto worker = store_->RegisterWorker(req->name(), req->device(), req->info());
  if (!worker.ok()) return ToGrpcStatus(worker.status());
  resp->set_worker_id(worker->id);
  resp->set_lease_seconds(options_.lease_seconds);
  return grpc::Status::OK;
}

grpc::Status WorkerService::AcquireRun(grpc::ServerContext*, const v1::AcquireRunRequest* req,
                                       v1::AcquireRunResponse* resp) {
  if (req->worker_id().empty()) {
    return ToGrpcStatus(Status::InvalidArgument("worker_id is required: call RegisterWorker first"));
  }
  auto lease = store_->AcquireRun(req->worker_id(), req->device(), options_.lease_seconds,
                                 req->request_id());
  if (!lease.ok()) return ToGrpcStatus(lease.status());
  if (!lease->has_value()) {
    resp->set_has_run(false);
    resp->set_retry_after_ms(options_.retry_after_ms);
    return grpc::Status::OK;
  }
  const Lease& l = **lease;
  resp->set_has_run(true);
  resp->set_run_id(l.run_id);
  resp->set_sweep_id(l.sweep_id);
  resp->set_lease_epoch(l.lease_epoch);
  resp->set_lease_seconds(options_.lease_seconds);
  ParamsToProto(l.params, resp->mutable_params());
  resp->set_attempt(l.attempt);
  resp->set_resume_checkpoint(l.resume_checkpoint);
  resp->set_lease_secret(l.lease_secret);
  if (!options_.checkpoint_dir.empty()) {
    resp->set_checkpoint_dir(options_.checkpoint_dir + "/" + l.run_id);
  }
  live_->Heartbeat(l.run_id, 0, 0);
  return grpc::Status::OK;
}

grpc::ServerUnaryReactor* WorkerService::Heartbeat(grpc::CallbackServerContext* ctx,
                                                   const v1::HeartbeatRequest* req,
                                                   v1::HeartbeatResponse* resp) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  if (!req->checkpoint().empty() && !CheckpointNameValid(req->checkpoint())) {
    reactor->Finish(ToGrpcStatus(Status::InvalidArgument(
        "checkpoint: must be a checkpoint name of the form epoch-<N>.pt, never a path")));
    return reactor;
  }
  const std::string run_id = req->run_id();
  const int64_t step = req->step();
  const double progress = req->progress();
  store_->HeartbeatAsync(run_id, req->lease_epoch(), options_.lease_seconds,
                         LeaseHolder{req->worker_id(), req->lease_secret()}, req->checkpoint(),
                         [this, reactor, resp, run_id, step, progress](Result<HeartbeatReply> reply) {
                           if (reply.ok()) {
                             live_->Heartbeat(run_id, step, progress);
                             resp->set_cancel_requested(reply->cancel_requested);
                             resp->set_lease_expires_at_ms(reply->lease_expires_at_ms);
                           }
                           reactor->Finish(ToGrpcStatus(reply.status()));
                         });
  return reactor;
}

grpc::ServerUnaryReactor* WorkerService::ReportMetrics(grpc::CallbackServerContext* ctx,
                                                       const v1::ReportMetricsRequest* req,
                                                       v1::ReportMetricsResponse* resp) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  if (req->points_size() > options_.max_points_per_batch) {
    reactor->Finish(ToGrpcStatus(Status::ResourceExhausted(
        "points: " + std::to_string(req->points_size()) + " in one batch, over the limit of " +
        std::to_string(options_.max_points_per_batch))));
    return reactor;
  }
  std::vector<MetricPoint> points;
  points.reserve(req->points_size());
  for (const auto& p : req->points()) {
    if (p.name().empty()) {
      reactor->Finish(ToGrpcStatus(Status::InvalidArgument("points: a point has an empty name")));
      return reactor;
    }
    if (Status bad = CheckText("points.name", p.name(), kMaxMetricNameBytes); !bad.ok()) {
      reactor->Finish(ToGrpcStatus(bad));
      return reactor;
    }
    points.push_back(MetricPoint{p.name(), p.step(), p.value(), p.time()});
  }
  // Only points the store accepted (under a current lease) reach the live
  // view, so a fenced-off worker's late points never show.
  auto latest = std::make_shared<std::vector<MetricPoint>>(points);
  const std::string run_id = req->run_id();
  const int64_t count = req->points_size();
  const int64_t step = req->step();
  const double progress = req->progress();
  store_->AppendMetricsAsync(run_id, req->lease_epoch(), std::move(points),
                             LeaseHolder{req->worker_id(), req->lease_secret()},
                             [this, reactor, resp, latest, run_id, count, step,
                              progress](Status status) {
                               if (status.ok()) {
                                 for (const auto& p : *latest) {
                                   live_->Record(run_id, p.name, p.step, p.value);
                                 }
                                 if (step > 0) live_->Heartbeat(run_id, step, progress);
                                 resp->set_accepted(count);
                                 resp->set_upload_interval_ms(AdvisedUploadIntervalMs(
                                     static_cast<int64_t>(live_->Size()),
                                     options_.metric_calls_per_second, store_->MetricQueueLoad()));
                               }
                               reactor->Finish(ToGrpcStatus(status));
                             });
  return reactor;
}

grpc::Status WorkerService::CompleteRun(grpc::ServerContext*, const v1::CompleteRunRequest* req,
                                        v1::CompleteRunResponse*) {
  CompleteRequest complete;
  complete.run_id = req->run_id();
  complete.lease_epoch = req->lease_epoch();
  switch (req->outcome()) {
    case v1::RUN_STATE_SUCCEEDED: complete.outcome = RunOutcome::kSucceeded; break;
    case v1::RUN_STATE_DIVERGED: complete.outcome = RunOutcome::kDiverged; break;
    case v1::RUN_STATE_FAILED: complete.outcome = RunOutcome::kFailed; break;
    case v1::RUN_STATE_CANCELLED: complete.outcome = RunOutcome::kCancelled; break;
    default:
      return ToGrpcStatus(Status::InvalidArgument(
          "outcome must be SUCCEEDED, DIVERGED, FAILED or CANCELLED, got " +
          v1::RunState_Name(req->outcome())));
  }
  complete.final.insert(req->final().begin(), req->final().end());
  // Long error texts are kept, cut to a bound, never refused (section 9).
  complete.error = Truncate(req->error(), kMaxErrorBytes);
  complete.checkpoint = req->checkpoint();
  complete.holder = LeaseHolder{req->worker_id(), req->lease_secret()};
  if (!complete.checkpoint.empty() && !CheckpointNameValid(complete.checkpoint)) {
    return ToGrpcStatus(Status::InvalidArgument(
        "checkpoint: must be a checkpoint name of the form epoch-<N>.pt, never a path"));
  }
  Status status = store_->CompleteRun(complete);
  if (status.ok()) live_->Remove(req->run_id());
  return ToGrpcStatus(status);
}

}  // namespace madam::server
