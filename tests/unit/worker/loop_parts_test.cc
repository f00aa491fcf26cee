// The torch-free parts of the training loop: the learning-rate schedule and
// the checkpoint files.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "worker/checkpoint_io.h"
#include "worker/lr_schedule.h"
#include "worker/trainer.h"

namespace madam::worker {
namespace {

namespace fs = std::filesystem;

TEST(LrScheduleTest, StepDecaysStartTheEpochAfterEachMilestone) {
  RunConfig c;
  c.lr_schedule = "step";
  c.lr_milestones = {100, 200};
  LrSchedule s(c);
  EXPECT_EQ(s.DecaysFor(1), 0);
  EXPECT_EQ(s.DecaysFor(100), 0);
  EXPECT_EQ(s.DecaysFor(101), 1);
  EXPECT_EQ(s.DecaysFor(200), 1);
  EXPECT_EQ(s.DecaysFor(201), 2);
  EXPECT_EQ(s.DecaysFor(300), 2);
  // Validation never moves a step schedule.
  for (int i = 0; i < 5; ++i) EXPECT_FALSE(s.ObserveValidation(1.0));
  EXPECT_EQ(s.DecaysFor(50), 0);
}

TEST(LrScheduleTest, PlateauCountsEpochsWithoutABetterValidationMetric) {
  RunConfig c;
  c.lr_schedule = "plateau";
  c.lr_decay_patience = 2;
  LrSchedule s(c);
  EXPECT_FALSE(s.ObserveValidation(10));  // the first sets the best
  EXPECT_FALSE(s.ObserveValidation(9));   // better
  EXPECT_FALSE(s.ObserveValidation(9));   // 1 bad epoch
  EXPECT_TRUE(s.ObserveValidation(9.5));  // 2 bad epochs: decay
  EXPECT_EQ(s.DecaysFor(5), 1);
  EXPECT_FALSE(s.ObserveValidation(8));
  EXPECT_EQ(s.state().best, 8);
  LrSchedule restored(c);
  restored.Restore(s.state());
  EXPECT_EQ(restored.DecaysFor(9), 1);
}

TEST(LrScheduleTest, WarmupRampsLinearlyPerStep) {
  RunConfig c;
  c.warmup_epochs = 5;
  LrSchedule s(c);
  // The authors' ImageNet script: lr * (1 + step + epoch * len) / (5 * len).
  EXPECT_DOUBLE_EQ(s.WarmupScale(0, 10), 1.0 / 50);
  EXPECT_DOUBLE_EQ(s.WarmupScale(24, 10), 25.0 / 50);
  EXPECT_DOUBLE_EQ(s.WarmupScale(49, 10), 1.0);
  EXPECT_DOUBLE_EQ(s.WarmupScale(50, 10), 1.0);
  c.warmup_epochs = 0;
  EXPECT_DOUBLE_EQ(LrSchedule(c).WarmupScale(0, 10), 1.0);
}

class CheckpointFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("madam_ckpt_files_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(CheckpointFilesTest, DurableWriteLeavesOnlyTheWholeFile) {
  Status s = WriteFileDurably(dir_.string(), "epoch-3.pt", [](const std::string& tmp) {
    std::ofstream(tmp) << "payload";
  });
  ASSERT_TRUE(s.ok()) << s.ToString();
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir_)) names.push_back(e.path().filename().string());
  EXPECT_EQ(names, std::vector<std::string>{"epoch-3.pt"});
  std::ifstream in(dir_ / "epoch-3.pt");
  std::string text;
  in >> text;
  EXPECT_EQ(text, "payload");
}

TEST_F(CheckpointFilesTest, ListingIsNewestFirstAndPruningKeepsTheNewest) {
  fs::create_directories(dir_);
  for (const char* name : {"epoch-1.pt", "epoch-10.pt", "epoch-2.pt", "epoch-x.pt", "notes.txt",
                           "epoch-3.pt.tmp-1-2"}) {
    std::ofstream(dir_ / name) << "x";
  }
  auto all = ListCheckpoints(dir_.string());
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(fs::path(all[0]).filename(), "epoch-10.pt");
  EXPECT_EQ(fs::path(all[2]).filename(), "epoch-1.pt");
  EXPECT_EQ(CheckpointEpoch("/a/b/epoch-10.pt"), 10);
  EXPECT_EQ(CheckpointEpoch("epoch-.pt"), -1);
  EXPECT_EQ(CheckpointEpoch("epoch-1x.pt"), -1);
  PruneCheckpoints(dir_.string(), 2);
  EXPECT_EQ(ListCheckpoints(dir_.string()).size(), 2u);
  EXPECT_TRUE(fs::exists(dir_ / "notes.txt"));  // other files are left alone
  EXPECT_EQ(FindLatestCheckpoint(dir_.string()), (dir_ / "epoch-10.pt").string());
  EXPECT_EQ(FindLatestCheckpoint((dir_ / "missing").string()), "");
}

// Section 5: a run keeps its last two checkpoints and never holds more: the
// trainer prunes to one before the new file is renamed into place.
TEST_F(CheckpointFilesTest, PruningBeforePublishNeverHoldsMoreThanTheKeepCount) {
  for (int epoch = 1; epoch <= 6; ++epoch) {
    size_t held_at_publish = 0;
    Status s = WriteFileDurably(
        dir_.string(), CheckpointName(epoch), [](const std::string& tmp) { std::ofstream(tmp) << "x"; },
        [&] {
          PruneCheckpoints(dir_.string(), 1);
          held_at_publish = ListCheckpoints(dir_.string()).size();
        });
    ASSERT_TRUE(s.ok()) << s.ToString();
    EXPECT_LE(held_at_publish, 1u) << "epoch " << epoch;
    EXPECT_EQ(ListCheckpoints(dir_.string()).size(), std::min<size_t>(epoch, 2)) << "epoch " << epoch;
  }
  EXPECT_EQ(FindLatestCheckpoint(dir_.string()), (dir_ / "epoch-6.pt").string());
  PruneCheckpoints(dir_.string(), 0);
  EXPECT_TRUE(ListCheckpoints(dir_.string()).empty());
}

}  // namespace
}  // namespace madam::worker
