// A scripted stand-in for madam.v1.Coordinator, for driving madamctl's
// commands without a server.
//
// FakeCoordinatorStub implements StubInterface's synchronous methods: each
// call is recorded (request, metadata, deadline) and answered by a handler
// the test sets; a method without a handler answers UNIMPLEMENTED. WatchSweep
// plays the next scripted stream from `watch_streams`. The asynchronous
// methods are not used by madamctl and return nullptr.
//
// Not thread-safe: used from the test's thread only.
#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <grpcpp/test/client_context_test_peer.h>

#include "madam/v1/coordinator.grpc.pb.h"

namespace madam::cli::testing {

namespace v1 = madam::v1;

// Replays a fixed list of messages, then a fixed status.
class FakeProgressReader : public grpc::ClientReaderInterface<v1::SweepProgress> {
 public:
  FakeProgressReader(std::vector<v1::SweepProgress> messages, grpc::Status status)
      : messages_(std::move(messages)), status_(std::move(status)) {}
  bool Read(v1::SweepProgress* message) override {
    if (next_ >= messages_.size()) return false;
    *message = messages_[next_++];
    return true;
  }
  bool NextMessageSize(uint32_t* size) override {
    if (next_ >= messages_.size()) return false;
    *size = static_cast<uint32_t>(messages_[next_].ByteSizeLong());
    return true;
  }
  grpc::Status Finish() override { return status_; }
  void WaitForInitialMetadata() override {}

 private:
  std::vector<v1::SweepProgress> messages_;
  size_t next_ = 0;
  grpc::Status status_;
};

// What a call carried besides its request.
struct CallRecord {
  std::string method;
  std::multimap<std::string, std::string> metadata;
  std::chrono::system_clock::time_point deadline;
  std::chrono::system_clock::time_point issued;
};

template <typename Req, typename Resp>
using Handler = std::function<grpc::Status(const Req&, Resp*)>;

class FakeCoordinatorStub : public v1::Coordinator::StubInterface {
 public:
  struct Stream {
    std::vector<v1::SweepProgress> messages;
    grpc::Status status;
  };

  Handler<v1::SubmitSweepRequest, v1::SubmitSweepResponse> submit;
  Handler<v1::ListSweepsRequest, v1::ListSweepsResponse> list_sweeps;
  Handler<v1::GetSweepRequest, v1::Sweep> get_sweep;
  Handler<v1::CancelSweepRequest, v1::CancelSweepResponse> cancel;
  Handler<v1::RerunSweepRequest, v1::RerunSweepResponse> rerun;
  Handler<v1::ExportSweepRequest, v1::ExportSweepResponse> export_sweep;
  Handler<v1::ListRunsRequest, v1::ListRunsResponse> list_runs;
  Handler<v1::GetRunRequest, v1::Run> get_run;
  Handler<v1::GetRunMetricsRequest, v1::GetRunMetricsResponse> get_metrics;
  Handler<v1::ListWorkersRequest, v1::ListWorkersResponse> list_workers;
  Handler<v1::GetReportRequest, v1::Report> get_report;
  Handler<v1::PromoteSweepRequest, v1::PromoteSweepResponse> promote;
  Handler<v1::ExtendSweepRequest, v1::ExtendSweepResponse> extend;
  std::deque<Stream> watch_streams;  // one per WatchSweep call

  std::vector<CallRecord> calls;
  std::vector<v1::SubmitSweepRequest> submit_requests;
  std::vector<v1::GetSweepRequest> get_sweep_requests;
  std::vector<v1::CancelSweepRequest> cancel_requests;
  std::vector<v1::RerunSweepRequest> rerun_requests;
  std::vector<v1::ExportSweepRequest> export_requests;
  std::vector<v1::ListRunsRequest> list_runs_requests;
  std::vector<v1::GetRunRequest> get_run_requests;
  std::vector<v1::GetRunMetricsRequest> metrics_requests;
  std::vector<v1::WatchSweepRequest> watch_requests;
  std::vector<v1::GetReportRequest> report_requests;
  std::vector<v1::PromoteSweepRequest> promote_requests;
  std::vector<v1::ExtendSweepRequest> extend_requests;

