// Serve mode's torch-free parts (worker/serve/): the coordinator client's
// call metadata, the metric uploader's retries and cadence (ARCHITECTURE.md
// sections 5 and 9) and the lease keeper's rules, each driven by the
// generated gMock stub and a fake clock, so nothing here depends on timing.
#include <gmock/gmock.h>
#include <grpcpp/test/client_context_test_peer.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <future>
#include <mutex>
#include <string>
#include <vector>

#include "madam/v1/worker_mock.grpc.pb.h"
#include "tests/unit/worker/fake_clock.h"
#include "worker/serve/clock.h"
#include "worker/serve/coordinator_client.h"
#include "worker/serve/lease_keeper.h"
#include "worker/serve/metric_uploader.h"

namespace madam::worker::serve {
namespace {

namespace v1 = ::madam::v1;
using std::chrono::milliseconds;
using std::chrono::seconds;
using ::testing::_;
using ::testing::Invoke;
using ::testing::NiceMock;

const LeaseRef kLease{"run-1", 7, "worker-1", "secret-1"};

// ---------------------------------------------------------------------------
// CoordinatorClient

std::string AuthorizationOf(grpc::ClientContext* ctx) {
  grpc::testing::ClientContextTestPeer peer(ctx);
  const auto metadata = peer.GetSendInitialMetadata();
  const auto it = metadata.find("authorization");
  return it == metadata.end() ? "" : it->second;
}

// Seconds from now to the call's deadline.
double DeadlineSeconds(grpc::ClientContext* ctx) {
  return std::chrono::duration<double>(ctx->deadline() - std::chrono::system_clock::now()).count();
}

struct CallSeen {
  std::string authorization;
  double deadline_s = 0;
};

TEST(CoordinatorClientTest, EveryCallCarriesTheBearerTokenAndADeadline) {
  NiceMock<v1::MockWorkerApiStub> stub;
  CoordinatorClient client(&stub, "TOKEN");
  std::vector<std::pair<std::string, CallSeen>> seen;
  auto record = [&](const std::string& rpc) {
    return [&seen, rpc](grpc::ClientContext* ctx, const auto&, auto*) {
      seen.push_back({rpc, CallSeen{AuthorizationOf(ctx), DeadlineSeconds(ctx)}});
      return grpc::Status::OK;
    };
  };
  EXPECT_CALL(stub, RegisterWorker(_, _, _)).WillOnce(Invoke(record("register")));
  EXPECT_CALL(stub, AcquireRun(_, _, _)).WillOnce(Invoke(record("acquire")));
  EXPECT_CALL(stub, Heartbeat(_, _, _)).WillOnce(Invoke(record("heartbeat")));
  EXPECT_CALL(stub, ReportMetrics(_, _, _)).WillOnce(Invoke(record("metrics")));
  EXPECT_CALL(stub, CompleteRun(_, _, _)).WillOnce(Invoke(record("complete")));

  v1::RegisterWorkerResponse register_resp;
  EXPECT_TRUE(client.RegisterWorker({}, &register_resp).ok());
  v1::AcquireRunResponse acquire_resp;
  EXPECT_TRUE(client.AcquireRun({}, &acquire_resp).ok());
  v1::HeartbeatResponse heartbeat_resp;
  EXPECT_TRUE(client.Heartbeat({}, &heartbeat_resp, milliseconds(1500)).ok());
  v1::ReportMetricsResponse metrics_resp;
  EXPECT_TRUE(client.ReportMetrics({}, &metrics_resp).ok());
  v1::CompleteRunResponse complete_resp;
  EXPECT_TRUE(client.CompleteRun({}, &complete_resp).ok());

  const std::map<std::string, double> expected_deadline = {
      {"register", 10}, {"acquire", 10}, {"heartbeat", 1.5}, {"metrics", 30}, {"complete", 10}};
  ASSERT_EQ(seen.size(), 5u);
  for (const auto& [rpc, call] : seen) {
    SCOPED_TRACE(rpc);
    EXPECT_EQ(call.authorization, "Bearer TOKEN");
    // Set from now when the call was made; a little of it has gone since.
    EXPECT_LE(call.deadline_s, expected_deadline.at(rpc));
    EXPECT_GT(call.deadline_s, expected_deadline.at(rpc) - 1.0);
  }
}

TEST(CoordinatorClientTest, NoTokenSendsNoAuthorization) {
  NiceMock<v1::MockWorkerApiStub> stub;
  CoordinatorClient client(&stub, "");
  std::string authorization = "unset";
  EXPECT_CALL(stub, AcquireRun(_, _, _))
      .WillOnce(Invoke([&](grpc::ClientContext* ctx, const auto&, auto*) {
        authorization = AuthorizationOf(ctx);
        EXPECT_GT(DeadlineSeconds(ctx), 9.0);
        return grpc::Status::OK;
      }));
  v1::AcquireRunResponse resp;
  EXPECT_TRUE(client.AcquireRun({}, &resp).ok());
  EXPECT_EQ(authorization, "");
}

TEST(CoordinatorClientTest, StatusClasses) {
  using grpc::StatusCode;
  for (StatusCode c :
       {StatusCode::UNAVAILABLE, StatusCode::DEADLINE_EXCEEDED, StatusCode::ABORTED}) {
    EXPECT_TRUE(Retryable(grpc::Status(c, ""))) << c;
    EXPECT_FALSE(LeaseGone(grpc::Status(c, ""))) << c;
  }
  for (StatusCode c :
       {StatusCode::FAILED_PRECONDITION, StatusCode::NOT_FOUND, StatusCode::PERMISSION_DENIED}) {
    EXPECT_TRUE(LeaseGone(grpc::Status(c, ""))) << c;
    EXPECT_FALSE(Retryable(grpc::Status(c, ""))) << c;
  }
  EXPECT_FALSE(Retryable(grpc::Status(StatusCode::RESOURCE_EXHAUSTED, "")));
  EXPECT_FALSE(LeaseGone(grpc::Status(StatusCode::RESOURCE_EXHAUSTED, "")));
  EXPECT_EQ(Describe(grpc::Status(StatusCode::UNAVAILABLE, "down")), "UNAVAILABLE: down");
}

// ---------------------------------------------------------------------------
// Clock, StopFlag, Backoff

TEST(BackoffTest, WaitsOnTheInjectedClockAndDoubles) {
  FakeClock clock;
  StopFlag stop;
  Backoff backoff(&clock, &stop);
  EXPECT_EQ(backoff.delay(), milliseconds(200));
  auto wait = std::async(std::launch::async, [&] { backoff.Wait(); });
  clock.AwaitSleepers(1);
  clock.Advance(milliseconds(199));  // before the 200 ms (+ up to 25% jitter)
  clock.AwaitSleepers(1);
  EXPECT_NE(wait.wait_for(seconds(0)), std::future_status::ready);
  clock.Advance(milliseconds(51));  // past 200 ms + 50 ms of jitter at most
  wait.get();
  EXPECT_EQ(backoff.delay(), milliseconds(400));
  for (int i = 0; i < 10; ++i) {
    auto next = std::async(std::launch::async, [&] { backoff.Wait(); });
    clock.AwaitSleepers(1);
    clock.Advance(seconds(7));
    next.get();
  }
  EXPECT_EQ(backoff.delay(), milliseconds(5000));  // the ceiling
  backoff.Reset();
  EXPECT_EQ(backoff.delay(), milliseconds(200));
}

TEST(StopFlagTest, StopCutsAWaitShort) {
  FakeClock clock;
  StopFlag stop;
  Backoff backoff(&clock, &stop);
  auto wait = std::async(std::launch::async, [&] { return stop.WaitFor(clock, seconds(3600)); });
  clock.AwaitSleepers(1);
  EXPECT_FALSE(stop.stopped());
  stop.Stop();  // no notification, as from a signal handler
  EXPECT_TRUE(wait.get());
  backoff.Wait();  // already stopped: returns without time passing
  EXPECT_TRUE(stop.stopped());
}

TEST(RealClockTest, WaitEndsOnItsDeadlineOrPredicate) {
  RealClock clock;
  const auto start = clock.Now();
  EXPECT_FALSE(clock.SleepFor(milliseconds(20), [] { return false; }));
  EXPECT_GE(clock.Now() - start, milliseconds(20));
  EXPECT_TRUE(clock.SleepFor(seconds(3600), [] { return true; }));
}

// ---------------------------------------------------------------------------
// UploadCadence

TEST(UploadCadenceTest, StartsAtTheFloorWithItsBatchCap) {
  UploadCadence c;
  EXPECT_EQ(c.interval(), milliseconds(250));
  EXPECT_EQ(c.batch_cap(), 2000u);
}

TEST(UploadCadenceTest, BusyDoublesUpToTheCeiling) {
  UploadCadence c;
  c.OnBusy();
  EXPECT_EQ(c.interval(), milliseconds(500));
  c.OnBusy();
  EXPECT_EQ(c.interval(), milliseconds(1000));
  for (int i = 0; i < 10; ++i) c.OnBusy();
  EXPECT_EQ(c.interval(), milliseconds(5000));
  EXPECT_EQ(c.batch_cap(), 40000u);
}

TEST(UploadCadenceTest, AdviceAboveTheIntervalRaisesItClamped) {
  UploadCadence c;
  c.OnStored(milliseconds(1), 1200);
  EXPECT_EQ(c.interval(), milliseconds(1200));
  EXPECT_EQ(c.batch_cap(), 9600u);
  c.OnStored(milliseconds(1), 60000);
  EXPECT_EQ(c.interval(), milliseconds(5000));
}

TEST(UploadCadenceTest, ASlowCallDoublesTheInterval) {
  UploadCadence c;
  c.OnStored(milliseconds(126), 0);  // more than half of 250 ms
  EXPECT_EQ(c.interval(), milliseconds(500));
  c.OnStored(milliseconds(251), 0);
  EXPECT_EQ(c.interval(), milliseconds(1000));
  c.OnStored(milliseconds(500), 0);  // exactly half: not slow, decays
  EXPECT_EQ(c.interval(), milliseconds(750));
  for (int i = 0; i < 10; ++i) c.OnStored(seconds(30), 0);
  EXPECT_EQ(c.interval(), milliseconds(5000));
}

TEST(UploadCadenceTest, FastCallsDecayToTheFloor) {
  UploadCadence c;
  c.OnStored(milliseconds(1), 4000);
  c.OnStored(milliseconds(1), 0);
  EXPECT_EQ(c.interval(), milliseconds(3000));
  c.OnStored(milliseconds(1), 0);
  EXPECT_EQ(c.interval(), milliseconds(2250));
  for (int i = 0; i < 20; ++i) c.OnStored(milliseconds(1), 0);
  EXPECT_EQ(c.interval(), milliseconds(250));  // never below the floor
  EXPECT_EQ(c.batch_cap(), 2000u);
  c.OnStored(milliseconds(0), 0);
  EXPECT_EQ(c.interval(), milliseconds(250));
}

TEST(UploadCadenceTest, DecayStopsAtAdviceBelowTheInterval) {
  UploadCadence c;
  c.OnStored(milliseconds(1), 2000);
  c.OnStored(milliseconds(1), 1800);  // 0.75 x 2000 = 1500 < 1800
  EXPECT_EQ(c.interval(), milliseconds(1800));
}

TEST(UploadCadenceTest, BatchCapFollowsTheIntervalAndTheProtocolLimit) {
  UploadCadence c;
  c.OnStored(milliseconds(1), 1000);
  EXPECT_EQ(c.batch_cap(), 8000u);
  c.OnStored(milliseconds(1), 5000);
  EXPECT_EQ(c.batch_cap(), 40000u);
  EXPECT_LE(c.batch_cap(), UploadCadence::kMaxBatchPoints);
}

// ---------------------------------------------------------------------------
// MetricUploader

// Answers ReportMetrics from a script of statuses (then OK) and records
// every request.
class MetricsCoordinator {
 public:
  explicit MetricsCoordinator(v1::MockWorkerApiStub* stub) {
    ON_CALL(*stub, ReportMetrics(_, _, _))
        .WillByDefault(Invoke([this](grpc::ClientContext*, const v1::ReportMetricsRequest& req,
                                     v1::ReportMetricsResponse* resp) {
          return Answer(req, resp);
        }));
  }
  void Script(std::vector<grpc::Status> statuses) {
    std::lock_guard<std::mutex> lock(mu_);
    script_.assign(statuses.begin(), statuses.end());
  }
  void Advise(int64_t ms) {
    std::lock_guard<std::mutex> lock(mu_);
    advise_ms_ = ms;
  }
  void AwaitCalls(size_t n) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return calls_.size() >= n; });
  }
  size_t calls() {
    std::lock_guard<std::mutex> lock(mu_);
    return calls_.size();
  }
  v1::ReportMetricsRequest call(size_t i) {
    std::lock_guard<std::mutex> lock(mu_);
    return calls_.at(i);
  }
  // The steps of every point the coordinator stored, in order.
  std::vector<int64_t> StoredSteps() {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<int64_t> steps;
    for (size_t i = 0; i < calls_.size(); ++i) {
      if (!answers_[i].ok()) continue;
      for (const auto& p : calls_[i].points()) steps.push_back(p.step());
    }
    return steps;
  }

 private:
  grpc::Status Answer(const v1::ReportMetricsRequest& req, v1::ReportMetricsResponse* resp) {
    std::lock_guard<std::mutex> lock(mu_);
    grpc::Status status = grpc::Status::OK;
    if (!script_.empty()) {
      status = script_.front();
      script_.pop_front();
    }
    if (status.ok()) {
      resp->set_accepted(req.points_size());
      resp->set_upload_interval_ms(advise_ms_);
    }
    calls_.push_back(req);
    answers_.push_back(status);
    cv_.notify_all();
    return status;
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<grpc::Status> script_;
  int64_t advise_ms_ = 0;
  std::vector<v1::ReportMetricsRequest> calls_;
  std::vector<grpc::Status> answers_;
};

