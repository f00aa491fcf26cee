// madamctl over a real gRPC channel to an in-process Coordinator service on
// a loopback port: metadata, streaming and transport errors as gRPC really
// produces them.
#include <gtest/gtest.h>

#include <sstream>

#include <grpcpp/grpcpp.h>

#include "cli/app.h"
#include "cli/client.h"
#include "cli/output.h"

namespace madam::cli {
namespace {

namespace v1 = madam::v1;

// Answers GetSweep for callers bearing "Bearer good"; streams two updates.
class TestCoordinator final : public v1::Coordinator::Service {
 public:
  grpc::Status GetSweep(grpc::ServerContext* context, const v1::GetSweepRequest* request,
                        v1::Sweep* response) override {
    auto it = context->client_metadata().find("authorization");
    if (it == context->client_metadata().end() ||
        std::string(it->second.data(), it->second.size()) != "Bearer good") {
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "missing or bad token");
    }
    if (request->sweep_id() != "sw-1") {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "no sweep \"" + request->sweep_id() + "\"");
    }
    response->set_id("sw-1");
    response->set_state("running");
    return grpc::Status::OK;
  }
  grpc::Status WatchSweep(grpc::ServerContext*, const v1::WatchSweepRequest* request,
                          grpc::ServerWriter<v1::SweepProgress>* writer) override {
    v1::SweepProgress p;
    p.mutable_sweep()->set_id(request->sweep_id());
    p.mutable_sweep()->set_state("running");
    p.mutable_sweep()->mutable_counts()->set_running(1);
    writer->Write(p);
    p.mutable_sweep()->set_state("finished");
    p.mutable_sweep()->mutable_counts()->set_running(0);
    p.mutable_sweep()->mutable_counts()->set_succeeded(1);
    writer->Write(p);
    return grpc::Status::OK;
  }
};

class RealChannelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::unsetenv("MADAM_COORDINATOR");
    ::unsetenv("MADAM_TOKEN");
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port_, 0);
    address_ = "127.0.0.1:" + std::to_string(port_);
  }
  void TearDown() override {
    if (server_) server_->Shutdown();
  }

  int Run(std::vector<std::string> args) {
    out_.str("");
    err_.str("");
    args.insert(args.begin(), "madamctl");
    std::vector<const char*> argv;
    for (const std::string& a : args) argv.push_back(a.c_str());
    CommandEnv env;
    env.out = &out_;
    env.err = &err_;
    env.sleep = [](std::chrono::milliseconds) {};
    env.now_ms = [] { return int64_t{0}; };
    return RunMadamctl(static_cast<int>(argv.size()), argv.data(), env, &MakeCoordinatorStub);
  }

  TestCoordinator service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::string address_;
  std::ostringstream out_, err_;
};

TEST_F(RealChannelTest, BearerTokenReachesTheServer) {
  ASSERT_EQ(Run({"--coordinator", address_, "--token", "good", "--json", "sweep", "show", "sw-1"}),
            kExitOk)
      << err_.str();
  EXPECT_EQ(Json::parse(out_.str())["id"], "sw-1");
}

TEST_F(RealChannelTest, MissingTokenSaysToSetOne) {
  EXPECT_EQ(Run({"--coordinator", address_, "sweep", "show", "sw-1"}), kExitFailure);
  EXPECT_NE(err_.str().find("UNAUTHENTICATED: missing or bad token"), std::string::npos) << err_.str();
  EXPECT_NE(err_.str().find("--token or MADAM_TOKEN"), std::string::npos);
}

TEST_F(RealChannelTest, NotFoundPassesTheServerMessage) {
  ::setenv("MADAM_TOKEN", "good", 1);
  EXPECT_EQ(Run({"--coordinator", address_, "sweep", "show", "sw-x"}), kExitFailure);
  EXPECT_EQ(err_.str(), "madamctl: no sweep \"sw-x\"\n");
  ::unsetenv("MADAM_TOKEN");
}

TEST_F(RealChannelTest, WatchFollowsTheStreamToTheEnd) {
  ASSERT_EQ(Run({"--coordinator", address_, "sweep", "watch", "sw-1"}), kExitOk) << err_.str();
  EXPECT_NE(out_.str().find("sweep sw-1 finished: 1 succeeded"), std::string::npos) << out_.str();
}

TEST_F(RealChannelTest, ClosedPortIsUnavailableNamingTheAddress) {
  server_->Shutdown();
  server_.reset();
  EXPECT_EQ(Run({"--coordinator", address_, "worker", "list"}), kExitFailure);
  EXPECT_EQ(err_.str().rfind("madamctl: cannot reach the coordinator at " + address_ + " (UNAVAILABLE", 0),
            0u)
      << err_.str();
  EXPECT_NE(err_.str().find("is madamd running? set --coordinator or MADAM_COORDINATOR"),
            std::string::npos);
}

}  // namespace
}  // namespace madam::cli
