// Reports end to end: a real madamd on loopback, a sweep whose runs are
// completed with fabricated final metrics through the WorkerApi, then
// `madamctl report ...` (a real process) and GetReport's status codes
// (ARCHITECTURE.md sections 3 and 7: bad input).
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "madam/v1/coordinator.grpc.pb.h"
#include "madam/v1/worker.grpc.pb.h"
#include "tests/support/child_process.h"

namespace madam {
namespace {

using madam::testing::ChildProcess;
using madam::testing::Madamd;
using madam::testing::StartMadamd;
using madam::testing::TempDir;

// sgd and madam at two learning rates, one seed: 4 runs.
constexpr char kSweep[] =
    "name: report-e2e\n"
    "task: synthetic-mlp\n"
    "metric: {name: test/error, goal: minimize}\n"
    "epochs: 1\n"
    "grid:\n"
    "  optimizer: [sgd, madam]\n"
    "  lr: [0.01, 0.1]\n"
    "seeds: [0]\n";

// The fabricated final test/error of each cell:
//   sgd 0.01 -> 40, sgd 0.1 -> 20 (best), madam 0.01 -> 10 (best), madam 0.1 -> 25.
// So: sgd values 20/40 = 0.5 and 1; madam 1 and 10/25 = 0.4.
double FakeError(const std::string& optimizer, double lr) {
  if (optimizer == "sgd") return lr < 0.05 ? 40 : 20;
  return lr < 0.05 ? 10 : 25;
}

class ReportCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    madamd_ = StartMadamd(MADAMD_PATH, dir_.path() + "/madam.db");
    auto channel = grpc::CreateChannel(madamd_.address, grpc::InsecureChannelCredentials());
    client_ = v1::Coordinator::NewStub(channel);
    worker_ = v1::WorkerApi::NewStub(channel);

    grpc::ClientContext ctx;
    v1::SubmitSweepRequest req;
    req.set_file_name("report.yaml");
    req.set_spec_text(kSweep);
    v1::SubmitSweepResponse resp;
    grpc::Status s = client_->SubmitSweep(&ctx, req, &resp);
    ASSERT_TRUE(s.ok()) << s.error_message();
    ASSERT_EQ(resp.runs(), 4);
    sweep_id_ = resp.sweep_id();
  }

  // Leases every run and completes it with its fabricated error.
  void CompleteAll() {
    grpc::ClientContext rctx;
    v1::RegisterWorkerRequest reg;
    reg.set_name("fake");
    reg.set_device("cpu");
    v1::RegisterWorkerResponse reg_resp;
    ASSERT_TRUE(worker_->RegisterWorker(&rctx, reg, &reg_resp).ok());
    for (int i = 0; i < 4; ++i) {
      grpc::ClientContext actx;
      v1::AcquireRunRequest acq;
      acq.set_worker_id(reg_resp.worker_id());
      acq.set_device("cpu");
      v1::AcquireRunResponse lease;
      ASSERT_TRUE(worker_->AcquireRun(&actx, acq, &lease).ok());
      ASSERT_TRUE(lease.has_run());
      grpc::ClientContext cctx;
      v1::CompleteRunRequest done;
      done.set_run_id(lease.run_id());
      done.set_lease_epoch(lease.lease_epoch());
      done.set_worker_id(reg_resp.worker_id());
      done.set_lease_secret(lease.lease_secret());
      done.set_outcome(v1::RUN_STATE_SUCCEEDED);
      (*done.mutable_final())["test/error"] =
          FakeError(lease.params().at("optimizer").text(), lease.params().at("lr").number());
      v1::CompleteRunResponse done_resp;
      grpc::Status s = worker_->CompleteRun(&cctx, done, &done_resp);
      ASSERT_TRUE(s.ok()) << s.error_message();
    }
  }

  // Runs madamctl against this madamd; returns its exit code and stdout lines.
  int Madamctl(std::vector<std::string> args, std::vector<std::string>* lines) {
    std::vector<std::string> argv = {MADAMCTL_PATH, "--coordinator", madamd_.address};
    argv.insert(argv.end(), args.begin(), args.end());
    ChildProcess ctl(argv);
    auto code = ctl.Wait(std::chrono::seconds(30));
    EXPECT_TRUE(code.has_value()) << "madamctl did not exit";
    if (lines) *lines = ctl.Lines();
    return code.value_or(-1);
  }

