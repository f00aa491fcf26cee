// madamctl's commands end to end through the command line (CLI11 parsing,
// dispatch, output, exit status), against a scripted FakeCoordinatorStub.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "cli/app.h"
#include "cli/output.h"
#include "cli/sweep_commands.h"
#include "fake_coordinator.h"

namespace madam::cli {
namespace {

namespace v1 = madam::v1;
using testing::FakeCoordinatorStub;
using std::chrono::milliseconds;
using std::chrono::seconds;
using std::chrono::system_clock;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

grpc::Status Unavailable() {
  return grpc::Status(grpc::StatusCode::UNAVAILABLE, "failed to connect to all addresses");
}

v1::Sweep MakeSweep(const std::string& id, const std::string& state, int64_t pending, int64_t running,
                    int64_t succeeded, int64_t diverged, int64_t failed, int64_t cancelled) {
  v1::Sweep s;
  s.set_id(id);
  s.set_name("fig1-fmnist");
  s.set_state(state);
  v1::RunCounts* c = s.mutable_counts();
  c->set_pending(pending);
  c->set_running(running);
  c->set_succeeded(succeeded);
  c->set_diverged(diverged);
  c->set_failed(failed);
  c->set_cancelled(cancelled);
  s.set_metric_name("test/error");
  s.set_metric_goal("minimize");
  s.set_max_attempts(3);
  s.set_device("any");
  s.set_created_at_ms(1764336717000);
  return s;
}

v1::SweepProgress Progress(const v1::Sweep& sweep) {
  v1::SweepProgress p;
  *p.mutable_sweep() = sweep;
  return p;
}

void SetNumber(v1::Run* run, const std::string& name, double v) {
  (*run->mutable_params())[name].set_number(v);
}
void SetText(v1::Run* run, const std::string& name, const std::string& v) {
  (*run->mutable_params())[name].set_text(v);
}

class MadamctlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::unsetenv("MADAM_COORDINATOR");
    ::unsetenv("MADAM_TOKEN");
    dir_ = std::filesystem::temp_directory_path() /
           ("madamctl_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  int Run(std::vector<std::string> args) {
    out_.str("");
    err_.str("");
    args.insert(args.begin(), "madamctl");
    std::vector<const char*> argv;
    for (const std::string& a : args) argv.push_back(a.c_str());
    env_ = CommandEnv();
    env_.out = &out_;
    env_.err = &err_;
    env_.out_is_tty = tty_;
    env_.sleep = [this](milliseconds d) { sleeps_.push_back(d); };
    env_.now_ms = [] { return int64_t{1764336717000} + 5000; };
    return RunMadamctl(static_cast<int>(argv.size()), argv.data(), env_,
                       [this](const ClientOptions& options) {
                         options_ = options;
                         return fake_;
                       });
  }

  std::string WriteFile(const std::string& name, const std::string& text) {
    std::filesystem::path p = dir_ / name;
    std::ofstream(p) << text;
    return p.string();
  }

