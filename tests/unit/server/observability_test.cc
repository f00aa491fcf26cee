// CoordinatorMetrics (server/metrics.h), HttpServer (server/http_server.h) and
// DashboardRoutes (server/dashboard_routes.h) against a real Store in a temp
// directory; HTTP over real loopback sockets.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <cmath>
#include <string>
#include <thread>

#include "server/clock.h"
#include "server/dashboard_routes.h"
#include "server/http_server.h"
#include "server/live_runs.h"
#include "server/metrics.h"
#include "server/store.h"

namespace madam::server {
namespace {

NewSweep MakeSweep(int runs) {
  NewSweep s;
  s.name = "obs";
  s.spec_text = "name: obs\n";
  s.metric_name = "test/error";
  s.metric_goal = "minimize";
  s.max_attempts = 3;
  for (int i = 0; i < runs; ++i) {
    NewRun run;
    run.params["task"] = ParamValue::String("synthetic-mlp");
    run.params["optimizer"] = ParamValue::String("madam");
    run.params["lr"] = ParamValue::Number(0.01 * (i + 1));
    run.labels["lr"] = std::to_string(i);
    s.runs.push_back(run);
  }
  return s;
}

// The value of one exposition line `series value`, or NaN when absent.
double Sample(const std::string& text, const std::string& series) {
  const std::string key = "\n" + series + " ";
  const auto at = text.find(key);
  if (at == std::string::npos) return std::nan("");
  return std::stod(text.substr(at + key.size(), text.find('\n', at + 1) - at - key.size()));
}

CoordinatorMetricsOptions MetricsOptions(Clock* clock) {
  CoordinatorMetricsOptions options;
  options.clock = clock;
  return options;
}

class ObservabilityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "madam-obs-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    StoreOptions options;
    options.path = dir_ + "/madam.db";
    options.clock = &clock_;
    options.on_transaction = [this](double s) { metrics_.ObserveStoreTransaction(s); };
    auto store = Store::Open(options);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(store).value();
    clock_.Set(std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::system_clock::now().time_since_epoch())
                   .count());
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  std::string Scrape() { return metrics_.Scrape(*store_, live_); }

  std::string dir_;
  FakeClock clock_;
  CoordinatorMetrics metrics_{MetricsOptions(&clock_)};
  LiveRunTable live_;
  std::unique_ptr<Store> store_;
};

TEST_F(ObservabilityTest, CountsLeasesPointsRetriesAndExpiries) {
  auto sweep = store_->CreateSweep(MakeSweep(3));
  ASSERT_TRUE(sweep.ok());
  auto worker = store_->RegisterWorker("w", "cpu");
  ASSERT_TRUE(worker.ok());
  auto lease = store_->AcquireRun(worker->id, "cpu", 30);
  ASSERT_TRUE(lease.ok() && lease->has_value());
  ASSERT_TRUE(store_->AppendMetrics((*lease)->run_id, (*lease)->lease_epoch,
                                    {{"train/loss", 10, 0.5, 1.0}, {"train/loss", 20, 0.4, 2.0}}, (*lease)->holder())
                  .ok());
  // A failed attempt goes back to pending: a retry.
  CompleteRequest fail{(*lease)->run_id, (*lease)->lease_epoch, RunOutcome::kFailed, {}, "boom", "",
                       (*lease)->holder()};
  ASSERT_TRUE(store_->CompleteRun(fail).ok());
  // A lease that runs out: an expiry and another retry.
  auto second = store_->AcquireRun(worker->id, "cpu", 30);
  ASSERT_TRUE(second.ok() && second->has_value());
  clock_.AdvanceSeconds(31);
  ASSERT_TRUE(store_->ExpireLeases().ok());

  const std::string text = Scrape();
  EXPECT_EQ(Sample(text, "madam_leases_granted_total"), 2);
  EXPECT_EQ(Sample(text, "madam_leases_expired_total"), 1);
  EXPECT_EQ(Sample(text, "madam_run_retries_total"), 2);
  EXPECT_EQ(Sample(text, "madam_metric_points_ingested_total"), 2);
  EXPECT_EQ(Sample(text, "madam_runs{state=\"pending\"}"), 3);
  EXPECT_EQ(Sample(text, "madam_sweeps{state=\"running\"}"), 1);
  EXPECT_EQ(Sample(text, "madam_sweep_progress_ratio{sweep=\"" + sweep->id + "\"}"), 0);
  EXPECT_EQ(Sample(text, "madam_workers_connected"), 0) << "the fake clock moved 31 s past its last call";
  EXPECT_GT(Sample(text, "madam_store_write_batch_duration_seconds_count"), 0);
  EXPECT_EQ(Sample(text, "madam_build_info{revision=\"" MADAM_GIT_REVISION "\",version=\"" MADAM_VERSION "\"}"), 1);
  // Counters only grow: a second scrape adds nothing new.
  EXPECT_EQ(Sample(Scrape(), "madam_leases_granted_total"), 2);
}

