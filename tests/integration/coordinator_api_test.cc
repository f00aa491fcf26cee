// madamd's gRPC API against a real madamd process on loopback: status codes
// and messages for bad input, lease fencing, idempotent completion and
// restart durability (ARCHITECTURE.md sections 3-5: bad input).
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

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
    if (resp.has_run()) holders_[{resp.run_id(), resp.lease_epoch()}] = {worker_id, resp.lease_secret()};
    return resp;
  }

  // The (worker, secret) a call presents: by default the holder of the lease
  // granted under (run, epoch) by Acquire (ARCHITECTURE.md section 5).
  struct Holder {
    std::string worker_id, secret;
  };
  Holder HolderOf(const std::string& run, int64_t epoch) const {
    auto it = holders_.find({run, epoch});
    return it == holders_.end() ? Holder{} : it->second;
  }

  grpc::Status Heartbeat(const std::string& run, int64_t epoch) {
    return Heartbeat(run, epoch, HolderOf(run, epoch));
  }
  grpc::Status Heartbeat(const std::string& run, int64_t epoch, const Holder& holder) {
    grpc::ClientContext ctx;
    v1::HeartbeatRequest req;
    req.set_run_id(run);
    req.set_lease_epoch(epoch);
    req.set_worker_id(holder.worker_id);
    req.set_lease_secret(holder.secret);
    v1::HeartbeatResponse resp;
    return worker_->Heartbeat(&ctx, req, &resp);
  }

  grpc::Status Report(const std::string& run, int64_t epoch, int points, int64_t first_step = 0) {
    return Report(run, epoch, HolderOf(run, epoch), points, first_step);
  }
  grpc::Status Report(const std::string& run, int64_t epoch, const Holder& holder, int points,
                      int64_t first_step = 0) {
    grpc::ClientContext ctx;
    v1::ReportMetricsRequest req;
    req.set_run_id(run);
    req.set_lease_epoch(epoch);
    req.set_worker_id(holder.worker_id);
    req.set_lease_secret(holder.secret);
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
    return Complete(run, epoch, HolderOf(run, epoch), outcome);
  }
  grpc::Status Complete(const std::string& run, int64_t epoch, const Holder& holder,
                        v1::RunState outcome) {
    grpc::ClientContext ctx;
    v1::CompleteRunRequest req;
    req.set_run_id(run);
    req.set_lease_epoch(epoch);
    req.set_worker_id(holder.worker_id);
    req.set_lease_secret(holder.secret);
    req.set_outcome(outcome);
    (*req.mutable_final())["test/error"] = 12.5;
    v1::CompleteRunResponse resp;
    return worker_->CompleteRun(&ctx, req, &resp);
  }

  // Restarts madamd with a 30 s lease: for tests that must not see a lease
  // lapse (the fixture's 1 s lease exists for the expiry tests).
  void StartWithLongLease() {
    madamd_.process->Signal(SIGKILL);
    madamd_.process->Wait(std::chrono::seconds(10));
    Start({"--lease-seconds", "30"});
  }

  std::map<std::pair<std::string, int64_t>, Holder> holders_;  // (run, epoch) -> holder

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

// Section 5: a lease is bound to the worker that holds it. A second worker
// presenting the holder's run and epoch with its own id, or the holder's
// secret, or an old epoch, cannot heartbeat, report or complete for it, and
// no refusal names the current epoch or secret.
TEST_F(CoordinatorApiTest, AnotherWorkerCannotUseALease) {
  StartWithLongLease();
  v1::SubmitSweepResponse submitted;
  ASSERT_TRUE(Submit(SmokeSweep(), &submitted).ok());
  const std::string holder = Register("holder"), thief = Register("thief");
  auto lease = Acquire(holder);
  ASSERT_TRUE(lease.has_run());
  ASSERT_EQ(lease.lease_secret().size(), 32u);
  const Holder real = HolderOf(lease.run_id(), lease.lease_epoch());
  const std::string epoch = std::to_string(lease.lease_epoch());
  for (const Holder& h : {Holder{thief, real.secret}, Holder{thief, ""}, Holder{real.worker_id, "f00d"},
                          Holder{real.worker_id, ""}}) {
    for (grpc::Status s : {Heartbeat(lease.run_id(), lease.lease_epoch(), h),
                           Report(lease.run_id(), lease.lease_epoch(), h, 5, 500),
                           Complete(lease.run_id(), lease.lease_epoch(), h, v1::RUN_STATE_SUCCEEDED)}) {
      EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
      EXPECT_EQ(s.error_message().find("epoch"), std::string::npos) << s.error_message();
      EXPECT_EQ(s.error_message().find(real.secret), std::string::npos) << s.error_message();
    }
  }
  // An old epoch (the thief's guess) is stale, and says nothing of the
  // current one either.
  for (grpc::Status s : {Heartbeat(lease.run_id(), lease.lease_epoch() - 1, Holder{thief, real.secret}),
                         Complete(lease.run_id(), lease.lease_epoch() - 1, Holder{thief, real.secret},
                                  v1::RUN_STATE_SUCCEEDED)}) {
    EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
    EXPECT_EQ(s.error_message().find("(current"), std::string::npos) << s.error_message();
    // It names the stale epoch it was given, never the current one.
    EXPECT_EQ(s.error_message().find("epoch " + epoch), std::string::npos) << s.error_message();
  }
  // The thief holds nothing; none of its points landed; the holder finishes.
  grpc::ClientContext ctx;
  v1::GetRunMetricsRequest mreq;
  mreq.set_run_id(lease.run_id());
  v1::GetRunMetricsResponse metrics;
  ASSERT_TRUE(client_->GetRunMetrics(&ctx, mreq, &metrics).ok());
  EXPECT_EQ(metrics.points_size(), 0);
  ASSERT_TRUE(Report(lease.run_id(), lease.lease_epoch(), 3).ok());
  ASSERT_TRUE(Complete(lease.run_id(), lease.lease_epoch(), v1::RUN_STATE_SUCCEEDED).ok());
}