  grpc::Status SubmitSweep(grpc::ClientContext* c, const v1::SubmitSweepRequest& q,
                           v1::SubmitSweepResponse* r) override {
    return Answer("SubmitSweep", c, q, submit, submit_requests, r);
  }
  grpc::Status ListSweeps(grpc::ClientContext* c, const v1::ListSweepsRequest& q,
                          v1::ListSweepsResponse* r) override {
    std::vector<v1::ListSweepsRequest> ignored;
    return Answer("ListSweeps", c, q, list_sweeps, ignored, r);
  }
  grpc::Status GetSweep(grpc::ClientContext* c, const v1::GetSweepRequest& q, v1::Sweep* r) override {
    return Answer("GetSweep", c, q, get_sweep, get_sweep_requests, r);
  }
  grpc::Status CancelSweep(grpc::ClientContext* c, const v1::CancelSweepRequest& q,
                           v1::CancelSweepResponse* r) override {
    return Answer("CancelSweep", c, q, cancel, cancel_requests, r);
  }
  grpc::Status RerunSweep(grpc::ClientContext* c, const v1::RerunSweepRequest& q,
                          v1::RerunSweepResponse* r) override {
    return Answer("RerunSweep", c, q, rerun, rerun_requests, r);
  }
  grpc::Status ExportSweep(grpc::ClientContext* c, const v1::ExportSweepRequest& q,
                           v1::ExportSweepResponse* r) override {
    return Answer("ExportSweep", c, q, export_sweep, export_requests, r);
  }
  grpc::Status ListRuns(grpc::ClientContext* c, const v1::ListRunsRequest& q,
                        v1::ListRunsResponse* r) override {
    return Answer("ListRuns", c, q, list_runs, list_runs_requests, r);
  }
  grpc::Status GetRun(grpc::ClientContext* c, const v1::GetRunRequest& q, v1::Run* r) override {
    return Answer("GetRun", c, q, get_run, get_run_requests, r);
  }
  grpc::Status GetRunMetrics(grpc::ClientContext* c, const v1::GetRunMetricsRequest& q,
                             v1::GetRunMetricsResponse* r) override {
    return Answer("GetRunMetrics", c, q, get_metrics, metrics_requests, r);
  }
  grpc::Status ListWorkers(grpc::ClientContext* c, const v1::ListWorkersRequest& q,
                           v1::ListWorkersResponse* r) override {
    std::vector<v1::ListWorkersRequest> ignored;
    return Answer("ListWorkers", c, q, list_workers, ignored, r);
  }
  grpc::Status GetReport(grpc::ClientContext* c, const v1::GetReportRequest& q, v1::Report* r) override {
    return Answer("GetReport", c, q, get_report, report_requests, r);
  }
  grpc::Status PromoteSweep(grpc::ClientContext* c, const v1::PromoteSweepRequest& q,
                            v1::PromoteSweepResponse* r) override {
    return Answer("PromoteSweep", c, q, promote, promote_requests, r);
  }
  grpc::Status ExtendSweep(grpc::ClientContext* c, const v1::ExtendSweepRequest& q,
                           v1::ExtendSweepResponse* r) override {
    return Answer("ExtendSweep", c, q, extend, extend_requests, r);
  }

  int CallCount(const std::string& method) const {
    int n = 0;
    for (const CallRecord& c : calls) n += c.method == method;
    return n;
  }

 private:
  void Record(const std::string& method, grpc::ClientContext* context) {
    calls.push_back({method, grpc::testing::ClientContextTestPeer(context).GetSendInitialMetadata(),
                     context->deadline(), std::chrono::system_clock::now()});
  }