  std::shared_ptr<FakeCoordinatorStub> fake_ = std::make_shared<FakeCoordinatorStub>();
  std::ostringstream out_, err_;
  CommandEnv env_;
  ClientOptions options_;
  bool tty_ = false;
  std::vector<milliseconds> sleeps_;
  std::filesystem::path dir_;
};

// ---- global flags, usage, transport ----

// ---- theory (the paper's Theorem 1) ----

TEST_F(MadamctlTest, TheoryPrintsTheBoundAndThePapersThreeExamples) {
  ASSERT_EQ(Run({"--json", "theory", "--depth", "50"}), kExitOk) << err_.str();
  auto j = nlohmann::json::parse(out_.str());
  // (1 + cos(pi/4))^(1/50) - 1 = 0.010754...: the paper's eta = 0.01 for 50 layers.
  EXPECT_NEAR(j["max_lr"].get<double>(), 0.0107544, 1e-6);
  ASSERT_EQ(j["examples"].size(), 3u);
  for (const auto& e : j["examples"]) {
    const double paper = e["paper_lr"].get<double>();
    EXPECT_GT(e["max_lr"].get<double>(), paper) << e.dump();        // the paper's eta is safe...
    EXPECT_LT(e["max_lr"].get<double>(), 1.1 * paper) << e.dump();  // ...and the bound's scale
  }
  EXPECT_EQ(j["examples"][1]["depth"], 500);
  out_.str("");
  ASSERT_EQ(Run({"theory", "--model", "imagenet-resnet50", "--cos", "1"}), kExitOk);
  EXPECT_NE(out_.str().find("L = 50 (imagenet-resnet50), cos gamma = 1: eta < 0.014\n"),
            std::string::npos)
      << out_.str();
  EXPECT_NE(out_.str().find("L = 5000: eta < 0.000107 (paper: 0.0001)"), std::string::npos)
      << out_.str();
}

TEST_F(MadamctlTest, TheoryBadDepthOrCosIsAUsageError) {
  EXPECT_EQ(Run({"theory", "--depth", "0"}), kExitUsage);
  EXPECT_NE(err_.str().find("--depth must be at least 1"), std::string::npos) << err_.str();
  EXPECT_EQ(Run({"theory", "--depth", "10", "--cos", "0"}), kExitUsage);
  EXPECT_EQ(Run({"theory", "--depth", "10", "--cos", "1.5"}), kExitUsage);
  EXPECT_EQ(Run({"theory"}), kExitUsage);
  EXPECT_EQ(Run({"theory", "--model", "no-such-task"}), kExitUsage);
}

TEST_F(MadamctlTest, UnknownCommandIsAUsageError) {
  EXPECT_EQ(Run({"frobnicate"}), kExitUsage);
  EXPECT_EQ(err_.str().rfind("madamctl: The following argument was not expected: frobnicate", 0), 0u)
      << err_.str();
  EXPECT_EQ(Run({"sweep", "frobnicate"}), kExitUsage);
  EXPECT_TRUE(fake_->calls.empty());
}

TEST_F(MadamctlTest, MissingCommandOrArgumentIsAUsageError) {
  EXPECT_EQ(Run({}), kExitUsage);
  EXPECT_EQ(Run({"sweep"}), kExitUsage);
  EXPECT_EQ(err_.str().rfind("madamctl: name a sweep command\n", 0), 0u) << err_.str();
  EXPECT_NE(err_.str().find("Usage: madamctl sweep"), std::string::npos) << err_.str();
  EXPECT_NE(err_.str().find("submit"), std::string::npos);
  EXPECT_EQ(Run({"sweep", "show"}), kExitUsage);
  EXPECT_EQ(Run({"run", "list"}), kExitUsage);  // --sweep is required
  EXPECT_EQ(Run({"sweep", "export", "sw-1", "--format", "xml"}), kExitUsage);
  EXPECT_TRUE(fake_->calls.empty());
}

TEST_F(MadamctlTest, HelpExitsZero) {
  EXPECT_EQ(Run({"--help"}), kExitOk);
  EXPECT_NE(out_.str().find("sweep"), std::string::npos);
}

TEST_F(MadamctlTest, CoordinatorDefaultsToLoopbackAndFollowsFlagAndEnvironment) {
  fake_->list_sweeps = [](auto&, auto*) { return grpc::Status::OK; };
  ASSERT_EQ(Run({"sweep", "list"}), kExitOk);
  EXPECT_EQ(options_.address, "127.0.0.1:7070");
  ::setenv("MADAM_COORDINATOR", "10.1.2.3:9000", 1);
  ASSERT_EQ(Run({"sweep", "list"}), kExitOk);
  EXPECT_EQ(options_.address, "10.1.2.3:9000");
  ASSERT_EQ(Run({"--coordinator", "host:1", "sweep", "list"}), kExitOk);
  EXPECT_EQ(options_.address, "host:1");
}

TEST_F(MadamctlTest, TokenTravelsAsBearerMetadata) {
  fake_->list_sweeps = [](auto&, auto*) { return grpc::Status::OK; };
  ASSERT_EQ(Run({"sweep", "list"}), kExitOk);
  EXPECT_EQ(fake_->calls.back().metadata.count("authorization"), 0u);
  ASSERT_EQ(Run({"--token", "s3cret", "sweep", "list"}), kExitOk);
  auto md = fake_->calls.back().metadata;
  ASSERT_EQ(md.count("authorization"), 1u);
  EXPECT_EQ(md.find("authorization")->second, "Bearer s3cret");
  ::setenv("MADAM_TOKEN", "from-env", 1);
  ASSERT_EQ(Run({"sweep", "list"}), kExitOk);
  EXPECT_EQ(fake_->calls.back().metadata.find("authorization")->second, "Bearer from-env");
}

TEST_F(MadamctlTest, UnaryCallsHaveATenSecondDeadlineAndSubmitSixty) {
  fake_->list_sweeps = [](auto&, auto*) { return grpc::Status::OK; };
  fake_->submit = [](auto&, auto* r) {
    r->set_sweep_id("sw-1");
    return grpc::Status::OK;
  };
  ASSERT_EQ(Run({"sweep", "list"}), kExitOk);
  ASSERT_EQ(Run({"sweep", "submit", WriteFile("s.yaml", "name: x\n")}), kExitOk);
  const auto& list = fake_->calls[0];
  const auto& submit = fake_->calls[1];
  auto near = [](system_clock::duration d, seconds want) {
    return d > want - seconds(2) && d <= want;
  };
  EXPECT_TRUE(near(list.deadline - list.issued, seconds(10)));
  EXPECT_TRUE(near(submit.deadline - submit.issued, seconds(60)));
}

TEST_F(MadamctlTest, UnreachableCoordinatorNamesTheAddressAndFails) {
  fake_->get_sweep = [](auto&, auto*) { return Unavailable(); };
  EXPECT_EQ(Run({"--coordinator", "127.0.0.1:7999", "sweep", "show", "sw-1"}), kExitFailure);
  EXPECT_EQ(err_.str(),
            "madamctl: cannot reach the coordinator at 127.0.0.1:7999 (UNAVAILABLE: failed to "
            "connect to all addresses): is madamd running? set --coordinator or MADAM_COORDINATOR\n");
  EXPECT_TRUE(out_.str().empty());
}

// ---- sweep submit ----

TEST_F(MadamctlTest, SubmitSendsFileNameTextAndAKey) {
  std::string path = WriteFile("grid.yaml", "name: grid\ntask: fmnist-mlp\n");
  fake_->submit = [](auto&, auto* r) {
    r->set_sweep_id("sw-7");
    r->set_runs(27);
    return grpc::Status::OK;
  };
  ASSERT_EQ(Run({"sweep", "submit", path}), kExitOk);
  ASSERT_EQ(fake_->submit_requests.size(), 1u);
  const auto& req = fake_->submit_requests[0];
  EXPECT_EQ(req.file_name(), path);
  EXPECT_EQ(req.spec_text(), "name: grid\ntask: fmnist-mlp\n");
  EXPECT_FALSE(req.dry_run());
  EXPECT_EQ(req.idempotency_key().size(), 32u);
  EXPECT_EQ(out_.str(), "submitted sweep sw-7 (27 runs)\n");
}

TEST_F(MadamctlTest, SubmitJsonIsIdAndRuns) {
  fake_->submit = [](auto&, auto* r) {
    r->set_sweep_id("sw-7");
    r->set_runs(27);
    r->set_name("grid");
    return grpc::Status::OK;
  };
  ASSERT_EQ(Run({"--json", "sweep", "submit", WriteFile("g.yaml", "x")}), kExitOk);
  EXPECT_EQ(out_.str(), "{\"id\":\"sw-7\",\"runs\":27}\n");
}

TEST_F(MadamctlTest, SubmitKeysDifferPerInvocation) {
  fake_->submit = [](auto&, auto*) { return grpc::Status::OK; };
  std::string path = WriteFile("g.yaml", "x");
  ASSERT_EQ(Run({"sweep", "submit", path}), kExitOk);
  ASSERT_EQ(Run({"sweep", "submit", path}), kExitOk);
  EXPECT_NE(fake_->submit_requests[0].idempotency_key(), fake_->submit_requests[1].idempotency_key());
}

TEST_F(MadamctlTest, SubmitRetriesUnavailableWithTheSameKey) {
  int calls = 0;
  fake_->submit = [&calls](auto&, auto* r) {
    if (++calls <= 2) return Unavailable();
    if (calls == 3) return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "slow");
    r->set_sweep_id("sw-1");
    r->set_runs(4);
    return grpc::Status::OK;
  };
  ASSERT_EQ(Run({"sweep", "submit", WriteFile("g.yaml", "x")}), kExitOk);
  ASSERT_EQ(fake_->submit_requests.size(), 4u);
  for (const auto& req : fake_->submit_requests) {
    EXPECT_EQ(req.idempotency_key(), fake_->submit_requests[0].idempotency_key());
  }
  ASSERT_EQ(sleeps_.size(), 3u);
  EXPECT_LT(sleeps_[0], sleeps_[1]);
  EXPECT_LT(sleeps_[1], sleeps_[2]);
  EXPECT_NE(err_.str().find("retrying"), std::string::npos);
  EXPECT_EQ(out_.str(), "submitted sweep sw-1 (4 runs)\n");
}

TEST_F(MadamctlTest, SubmitGivesUpAfterThreeRetries) {
  fake_->submit = [](auto&, auto*) { return Unavailable(); };
  EXPECT_EQ(Run({"sweep", "submit", WriteFile("g.yaml", "x")}), kExitFailure);
  EXPECT_EQ(fake_->submit_requests.size(), 1u + kSubmitRetries);
  std::string err = err_.str();
  EXPECT_NE(err.rfind("madamctl: cannot reach the coordinator at 127.0.0.1:7070"), std::string::npos);
  EXPECT_NE(err.find("is madamd running?"), std::string::npos);
}