MetricPoint Point(int64_t step) { return MetricPoint{"train/loss", step, 0.5 * step, 100.0}; }

std::vector<int64_t> StepsOf(const v1::ReportMetricsRequest& req) {
  std::vector<int64_t> steps;
  for (const auto& p : req.points()) steps.push_back(p.step());
  return steps;
}

std::vector<int64_t> Range(int64_t from, int64_t to) {  // [from, to)
  std::vector<int64_t> v;
  for (int64_t i = from; i < to; ++i) v.push_back(i);
  return v;
}

class MetricUploaderTest : public ::testing::Test {
 protected:
  MetricUploaderTest() : coordinator(&stub), client(&stub, "TOKEN") {}

  std::unique_ptr<MetricUploader> Start() {
    auto uploader = std::make_unique<MetricUploader>(&client, kLease, &lease_lost, &step, &progress,
                                                     &clock, &stop);
    clock.AwaitSleepers(1);  // the upload loop waits for its first interval
    return uploader;
  }

  NiceMock<v1::MockWorkerApiStub> stub;
  MetricsCoordinator coordinator;
  CoordinatorClient client;
  FakeClock clock;
  StopFlag stop;
  std::atomic<bool> lease_lost{false};
  std::atomic<int64_t> step{42};
  std::atomic<double> progress{0.25};
};

