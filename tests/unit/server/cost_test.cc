// ComputeSweepCost (server/cost.h): device-seconds, medians per task and the
// ETA, on hand-made runs and workers with a fixed now.
#include <gtest/gtest.h>

#include "server/cost.h"

namespace madam::server {
namespace {

constexpr int64_t kNow = 1'000'000'000;

RunTiming Ended(const std::string& task, RunState state, int64_t seconds) {
  return {task, state, kNow - 500'000, kNow - 500'000 + seconds * 1000};
}

TEST(SweepCostTest, DeviceSecondsCountTerminalAndRunningRuns) {
  const std::vector<RunTiming> runs = {
      Ended("mlp", RunState::kSucceeded, 100),
      Ended("mlp", RunState::kFailed, 7),            // spent, though not a full run
      {"mlp", RunState::kRunning, kNow - 30'000, 0},  // 30 s so far
      {"mlp", RunState::kPending, 0, 0},
      {"mlp", RunState::kCancelled, 0, kNow - 5},   // cancelled before any grant
  };
  const SweepCost c = ComputeSweepCost(runs, {}, "cpu", 0, kNow);
  EXPECT_DOUBLE_EQ(c.device_seconds, 137);
  EXPECT_EQ(c.pending, 1);
  EXPECT_EQ(c.running, 1);
  ASSERT_EQ(c.median_run_seconds.size(), 1u);
  EXPECT_DOUBLE_EQ(c.median_run_seconds.at("mlp"), 100);  // the failed run is not a full run
}

TEST(SweepCostTest, EtaFromMediansPendingRunningAndSlots) {
  const std::vector<RunTiming> runs = {
      Ended("a", RunState::kSucceeded, 10), Ended("a", RunState::kDiverged, 30), Ended("a", RunState::kSucceeded, 20),
      Ended("b", RunState::kSucceeded, 100), Ended("b", RunState::kSucceeded, 200),
      {"a", RunState::kPending, 0, 0},                 // 20
      {"b", RunState::kPending, 0, 0},                 // 150
      {"b", RunState::kRunning, kNow - 100'000, 0},    // 150 - 100 = 50
      {"a", RunState::kRunning, kNow - 60'000, 0},     // past its median: 0
      {"c", RunState::kPending, 0, 0},                 // no median: all finished runs' median, 30
  };
  // Three cpu slots fresh, one stale worker, one cuda worker the cpu sweep cannot use.
  const std::vector<WorkerDevices> workers = {{"cpu", kNow - 1000}, {"cpu", kNow}, {"cpu", kNow - 1},
                                              {"cpu", kNow - 31'000}, {"cuda:0", kNow}};
  const SweepCost c = ComputeSweepCost(runs, workers, "cpu", 0, kNow);
  EXPECT_DOUBLE_EQ(c.median_run_seconds.at("a"), 20);
  EXPECT_DOUBLE_EQ(c.median_run_seconds.at("b"), 150);
  EXPECT_EQ(c.slots, 3);
  ASSERT_TRUE(c.eta_seconds.has_value()) << c.eta_unknown_because;
  EXPECT_DOUBLE_EQ(*c.eta_seconds, (20 + 150 + 50 + 0 + 30) / 3.0);

  // Slots: "any" takes every device of a multi-device worker; max_concurrent caps them.
  const std::vector<WorkerDevices> gpus = {{"cuda:0,cuda:1", kNow}, {"cpu", kNow}};
  EXPECT_EQ(ComputeSweepCost(runs, gpus, "any", 0, kNow).slots, 3);
  EXPECT_EQ(ComputeSweepCost(runs, gpus, "cuda", 0, kNow).slots, 2);
  const SweepCost capped = ComputeSweepCost(runs, gpus, "any", 1, kNow);
  EXPECT_EQ(capped.slots, 1);
  EXPECT_DOUBLE_EQ(*capped.eta_seconds, 250);
  // Fewer runs left than slots: the runs left bound the parallelism.
  const std::vector<RunTiming> one = {Ended("a", RunState::kSucceeded, 40), {"a", RunState::kPending, 0, 0}};
  EXPECT_DOUBLE_EQ(*ComputeSweepCost(one, workers, "cpu", 0, kNow).eta_seconds, 40);
}

TEST(SweepCostTest, EtaUnknownSaysWhyAndZeroWhenDone) {
  const std::vector<RunTiming> fresh = {{"a", RunState::kPending, 0, 0}};
  const SweepCost none = ComputeSweepCost(fresh, {{"cpu", kNow}}, "cpu", 0, kNow);
  EXPECT_FALSE(none.eta_seconds.has_value());
  EXPECT_EQ(none.eta_unknown_because, "no run has finished yet");

  const std::vector<RunTiming> half = {Ended("a", RunState::kSucceeded, 5), {"a", RunState::kPending, 0, 0}};
  const SweepCost idle = ComputeSweepCost(half, {{"cuda:0", kNow}}, "cpu", 0, kNow);
  EXPECT_FALSE(idle.eta_seconds.has_value());
  EXPECT_EQ(idle.eta_unknown_because, "no connected worker takes its runs");

  const SweepCost done = ComputeSweepCost({Ended("a", RunState::kSucceeded, 5)}, {}, "cpu", 0, kNow);
  ASSERT_TRUE(done.eta_seconds.has_value());
  EXPECT_DOUBLE_EQ(*done.eta_seconds, 0);
  EXPECT_DOUBLE_EQ(done.device_seconds, 5);
}

// Data parallel: a run on D devices holds D slots for its time, and runs
// wider than every connected worker are named as waiting.
TEST(SweepCostTest, MultiDeviceRunsHoldTheirSlotsAndWideOnesWait) {
  const std::vector<RunTiming> runs = {
      Ended("a", RunState::kSucceeded, 100),
      {"a", RunState::kPending, 0, 0, 2},  // 100 s on 2 devices: 200 device-seconds
      {"a", RunState::kPending, 0, 0, 2},
  };
  const std::vector<WorkerDevices> workers = {{"cuda:0,cuda:1", kNow}, {"cuda:0,cuda:1", kNow}};
  SweepCost c = ComputeSweepCost(runs, workers, "cuda", 0, kNow);
  EXPECT_EQ(c.slots, 4);
  ASSERT_TRUE(c.eta_seconds.has_value()) << c.eta_unknown_because;
  EXPECT_DOUBLE_EQ(*c.eta_seconds, 400.0 / 4);  // both at once, on two workers
  EXPECT_TRUE(c.waiting_because.empty());

  const std::vector<RunTiming> wide = {
      Ended("a", RunState::kSucceeded, 100),
      {"a", RunState::kPending, 0, 0, 8},
  };
  c = ComputeSweepCost(wide, workers, "cuda", 0, kNow);
  EXPECT_EQ(c.waiting_because, "1 pending run(s) need 8 devices; no connected worker has more than 2");
  EXPECT_FALSE(c.eta_seconds.has_value());
  EXPECT_EQ(c.eta_unknown_because, c.waiting_because);
}

TEST(SweepCostTest, DurationText) {
  EXPECT_EQ(DurationText(45), "45 s");
  EXPECT_EQ(DurationText(14 * 60), "14 min");
  EXPECT_EQ(DurationText(3.2 * 3600), "3.2 h");
  EXPECT_EQ(DurationText(-1), "unknown");
}

}  // namespace
}  // namespace madam::server