TEST_F(MadamctlTest, SubmitPassesABadFilesPositionThroughWithoutRetrying) {
  fake_->submit = [](auto&, auto*) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "bad.yaml:4:3: unknown key \"gird\" (did you mean \"grid\"?)");
  };
  EXPECT_EQ(Run({"sweep", "submit", WriteFile("bad.yaml", "x")}), kExitFailure);
  EXPECT_EQ(fake_->submit_requests.size(), 1u);
  EXPECT_EQ(err_.str(), "madamctl: bad.yaml:4:3: unknown key \"gird\" (did you mean \"grid\"?)\n");
}

TEST_F(MadamctlTest, SubmitOfAnUnreadableFileNamesThePath) {
  std::string missing = (dir_ / "nope.yaml").string();
  EXPECT_EQ(Run({"sweep", "submit", missing}), kExitFailure);
  EXPECT_EQ(err_.str(), "madamctl: cannot read sweep file \"" + missing +
                            "\": No such file or directory\n");
  EXPECT_EQ(Run({"sweep", "submit", dir_.string()}), kExitFailure);
  EXPECT_NE(err_.str().find("is a directory"), std::string::npos);
  EXPECT_TRUE(fake_->calls.empty());
}

TEST_F(MadamctlTest, DryRunPrintsCountAndPreview) {
  fake_->submit = [](const v1::SubmitSweepRequest& q, v1::SubmitSweepResponse* r) {
    EXPECT_TRUE(q.dry_run());
    r->set_runs(27);
    r->set_name("fig1");
    r->add_preview("optimizer=sgd lr=0.0001 seed=0");
    r->add_preview("optimizer=sgd lr=0.00031622776601683794 seed=0");
    return grpc::Status::OK;
  };
  std::string path = WriteFile("g.yaml", "x");
  ASSERT_EQ(Run({"sweep", "submit", path, "--dry-run"}), kExitOk);
  EXPECT_EQ(out_.str(),
            "valid: 27 runs (sweep fig1)\n"
            "  optimizer=sgd lr=0.0001 seed=0\n"
            "  optimizer=sgd lr=0.00031622776601683794 seed=0\n"
            "  ... 25 more\n");
  ASSERT_EQ(Run({"--json", "sweep", "submit", "--dry-run", path}), kExitOk);
  Json j = Json::parse(out_.str());
  EXPECT_EQ(j["id"], "");
  EXPECT_EQ(j["runs"], 27);
  EXPECT_EQ(j["dry_run"], true);
  EXPECT_EQ(out_.str().rfind("{\"id\":\"\",\"runs\":27,\"dry_run\":true", 0), 0u);
}

TEST_F(MadamctlTest, SubmitWaitWatchesAndFailsWhenARunFailed) {
  fake_->submit = [](auto&, auto* r) {
    r->set_sweep_id("sw-1");
    r->set_runs(3);
    return grpc::Status::OK;
  };
  fake_->watch_streams.push_back({{Progress(MakeSweep("sw-1", "running", 1, 2, 0, 0, 0, 0)),
                                   Progress(MakeSweep("sw-1", "finished", 0, 0, 2, 0, 1, 0))},
                                  grpc::Status::OK});
  EXPECT_EQ(Run({"sweep", "submit", WriteFile("g.yaml", "x"), "--wait"}), kExitFailure);
  ASSERT_EQ(fake_->watch_requests.size(), 1u);
  EXPECT_EQ(fake_->watch_requests[0].sweep_id(), "sw-1");
  EXPECT_NE(out_.str().find("submitted sweep sw-1"), std::string::npos);
  EXPECT_NE(out_.str().find("sweep sw-1 finished: 2 succeeded, 0 diverged, 1 failed, 0 cancelled"),
            std::string::npos);
  EXPECT_NE(err_.str().find("ended with 1 failed run"), std::string::npos);
}

// ---- sweep list / show ----

TEST_F(MadamctlTest, ShowJsonHasTheContractKeysFirst) {
  fake_->get_sweep = [](const v1::GetSweepRequest& q, v1::Sweep* s) {
    *s = MakeSweep(q.sweep_id(), "running", 5, 2, 10, 1, 3, 0);
    return grpc::Status::OK;
  };
  ASSERT_EQ(Run({"--json", "sweep", "show", "sw-3"}), kExitOk);
  EXPECT_EQ(fake_->get_sweep_requests[0].sweep_id(), "sw-3");
  EXPECT_EQ(out_.str().rfind(
                "{\"id\":\"sw-3\",\"name\":\"fig1-fmnist\",\"state\":\"running\",\"counts\":"
                "{\"pending\":5,\"running\":2,\"succeeded\":10,\"diverged\":1,\"failed\":3,"
                "\"cancelled\":0}",
                0),
            0u)
      << out_.str();
  Json j = Json::parse(out_.str());
  EXPECT_EQ(j["metric"]["name"], "test/error");
}

TEST_F(MadamctlTest, ShowPrintsKeyValueLines) {
  fake_->get_sweep = [](auto&, v1::Sweep* s) {
    *s = MakeSweep("sw-3", "running", 5, 2, 10, 1, 3, 0);
    return grpc::Status::OK;
  };
  ASSERT_EQ(Run({"sweep", "show", "sw-3"}), kExitOk);
  std::string out = out_.str();
  EXPECT_EQ(out.rfind("id:", 0), 0u);
  EXPECT_NE(out.find("state:          running\n"), std::string::npos) << out;
  EXPECT_NE(out.find("progress:       14/21 runs done\n"), std::string::npos) << out;
  EXPECT_NE(out.find("failed:         3\n"), std::string::npos) << out;
  EXPECT_NE(out.find("metric:         test/error (minimize)\n"), std::string::npos) << out;
}