TEST_F(ObservabilityTest, RunGaugesExistOnlyWhileTheRunIsLive) {
  auto sweep = store_->CreateSweep(MakeSweep(1));
  ASSERT_TRUE(sweep.ok());
  const std::string run = sweep->id + "-00000";
  live_.Heartbeat(run, 0, 0);
  EXPECT_EQ(Scrape().find("madam_run_train_loss{"), std::string::npos) << "no series before a value";
  live_.Record(run, "train/loss", 10, 0.75);
  live_.Record(run, "test/error", 10, 12.5);
  live_.Record(run, "samples_per_second", 10, 900);
  std::string text = Scrape();
  EXPECT_EQ(Sample(text, "madam_run_train_loss{run=\"" + run + "\"}"), 0.75);
  EXPECT_EQ(Sample(text, "madam_run_test_metric{run=\"" + run + "\"}"), 12.5);
  EXPECT_EQ(Sample(text, "madam_run_samples_per_second{run=\"" + run + "\"}"), 900);
  live_.Remove(run);
  text = Scrape();
  EXPECT_EQ(text.find("madam_run_train_loss{"), std::string::npos);
  EXPECT_EQ(text.find("madam_run_test_metric{"), std::string::npos);
  EXPECT_EQ(text.find("madam_run_samples_per_second{"), std::string::npos);
}

TEST_F(ObservabilityTest, RpcLatencyByMethodAndFencedWorkerCalls) {
  metrics_.ObserveRpc("/madam.v1.WorkerApi/Heartbeat", 0.002, grpc::StatusCode::FAILED_PRECONDITION);
  metrics_.ObserveRpc("/madam.v1.WorkerApi/Heartbeat", 0.003, grpc::StatusCode::OK);
  metrics_.ObserveRpc("/madam.v1.Coordinator/RerunSweep", 0.003, grpc::StatusCode::FAILED_PRECONDITION);
  const std::string text = Scrape();
  EXPECT_EQ(Sample(text, "madam_rpc_duration_seconds_count{method=\"WorkerApi/Heartbeat\"}"), 2);
  EXPECT_EQ(Sample(text, "madam_rpc_duration_seconds_count{method=\"Coordinator/RerunSweep\"}"), 1);
  EXPECT_EQ(Sample(text, "madam_leases_fenced_total"), 1) << "only worker calls under a lease are fenced";
}

// ---- HTTP -----------------------------------------------------------------

// Sends `request` on a fresh connection; returns everything read until the
// server closes or `timeout` passes.
std::string Exchange(int port, const std::string& request, std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return "connect failed";
  }
  timeval tv{static_cast<time_t>(timeout.count() / 1000), static_cast<suseconds_t>(timeout.count() % 1000 * 1000)};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  (void)!send(fd, request.data(), request.size(), MSG_NOSIGNAL);
  std::string got;
  char buf[4096];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return got;
}