TEST_F(MetricUploaderTest, SendsQueuedPointsEachIntervalWithTheLease) {
  auto uploader = Start();
  for (int64_t i = 0; i < 3; ++i) uploader->Write(Point(i));
  clock.Advance(milliseconds(249));
  clock.AwaitSleepers(1);
  EXPECT_EQ(coordinator.calls(), 0u);  // not before the interval
  clock.Advance(milliseconds(1));
  coordinator.AwaitCalls(1);
  const v1::ReportMetricsRequest req = coordinator.call(0);
  EXPECT_EQ(req.run_id(), "run-1");
  EXPECT_EQ(req.lease_epoch(), 7);
  EXPECT_EQ(req.worker_id(), "worker-1");
  EXPECT_EQ(req.lease_secret(), "secret-1");
  EXPECT_EQ(req.step(), 42);
  EXPECT_DOUBLE_EQ(req.progress(), 0.25);
  EXPECT_EQ(StepsOf(req), Range(0, 3));
  EXPECT_EQ(req.points(1).name(), "train/loss");
  EXPECT_DOUBLE_EQ(req.points(1).value(), 0.5);
  EXPECT_TRUE(uploader->Flush());
}

TEST_F(MetricUploaderTest, UnavailableBatchIsResentWhole) {
  coordinator.Script({grpc::Status(grpc::StatusCode::UNAVAILABLE, "down")});
  auto uploader = Start();
  for (int64_t i = 0; i < 5; ++i) uploader->Write(Point(i));
  uploader->MarkEpoch(1);  // sends at once
  coordinator.AwaitCalls(1);
  clock.AwaitSleepers(1);  // the backoff
  for (int64_t i = 5; i < 8; ++i) uploader->Write(Point(i));  // queued behind the batch
  EXPECT_EQ(uploader->FlushedEpoch(), 0);
  clock.Advance(milliseconds(250));  // past 200 ms + jitter
  coordinator.AwaitCalls(2);
  EXPECT_EQ(StepsOf(coordinator.call(1)), Range(0, 5));  // the same batch
  EXPECT_TRUE(uploader->Flush());
  EXPECT_EQ(uploader->FlushedEpoch(), 1);
  EXPECT_EQ(coordinator.StoredSteps(), Range(0, 8));  // no gap, no duplicate
  EXPECT_FALSE(uploader->failed());
}