TEST_F(MadamctlTest, ShowGivesDeviceHoursMedianRunAndEta) {
  fake_->get_sweep = [](auto&, v1::Sweep* s) {
    *s = MakeSweep("sw-3", "running", 2, 0, 2, 0, 0, 0);
    return grpc::Status::OK;
  };
  fake_->list_runs = [](auto&, v1::ListRunsResponse* r) {
    // Two finished runs of 30 and 50 minutes (median 40), two pending.
    for (int64_t minutes : {30, 50}) {
      v1::Run* run = r->add_runs();
      run->set_state(v1::RUN_STATE_SUCCEEDED);
      (*run->mutable_params())["task"].set_text("fmnist-mlp");
      run->set_started_at_ms(1'000'000);
      run->set_ended_at_ms(1'000'000 + minutes * 60'000);
    }
    for (int i = 0; i < 2; ++i) {
      v1::Run* run = r->add_runs();
      run->set_state(v1::RUN_STATE_PENDING);
      (*run->mutable_params())["task"].set_text("fmnist-mlp");
    }
    return grpc::Status::OK;
  };
  fake_->list_workers = [](auto&, v1::ListWorkersResponse* r) {
    v1::Worker* w = r->add_workers();
    w->set_device("cuda:0");
    w->set_connected(true);
    v1::Worker* gone = r->add_workers();
    gone->set_device("cpu");
    gone->set_connected(false);
    return grpc::Status::OK;
  };
  ASSERT_EQ(Run({"sweep", "show", "sw-3"}), kExitOk) << err_.str();
  const std::string out = out_.str();
  EXPECT_NE(out.find("device_hours:   1.333\n"), std::string::npos) << out;
  EXPECT_NE(out.find("median_run:     fmnist-mlp 40 min\n"), std::string::npos) << out;
  // Two pending runs of 40 min on the one connected device: 80 min.
  EXPECT_NE(out.find("eta:            80 min on 1 device(s)\n"), std::string::npos) << out;
  out_.str("");
  ASSERT_EQ(Run({"--json", "sweep", "show", "sw-3"}), kExitOk);
  Json j = Json::parse(out_.str());
  EXPECT_DOUBLE_EQ(j["cost"]["device_seconds"].get<double>(), 4800);
  EXPECT_DOUBLE_EQ(j["cost"]["eta_seconds"].get<double>(), 4800);
  EXPECT_EQ(j["cost"]["slots"], 1);
}

TEST_F(MadamctlTest, ShowSaysWhyCostIsUnavailable) {
  fake_->get_sweep = [](auto&, v1::Sweep* s) {
    *s = MakeSweep("sw-3", "running", 1, 0, 0, 0, 0, 0);
    return grpc::Status::OK;
  };
  fake_->list_runs = [](auto&, auto*) { return grpc::Status(grpc::StatusCode::UNAVAILABLE, "store down"); };
  ASSERT_EQ(Run({"sweep", "show", "sw-3"}), kExitOk);
  EXPECT_NE(out_.str().find("cost:           unavailable (cannot list runs: store down)\n"), std::string::npos) << out_.str();
}

TEST_F(MadamctlTest, ShowOfAnUnknownSweepPassesTheServerMessage) {
  fake_->get_sweep = [](auto&, auto*) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND, "no sweep \"sw-x\"");
  };
  EXPECT_EQ(Run({"sweep", "show", "sw-x"}), kExitFailure);
  EXPECT_EQ(err_.str(), "madamctl: no sweep \"sw-x\"\n");
}

TEST_F(MadamctlTest, ListPrintsATableAndJson) {
  fake_->list_sweeps = [](auto&, v1::ListSweepsResponse* r) {
    *r->add_sweeps() = MakeSweep("sw-1", "finished", 0, 0, 9, 0, 0, 0);
    *r->add_sweeps() = MakeSweep("sw-2", "running", 5, 2, 10, 1, 3, 0);
    return grpc::Status::OK;
  };
  ASSERT_EQ(Run({"sweep", "list"}), kExitOk);
  std::istringstream lines(out_.str());
  std::string header, row1, row2;
  std::getline(lines, header);
  std::getline(lines, row1);
  std::getline(lines, row2);
  EXPECT_EQ(header,
            "ID    NAME         STATE     PROGRESS  PENDING  RUNNING  SUCCEEDED  DIVERGED  FAILED  "
            "CANCELLED  CREATED");
  EXPECT_EQ(row2,
            "sw-2  fig1-fmnist  running   14/21     5        2        10         1         3       "
            "0          2025-11-28 13:31:57Z");
  ASSERT_EQ(Run({"--json", "sweep", "list"}), kExitOk);
  Json j = Json::parse(out_.str());
  ASSERT_EQ(j["sweeps"].size(), 2u);
  EXPECT_EQ(j["sweeps"][1]["id"], "sw-2");
  EXPECT_EQ(j["sweeps"][1]["counts"]["failed"], 3);
}

// ---- sweep watch ----

TEST_F(MadamctlTest, WatchPrintsOnePlainLinePerUpdateWhenNotATerminal) {
  v1::SweepProgress busy = Progress(MakeSweep("sw-1", "running", 1, 1, 1, 0, 0, 0));
  v1::RunProgress* r = busy.add_running();
  r->set_run_id("sw-1-r1");
  r->set_fraction(0.5);
  fake_->watch_streams.push_back(
      {{busy, Progress(MakeSweep("sw-1", "finished", 0, 0, 3, 0, 0, 0))}, grpc::Status::OK});
  ASSERT_EQ(Run({"sweep", "watch", "sw-1"}), kExitOk);
  std::string out = out_.str();
  EXPECT_EQ(out.find('\x1b'), std::string::npos);
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 3) << out;  // 2 updates + verdict
  EXPECT_NE(out.find("1/3"), std::string::npos);
  EXPECT_NE(out.find("sweep sw-1 finished: 3 succeeded"), std::string::npos);
  EXPECT_TRUE(err_.str().empty());
  EXPECT_EQ(fake_->calls[0].deadline, system_clock::time_point::max()) << "watch has no deadline";
}

TEST_F(MadamctlTest, WatchRedrawsInPlaceOnATerminal) {
  tty_ = true;
  v1::SweepProgress busy = Progress(MakeSweep("sw-1", "running", 1, 1, 1, 0, 0, 0));
  busy.add_running()->set_run_id("sw-1-r1");
  fake_->watch_streams.push_back(
      {{busy, Progress(MakeSweep("sw-1", "finished", 0, 0, 3, 0, 0, 0))}, grpc::Status::OK});
  ASSERT_EQ(Run({"sweep", "watch", "sw-1"}), kExitOk);
  EXPECT_NE(out_.str().find("\x1b[2A"), std::string::npos) << "moves up over overall + run line";
  EXPECT_NE(out_.str().find("sw-1-r1"), std::string::npos);
}

TEST_F(MadamctlTest, WatchJsonPrintsOneObjectPerUpdate) {
  fake_->watch_streams.push_back({{Progress(MakeSweep("sw-1", "running", 2, 1, 0, 0, 0, 0)),
                                   Progress(MakeSweep("sw-1", "finished", 0, 0, 3, 0, 0, 0))},
                                  grpc::Status::OK});
  ASSERT_EQ(Run({"--json", "sweep", "watch", "sw-1"}), kExitOk);
  std::istringstream lines(out_.str());
  std::string line;
  std::vector<Json> updates;
  while (std::getline(lines, line)) updates.push_back(Json::parse(line));
  ASSERT_EQ(updates.size(), 2u);
  EXPECT_EQ(updates[0]["sweep"]["state"], "running");
  EXPECT_EQ(updates[1]["sweep"]["counts"]["succeeded"], 3);
  EXPECT_TRUE(updates[1]["running"].is_array());
}