class HttpServerTest : public ObservabilityTest {
 protected:
  void SetUp() override {
    ObservabilityTest::SetUp();
    routes_ = std::make_unique<DashboardRoutes>(store_.get(), &live_, &metrics_);
    HttpServerOptions options;
    options.address = "127.0.0.1:0";
    options.read_timeout = std::chrono::milliseconds(500);
    auto server = HttpServer::Start(options, [this](const HttpRequest& r) { return routes_->Handle(r); });
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(server).value();
  }
  void TearDown() override {
    server_.reset();
    routes_.reset();
    ObservabilityTest::TearDown();
  }
  std::string Get(const std::string& target) {
    return Exchange(server_->port(), "GET " + target + " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
  }

  std::unique_ptr<DashboardRoutes> routes_;
  std::unique_ptr<HttpServer> server_;
};

std::string Body(const std::string& response) {
  const auto at = response.find("\r\n\r\n");
  return at == std::string::npos ? "" : response.substr(at + 4);
}

TEST_F(HttpServerTest, ServesTheDashboardMetricsAndApi) {
  EXPECT_EQ(Get("/").rfind("HTTP/1.1 200", 0), 0u);
  EXPECT_NE(Get("/").find("<!DOCTYPE html>"), std::string::npos);
  const std::string metrics = Get("/metrics");
  EXPECT_NE(metrics.find("Content-Type: text/plain; version=0.0.4"), std::string::npos) << metrics.substr(0, 300);
  EXPECT_NE(metrics.find("madam_build_info"), std::string::npos);

  auto sweep = store_->CreateSweep(MakeSweep(2));
  ASSERT_TRUE(sweep.ok());
  auto list = nlohmann::json::parse(Body(Get("/api/v1/sweeps")));
  ASSERT_EQ(list["sweeps"].size(), 1u);
  EXPECT_EQ(list["sweeps"][0]["counts"]["pending"], 2);
  auto runs = nlohmann::json::parse(Body(Get("/api/v1/sweeps/" + sweep->id + "/runs")));
  ASSERT_EQ(runs["runs"].size(), 2u);
  EXPECT_EQ(runs["runs"][1]["params"]["lr"], 0.02) << "numbers stay numbers";

  auto worker = store_->RegisterWorker("w", "cpu");
  auto lease = store_->AcquireRun(worker->id, "cpu", 30);
  ASSERT_TRUE(lease.ok() && lease->has_value());
  ASSERT_TRUE(store_->AppendMetrics((*lease)->run_id, (*lease)->lease_epoch,
                                    {{"train/loss", 10, 0.5, 1}, {"train/loss", 20, 0.4, 2}, {"lr", 10, 0.01, 1}}, (*lease)->holder())
                  .ok());
  auto all = nlohmann::json::parse(Body(Get("/api/v1/runs/" + (*lease)->run_id + "/metrics?name=train%2Floss")));
  EXPECT_EQ(all["points"].size(), 2u);
  auto later = nlohmann::json::parse(
      Body(Get("/api/v1/runs/" + (*lease)->run_id + "/metrics?name=train%2Floss&after_step=10")));
  ASSERT_EQ(later["points"].size(), 1u);
  EXPECT_EQ(later["points"][0]["step"], 20);
  const std::string curves = Get("/api/v1/sweeps/" + sweep->id + "/curves.svg?metric=train%2Floss");
  EXPECT_NE(curves.find("image/svg+xml"), std::string::npos) << curves.substr(0, 300);
  EXPECT_NE(curves.find("class=\"series\""), std::string::npos);
  auto workers = nlohmann::json::parse(Body(Get("/api/v1/workers")));
  EXPECT_EQ(workers["workers"].size(), 1u);
}

TEST_F(HttpServerTest, PromotedSweepLinksItsParentAndLegendsReadShortNumbers) {
  auto parent = store_->CreateSweep(MakeSweep(1));
  ASSERT_TRUE(parent.ok());
  // A log10 grid point as stored, 10^-2.5, on an lr axis; two epochs.
  NewSweep child = MakeSweep(0);
  child.name = "table1-obs";
  NewRun run;
  run.params["task"] = ParamValue::String("synthetic-mlp");
  run.params["optimizer"] = ParamValue::String("sgd");
  run.params["lr"] = ParamValue::Number(0.0031622776601683794);
  run.params["epochs"] = ParamValue::Number(2);
  run.labels["lr"] = "0.0031622776601683794";
  child.runs.push_back(run);
  child.parent_sweep_id = parent->id;
  child.promotion_reasons = {"sgd lr 10^-2.5: best mean test/error 9 over 1 seed of 2 lrs 1e-3..1e-2"};
  auto made = store_->CreateSweep(child);
  ASSERT_TRUE(made.ok()) << made.status().ToString();

  auto j = nlohmann::json::parse(Body(Get("/api/v1/sweeps/" + made->id)));
  EXPECT_EQ(j["parent"], parent->id);
  EXPECT_EQ(j["promotion_reasons"][0], child.promotion_reasons[0]);
  auto p = nlohmann::json::parse(Body(Get("/api/v1/sweeps/" + parent->id)));
  EXPECT_TRUE(p["parent"].is_null());
  ASSERT_EQ(p["promoted"].size(), 1u);
  EXPECT_EQ(p["promoted"][0]["id"], made->id);

  auto worker = store_->RegisterWorker("w", "cpu");
  // The parent's run is granted first (oldest sweep); finish it.
  auto first = store_->AcquireRun(worker->id, "cpu", 30);
  ASSERT_TRUE(first.ok() && first->has_value());
  CompleteRequest done;
  done.run_id = (*first)->run_id;
  done.lease_epoch = (*first)->lease_epoch;
  done.holder = (*first)->holder();
  ASSERT_TRUE(store_->CompleteRun(done).ok());
  auto lease = store_->AcquireRun(worker->id, "cpu", 30);
  ASSERT_TRUE(lease.ok() && lease->has_value());
  ASSERT_EQ((*lease)->sweep_id, made->id);
  ASSERT_TRUE(store_->AppendMetrics((*lease)->run_id, (*lease)->lease_epoch,
                                    {{"test/error", 469, 20.5, 1}, {"test/error", 938, 15.25, 2}},
                                    (*lease)->holder())
                  .ok());
  auto runs = nlohmann::json::parse(Body(Get("/api/v1/sweeps/" + made->id + "/runs")));
  EXPECT_EQ(runs["runs"][0]["params_text"]["lr"], "10^-2.5");
  const std::string svg = Body(Get("/api/v1/sweeps/" + made->id + "/curves.svg?metric=test%2Ferror"));
  EXPECT_NE(svg.find("data-series=\"#0 lr=10^-2.5\""), std::string::npos) << svg.substr(0, 2000);
  EXPECT_EQ(svg.find("0.0031622776601683794"), std::string::npos);
  // One point per epoch: both drawn as markers.
  size_t markers = 0;
  for (size_t at = svg.find("class=\"marker point\""); at != std::string::npos;
       at = svg.find("class=\"marker point\"", at + 1)) {
    ++markers;
  }
  EXPECT_EQ(markers, 2u);
  // Round x ticks (steps 469..938): 500, 600, ..., 900.
  EXPECT_NE(svg.find(">500</text>"), std::string::npos) << svg;
  EXPECT_EQ(svg.find(">469</text>"), std::string::npos);
}

TEST_F(HttpServerTest, LayerHeatmapClaimsAndCostOfARun) {
  auto sweep = store_->CreateSweep(MakeSweep(2));
  ASSERT_TRUE(sweep.ok());
  auto worker = store_->RegisterWorker("w", "cpu");
  ASSERT_TRUE(worker.ok());
  auto lease = store_->AcquireRun(worker->id, "cpu", 300);
  ASSERT_TRUE(lease.ok() && lease->has_value());
  const std::string run = (*lease)->run_id;
  ASSERT_TRUE(store_->AppendMetrics(run, (*lease)->lease_epoch,
                                    {{"layer/fc1.weight/relative_update", 5, 0.01, 1},
                                     {"layer/fc1.weight/relative_update", 10, 0.002, 2},
                                     {"layer/fc2.weight/relative_update", 10, 0.03, 2},
                                     {"layer/fc1.weight/at_bound_fraction", 10, 0.25, 2},
                                     {"optim/relative_update", 10, 0.01, 2},
                                     {"train/loss", 10, 0.4, 2}},
                                    (*lease)->holder())
                  .ok());
  const std::string base = "/api/v1/runs/" + run + "/layers.svg";
  const std::string svg = Get(base);
  EXPECT_EQ(svg.rfind("HTTP/1.1 200", 0), 0u) << svg.substr(0, 300);
  EXPECT_NE(svg.find("image/svg+xml"), std::string::npos);
  EXPECT_NE(svg.find("data-row=\"fc1.weight\" data-x=\"5\" data-value=\"0.01\""), std::string::npos) << svg;
  EXPECT_NE(svg.find("data-row=\"fc1.weight\" data-x=\"10\" data-value=\"0.002\""), std::string::npos);
  EXPECT_NE(svg.find("data-row=\"fc2.weight\" data-x=\"10\" data-value=\"0.03\""), std::string::npos);
  EXPECT_EQ(svg.find("data-row=\"optim"), std::string::npos) << "not a layer metric";
  EXPECT_NE(svg.find("relative_update (log)"), std::string::npos);
  const std::string bound = Get(base + "?metric=at_bound_fraction");
  EXPECT_NE(bound.find("data-row=\"fc1.weight\" data-x=\"10\" data-value=\"0.25\""), std::string::npos) << bound;
  EXPECT_EQ(bound.find("data-row=\"fc2.weight\""), std::string::npos);
  const std::string levels = Get(base + "?metric=level_top_fraction");
  EXPECT_EQ(levels.rfind("HTTP/1.1 200", 0), 0u);
  EXPECT_NE(levels.find("class=\"empty\""), std::string::npos) << levels;
  const std::string bad = Get(base + "?metric=train%2Floss");
  EXPECT_EQ(bad.rfind("HTTP/1.1 400", 0), 0u) << bad;
  EXPECT_NE(Body(bad).find("train/loss"), std::string::npos) << bad;
  EXPECT_EQ(Get("/api/v1/runs/nosuch/layers.svg").rfind("HTTP/1.1 404", 0), 0u);

  // Device-seconds: 40 s to the end of the first run, then 5 s into the second.
  clock_.AdvanceSeconds(40);
  CompleteRequest done;
  done.run_id = run;
  done.lease_epoch = (*lease)->lease_epoch;
  done.final = {{"test/error", 0.1}};
  done.holder = (*lease)->holder();
  ASSERT_TRUE(store_->CompleteRun(done).ok());
  const std::string series = "madam_sweep_device_seconds_total{sweep=\"" + sweep->id + "\"}";
  EXPECT_DOUBLE_EQ(Sample(Scrape(), series), 40);
  auto second = store_->AcquireRun(worker->id, "cpu", 300);
  ASSERT_TRUE(second.ok() && second->has_value());
  clock_.AdvanceSeconds(5);
  EXPECT_DOUBLE_EQ(Sample(Scrape(), series), 45);

  auto shown = nlohmann::json::parse(Body(Get("/api/v1/sweeps/" + sweep->id)));
  ASSERT_TRUE(shown["cost"].is_object()) << shown.dump();
  EXPECT_DOUBLE_EQ(shown["cost"]["median_run_seconds"]["synthetic-mlp"].get<double>(), 40);
  EXPECT_GE(shown["cost"]["device_seconds"].get<double>(), 40);

  auto claims = nlohmann::json::parse(Body(Get("/api/v1/sweeps/" + sweep->id + "/claims")));
  ASSERT_EQ(claims["claims"].size(), 5u) << claims.dump();
  EXPECT_EQ(claims["claims"][0]["id"], "madam_best_lr");
  EXPECT_TRUE(claims["claims"][0].contains("paper"));
  EXPECT_EQ(Get("/api/v1/sweeps/nosuch/claims").rfind("HTTP/1.1 404", 0), 0u);

  // The sweep ends: its device-seconds series goes.
  CompleteRequest end;
  end.run_id = (*second)->run_id;
  end.lease_epoch = (*second)->lease_epoch;
  end.final = {{"test/error", 0.2}};
  end.holder = (*second)->holder();
  ASSERT_TRUE(store_->CompleteRun(end).ok());
  EXPECT_TRUE(std::isnan(Sample(Scrape(), series)));
}

TEST_F(HttpServerTest, RefusesBadRequests) {
  EXPECT_EQ(Get("/nope").rfind("HTTP/1.1 404", 0), 0u);
  EXPECT_EQ(Get("/api/v1/sweeps/sw-00000000").rfind("HTTP/1.1 404", 0), 0u);
  EXPECT_EQ(Get("/api/v1/runs/x/metrics?after_step=abc").rfind("HTTP/1.1 400", 0), 0u);
  EXPECT_EQ(Get("/api/v1/sweeps/x/curves.svg?runs=some").rfind("HTTP/1.1 400", 0), 0u);
  EXPECT_EQ(Get("/%zz").rfind("HTTP/1.1 400", 0), 0u);
  const std::string post = Exchange(server_->port(), "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n");
  EXPECT_EQ(post.rfind("HTTP/1.1 405", 0), 0u) << post;
  EXPECT_NE(post.find("Allow: GET, HEAD"), std::string::npos);
  const std::string big = Exchange(server_->port(), "GET / HTTP/1.1\r\nHost: localhost\r\nX: " + std::string(70000, 'a') + "\r\n\r\n");
  EXPECT_EQ(big.rfind("HTTP/1.1 413", 0), 0u) << big.substr(0, 100);
  EXPECT_EQ(Exchange(server_->port(), "NONSENSE\r\n\r\n").rfind("HTTP/1.1 400", 0), 0u);
  // HEAD: headers only.
  const std::string head = Exchange(server_->port(), "HEAD /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(head.rfind("HTTP/1.1 200", 0), 0u);
  EXPECT_EQ(Body(head), "");
}

// Section 9: the Host check (DNS rebinding) and, with a token check set,
// a bearer token on every route; every answer says nosniff and has a CSP.
TEST_F(HttpServerTest, ChecksHostAndTokenAndSetsSecurityHeaders) {
  EXPECT_TRUE(HostAllowed("localhost", "127.0.0.1", {}));
  EXPECT_TRUE(HostAllowed("127.0.0.1:7071", "127.0.0.1", {}));
  EXPECT_TRUE(HostAllowed("[::1]:7071", "127.0.0.1", {}));
  EXPECT_TRUE(HostAllowed("10.0.0.5:7071", "10.0.0.5", {}));
  EXPECT_FALSE(HostAllowed("evil.example", "127.0.0.1", {}));
  EXPECT_FALSE(HostAllowed("evil.example:7071", "0.0.0.0", {}));
  EXPECT_FALSE(HostAllowed("", "127.0.0.1", {}));
  EXPECT_TRUE(HostAllowed("madam.lab:7071", "0.0.0.0", {"madam.lab"}));
  EXPECT_TRUE(HostAllowed("anything", "0.0.0.0", {"*"}));

  const std::string ok = Get("/metrics");
  EXPECT_NE(ok.find("X-Content-Type-Options: nosniff"), std::string::npos) << ok.substr(0, 400);
  EXPECT_NE(ok.find("Content-Security-Policy: default-src 'none'"), std::string::npos);
  const std::string foreign = Exchange(
      server_->port(), "GET /metrics HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(foreign.rfind("HTTP/1.1 403", 0), 0u) << foreign.substr(0, 200);

  HttpServerOptions options;
  options.address = "127.0.0.1:0";
  options.authorize = [](std::string_view token) { return token == "reader-token"; };
  auto guarded = HttpServer::Start(options, [this](const HttpRequest& r) { return routes_->Handle(r); });
  ASSERT_TRUE(guarded.ok()) << guarded.status().ToString();
  auto get = [&](const std::string& path, const std::string& auth) {
    return Exchange((*guarded)->port(), "GET " + path + " HTTP/1.1\r\nHost: localhost\r\n" + auth +
                                            "Connection: close\r\n\r\n");
  };
  for (const char* path : {"/", "/metrics", "/api/v1/sweeps", "/readyz"}) {
    const std::string none = get(path, "");
    EXPECT_EQ(none.rfind("HTTP/1.1 401", 0), 0u) << path << ": " << none.substr(0, 200);
    EXPECT_NE(none.find("WWW-Authenticate: Bearer"), std::string::npos);
    EXPECT_EQ(get(path, "Authorization: Bearer wrong\r\n").rfind("HTTP/1.1 401", 0), 0u) << path;
    EXPECT_EQ(get(path, "Authorization: Basic cmVhZGVyLXRva2Vu\r\n").rfind("HTTP/1.1 401", 0), 0u) << path;
    EXPECT_EQ(get(path, "Authorization: Bearer reader-token\r\n").rfind("HTTP/1.1 200", 0), 0u) << path;
  }
}

// Section 9: answers are bounded; a limit over its cap is 400 naming it.
TEST_F(HttpServerTest, PagesListsAndSeriesUnderCaps) {
  auto sweep = store_->CreateSweep(MakeSweep(3));
  ASSERT_TRUE(sweep.ok());
  auto page = nlohmann::json::parse(Body(Get("/api/v1/sweeps/" + sweep->id + "/runs?limit=2&offset=1")));
  ASSERT_EQ(page["runs"].size(), 2u);
  EXPECT_EQ(page["truncated"], false);
  auto cut = nlohmann::json::parse(Body(Get("/api/v1/sweeps/" + sweep->id + "/runs?limit=1")));
  ASSERT_EQ(cut["runs"].size(), 1u);
  EXPECT_EQ(cut["truncated"], true);
  const std::string over = Get("/api/v1/sweeps?limit=10001");
  EXPECT_EQ(over.rfind("HTTP/1.1 400", 0), 0u);
  EXPECT_NE(Body(over).find("limit 10001 is over the cap of 10000"), std::string::npos) << Body(over);
  EXPECT_EQ(Get("/api/v1/workers?limit=-1").rfind("HTTP/1.1 400", 0), 0u);
  auto worker = store_->RegisterWorker("w", "cpu");
  auto lease = store_->AcquireRun(worker->id, "cpu", 30);
  ASSERT_TRUE(lease.ok() && lease->has_value());
  std::vector<MetricPoint> points;
  for (int i = 0; i < 10; ++i) points.push_back({"train/loss", i, 1.0 / (i + 1), 1});
  ASSERT_TRUE(store_->AppendMetrics((*lease)->run_id, (*lease)->lease_epoch, points, (*lease)->holder()).ok());
  auto series = nlohmann::json::parse(
      Body(Get("/api/v1/runs/" + (*lease)->run_id + "/metrics?name=train%2Floss&after_step=3&limit=4")));
  ASSERT_EQ(series["points"].size(), 4u);
  EXPECT_EQ(series["points"][0]["step"], 4);
  EXPECT_EQ(series["truncated"], true);
  const std::string big = Get("/api/v1/runs/" + (*lease)->run_id + "/metrics?limit=200001");
  EXPECT_EQ(big.rfind("HTTP/1.1 400", 0), 0u);
  EXPECT_NE(Body(big).find("200000"), std::string::npos);
  EXPECT_EQ(Get("/readyz").rfind("HTTP/1.1 200", 0), 0u);
}

TEST_F(HttpServerTest, ClosesAStalledRequestAtTheReadTimeout) {
  const auto started = std::chrono::steady_clock::now();
  const std::string got = Exchange(server_->port(), "GET /metrics HTTP/1.1\r\nHost: localhost\r\n", std::chrono::seconds(5));
  const auto took = std::chrono::steady_clock::now() - started;
  EXPECT_EQ(got, "");
  EXPECT_LT(took, std::chrono::seconds(3)) << "read_timeout is 500 ms";
}

TEST(PercentDecodeTest, DecodesEscapesAndRefusesBadOnes) {
  EXPECT_EQ(*PercentDecode("train%2Floss"), "train/loss");
  EXPECT_EQ(*PercentDecode("a+b"), "a+b");
  EXPECT_FALSE(PercentDecode("%zz").ok());
  EXPECT_FALSE(PercentDecode("abc%2").ok());
  EXPECT_FALSE(PercentDecode("%").ok());
}

}  // namespace
}  // namespace madam::server