TEST_F(MetricUploaderTest, ResourceExhaustedKeepsTheBatchAndSlowsDown) {
  // Busy more often than kMaxRefusals: never a refusal.
  const int busy = MetricUploader::kMaxRefusals + 2;
  coordinator.Script(std::vector<grpc::Status>(
      busy, grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "write queue over budget")));
  auto uploader = Start();
  for (int64_t i = 0; i < 4; ++i) uploader->Write(Point(i));
  uploader->MarkEpoch(1);
  coordinator.AwaitCalls(1);
  clock.AwaitSleepers(1);
  EXPECT_EQ(uploader->upload_interval(), milliseconds(500));  // doubled
  clock.Advance(milliseconds(499));
  clock.AwaitSleepers(1);
  EXPECT_EQ(coordinator.calls(), 1u);  // retried only after the new interval
  uploader->Write(Point(4));
  clock.Advance(milliseconds(1));
  coordinator.AwaitCalls(2);
  for (int i = 2; i <= busy; ++i) {
    clock.AwaitSleepers(1);
    clock.Advance(seconds(5));
    coordinator.AwaitCalls(static_cast<size_t>(i) + 1);
  }
  clock.AwaitSleepers(1);  // the answer handled, the loop waits again
  EXPECT_EQ(uploader->upload_interval(), milliseconds(3750));  // 5 s, then one fast call's decay
  for (size_t i = 0; i <= static_cast<size_t>(busy); ++i) {
    EXPECT_EQ(StepsOf(coordinator.call(i)), Range(0, 4)) << i;
  }
  EXPECT_TRUE(uploader->Flush());
  EXPECT_FALSE(uploader->failed());
  EXPECT_FALSE(lease_lost);
  EXPECT_EQ(coordinator.StoredSteps(), Range(0, 5));
}