TEST_F(MadamctlTest, WatchExitsOneWhenRunsFailed) {
  fake_->watch_streams.push_back(
      {{Progress(MakeSweep("sw-1", "finished", 0, 0, 1, 1, 2, 0))}, grpc::Status::OK});
  EXPECT_EQ(Run({"sweep", "watch", "sw-1"}), kExitFailure);
  EXPECT_NE(err_.str().find("sweep sw-1 ended with 2 failed runs"), std::string::npos);
}

TEST_F(MadamctlTest, WatchOfADivergedButNotFailedSweepSucceeds) {
  fake_->watch_streams.push_back(
      {{Progress(MakeSweep("sw-1", "finished", 0, 0, 1, 2, 0, 0))}, grpc::Status::OK});
  EXPECT_EQ(Run({"sweep", "watch", "sw-1"}), kExitOk);
}

TEST_F(MadamctlTest, WatchReconnectsWhenTheStreamBreaks) {
  fake_->watch_streams.push_back(
      {{Progress(MakeSweep("sw-1", "running", 1, 1, 1, 0, 0, 0))}, Unavailable()});
  fake_->watch_streams.push_back({{}, Unavailable()});
  fake_->watch_streams.push_back(
      {{Progress(MakeSweep("sw-1", "finished", 0, 0, 3, 0, 0, 0))}, grpc::Status::OK});
  ASSERT_EQ(Run({"sweep", "watch", "sw-1"}), kExitOk);
  EXPECT_EQ(fake_->watch_requests.size(), 3u);
  EXPECT_EQ(sleeps_.size(), 2u);
  EXPECT_NE(err_.str().find("reconnecting"), std::string::npos);
  EXPECT_NE(err_.str().find("127.0.0.1:7070"), std::string::npos);
}

TEST_F(MadamctlTest, WatchGivesUpAfterRepeatedBreaks) {
  for (int i = 0; i <= kWatchReconnects; ++i) fake_->watch_streams.push_back({{}, Unavailable()});
  EXPECT_EQ(Run({"sweep", "watch", "sw-1"}), kExitFailure);
  EXPECT_EQ(fake_->watch_requests.size(), static_cast<size_t>(kWatchReconnects + 1));
  std::string err = err_.str();
  EXPECT_NE(err.find("madamctl: cannot reach the coordinator"), err.rfind("madamctl: lost")) << err;
}

TEST_F(MadamctlTest, WatchOfAnUnknownSweepFailsAtOnce) {
  fake_->watch_streams.push_back({{}, grpc::Status(grpc::StatusCode::NOT_FOUND, "no sweep \"sw-9\"")});
  EXPECT_EQ(Run({"sweep", "watch", "sw-9"}), kExitFailure);
  EXPECT_EQ(err_.str(), "madamctl: no sweep \"sw-9\"\n");
  EXPECT_TRUE(sleeps_.empty());
}

// ---- sweep cancel / rerun ----

TEST_F(MadamctlTest, CancelSendsTheIdAndReports) {
  fake_->cancel = [](auto&, v1::CancelSweepResponse* r) {
    *r->mutable_sweep() = MakeSweep("sw-1", "cancelled", 0, 2, 3, 0, 0, 5);
    return grpc::Status::OK;
  };
  ASSERT_EQ(Run({"sweep", "cancel", "sw-1"}), kExitOk);
  EXPECT_EQ(fake_->cancel_requests[0].sweep_id(), "sw-1");
  EXPECT_NE(out_.str().find("cancelled sweep sw-1"), std::string::npos);
  ASSERT_EQ(Run({"--json", "sweep", "cancel", "sw-1"}), kExitOk);
  EXPECT_EQ(Json::parse(out_.str())["state"], "cancelled");
}

TEST_F(MadamctlTest, RerunDefaultsToFailedDivergedCancelled) {
  fake_->rerun = [](auto&, v1::RerunSweepResponse* r) {
    r->set_runs(4);
    return grpc::Status::OK;
  };
  ASSERT_EQ(Run({"sweep", "rerun", "sw-1"}), kExitOk);
  const auto& req = fake_->rerun_requests[0];
  EXPECT_EQ(req.sweep_id(), "sw-1");
  ASSERT_EQ(req.states_size(), 3);
  EXPECT_EQ(req.states(0), v1::RUN_STATE_FAILED);
  EXPECT_EQ(req.states(1), v1::RUN_STATE_DIVERGED);
  EXPECT_EQ(req.states(2), v1::RUN_STATE_CANCELLED);
  EXPECT_EQ(out_.str(), "requeued 4 runs of sweep sw-1\n");
  ASSERT_EQ(Run({"sweep", "rerun", "sw-1", "--state", "failed"}), kExitOk);
  ASSERT_EQ(fake_->rerun_requests[1].states_size(), 1);
  EXPECT_EQ(fake_->rerun_requests[1].states(0), v1::RUN_STATE_FAILED);
}

TEST_F(MadamctlTest, PromoteSendsSeedsAndNameAndPrintsTheReasons) {
  fake_->promote = [](const v1::PromoteSweepRequest&, v1::PromoteSweepResponse* r) {
    *r->mutable_sweep() = MakeSweep("sw-2", "running", 9, 0, 0, 0, 0, 0);
    r->set_runs(9);
    r->add_reasons("sgd lr 1e-1: best mean test/error 9.5 over 1 seed of 9 lrs 1e-4..1 in sw-1");
    r->add_reasons("madam lr 1e-2: fixed at the paper's 0.01, never tuned");
    return grpc::Status::OK;
  };
  ASSERT_EQ(Run({"sweep", "promote", "sw-1"}), kExitOk);
  const auto& first = fake_->promote_requests.at(0);
  EXPECT_EQ(first.sweep_id(), "sw-1");
  EXPECT_EQ(std::vector<int64_t>(first.seeds().begin(), first.seeds().end()), (std::vector<int64_t>{0, 1, 2}));
  EXPECT_FALSE(first.dry_run());
  EXPECT_NE(out_.str().find("promoted sw-1 to sweep sw-2 (fig1-fmnist, 9 runs)"), std::string::npos) << out_.str();
  EXPECT_NE(out_.str().find("  madam lr 1e-2: fixed"), std::string::npos) << out_.str();
  ASSERT_EQ(Run({"sweep", "promote", "sw-1", "--seeds", "3, 4", "--name", "t1", "--dry-run"}), kExitOk);
  const auto& second = fake_->promote_requests.at(1);
  EXPECT_EQ(std::vector<int64_t>(second.seeds().begin(), second.seeds().end()), (std::vector<int64_t>{3, 4}));
  EXPECT_EQ(second.name(), "t1");
  EXPECT_TRUE(second.dry_run());
}