// A worker that asks for more runs than it has devices (a hoarder) gets one
// lease; another worker gets the next run.
TEST_F(CoordinatorApiTest, AHoarderGetsOneLease) {
  StartWithLongLease();
  v1::SubmitSweepResponse submitted;
  ASSERT_TRUE(Submit(SmokeSweep(), &submitted).ok());
  const std::string hoarder = Register("hoarder"), other = Register("other");
  auto first = Acquire(hoarder);
  ASSERT_TRUE(first.has_run());
  for (int i = 0; i < 5; ++i) {
    auto more = Acquire(hoarder);
    EXPECT_FALSE(more.has_run()) << "second lease granted: " << more.run_id();
    EXPECT_GT(more.retry_after_ms(), 0);
  }
  auto second = Acquire(other);
  ASSERT_TRUE(second.has_run());
  EXPECT_NE(second.run_id(), first.run_id());
}

// Section 9: strings a worker sends are bounded and a checkpoint is a name.
TEST_F(CoordinatorApiTest, CheckpointPathIsInvalidArgument) {
  StartWithLongLease();
  v1::SubmitSweepResponse submitted;
  ASSERT_TRUE(Submit(SmokeSweep(), &submitted).ok());
  auto lease = Acquire(Register("w"));
  ASSERT_TRUE(lease.has_run());
  const Holder h = HolderOf(lease.run_id(), lease.lease_epoch());
  for (const char* bad : {"/tmp/epoch-1.pt", "../epoch-1.pt", "x/epoch-2.pt", "epoch-2.ckpt"}) {
    grpc::ClientContext ctx;
    v1::HeartbeatRequest req;
    req.set_run_id(lease.run_id());
    req.set_lease_epoch(lease.lease_epoch());
    req.set_worker_id(h.worker_id);
    req.set_lease_secret(h.secret);
    req.set_checkpoint(bad);
    v1::HeartbeatResponse resp;
    grpc::Status s = worker_->Heartbeat(&ctx, req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << bad;
    EXPECT_NE(s.error_message().find("checkpoint"), std::string::npos) << s.error_message();
  }
}

// Section 9: a worker's strings are bounded: names and metric names are
// refused past their bound (naming the field), error texts are cut, not
// refused, and a run's distinct metric names are capped.
TEST_F(CoordinatorApiTest, WorkerStringsAreBounded) {
  StartWithLongLease();
  {
    grpc::ClientContext ctx;
    v1::RegisterWorkerRequest req;
    req.set_name(std::string(129, 'n'));
    req.set_device("cpu");
    v1::RegisterWorkerResponse resp;
    grpc::Status s = worker_->RegisterWorker(&ctx, req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(s.error_message().find("name"), std::string::npos) << s.error_message();
  }
  {
    grpc::ClientContext ctx;
    v1::RegisterWorkerRequest req;
    req.set_name("ok");
    req.set_device("cpu");
    req.set_info(std::string(1025, 'i'));
    v1::RegisterWorkerResponse resp;
    grpc::Status s = worker_->RegisterWorker(&ctx, req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(s.error_message().find("info"), std::string::npos) << s.error_message();
  }
  // A device list (common/devices.h) naming a GPU twice, or mixing kinds.
  for (const char* bad : {"cuda:0,cuda:0", "cpu,cuda:1", "cuda:0,,cuda:1", "tpu"}) {
    grpc::ClientContext ctx;
    v1::RegisterWorkerRequest req;
    req.set_name("ok");
    req.set_device(bad);
    v1::RegisterWorkerResponse resp;
    grpc::Status s = worker_->RegisterWorker(&ctx, req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << bad;
    EXPECT_NE(s.error_message().find("device"), std::string::npos) << s.error_message();
  }
  v1::SubmitSweepResponse submitted;
  ASSERT_TRUE(Submit(SmokeSweep(), &submitted).ok());
  auto lease = Acquire(Register("w"));
  ASSERT_TRUE(lease.has_run());
  const Holder h = HolderOf(lease.run_id(), lease.lease_epoch());
  auto report = [&](const std::vector<std::string>& names) {
    grpc::ClientContext ctx;
    v1::ReportMetricsRequest req;
    req.set_run_id(lease.run_id());
    req.set_lease_epoch(lease.lease_epoch());
    req.set_worker_id(h.worker_id);
    req.set_lease_secret(h.secret);
    for (const std::string& n : names) {
      auto* p = req.add_points();
      p->set_name(n);
      p->set_step(1);
      p->set_value(1);
    }
    v1::ReportMetricsResponse resp;
    return worker_->ReportMetrics(&ctx, req, &resp);
  };
  for (const std::string& bad : {std::string(129, 'm'), std::string("bad\nname"), std::string("\x1b[31m")}) {
    grpc::Status s = report({bad});
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(s.error_message().find("points.name"), std::string::npos) << s.error_message();
  }
  std::vector<std::string> names;
  for (int i = 0; i < 512; ++i) names.push_back("layer/t" + std::to_string(i) + "/x");
  ASSERT_TRUE(report(names).ok());
  grpc::Status over = report({"one/more"});
  EXPECT_EQ(over.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(over.error_message().find("512"), std::string::npos) << over.error_message();
  EXPECT_TRUE(report({"layer/t7/x"}).ok());  // a known name is fine
  {
    grpc::ClientContext ctx;
    v1::CompleteRunRequest req;
    req.set_run_id(lease.run_id());
    req.set_lease_epoch(lease.lease_epoch());
    req.set_worker_id(h.worker_id);
    req.set_lease_secret(h.secret);
    req.set_outcome(v1::RUN_STATE_FAILED);
    req.set_error(std::string(100000, 'e'));
    v1::CompleteRunResponse resp;
    grpc::Status s = worker_->CompleteRun(&ctx, req, &resp);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
  grpc::ClientContext ctx;
  v1::GetRunRequest rreq;
  rreq.set_run_id(lease.run_id());
  v1::Run run;
  ASSERT_TRUE(client_->GetRun(&ctx, rreq, &run).ok());
  EXPECT_LE(run.last_error().size(), 4096u + 16u);
  EXPECT_GE(run.last_error().size(), 4000u);
}

// Section 9: watchers never starve heartbeats. 300 WatchSweep streams (20
// bearer tokens, 15 streams each, over 5 connections) are opened and held;
// the server keeps at most 64 open (16 per token) and refuses the rest at
// once, so its sync threads stay free and heartbeats keep answering. The
// 1 s bound is a generous latency check (a heartbeat is one FULL-sync SQLite
// commit, milliseconds here); what it guards against is a heartbeat queued
// behind hundreds of watch threads, which takes seconds or never answers.
TEST_F(CoordinatorApiTest, WatchStreamsNeverStarveHeartbeats) {
  StartWithLongLease();
  v1::SubmitSweepResponse submitted;
  ASSERT_TRUE(Submit(SmokeSweep(), &submitted).ok());
  auto lease = Acquire(Register("w"));
  ASSERT_TRUE(lease.has_run());
  constexpr int kStreams = 300, kTokens = 20, kChannels = 5;
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  for (int c = 0; c < kChannels; ++c) {
    grpc::ChannelArguments args;
    args.SetInt("grpc.channel_id", c);  // distinct connections
    channels.push_back(grpc::CreateCustomChannel(madamd_.address, grpc::InsecureChannelCredentials(), args));
  }
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts(kStreams);
  std::vector<std::thread> threads;
  std::atomic<int> accepted{0}, refused{0}, other{0}, settled{0};
  for (int i = 0; i < kStreams; ++i) {
    contexts[i] = std::make_unique<grpc::ClientContext>();
    contexts[i]->AddMetadata("authorization", "Bearer reader-" + std::to_string(i % kTokens));
    threads.emplace_back([&, i] {
      auto stub = v1::Coordinator::NewStub(channels[i % kChannels]);
      v1::WatchSweepRequest req;
      req.set_sweep_id(submitted.sweep_id());
      req.set_interval_ms(1000);
      auto reader = stub->WatchSweep(contexts[i].get(), req);
      v1::SweepProgress progress;
      if (reader->Read(&progress)) {
        ++accepted;
        ++settled;
        while (reader->Read(&progress)) {
        }
        reader->Finish();
        return;
      }
      grpc::Status s = reader->Finish();
      (s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED ? refused : other)++;
      ++settled;
    });
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (settled < kStreams && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(settled.load(), kStreams);
  EXPECT_EQ(accepted.load(), 64);
  EXPECT_EQ(refused.load(), kStreams - 64);
  EXPECT_EQ(other.load(), 0);
  double worst = 0;
  for (int i = 0; i < 20; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    grpc::Status s = Heartbeat(lease.run_id(), lease.lease_epoch());
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    worst = std::max(worst, secs);
    EXPECT_TRUE(s.ok()) << s.error_message();
  }
  EXPECT_LT(worst, 1.0) << "slowest heartbeat with 64 watches open: " << worst << " s";
  std::printf("watch streams: %d held, %d refused; slowest of 20 heartbeats %.3f s\n", accepted.load(),
              refused.load(), worst);
  for (auto& ctx : contexts) ctx->TryCancel();
  for (auto& t : threads) t.join();
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