TEST_F(MetricUploaderTest, InvalidBatchIsDropped) {
  coordinator.Script({grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "bad name")});
  auto uploader = Start();
  for (int64_t i = 0; i < 3; ++i) uploader->Write(Point(i));
  EXPECT_TRUE(uploader->Flush());  // dropped counts as done
  for (int64_t i = 3; i < 5; ++i) uploader->Write(Point(i));
  EXPECT_TRUE(uploader->Flush());
  ASSERT_EQ(coordinator.calls(), 2u);
  EXPECT_EQ(StepsOf(coordinator.call(1)), Range(3, 5));  // not retried
  EXPECT_FALSE(uploader->failed());
}

class MetricUploaderLeaseGoneTest : public MetricUploaderTest,
                                    public ::testing::WithParamInterface<grpc::StatusCode> {};

TEST_P(MetricUploaderLeaseGoneTest, MarksTheLeaseLost) {
  coordinator.Script({grpc::Status(GetParam(), "not your lease")});
  auto uploader = Start();
  for (int64_t i = 0; i < 3; ++i) uploader->Write(Point(i));
  EXPECT_FALSE(uploader->Flush());
  EXPECT_TRUE(lease_lost);
  EXPECT_EQ(uploader->FlushedEpoch(), 0);
  uploader->Write(Point(3));  // ignored: nothing more is stored under this lease
  uploader->MarkEpoch(1);
  uploader.reset();
  EXPECT_EQ(coordinator.calls(), 1u);
  EXPECT_FALSE(coordinator.call(0).points().empty());
}

INSTANTIATE_TEST_SUITE_P(Codes, MetricUploaderLeaseGoneTest,
                         ::testing::Values(grpc::StatusCode::FAILED_PRECONDITION,
                                           grpc::StatusCode::PERMISSION_DENIED,
                                           grpc::StatusCode::NOT_FOUND));

TEST_F(MetricUploaderTest, RepeatedRefusalsFailTheRun) {
  coordinator.Script(std::vector<grpc::Status>(
      MetricUploader::kMaxRefusals, grpc::Status(grpc::StatusCode::INTERNAL, "disk")));
  auto uploader = Start();
  uploader->Write(Point(0));
  uploader->MarkEpoch(1);
  for (int i = 1; i < MetricUploader::kMaxRefusals; ++i) {
    coordinator.AwaitCalls(static_cast<size_t>(i));
    clock.AwaitSleepers(1);  // backing off, the run still alive
    EXPECT_FALSE(uploader->failed()) << i;
    clock.Advance(seconds(10));
  }
  EXPECT_FALSE(uploader->Flush());
  EXPECT_TRUE(uploader->failed());
  EXPECT_THAT(uploader->Failure(), ::testing::HasSubstr("8 times"));
  EXPECT_EQ(coordinator.calls(), static_cast<size_t>(MetricUploader::kMaxRefusals));
  EXPECT_FALSE(lease_lost);
}