TEST_F(MadamctlTest, PromoteAndExtendRetryALostResponse) {
  int calls = 0;
  fake_->extend = [&calls](auto&, v1::ExtendSweepResponse* r) {
    if (++calls == 1) return Unavailable();
    r->set_runs_added(0);
    *r->mutable_sweep() = MakeSweep("sw-1", "running", 3, 0, 3, 0, 0, 0);
    return grpc::Status::OK;
  };
  ASSERT_EQ(Run({"sweep", "extend", "sw-1", "--seeds", "1,2"}), kExitOk);
  EXPECT_EQ(fake_->extend_requests.size(), 2u);
  EXPECT_EQ(out_.str(), "added 0 runs to sweep sw-1 (now 6 runs, running)\n");
  fake_->promote = [](auto&, auto*) { return Unavailable(); };
  EXPECT_EQ(Run({"sweep", "promote", "sw-1"}), kExitFailure);
  EXPECT_EQ(fake_->promote_requests.size(), 1u + kSubmitRetries);
}

TEST_F(MadamctlTest, SeedsThatAreNotIntegersAreAUsageError) {
  EXPECT_EQ(Run({"sweep", "extend", "sw-1", "--seeds", "1,two"}), kExitUsage);
  EXPECT_NE(err_.str().find("\"two\" is not an integer"), std::string::npos) << err_.str();
  EXPECT_EQ(Run({"sweep", "promote", "sw-1", "--seeds", ","}), kExitUsage);
  EXPECT_TRUE(fake_->extend_requests.empty());
  EXPECT_TRUE(fake_->promote_requests.empty());
}

TEST_F(MadamctlTest, ShowOfAPromotedSweepNamesItsParentAndReasons) {
  fake_->get_sweep = [](auto&, v1::Sweep* s) {
    *s = MakeSweep("sw-2", "running", 9, 0, 0, 0, 0, 0);
    s->set_parent_sweep_id("sw-1");
    s->add_promotion_reasons("adam lr 1e-3: best mean test/error 9 over 1 seed of 9 lrs 1e-4..1 in sw-1");
    return grpc::Status::OK;
  };
  ASSERT_EQ(Run({"sweep", "show", "sw-2"}), kExitOk);
  EXPECT_NE(out_.str().find("promoted from sw-1:\n  adam lr 1e-3: best mean"), std::string::npos) << out_.str();
  ASSERT_EQ(Run({"--json", "sweep", "show", "sw-2"}), kExitOk);
  EXPECT_NE(out_.str().find("\"parent\":\"sw-1\""), std::string::npos) << out_.str();
}

TEST_F(MadamctlTest, RerunOfABadStateIsAUsageErrorNamingIt) {
  EXPECT_EQ(Run({"sweep", "rerun", "sw-1", "--state", "failed,exploded"}), kExitUsage);
  EXPECT_NE(err_.str().find("\"exploded\""), std::string::npos);
  EXPECT_EQ(Run({"sweep", "rerun", "sw-1", "--state", "running"}), kExitUsage);
  EXPECT_NE(err_.str().find("\"running\""), std::string::npos);
  EXPECT_TRUE(fake_->calls.empty());
}

// ---- sweep export ----

void TwoRuns(v1::ExportSweepResponse* r) {
  r->mutable_sweep()->set_id("sw-1");
  v1::Run* a = r->add_runs();
  a->set_id("sw-1-r0");
  a->set_state(v1::RUN_STATE_SUCCEEDED);
  a->set_attempts(1);
  SetText(a, "optimizer", "madam");
  SetNumber(a, "lr", 0.001);
  SetNumber(a, "seed", 0);
  (*a->mutable_final())["test/error"] = 13.2;
  (*a->mutable_final())["train/loss"] = 0.25;
  v1::Run* b = r->add_runs();
  b->set_id("sw-1-r1");
  b->set_state(v1::RUN_STATE_DIVERGED);
  b->set_attempts(2);
  SetText(b, "optimizer", "int_madam");
  SetNumber(b, "lr", 1e-4);
  SetNumber(b, "seed", 1);
  SetNumber(b, "bits", 8);
  (*b->mutable_final())["train/loss"] = kNaN;
}

TEST_F(MadamctlTest, ExportCsvHasParamAndFinalColumns) {
  fake_->export_sweep = [](auto&, v1::ExportSweepResponse* r) {
    TwoRuns(r);
    return grpc::Status::OK;
  };
  ASSERT_EQ(Run({"sweep", "export", "sw-1"}), kExitOk);
  EXPECT_EQ(out_.str(),
            "id,state,attempts,bits,lr,optimizer,seed,final.test/error,final.train/loss\n"
            "sw-1-r0,succeeded,1,,0.001,madam,0,13.2,0.25\n"
            "sw-1-r1,diverged,2,8,0.0001,int_madam,1,,nan\n");
}

TEST_F(MadamctlTest, ExportJsonHasNumbersAsNumbersAndNullForNonFinite) {
  fake_->export_sweep = [](auto&, v1::ExportSweepResponse* r) {
    TwoRuns(r);
    return grpc::Status::OK;
  };
  fake_->get_sweep = [](auto&, v1::Sweep* s) {
    *s = MakeSweep("sw-1", "finished", 0, 0, 1, 1, 0, 0);
    s->set_spec_text("name: fig1-fmnist\nfigure: 1\n");
    return grpc::Status::OK;
  };
  ASSERT_EQ(Run({"sweep", "export", "sw-1", "--format", "json"}), kExitOk);
  // The contract's keys first, then the sweep with its file (for offline reports).
  const std::string text = out_.str();
  EXPECT_EQ(text.rfind("{\"sweep\":\"sw-1\",\"runs\":["
                       "{\"id\":\"sw-1-r0\",\"state\":\"succeeded\",\"attempts\":1,"
                       "\"params\":{\"lr\":0.001,\"optimizer\":\"madam\",\"seed\":0},"
                       "\"final\":{\"test/error\":13.2,\"train/loss\":0.25}},"
                       "{\"id\":\"sw-1-r1\",\"state\":\"diverged\",\"attempts\":2,"
                       "\"params\":{\"bits\":8,\"lr\":0.0001,\"optimizer\":\"int_madam\",\"seed\":1},"
                       "\"final\":{\"train/loss\":null}}],\"sweep_info\":{",
                       0),
            0u)
      << text;
  EXPECT_NE(text.find("\"spec_text\":\"name: fig1-fmnist\\nfigure: 1\\n\""), std::string::npos) << text;
  // --json alone picks json; an explicit --format wins.
  ASSERT_EQ(Run({"--json", "sweep", "export", "sw-1"}), kExitOk);
  EXPECT_EQ(out_.str()[0], '{');
  ASSERT_EQ(Run({"--json", "sweep", "export", "sw-1", "--format", "csv"}), kExitOk);
  EXPECT_EQ(out_.str().rfind("id,state,attempts", 0), 0u);
}