  template <typename Req, typename Resp>
  grpc::Status Answer(const std::string& method, grpc::ClientContext* context, const Req& request,
                      const Handler<Req, Resp>& handler, std::vector<Req>& log, Resp* response) {
    Record(method, context);
    log.push_back(request);
    if (!handler) return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "fake: no handler for " + method);
    return handler(request, response);
  }

  grpc::ClientReaderInterface<v1::SweepProgress>* WatchSweepRaw(
      grpc::ClientContext* context, const v1::WatchSweepRequest& request) override {
    Record("WatchSweep", context);
    watch_requests.push_back(request);
    if (watch_streams.empty()) {
      return new FakeProgressReader({}, grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "fake: no stream"));
    }
    Stream stream = std::move(watch_streams.front());
    watch_streams.pop_front();
    return new FakeProgressReader(std::move(stream.messages), std::move(stream.status));
  }

  // madamctl is synchronous; the asynchronous surface is unused.
#define MADAM_FAKE_UNARY_ASYNC(Method, Req, Resp)                                         \
  grpc::ClientAsyncResponseReaderInterface<Resp>* Async##Method##Raw(                     \
      grpc::ClientContext*, const Req&, grpc::CompletionQueue*) override {                \
    return nullptr;                                                                       \
  }                                                                                       \
  grpc::ClientAsyncResponseReaderInterface<Resp>* PrepareAsync##Method##Raw(              \
      grpc::ClientContext*, const Req&, grpc::CompletionQueue*) override {                \
    return nullptr;                                                                       \
  }
  MADAM_FAKE_UNARY_ASYNC(SubmitSweep, v1::SubmitSweepRequest, v1::SubmitSweepResponse)
  MADAM_FAKE_UNARY_ASYNC(ListSweeps, v1::ListSweepsRequest, v1::ListSweepsResponse)
  MADAM_FAKE_UNARY_ASYNC(GetSweep, v1::GetSweepRequest, v1::Sweep)
  MADAM_FAKE_UNARY_ASYNC(CancelSweep, v1::CancelSweepRequest, v1::CancelSweepResponse)
  MADAM_FAKE_UNARY_ASYNC(RerunSweep, v1::RerunSweepRequest, v1::RerunSweepResponse)
  MADAM_FAKE_UNARY_ASYNC(ExportSweep, v1::ExportSweepRequest, v1::ExportSweepResponse)
  MADAM_FAKE_UNARY_ASYNC(ListRuns, v1::ListRunsRequest, v1::ListRunsResponse)
  MADAM_FAKE_UNARY_ASYNC(GetRun, v1::GetRunRequest, v1::Run)
  MADAM_FAKE_UNARY_ASYNC(GetRunMetrics, v1::GetRunMetricsRequest, v1::GetRunMetricsResponse)
  MADAM_FAKE_UNARY_ASYNC(ListWorkers, v1::ListWorkersRequest, v1::ListWorkersResponse)
  MADAM_FAKE_UNARY_ASYNC(GetReport, v1::GetReportRequest, v1::Report)
  MADAM_FAKE_UNARY_ASYNC(PromoteSweep, v1::PromoteSweepRequest, v1::PromoteSweepResponse)
  MADAM_FAKE_UNARY_ASYNC(ExtendSweep, v1::ExtendSweepRequest, v1::ExtendSweepResponse)
#undef MADAM_FAKE_UNARY_ASYNC

  grpc::ClientAsyncReaderInterface<v1::SweepProgress>* AsyncWatchSweepRaw(
      grpc::ClientContext*, const v1::WatchSweepRequest&, grpc::CompletionQueue*, void*) override {
    return nullptr;
  }
  grpc::ClientAsyncReaderInterface<v1::SweepProgress>* PrepareAsyncWatchSweepRaw(
      grpc::ClientContext*, const v1::WatchSweepRequest&, grpc::CompletionQueue*) override {
    return nullptr;
  }
};

}  // namespace madam::cli::testing