  grpc::Status GetReport(const std::vector<std::string>& ids, const std::string& kind,
                         const std::string& format, v1::Report* out) {
    grpc::ClientContext ctx;
    v1::GetReportRequest req;
    for (const auto& id : ids) req.add_sweep_ids(id);
    req.set_kind(kind);
    req.set_format(format);
    return client_->GetReport(&ctx, req, out);
  }

  TempDir dir_;
  Madamd madamd_;
  std::unique_ptr<v1::Coordinator::Stub> client_;
  std::unique_ptr<v1::WorkerApi::Stub> worker_;
  std::string sweep_id_;
};

TEST_F(ReportCliTest, MadamctlPrintsLrSensitivityCsvRows) {
  CompleteAll();
  std::vector<std::string> lines;
  ASSERT_EQ(Madamctl({"report", "lr-sensitivity", "--sweep", sweep_id_, "--format", "csv"}, &lines), 0);
  // Plain CSV: the header and the four rows, no comment lines.
  ASSERT_EQ(lines.size(), 5u);
  EXPECT_EQ(lines[0], "task,optimizer,lr,err,value,seeds");
  EXPECT_EQ(lines[1], "synthetic-mlp,sgd,0.01,40,0.5,1");
  EXPECT_EQ(lines[2], "synthetic-mlp,sgd,0.1,20,1,1");
  EXPECT_EQ(lines[3], "synthetic-mlp,madam,0.01,10,1,1");
  EXPECT_EQ(lines[4], "synthetic-mlp,madam,0.1,25,0.4,1");
}

TEST_F(ReportCliTest, MadamctlWritesTable1AndSvgFiles) {
  CompleteAll();
  const std::string md = dir_.path() + "/table1.md", svg = dir_.path() + "/fig1.svg";
  ASSERT_EQ(Madamctl({"report", "table1", "--sweep", sweep_id_, "-o", md}, nullptr), 0);
  std::ifstream in(md);
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_NE(text.str().find("10.00 ± 0.00 [10.00, 10.00] (n=1)"), std::string::npos) << text.str();
  EXPECT_NE(text.str().find("20.00 ± 0.00 [20.00, 20.00] (lr 0.1, n=1)"), std::string::npos) << text.str();

  ASSERT_EQ(Madamctl({"report", "lr-sensitivity", "--sweep", sweep_id_, "--format", "svg", "-o", svg},
                     nullptr),
            0);
  std::ifstream svg_in(svg);
  std::stringstream svg_text;
  svg_text << svg_in.rdbuf();
  EXPECT_NE(svg_text.str().find("<svg"), std::string::npos);
  EXPECT_NE(svg_text.str().find("class=\"marker best\" data-series=\"madam\" data-x=\"0.01\""),
            std::string::npos);
}

TEST_F(ReportCliTest, MadamctlFailsNamingAnUnwritablePath) {
  CompleteAll();
  EXPECT_EQ(Madamctl({"report", "table1", "--sweep", sweep_id_, "-o", dir_.path() + "/no/such/dir/x.md"},
                     nullptr),
            1);
}

TEST_F(ReportCliTest, BadInputGetsTheRightCodeAndMessage) {
  v1::Report report;
  grpc::Status s = GetReport({"sw-deadbeef"}, "table1", "md", &report);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_NE(s.error_message().find("sw-deadbeef"), std::string::npos) << s.error_message();

  s = GetReport({sweep_id_}, "table3", "md", &report);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("lr-sensitivity, table1, table2"), std::string::npos);

  s = GetReport({sweep_id_}, "table1", "pdf", &report);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("md, csv, json, latex, svg"), std::string::npos);

  s = GetReport({sweep_id_}, "table2", "md", &report);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(s.error_message().find("int_madam with a bits parameter"), std::string::npos)
      << s.error_message();
  EXPECT_NE(s.error_message().find(sweep_id_), std::string::npos) << s.error_message();

  // Before any run finished every cell is missing, and shown as such.
  s = GetReport({sweep_id_}, "lr-sensitivity", "md", &report);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(report.content_type(), "text/markdown; charset=utf-8");
  EXPECT_EQ(report.format(), "md");
  EXPECT_NE(report.content().find("missing: 1 pending"), std::string::npos) << report.content();
}

}  // namespace
}  // namespace madam