// `report --from-export`: the exported runs give the report offline, the
// same numbers madamd computes; a file that is no export names the problem.
TEST_F(MadamctlTest, ReportFromExportComputesOfflineAndNamesABadFile) {
  fake_->export_sweep = [](auto&, v1::ExportSweepResponse* r) {
    r->mutable_sweep()->set_id("sw-1");
    int index = 0;
    for (const char* optimizer : {"sgd", "madam"}) {
      for (double lr : {0.01, 0.1}) {
        for (int seed : {0, 1}) {
          v1::Run* run = r->add_runs();
          run->set_id("sw-1-r" + std::to_string(index++));
          run->set_state(v1::RUN_STATE_SUCCEEDED);
          SetText(run, "task", "fmnist-mlp");
          SetText(run, "optimizer", optimizer);
          SetNumber(run, "lr", lr);
          SetNumber(run, "seed", seed);
          // Seed 0's error; seed 1 adds 2. sgd is best at 0.1, madam at 0.01.
          const bool sgd = optimizer == std::string("sgd");
          const double base = sgd ? (lr == 0.1 ? 10 : 30) : (lr == 0.01 ? 20 : 40);
          (*run->mutable_final())["test/error"] = base + 2 * seed;
        }
      }
    }
    return grpc::Status::OK;
  };
  fake_->get_sweep = [](auto&, v1::Sweep* s) {
    *s = MakeSweep("sw-1", "finished", 0, 0, 8, 0, 0, 0);
    s->set_metric_name("test/error");
    s->set_metric_goal("minimize");
    s->set_spec_text("name: fig1-fmnist\nfigure: 1\ntask: fmnist-mlp\nmetric: {name: test/error, goal: minimize}\n"
                     "grid:\n  optimizer: [sgd, madam]\n  lr: [0.01, 0.1]\nseeds: [0, 1]\n");
    return grpc::Status::OK;
  };
  ASSERT_EQ(Run({"sweep", "export", "sw-1", "--format", "json"}), kExitOk);
  const std::string exported = WriteFile("export.json", out_.str());
  ASSERT_EQ(Run({"report", "lr-sensitivity", "--from-export", exported, "--format", "csv"}), kExitOk);
  // sgd: 0.01 -> 30, 32 (31); 0.1 -> 10, 12 (11). madam: 0.01 -> 20, 22 (21); 0.1 -> 40, 42 (41).
  EXPECT_EQ(out_.str(),
            "task,optimizer,lr,err,value,seeds\n"
            "fmnist-mlp,sgd,0.01,31,0.3548387096774194,2\n"
            "fmnist-mlp,sgd,0.1,11,1,2\n"
            "fmnist-mlp,madam,0.01,21,1,2\n"
            "fmnist-mlp,madam,0.1,41,0.5121951219512195,2\n");
  EXPECT_EQ(fake_->report_requests.size(), 0u) << "an offline report asks no coordinator";

  EXPECT_EQ(Run({"report", "table1", "--from-export", WriteFile("bad.json", "{\"sweep\": \"sw-1\"}")}),
            kExitFailure);
  EXPECT_NE(err_.str().find("sweep_info"), std::string::npos) << err_.str();
  EXPECT_EQ(Run({"report", "table1"}), kExitUsage);
  EXPECT_EQ(Run({"report", "table1", "--sweep", "sw-1", "--from-export", exported}), kExitUsage);
}

// ---- run list / show / metrics ----

TEST_F(MadamctlTest, RunListShowsTheSweepMetricAndFilters) {
  fake_->get_sweep = [](auto&, v1::Sweep* s) {
    *s = MakeSweep("sw-1", "running", 0, 0, 1, 0, 1, 0);
    return grpc::Status::OK;
  };
  fake_->list_runs = [](auto&, v1::ListRunsResponse* r) {
    v1::Run* a = r->add_runs();
    a->set_id("sw-1-r0");
    a->set_state(v1::RUN_STATE_SUCCEEDED);
    a->set_attempts(1);
    (*a->mutable_labels())["optimizer"] = "madam";
    (*a->mutable_labels())["lr"] = "0.01";
    (*a->mutable_final())["test/error"] = 12.5;
    v1::Run* b = r->add_runs();
    b->set_id("sw-1-r1");
    b->set_state(v1::RUN_STATE_FAILED);
    b->set_attempts(3);
    b->set_last_error("lease expired\nworker w2 vanished");
    return grpc::Status::OK;
  };
  ASSERT_EQ(Run({"run", "list", "--sweep", "sw-1"}), kExitOk);
  EXPECT_EQ(out_.str(),
            "ID       STATE      ATTEMPTS  LABELS                   FINAL(test/error)  ERROR\n"
            "sw-1-r0  succeeded  1         lr=0.01 optimizer=madam  12.5\n"
            "sw-1-r1  failed     3                                  -                  lease expired...\n");
  EXPECT_EQ(fake_->list_runs_requests[0].state(), v1::RUN_STATE_UNSPECIFIED);
  ASSERT_EQ(Run({"--json", "run", "list", "--sweep", "sw-1", "--state", "failed"}), kExitOk);
  EXPECT_EQ(fake_->list_runs_requests[1].state(), v1::RUN_STATE_FAILED);
  Json j = Json::parse(out_.str());
  ASSERT_EQ(j["runs"].size(), 2u);
  EXPECT_EQ(j["runs"][0]["final"]["test/error"], 12.5);
  EXPECT_EQ(j["runs"][1]["last_error"], "lease expired\nworker w2 vanished");
}

TEST_F(MadamctlTest, RunListOfABadStateIsAUsageError) {
  EXPECT_EQ(Run({"run", "list", "--sweep", "sw-1", "--state", "sleeping"}), kExitUsage);
  EXPECT_NE(err_.str().find("\"sleeping\""), std::string::npos);
  EXPECT_TRUE(fake_->calls.empty());
}

TEST_F(MadamctlTest, RunShowPrintsEveryField) {
  fake_->get_run = [](const v1::GetRunRequest& q, v1::Run* r) {
    r->set_id(q.run_id());
    r->set_sweep_id("sw-1");
    r->set_state(v1::RUN_STATE_FAILED);
    r->set_attempts(3);
    r->set_max_attempts(3);
    r->set_last_error("CUDA out of memory");
    SetNumber(r, "lr", 0.01);
    SetText(r, "task", "fmnist-mlp");
    (*r->mutable_final())["train/loss"] = 0.5;
    return grpc::Status::OK;
  };
  ASSERT_EQ(Run({"run", "show", "sw-1-r4"}), kExitOk);
  std::string out = out_.str();
  EXPECT_EQ(fake_->get_run_requests[0].run_id(), "sw-1-r4");
  EXPECT_NE(out.find("attempts:         3 of 3\n"), std::string::npos) << out;
  EXPECT_NE(out.find("last_error:       CUDA out of memory\n"), std::string::npos) << out;
  EXPECT_NE(out.find("params:\n  lr    0.01\n  task  fmnist-mlp\n"), std::string::npos) << out;
  EXPECT_NE(out.find("final:\n  train/loss  0.5\n"), std::string::npos) << out;
  ASSERT_EQ(Run({"--json", "run", "show", "sw-1-r4"}), kExitOk);
  Json j = Json::parse(out_.str());
  EXPECT_EQ(j["id"], "sw-1-r4");
  EXPECT_EQ(j["state"], "failed");
  EXPECT_EQ(j["params"]["lr"], 0.01);
  EXPECT_EQ(j["params"]["task"], "fmnist-mlp");
  EXPECT_EQ(j["attempts"], 3);
}