TEST_F(MetricUploaderTest, FlushWaitsUntilEveryPointIsStored) {
  coordinator.Script({grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "slow")});
  auto uploader = Start();
  for (int64_t i = 0; i < 3; ++i) uploader->Write(Point(i));
  auto flushed = std::async(std::launch::async, [&] { return uploader->Flush(); });
  coordinator.AwaitCalls(1);
  clock.AwaitSleepers(2);  // Flush and the backoff
  EXPECT_NE(flushed.wait_for(seconds(0)), std::future_status::ready);
  clock.Advance(seconds(1));
  EXPECT_TRUE(flushed.get());
  EXPECT_EQ(coordinator.StoredSteps(), Range(0, 3));
}

TEST_F(MetricUploaderTest, FlushGivesUpWhenStopped) {
  // Unreachable for good: nothing is ever stored. (Once stopped, the
  // backoff no longer waits: the retries go on until the uploader closes.)
  coordinator.Script(std::vector<grpc::Status>(
      1000000, grpc::Status(grpc::StatusCode::UNAVAILABLE, "down")));
  auto uploader = Start();
  uploader->Write(Point(0));
  auto flushed = std::async(std::launch::async, [&] { return uploader->Flush(); });
  coordinator.AwaitCalls(1);
  clock.AwaitSleepers(2);
  stop.Stop();
  EXPECT_FALSE(flushed.get());
}

TEST_F(MetricUploaderTest, FollowsTheCoordinatorsAdviceButFlushesAtOnce) {
  coordinator.Advise(2000);
  auto uploader = Start();
  uploader->Write(Point(0));
  uploader->MarkEpoch(1);
  coordinator.AwaitCalls(1);
  clock.AwaitSleepers(1);
  EXPECT_EQ(uploader->upload_interval(), milliseconds(2000));
  uploader->Write(Point(1));
  clock.Advance(milliseconds(1999));
  clock.AwaitSleepers(1);
  EXPECT_EQ(coordinator.calls(), 1u);
  clock.Advance(milliseconds(1));
  coordinator.AwaitCalls(2);
  clock.AwaitSleepers(1);
  // An epoch end does not wait for the interval: its checkpoint becomes
  // reportable as soon as its points are stored.
  uploader->Write(Point(2));
  uploader->MarkEpoch(2);
  coordinator.AwaitCalls(3);
  EXPECT_TRUE(uploader->Flush());
  EXPECT_EQ(uploader->FlushedEpoch(), 2);
  EXPECT_EQ(coordinator.StoredSteps(), Range(0, 3));
}

TEST_F(MetricUploaderTest, SlowCallsLengthenTheInterval) {
  ON_CALL(stub, ReportMetrics(_, _, _))
      .WillByDefault(Invoke([this](grpc::ClientContext*, const v1::ReportMetricsRequest&,
                                   v1::ReportMetricsResponse*) {
        clock.Advance(milliseconds(200));  // the call takes 200 ms of the 250
        return grpc::Status::OK;
      }));
  auto uploader = Start();
  uploader->Write(Point(0));
  EXPECT_TRUE(uploader->Flush());
  EXPECT_EQ(uploader->upload_interval(), milliseconds(500));
}

TEST_F(MetricUploaderTest, BatchesAreCappedByTheCadence) {
  auto uploader = Start();
  // 2000 queued points wake the loop before the interval; one call takes
  // at most 2000 at 250 ms.
  for (int64_t i = 0; i < 2500; ++i) uploader->Write(Point(i));
  coordinator.AwaitCalls(1);
  EXPECT_EQ(coordinator.call(0).points_size(), 2000);
  EXPECT_TRUE(uploader->Flush());
  EXPECT_EQ(coordinator.call(1).points_size(), 500);
  EXPECT_EQ(coordinator.StoredSteps(), Range(0, 2500));
}

// ---------------------------------------------------------------------------
// WrittenCheckpoints, LeaseKeeper

TEST(WrittenCheckpointsTest, ReportsTheNewestStoredOfTheLastTwo) {
  WrittenCheckpoints written;
  EXPECT_EQ(written.Reportable(INT64_MAX), "");
  written.Wrote(1, "epoch-1.pt");
  written.Wrote(2, "epoch-2.pt");
  EXPECT_EQ(written.Reportable(0), "");
  EXPECT_EQ(written.Reportable(1), "epoch-1.pt");
  EXPECT_EQ(written.Reportable(5), "epoch-2.pt");
  written.Wrote(3, "epoch-3.pt");  // epoch-1.pt is gone from disk now
  EXPECT_EQ(written.Reportable(1), "");
  EXPECT_EQ(written.Reportable(2), "epoch-2.pt");
}

