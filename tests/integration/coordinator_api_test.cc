// madamd's gRPC API against a real madamd process on loopback: status codes
// and messages for bad input, lease fencing, idempotent completion and
// restart durability (ARCHITECTURE.md sections 3-5, issue 4 "Bad input").
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>

#include "madam/v1/coordinator.grpc.pb.h"
#include "madam/v1/worker.grpc.pb.h"
#include "tests/support/child_process.h"

namespace madam {
namespace {

using madam::testing::Madamd;
using madam::testing::StartMadamd;
using madam::testing::TempDir;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class CoordinatorApiTest : public ::testing::Test {
 protected:
  void SetUp() override { Start({"--lease-seconds", "1"}); }

  void Start(const std::vector<std::string>& flags) {
    madamd_ = StartMadamd(MADAMD_PATH, dir_.path() + "/madam.db", flags);
    auto channel = grpc::CreateChannel(madamd_.address, grpc::InsecureChannelCredentials());
    client_ = v1::Coordinator::NewStub(channel);
    worker_ = v1::WorkerApi::NewStub(channel);
  }

  grpc::Status Submit(const std::string& text, v1::SubmitSweepResponse* resp,
                      bool dry_run = false, const std::string& name = "test.yaml") {
    grpc::ClientContext ctx;
    v1::SubmitSweepRequest req;
    req.set_file_name(name);
    req.set_spec_text(text);
    req.set_dry_run(dry_run);
    return client_->SubmitSweep(&ctx, req, resp);
  }

  std::string Register(const std::string& name) {
    grpc::ClientContext ctx;
    v1::RegisterWorkerRequest req;
    req.set_name(name);
    req.set_device("cpu");
    v1::RegisterWorkerResponse resp;
    EXPECT_TRUE(worker_->RegisterWorker(&ctx, req, &resp).ok());
    return resp.worker_id();
  }

  v1::AcquireRunResponse Acquire(const std::string& worker_id) {
    grpc::ClientContext ctx;
    v1::AcquireRunRequest req;
    req.set_worker_id(worker_id);
    req.set_device("cpu");
    v1::AcquireRunResponse resp;
    grpc::Status s = worker_->AcquireRun(&ctx, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp;
  }

  grpc::Status Heartbeat(const std::string& run, int64_t epoch) {
    grpc::ClientContext ctx;
    v1::HeartbeatRequest req;
    req.set_run_id(run);
    req.set_lease_epoch(epoch);
    v1::HeartbeatResponse resp;
    return worker_->Heartbeat(&ctx, req, &resp);
  }

  grpc::Status Report(const std::string& run, int64_t epoch, int points, int64_t first_step = 0) {
    grpc::ClientContext ctx;
    v1::ReportMetricsRequest req;
    req.set_run_id(run);
    req.set_lease_epoch(epoch);
    for (int i = 0; i < points; ++i) {
      auto* p = req.add_points();
      p->set_name("train/loss");
      p->set_step(first_step + i);
      p->set_value(1.0 / (1 + i));
      p->set_time(1.7e9);
    }
    v1::ReportMetricsResponse resp;
    return worker_->ReportMetrics(&ctx, req, &resp);
  }

  grpc::Status Complete(const std::string& run, int64_t epoch, v1::RunState outcome) {
    grpc::ClientContext ctx;
    v1::CompleteRunRequest req;
    req.set_run_id(run);
    req.set_lease_epoch(epoch);
    req.set_outcome(outcome);
    (*req.mutable_final())["test/error"] = 12.5;
    v1::CompleteRunResponse resp;
    return worker_->CompleteRun(&ctx, req, &resp);
  }

  std::string SmokeSweep() { return ReadFile(std::string(MADAM_SOURCE_DIR) + "/sweeps/smoke.yaml"); }

  TempDir dir_;
  Madamd madamd_;
  std::unique_ptr<v1::Coordinator::Stub> client_;
  std::unique_ptr<v1::WorkerApi::Stub> worker_;
};

TEST_F(CoordinatorApiTest, BadSweepFileIsInvalidArgumentWithFileLineCol) {
  v1::SubmitSweepResponse resp;
  grpc::Status s = Submit("name: x\ntask: synthetic-mlp\nlearning_rat: 0.1\n", &resp, false, "bad.yaml");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("bad.yaml:3:1"), std::string::npos) << s.error_message();
  EXPECT_NE(s.error_message().find("learning_rat"), std::string::npos) << s.error_message();

  s = Submit("name: x\ntask: synthetic-mlp\nparams: {optimizer: madam, lr: -1}\n", &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("test.yaml:3:"), std::string::npos) << s.error_message();
}

TEST_F(CoordinatorApiTest, OversizedSweepFileAndGridAreResourceExhausted) {
  v1::SubmitSweepResponse resp;
  grpc::Status s = Submit(std::string(2 << 20, '#'), &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
  s = Submit("name: x\ntask: synthetic-mlp\nparams: {optimizer: madam}\n"
             "grid:\n  lr: {log10: {from: -4, to: 0, count: 1000}}\n"
             "  epochs: {linear: {from: 1, to: 1000, count: 1000}}\n",
             &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
}

TEST_F(CoordinatorApiTest, DryRunCountsAndStoresNothing) {
  v1::SubmitSweepResponse resp;
  ASSERT_TRUE(Submit(SmokeSweep(), &resp, /*dry_run=*/true).ok());
  EXPECT_EQ(resp.runs(), 8);
  EXPECT_TRUE(resp.sweep_id().empty());
  EXPECT_GT(resp.preview_size(), 0);
  grpc::ClientContext ctx;
  v1::ListSweepsResponse list;
  ASSERT_TRUE(client_->ListSweeps(&ctx, v1::ListSweepsRequest(), &list).ok());
  EXPECT_EQ(list.sweeps_size(), 0);
}

TEST_F(CoordinatorApiTest, UnknownIdsAreNotFound) {
  grpc::ClientContext c1;
  v1::GetSweepRequest req;
  req.set_sweep_id("sw-00000000");
  v1::Sweep sweep;
  grpc::Status s = client_->GetSweep(&c1, req, &sweep);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_NE(s.error_message().find("sw-00000000"), std::string::npos) << s.error_message();
  EXPECT_EQ(Heartbeat("sw-00000000-00000", 1).error_code(), grpc::StatusCode::NOT_FOUND);
}

// A lease that expires and is granted again fences off its first holder:
// every call with the old epoch is FAILED_PRECONDITION, and the old holder's
// points never land.
TEST_F(CoordinatorApiTest, StaleLeaseEpochIsRefused) {
  v1::SubmitSweepResponse submitted;
  ASSERT_TRUE(Submit(SmokeSweep(), &submitted).ok());
  const std::string w1 = Register("w1"), w2 = Register("w2");
  auto first = Acquire(w1);
  ASSERT_TRUE(first.has_run());
  ASSERT_TRUE(Heartbeat(first.run_id(), first.lease_epoch()).ok());
  ASSERT_TRUE(Report(first.run_id(), first.lease_epoch(), 10).ok());

  // Let the 1 s lease lapse; the run goes back to pending and w2 gets it
  // (lowest index first) under a newer epoch.
  std::this_thread::sleep_for(std::chrono::milliseconds(1600));
  auto second = Acquire(w2);
  ASSERT_TRUE(second.has_run());
  ASSERT_EQ(second.run_id(), first.run_id());
  ASSERT_GT(second.lease_epoch(), first.lease_epoch());
  EXPECT_EQ(second.attempt(), 2);

  for (grpc::Status s : {Heartbeat(first.run_id(), first.lease_epoch()),
                         Report(first.run_id(), first.lease_epoch(), 5, 1000),
                         Complete(first.run_id(), first.lease_epoch(), v1::RUN_STATE_SUCCEEDED)}) {
    EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
    EXPECT_NE(s.error_message().find("epoch"), std::string::npos) << s.error_message();
  }
  ASSERT_TRUE(Report(second.run_id(), second.lease_epoch(), 3).ok());
  ASSERT_TRUE(Complete(second.run_id(), second.lease_epoch(), v1::RUN_STATE_SUCCEEDED).ok());
  // The same completion again (a retried call whose answer was lost) is OK;
  // a different outcome under the same epoch is not.
  EXPECT_TRUE(Complete(second.run_id(), second.lease_epoch(), v1::RUN_STATE_SUCCEEDED).ok());
  EXPECT_EQ(Complete(second.run_id(), second.lease_epoch(), v1::RUN_STATE_FAILED).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);

  grpc::ClientContext ctx;
  v1::GetRunMetricsRequest mreq;
  mreq.set_run_id(second.run_id());
  v1::GetRunMetricsResponse metrics;
  ASSERT_TRUE(client_->GetRunMetrics(&ctx, mreq, &metrics).ok());
  // Steps 0..9 from the first attempt, 0..2 rewritten by the second; none of
  // the fenced-off points (steps 1000..1004).
  ASSERT_EQ(metrics.points_size(), 10);
  for (const auto& p : metrics.points()) EXPECT_LT(p.step(), 1000);
  EXPECT_DOUBLE_EQ(metrics.points(0).value(), 1.0);
}

TEST_F(CoordinatorApiTest, OversizedMetricBatchIsResourceExhausted) {
  v1::SubmitSweepResponse submitted;
  ASSERT_TRUE(Submit(SmokeSweep(), &submitted).ok());
  auto lease = Acquire(Register("w"));
  ASSERT_TRUE(lease.has_run());
  grpc::Status s = Report(lease.run_id(), lease.lease_epoch(), 100001);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
}

TEST_F(CoordinatorApiTest, RestartKeepsSweepsRunsAndLeases) {
  v1::SubmitSweepResponse submitted;
  ASSERT_TRUE(Submit(SmokeSweep(), &submitted).ok());
  const std::string w = Register("w");
  // The lease must outlive the restart: restart with a longer lease first.
  madamd_.process->Signal(SIGKILL);
  madamd_.process->Wait(std::chrono::seconds(10));
  Start({"--lease-seconds", "30"});
  auto lease = Acquire(w);
  ASSERT_TRUE(lease.has_run());
  ASSERT_TRUE(Report(lease.run_id(), lease.lease_epoch(), 4).ok());

  madamd_.process->Signal(SIGKILL);
  madamd_.process->Wait(std::chrono::seconds(10));
  Start({"--lease-seconds", "30"});
  // The worker's lease is still valid after the restart.
  EXPECT_TRUE(Heartbeat(lease.run_id(), lease.lease_epoch()).ok());
  grpc::ClientContext ctx;
  v1::GetSweepRequest req;
  req.set_sweep_id(submitted.sweep_id());
  v1::Sweep sweep;
  ASSERT_TRUE(client_->GetSweep(&ctx, req, &sweep).ok());
  EXPECT_EQ(sweep.counts().pending(), 7);
  EXPECT_EQ(sweep.counts().running(), 1);
  grpc::ClientContext mctx;
  v1::GetRunMetricsRequest mreq;
  mreq.set_run_id(lease.run_id());
  v1::GetRunMetricsResponse metrics;
  ASSERT_TRUE(client_->GetRunMetrics(&mctx, mreq, &metrics).ok());
  EXPECT_EQ(metrics.points_size(), 4);
}

}  // namespace
}  // namespace madam