void Points(v1::GetRunMetricsResponse* r) {
  v1::MetricPoint* a = r->add_points();
  a->set_name("train/loss");
  a->set_step(10);
  a->set_value(0.5);
  a->set_time(1764336717.25);
  v1::MetricPoint* b = r->add_points();
  b->set_name("train/loss");
  b->set_step(20);
  b->set_value(kNaN);
  b->set_time(1764336718.5);
}

TEST_F(MadamctlTest, RunMetricsCsvByDefault) {
  fake_->get_metrics = [](auto&, v1::GetRunMetricsResponse* r) {
    Points(r);
    return grpc::Status::OK;
  };
  ASSERT_EQ(Run({"run", "metrics", "sw-1-r0", "--name", "train/loss"}), kExitOk);
  EXPECT_EQ(fake_->metrics_requests[0].run_id(), "sw-1-r0");
  EXPECT_EQ(fake_->metrics_requests[0].name(), "train/loss");
  EXPECT_EQ(out_.str(),
            "name,step,value,time\n"
            "train/loss,10,0.5,1764336717.25\n"
            "train/loss,20,nan,1764336718.5\n");
}

TEST_F(MadamctlTest, RunMetricsJsonShape) {
  fake_->get_metrics = [](auto&, v1::GetRunMetricsResponse* r) {
    Points(r);
    return grpc::Status::OK;
  };
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"run", "metrics", "sw-1-r0", "--format", "json"}, {"--json", "run", "metrics", "sw-1-r0"}}) {
    ASSERT_EQ(Run(args), kExitOk);
    EXPECT_EQ(out_.str(),
              "{\"run\":\"sw-1-r0\",\"points\":["
              "{\"name\":\"train/loss\",\"step\":10,\"value\":0.5,\"time\":1764336717.25},"
              "{\"name\":\"train/loss\",\"step\":20,\"value\":null,\"time\":1764336718.5}]}\n");
  }
  EXPECT_EQ(fake_->metrics_requests[0].name(), "");
}

// ---- worker list ----

TEST_F(MadamctlTest, WorkerListTableAndJson) {
  fake_->list_workers = [](auto&, v1::ListWorkersResponse* r) {
    v1::Worker* w = r->add_workers();
    w->set_id("w-1");
    w->set_name("gpu-box");
    w->set_device("cuda:0");
    w->set_connected(true);
    w->set_current_run("sw-1-r3");
    w->set_last_seen_ms(1764336717000);
    v1::Worker* idle = r->add_workers();
    idle->set_id("w-2");
    idle->set_name("laptop");
    idle->set_device("cpu");
    idle->set_last_seen_ms(1764336717000 - 595000);
    return grpc::Status::OK;
  };
  ASSERT_EQ(Run({"worker", "list"}), kExitOk);
  EXPECT_EQ(out_.str(),
            "ID   NAME     DEVICE  CONNECTED  CURRENT_RUN  LAST_SEEN\n"
            "w-1  gpu-box  cuda:0  yes        sw-1-r3      5s ago\n"
            "w-2  laptop   cpu     no         -            10m ago\n");
  ASSERT_EQ(Run({"--json", "worker", "list"}), kExitOk);
  Json j = Json::parse(out_.str());
  ASSERT_EQ(j["workers"].size(), 2u);
  EXPECT_EQ(j["workers"][0]["id"], "w-1");
  EXPECT_EQ(j["workers"][0]["connected"], true);
  EXPECT_EQ(j["workers"][1]["current_run"], "");
}

// ---- report ----

TEST_F(MadamctlTest, ReportAsksMadamdAndPrintsTheContent) {
  fake_->get_report = [](const v1::GetReportRequest& q, v1::Report* r) {
    r->set_content("task,optimizer,lr,err,value,seeds\n" + q.kind() + "," + q.format() + "\n");
    return grpc::Status::OK;
  };
  ASSERT_EQ(Run({"report", "lr-sensitivity", "--sweep", "sw-1", "--sweep", "sw-2", "--format", "csv"}), kExitOk);
  EXPECT_EQ(out_.str(), "task,optimizer,lr,err,value,seeds\nlr-sensitivity,csv\n");
  ASSERT_EQ(fake_->report_requests.size(), 1u);
  const v1::GetReportRequest& q = fake_->report_requests[0];
  ASSERT_EQ(q.sweep_ids_size(), 2);
  EXPECT_EQ(q.sweep_ids(0), "sw-1");
  EXPECT_EQ(q.sweep_ids(1), "sw-2");
  // md by default; the global --json asks for json.
  ASSERT_EQ(Run({"report", "table1", "--sweep", "sw-1"}), kExitOk);
  EXPECT_EQ(fake_->report_requests.back().format(), "md");
  EXPECT_EQ(fake_->report_requests.back().kind(), "table1");
  ASSERT_EQ(Run({"--json", "report", "table2", "--sweep", "sw-1"}), kExitOk);
  EXPECT_EQ(fake_->report_requests.back().format(), "json");
}

TEST_F(MadamctlTest, ReportWritesTheFileOrNamesThePath) {
  fake_->get_report = [](const v1::GetReportRequest&, v1::Report* r) {
    r->set_content("<svg/>\n");
    return grpc::Status::OK;
  };
  const std::string file = (dir_ / "fig1.svg").string();
  ASSERT_EQ(Run({"report", "lr-sensitivity", "--sweep", "sw-1", "--format", "svg", "-o", file}), kExitOk);
  EXPECT_EQ(out_.str(), "");
  std::ifstream in(file);
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_EQ(text.str(), "<svg/>\n");

  const std::string bad = (dir_ / "missing" / "x.svg").string();
  EXPECT_EQ(Run({"report", "lr-sensitivity", "--sweep", "sw-1", "-o", bad}), kExitFailure);
  EXPECT_EQ(err_.str(), "madamctl: cannot write report file \"" + bad + "\": No such file or directory\n");
}

TEST_F(MadamctlTest, ReportPassesTheServerMessageAndChecksTheFormat) {
  fake_->get_report = [](const v1::GetReportRequest&, v1::Report*) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        "table2 needs runs of int_madam with a bits parameter; sweep sw-1 has none");
  };
  EXPECT_EQ(Run({"report", "table2", "--sweep", "sw-1"}), kExitFailure);
  EXPECT_NE(err_.str().find("table2 needs runs of int_madam with a bits parameter"), std::string::npos)
      << err_.str();
  EXPECT_EQ(Run({"report", "table2", "--sweep", "sw-1", "--format", "pdf"}), kExitUsage);
  EXPECT_EQ(Run({"report", "table2"}), kExitUsage);  // --sweep is required
}

}  // namespace
}  // namespace madam::cli