// Answers Heartbeat from a script (then OK) and records the requests.
class HeartbeatCoordinator {
 public:
  explicit HeartbeatCoordinator(v1::MockWorkerApiStub* stub) {
    ON_CALL(*stub, Heartbeat(_, _, _))
        .WillByDefault(Invoke([this](grpc::ClientContext* ctx, const v1::HeartbeatRequest& req,
                                     v1::HeartbeatResponse* resp) {
          std::lock_guard<std::mutex> lock(mu_);
          calls_.push_back(req);
          deadline_s_ = DeadlineSeconds(ctx);
          grpc::Status status = grpc::Status::OK;
          if (!script_.empty()) {
            status = script_.front();
            script_.pop_front();
          }
          if (status.ok()) resp->set_cancel_requested(cancel_);
          cv_.notify_all();
          return status;
        }));
  }
  void Script(std::vector<grpc::Status> statuses) {
    std::lock_guard<std::mutex> lock(mu_);
    script_.assign(statuses.begin(), statuses.end());
  }
  void Cancel() {
    std::lock_guard<std::mutex> lock(mu_);
    cancel_ = true;
  }
  void AwaitCalls(size_t n) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return calls_.size() >= n; });
  }
  v1::HeartbeatRequest call(size_t i) {
    std::lock_guard<std::mutex> lock(mu_);
    return calls_.at(i);
  }
  size_t calls() {
    std::lock_guard<std::mutex> lock(mu_);
    return calls_.size();
  }
  double deadline_s() {
    std::lock_guard<std::mutex> lock(mu_);
    return deadline_s_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<grpc::Status> script_;
  bool cancel_ = false;
  std::vector<v1::HeartbeatRequest> calls_;
  double deadline_s_ = 0;
};

class LeaseKeeperTest : public ::testing::Test {
 protected:
  static constexpr int64_t kLeaseSeconds = 3;  // a heartbeat every second

  LeaseKeeperTest() : coordinator(&stub), client(&stub, "TOKEN") {}

  std::unique_ptr<LeaseKeeper> Start(double grace_seconds) {
    auto keeper = std::make_unique<LeaseKeeper>(
        &client, kLease, kLeaseSeconds, grace_seconds, [this] { return reportable(); }, &state,
        &clock);
    clock.AwaitSleepers(1);
    return keeper;
  }
  // One heartbeat period on, until heartbeat `n` has been answered.
  void Beat(size_t n) {
    clock.Advance(seconds(1));
    coordinator.AwaitCalls(n);
  }
  // True once the keeper handled the answer and waits for the next
  // heartbeat, i.e. it still holds the lease (it stops on a lost one).
  void AwaitNextBeat() {
    EXPECT_TRUE(clock.AwaitSleepers(1, [this] { return state.lease_lost.load(); }))
        << "the keeper gave the lease up";
  }

  std::string reportable() {
    std::lock_guard<std::mutex> lock(mu);
    return written.Reportable(flushed_epoch);
  }

  NiceMock<v1::MockWorkerApiStub> stub;
  HeartbeatCoordinator coordinator;
  CoordinatorClient client;
  FakeClock clock;
  LeaseState state;
  std::mutex mu;
  WrittenCheckpoints written;
  int64_t flushed_epoch = 0;  // guarded by mu
};

TEST_F(LeaseKeeperTest, HeartbeatsEveryThirdOfTheLeaseWithProgressAndCheckpoint) {
  auto keeper = Start(300);
  EXPECT_EQ(keeper->period(), milliseconds(1000));
  written.Wrote(1, "epoch-1.pt");
  written.Wrote(2, "epoch-2.pt");
  {
    std::lock_guard<std::mutex> lock(mu);
    flushed_epoch = 1;  // epoch 2's points are not all stored yet
  }
  state.step = 120;
  state.progress = 0.5;
  clock.Advance(milliseconds(999));
  AwaitNextBeat();
  Beat(1);
  AwaitNextBeat();
  v1::HeartbeatRequest req = coordinator.call(0);
  EXPECT_EQ(req.run_id(), "run-1");
  EXPECT_EQ(req.lease_epoch(), 7);
  EXPECT_EQ(req.worker_id(), "worker-1");
  EXPECT_EQ(req.lease_secret(), "secret-1");
  EXPECT_EQ(req.checkpoint(), "epoch-1.pt");
  EXPECT_EQ(req.step(), 120);
  EXPECT_DOUBLE_EQ(req.progress(), 0.5);
  EXPECT_LE(coordinator.deadline_s(), 1.0);  // a heartbeat's deadline is its period
  EXPECT_GT(coordinator.deadline_s(), 0.0);
  {
    std::lock_guard<std::mutex> lock(mu);
    flushed_epoch = 2;
  }
  Beat(2);
  AwaitNextBeat();
  EXPECT_EQ(coordinator.call(1).checkpoint(), "epoch-2.pt");
  EXPECT_FALSE(state.lease_lost);
  EXPECT_FALSE(state.cancelled);
}

TEST_F(LeaseKeeperTest, RefusalLosesTheLease) {
  coordinator.Script({grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "stale epoch")});
  auto keeper = Start(300);
  Beat(1);
  keeper.reset();  // joins: the answer has been handled
  EXPECT_TRUE(state.lease_lost);
}

TEST_F(LeaseKeeperTest, UnreachableKeepsTheLeaseForTheGrace) {
  const double grace = 10;  // seconds; more than the lease
  coordinator.Script(
      std::vector<grpc::Status>(20, grpc::Status(grpc::StatusCode::UNAVAILABLE, "down")));
  auto keeper = Start(grace);
  for (size_t n = 1; n <= 10; ++n) {  // 10 s without a renewal: not more than the grace
    Beat(n);
    AwaitNextBeat();
    ASSERT_FALSE(state.lease_lost) << n;
  }
  Beat(11);
  keeper.reset();
  EXPECT_TRUE(state.lease_lost);
}

TEST_F(LeaseKeeperTest, GraceIsAtLeastALeasePeriod) {
  coordinator.Script(
      std::vector<grpc::Status>(20, grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "slow")));
  auto keeper = Start(0);  // --coordinator-grace 0: still a whole lease
  for (size_t n = 1; n <= 3; ++n) {
    Beat(n);
    AwaitNextBeat();
    ASSERT_FALSE(state.lease_lost) << n;
  }
  Beat(4);
  keeper.reset();
  EXPECT_TRUE(state.lease_lost);
}

TEST_F(LeaseKeeperTest, RenewalRestartsTheGrace) {
  const grpc::Status down(grpc::StatusCode::UNAVAILABLE, "down");
  std::vector<grpc::Status> script(8, down);
  script.push_back(grpc::Status::OK);  // heartbeat 9 renews, at 9 s
  script.insert(script.end(), 11, down);
  coordinator.Script(script);
  auto keeper = Start(10);
  for (size_t n = 1; n <= 19; ++n) {  // at 19 s: 10 s since the renewal
    Beat(n);
    AwaitNextBeat();
    ASSERT_FALSE(state.lease_lost) << n;
  }
  Beat(20);  // 11 s since the renewal
  keeper.reset();
  EXPECT_TRUE(state.lease_lost);
}

TEST_F(LeaseKeeperTest, AnUnreachableCoordinatorIsRetriedEveryQuarterSecond) {
  // madamd's restart grace is one lease period (ARCHITECTURE.md section 5):
  // while it is away the keeper retries every 250 ms, not every period, so
  // the renewal lands soon after it is back. Once renewed, the period again.
  coordinator.Script({grpc::Status(grpc::StatusCode::UNAVAILABLE, "down"), grpc::Status::OK});
  auto keeper = Start(300);
  Beat(1);  // at 1 s: unreachable
  AwaitNextBeat();
  clock.Advance(milliseconds(250));
  coordinator.AwaitCalls(2);  // at 1.25 s: renewed
  AwaitNextBeat();
  clock.Advance(milliseconds(250));
  AwaitNextBeat();
  EXPECT_EQ(coordinator.calls(), 2u);  // 1.5 s: no call until a period after the renewal
  clock.Advance(milliseconds(750));
  coordinator.AwaitCalls(3);  // at 2.25 s
  EXPECT_FALSE(state.lease_lost);
}

TEST_F(LeaseKeeperTest, OtherErrorsLoseTheLeaseAfterAWholeLeasePeriod) {
  coordinator.Script(
      std::vector<grpc::Status>(20, grpc::Status(grpc::StatusCode::INTERNAL, "oops")));
  auto keeper = Start(300);  // the grace is for an unreachable coordinator only
  for (size_t n = 1; n <= 3; ++n) {  // 3 s: not more than the lease
    Beat(n);
    AwaitNextBeat();
    ASSERT_FALSE(state.lease_lost) << n;
  }
  Beat(4);
  keeper.reset();
  EXPECT_TRUE(state.lease_lost);
}

TEST_F(LeaseKeeperTest, RecordsACancelRequest) {
  auto keeper = Start(300);
  Beat(1);
  AwaitNextBeat();
  EXPECT_FALSE(state.cancelled);
  coordinator.Cancel();
  Beat(2);
  AwaitNextBeat();  // the keeper goes on heartbeating a cancelled run
  EXPECT_TRUE(state.cancelled);
  EXPECT_FALSE(state.lease_lost);
}

}  // namespace
}  // namespace madam::worker::serve
