// The training loop end to end through the torch-free Trainer API: every
// optimiser, every task on generated files, resume, export, faults.
#include "worker/trainer.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "common/recipe.h"
#include "tests/unit/worker/collecting_sink.h"
#include "tests/unit/worker/test_files.h"
#include "worker/tasks/task.h"
#include "worker/train_command.h"

namespace madam::worker {
namespace {

namespace fs = std::filesystem;
using namespace madam::worker::testing;

RunConfig Config(const std::string& task, const std::string& optimizer, double lr, int64_t epochs) {
  RunParams params{{"task", ParamValue::String(task)},
                   {"optimizer", ParamValue::String(optimizer)},
                   {"lr", ParamValue::Number(lr)},
                   {"epochs", ParamValue::Number(static_cast<double>(epochs))}};
  auto c = RunConfigFromParams(params);
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return *c;
}

WorkerOptions CpuOptions(const std::string& data_dir = "") {
  WorkerOptions o;
  o.device = "cpu";
  o.data_dir = data_dir;
  o.threads = 1;
  return o;
}

class TrainerTest : public ScratchDirTest {
 protected:
  TrainerTest() : ScratchDirTest("madam_trainer_test") {}
};

// A run as the worker resolves it: the task's recipe, then `extra`.
RunConfig Resolved(const std::string& task, const std::string& optimizer, RunParams extra = {}) {
  extra["task"] = ParamValue::String(task);
  extra["optimizer"] = ParamValue::String(optimizer);
  auto c = ResolveConfig(extra, {});
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return *c;
}

class OptimizerTrainsTest : public TrainerTest,
                            public ::testing::WithParamInterface<std::pair<const char*, double>> {};

TEST_P(OptimizerTrainsTest, SyntheticLossFalls) {
  auto [optimizer, lr] = GetParam();
  Trainer trainer(CpuOptions());
  CollectingSink sink;
  RunHooks hooks;
  hooks.sink = &sink;
  // The task's recipe (SGD with momentum 0.9 here), at the given rate.
  RunConfig c = Resolved("synthetic-mlp", optimizer,
                         {{"lr", ParamValue::Number(lr)}, {"epochs", ParamValue::Number(3)}});
  RunSummary s = trainer.Run(c, hooks);
  ASSERT_EQ(s.status, "succeeded") << s.error;
  EXPECT_EQ(s.steps, 3 * 16);  // 2000 samples / batch 128
  auto losses = sink.Named("train/loss");
  ASSERT_GE(losses.size(), 3u);
  EXPECT_LT(losses.back().value, losses.front().value * 0.8) << optimizer;
  EXPECT_EQ(losses.back().step, 48);
  for (const char* name : {"test/loss", "test/error", "lr", "samples_per_second",
                           "optim/relative_update", "optim/at_bound_fraction", "optim/sign_flips"}) {
    EXPECT_EQ(s.final.count(name), 1u) << name;
  }
  EXPECT_LT(s.final["test/error"], 50.0) << optimizer;
  EXPECT_GT(s.final["optim/relative_update"], 0.0);
  if (std::string(optimizer) == "madam" || std::string(optimizer) == "int_madam") {
    EXPECT_EQ(s.final["optim/sign_flips"], 0.0);
  }
}

INSTANTIATE_TEST_SUITE_P(AllOptimizers, OptimizerTrainsTest,
                         ::testing::Values(std::make_pair("sgd", 0.1), std::make_pair("adam", 0.01),
                                           std::make_pair("madam", 0.01),
                                           std::make_pair("int_madam", 0.03)));

std::map<std::string, double> WithoutTiming(std::map<std::string, double> m) {
  m.erase("samples_per_second");
  return m;
}

TEST_F(TrainerTest, ResumeFromAnyEpochMatchesUninterruptedRun) {
  for (const char* optimizer : {"madam", "int_madam", "sgd", "adam"}) {
    Trainer trainer(CpuOptions());
    RunConfig c = Config("synthetic-mlp", optimizer, 0.01, 3);
    // Exercise the scheduler's and the validation split's state too.
    c.lr_schedule = "plateau";
    c.val_split = 200;
    c.lr_decay_patience = 1;
    RunHooks hooks;
    hooks.checkpoint_dir = Path(std::string("ckpt-") + optimizer);
    hooks.keep_checkpoints = 0;  // every epoch's checkpoint, to resume from each
    CollectingSink full_sink;
    hooks.sink = &full_sink;
    RunSummary full = trainer.Run(c, hooks);
    ASSERT_EQ(full.status, "succeeded") << full.error;
    EXPECT_EQ(full.last_checkpoint, hooks.checkpoint_dir + "/epoch-3.pt");
    EXPECT_EQ(FindLatestCheckpoint(hooks.checkpoint_dir), hooks.checkpoint_dir + "/epoch-3.pt");
    for (int epoch : {1, 2}) {
      RunHooks resume;
      resume.resume_from = hooks.checkpoint_dir + "/epoch-" + std::to_string(epoch) + ".pt";
      CollectingSink sink;
      resume.sink = &sink;
      RunSummary r = trainer.Run(c, resume);
      ASSERT_EQ(r.status, "succeeded") << r.error;
      EXPECT_EQ(r.steps, full.steps);
      EXPECT_EQ(WithoutTiming(r.final), WithoutTiming(full.final)) << optimizer << " epoch " << epoch;
      // Step numbering continues where the checkpoint left off.
      ASSERT_FALSE(sink.points.empty());
      EXPECT_GT(sink.points.front().step, epoch * 16);
      EXPECT_EQ(sink.Named("train/loss").back().step, full_sink.Named("train/loss").back().step);
    }
  }
}

TEST_F(TrainerTest, KeepsOnlyTheNewestCheckpointsAndReportsEachDurableOne) {
  Trainer trainer(CpuOptions());
  RunHooks hooks;
  hooks.checkpoint_dir = Path("ckpt");
  std::vector<std::pair<int64_t, std::string>> reported;
  size_t most_files = 0;
  hooks.on_checkpoint = [&](int64_t epoch, const std::string& path) {
    reported.emplace_back(epoch, path);
    EXPECT_TRUE(fs::exists(path));
    size_t files = 0;
    for (const auto& e : fs::directory_iterator(hooks.checkpoint_dir)) {
      (void)e;
      ++files;
    }
    most_files = std::max(most_files, files);
  };
  RunSummary s = trainer.Run(Config("synthetic-mlp", "madam", 0.01, 5), hooks);
  ASSERT_EQ(s.status, "succeeded") << s.error;
  ASSERT_EQ(reported.size(), 5u);
  for (int64_t e = 1; e <= 5; ++e) {
    EXPECT_EQ(reported[e - 1].first, e);
    EXPECT_EQ(reported[e - 1].second, Path("ckpt/epoch-" + std::to_string(e) + ".pt"));
  }
  // No temporary file is ever left behind and at most two checkpoints exist.
  EXPECT_LE(most_files, 2u);
  EXPECT_EQ(ListCheckpoints(hooks.checkpoint_dir),
            (std::vector<std::string>{Path("ckpt/epoch-5.pt"), Path("ckpt/epoch-4.pt")}));
}

TEST_F(TrainerTest, TornCheckpointFallsBackToThePreviousOne) {
  Trainer trainer(CpuOptions());
  RunConfig c = Config("synthetic-mlp", "adam", 0.01, 4);
  RunHooks hooks;
  hooks.checkpoint_dir = Path("ckpt");
  RunSummary full = trainer.Run(c, hooks);
  ASSERT_EQ(full.status, "succeeded") << full.error;
  // Tear the newest checkpoint (epoch 4) in half; epoch 3 is intact.
  const std::string newest = Path("ckpt/epoch-4.pt");
  const auto size = fs::file_size(newest);
  fs::resize_file(newest, size / 2);

  RunHooks resume;
  resume.resume_candidates = ListCheckpoints(hooks.checkpoint_dir);
  CollectingSink sink;
  resume.sink = &sink;
  RunSummary r = trainer.Run(c, resume);
  ASSERT_EQ(r.status, "succeeded") << r.error;
  EXPECT_EQ(r.resumed_from, Path("ckpt/epoch-3.pt"));
  ASSERT_EQ(r.warnings.size(), 1u);
  EXPECT_NE(r.warnings[0].find("epoch-4.pt"), std::string::npos) << r.warnings[0];
  EXPECT_EQ(WithoutTiming(r.final), WithoutTiming(full.final));

  // With every candidate unreadable the run starts over from step 0.
  fs::resize_file(Path("ckpt/epoch-3.pt"), 10);
  RunHooks none;
  none.resume_candidates = {Path("ckpt/epoch-4.pt"), Path("ckpt/epoch-3.pt"), Path("missing.pt")};
  RunSummary z = trainer.Run(c, none);
  ASSERT_EQ(z.status, "succeeded") << z.error;
  EXPECT_TRUE(z.resumed_from.empty());
  EXPECT_EQ(z.warnings.size(), 4u);
  EXPECT_EQ(WithoutTiming(z.final), WithoutTiming(full.final));
}

TEST_F(TrainerTest, CheckpointFromAnotherOptimizerOrTaskIsRejected) {
  Trainer trainer(CpuOptions());
  RunHooks hooks;
  hooks.checkpoint_dir = Path("ckpt");
  ASSERT_EQ(trainer.Run(Config("synthetic-mlp", "madam", 0.01, 1), hooks).status, "succeeded");
  RunHooks resume;
  resume.resume_from = Path("ckpt/epoch-1.pt");
  RunSummary s = trainer.Run(Config("synthetic-mlp", "adam", 0.01, 2), resume);
  EXPECT_EQ(s.status, "failed");
  EXPECT_NE(s.error.find("optimizer madam"), std::string::npos) << s.error;

  WriteFashionMnistDir(Path("fm"), 64, 16);
  Trainer fm(CpuOptions(Path("fm")));
  s = fm.Run(Config("fmnist-mlp", "madam", 0.01, 2), resume);
  EXPECT_EQ(s.status, "failed");
  EXPECT_NE(s.error.find("task synthetic-mlp"), std::string::npos) << s.error;

  resume.resume_from = Path("nope.pt");
  s = trainer.Run(Config("synthetic-mlp", "madam", 0.01, 2), resume);
  EXPECT_EQ(s.status, "failed");
  EXPECT_NE(s.error.find("nope.pt"), std::string::npos);

  WriteFile(Path("garbage.pt"), "not a checkpoint");
  resume.resume_from = Path("garbage.pt");
  s = trainer.Run(Config("synthetic-mlp", "madam", 0.01, 2), resume);
  EXPECT_EQ(s.status, "failed");
  EXPECT_NE(s.error.find("garbage.pt"), std::string::npos);
}

TEST_F(TrainerTest, InjectedFailure) {
  Trainer trainer(CpuOptions());
  RunConfig c = Config("synthetic-mlp", "madam", 0.01, 2);
  c.fail_at_step = 5;
  CollectingSink sink;
  RunHooks hooks;
  hooks.sink = &sink;
  RunSummary s = trainer.Run(c, hooks);
  EXPECT_EQ(s.status, "failed");
  EXPECT_EQ(s.error, "injected failure at step 5");
}

TEST_F(TrainerTest, PauseHoldsTheChosenAttemptAtItsStepUntilStopped) {
  Trainer trainer(CpuOptions());
  RunConfig c = Config("synthetic-mlp", "madam", 0.01, 2);
  c.pause_at_step = 7;
  c.pause_attempt = 1;
  // The stop hook is polled once per step and then repeatedly while paused;
  // it gives in only at its 40th poll, so a run that did not pause would
  // have taken 40 steps.
  int polls = 0;
  RunHooks hooks;
  hooks.attempt = 1;
  hooks.should_stop = [&] { return ++polls > 40; };
  RunSummary s = trainer.Run(c, hooks);
  EXPECT_EQ(s.status, "stopped");
  EXPECT_EQ(s.steps, 7);
  EXPECT_EQ(polls, 41);

  // Another attempt of the same run trains straight through.
  RunHooks second;
  second.attempt = 2;
  second.should_stop = [] { return false; };
  s = trainer.Run(c, second);
  EXPECT_EQ(s.status, "succeeded");
  EXPECT_GT(s.steps, 7);
}

TEST_F(TrainerTest, PauseWithoutAStopHookIsAnError) {
  Trainer trainer(CpuOptions());
  RunConfig c = Config("synthetic-mlp", "madam", 0.01, 1);
  c.pause_at_step = 2;
  RunSummary s = trainer.Run(c, RunHooks{});
  EXPECT_EQ(s.status, "failed");
  EXPECT_NE(s.error.find("pause_at_step"), std::string::npos);
}

TEST_F(TrainerTest, StopHookStopsTheRun) {
  Trainer trainer(CpuOptions());
  int polls = 0;
  RunHooks hooks;
  hooks.should_stop = [&] { return ++polls > 3; };
  RunSummary s = trainer.Run(Config("synthetic-mlp", "madam", 0.01, 2), hooks);
  EXPECT_EQ(s.status, "stopped");
  EXPECT_EQ(s.steps, 3);
}

TEST_F(TrainerTest, HugeLearningRateDiverges) {
  Trainer trainer(CpuOptions());
  RunSummary s = trainer.Run(Config("synthetic-mlp", "sgd", 1e6, 2), RunHooks{});
  EXPECT_EQ(s.status, "diverged") << s.error;
}

TEST_F(TrainerTest, ExportRoundTripGivesSameTestMetric) {
  Trainer trainer(CpuOptions());
  RunConfig c = Config("synthetic-mlp", "int_madam", 0.01, 2);
  c.bits = 8;
  c.base_lr = 0.005;
  RunHooks hooks;
  hooks.export_model = Path("model.mdq");
  RunSummary s = trainer.Run(c, hooks);
  ASSERT_EQ(s.status, "succeeded") << s.error;
  ASSERT_GT(s.export_bytes, 0);
  EXPECT_LT(s.export_bytes, s.fp32_bytes * 9 / 32 + 4096);  // 8 bits + 1 sign bit per weight
  auto m = trainer.EvaluateExportedModel(c, Path("model.mdq"));
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_NEAR(m->at("test/error"), s.final["test/error"], 0.21);  // at most one sample of 500
  EXPECT_NEAR(m->at("test/loss"), s.final["test/loss"], 1e-3);

  RunConfig other = Config("fmnist-mlp", "int_madam", 0.01, 1);
  EXPECT_FALSE(trainer.EvaluateExportedModel(other, Path("model.mdq")).ok());

  RunHooks bad;
  bad.export_model = Path("m2.mdq");
  s = trainer.Run(Config("synthetic-mlp", "madam", 0.01, 1), bad);
  EXPECT_EQ(s.status, "failed");
  EXPECT_NE(s.error.find("int_madam"), std::string::npos);
}

TEST_F(TrainerTest, MissingDataNamesWhatBelongsThere) {
  Trainer trainer(CpuOptions(Path("empty")));
  RunSummary s = trainer.Run(Config("fmnist-mlp", "madam", 0.01, 1), RunHooks{});
  EXPECT_EQ(s.status, "failed");
  EXPECT_NE(s.error.find(Path("empty") + "/train-images-idx3-ubyte.gz"), std::string::npos) << s.error;
  Trainer no_dir(CpuOptions());
  s = no_dir.Run(Config("cifar10-resnet18", "madam", 0.01, 1), RunHooks{});
  EXPECT_EQ(s.status, "failed");
  EXPECT_NE(s.error.find("--data-dir"), std::string::npos) << s.error;
  EXPECT_NE(s.error.find("data_batch_1"), std::string::npos) << s.error;
  s = no_dir.Run(Config("wikitext2-transformer", "madam", 0.01, 1), RunHooks{});
  EXPECT_EQ(s.status, "failed");
  EXPECT_NE(s.error.find("wiki.train.tokens"), std::string::npos) << s.error;
}

// The lr metric of each epoch, in order.
std::vector<double> EpochLrs(const CollectingSink& sink) {
  std::vector<double> out;
  for (const auto& p : sink.Named("lr")) out.push_back(p.value);
  return out;
}

TEST_F(TrainerTest, StepScheduleDecaysAfterEachMilestoneEpoch) {
  Trainer trainer(CpuOptions());
  RunConfig c = Config("synthetic-mlp", "sgd", 0.1, 5);
  c.lr_schedule = "step";
  c.lr_milestones = {2, 4};
  c.lr_decay_factor = 10;
  CollectingSink sink;
  RunHooks hooks;
  hooks.sink = &sink;
  ASSERT_EQ(trainer.Run(c, hooks).status, "succeeded");
  auto lr = EpochLrs(sink);
  ASSERT_EQ(lr.size(), 5u);
  // Epoch m + 1 is the first to train at the decayed rate.
  EXPECT_DOUBLE_EQ(lr[0], 0.1);
  EXPECT_DOUBLE_EQ(lr[1], 0.1);
  EXPECT_DOUBLE_EQ(lr[2], 0.01);
  EXPECT_DOUBLE_EQ(lr[3], 0.01);
  EXPECT_NEAR(lr[4], 0.001, 1e-15);
}

TEST_F(TrainerTest, WarmupRampsPerStepOverItsEpochs) {
  Trainer trainer(CpuOptions());
  RunConfig c = Config("synthetic-mlp", "madam", 0.01, 3);
  c.warmup_epochs = 2;
  CollectingSink sink;
  RunHooks hooks;
  hooks.sink = &sink;
  ASSERT_EQ(trainer.Run(c, hooks).status, "succeeded");
  auto lr = EpochLrs(sink);
  ASSERT_EQ(lr.size(), 3u);
  // 16 steps an epoch, 32 of warm-up: the last step of epoch 1 runs at
  // 16/32 of the rate, of epoch 2 at 32/32.
  EXPECT_DOUBLE_EQ(lr[0], 0.005);
  EXPECT_DOUBLE_EQ(lr[1], 0.01);
  EXPECT_DOUBLE_EQ(lr[2], 0.01);
}

TEST_F(TrainerTest, PlateauDecaysOnTheValidationMetricAndIntMadamStopsAtBaseLr) {
  Trainer trainer(CpuOptions());
  // A rate small enough that the validation error stalls now and then.
  RunConfig c = Config("synthetic-mlp", "madam", 3e-5, 6);
  c.lr_schedule = "plateau";
  c.val_split = 500;
  c.lr_decay_patience = 1;
  CollectingSink sink;
  RunHooks hooks;
  hooks.sink = &sink;
  ASSERT_EQ(trainer.Run(c, hooks).status, "succeeded");
  auto lr = EpochLrs(sink);
  auto val = sink.Named("val/error");
  ASSERT_EQ(lr.size(), 6u);
  ASSERT_EQ(val.size(), 6u);
  // Replay the rule on the reported validation series: the decays must
  // happen exactly where it says.
  double best = 1e300, rate = 3e-5;
  int bad = 0, decays = 0;
  for (size_t e = 0; e < 6; ++e) {
    EXPECT_NEAR(lr[e], rate, rate * 1e-12) << "epoch " << e + 1;
    if (val[e].value < best) {
      best = val[e].value;
      bad = 0;
    } else if (++bad >= 1) {
      rate /= 10;
      bad = 0;
      ++decays;
    }
  }
  EXPECT_GT(sink.Named("val/loss").size(), 0u);
  EXPECT_GE(decays, 1);

  // A rate too small to move anything: every epoch after the first is a
  // plateau; int_madam's eta decays toward eta0 and stops there.
  RunConfig ic = Config("synthetic-mlp", "int_madam", 0.03, 5);
  ic.base_lr = 0.01;
  ic.lr_schedule = "plateau";
  ic.val_split = 500;
  ic.lr_decay_patience = 0;
  ic.lr_factor_decay = 2;
  CollectingSink isink;
  hooks.sink = &isink;
  ASSERT_EQ(trainer.Run(ic, hooks).status, "succeeded");
  auto ilr = EpochLrs(isink);
  ASSERT_EQ(ilr.size(), 5u);
  EXPECT_DOUBLE_EQ(ilr[0], 0.03);
  for (double v : ilr) EXPECT_GE(v, 0.01 * (1 - 1e-12));
  EXPECT_NEAR(ilr.back(), 0.01, 1e-12);
}

TEST_F(TrainerTest, ValidationSplitIsHeldOutAndTooLargeOneIsRefused) {
  Trainer trainer(CpuOptions());
  RunConfig c = Config("synthetic-mlp", "adam", 0.01, 1);
  c.val_split = 400;
  RunSummary s = trainer.Run(c, RunHooks{});
  ASSERT_EQ(s.status, "succeeded") << s.error;
  EXPECT_EQ(s.steps, 13);  // 1600 training examples / batch 128
  EXPECT_EQ(s.final.count("val/error"), 1u);
  c.val_split = 2000;
  s = trainer.Run(c, RunHooks{});
  EXPECT_EQ(s.status, "failed");
  EXPECT_NE(s.error.find("val_split 2000 leaves no training examples: the train split has 2000"),
            std::string::npos)
      << s.error;
}

TEST_F(TrainerTest, PerLayerTelemetryCoversWeightTensorsAtEvenlySpacedSteps) {
  Trainer trainer(CpuOptions());
  RunConfig c = Config("synthetic-mlp", "int_madam", 0.01, 2);
  c.layer_stats_per_epoch = 2;
  CollectingSink sink;
  RunHooks hooks;
  hooks.sink = &sink;
  ASSERT_EQ(trainer.Run(c, hooks).status, "succeeded");
  // 16 steps an epoch: steps 8 and 16 of each epoch.
  for (const char* layer : {"fc1.weight", "fc2.weight", "fc3.weight"}) {
    for (const char* metric : {"relative_update", "at_bound_fraction", "level_top_fraction",
                               "level_bottom_fraction"}) {
      auto points = sink.Named(std::string("layer/") + layer + "/" + metric);
      ASSERT_EQ(points.size(), 4u) << layer << " " << metric;
      EXPECT_EQ(points[0].step, 8);
      EXPECT_EQ(points[3].step, 32);
      for (const auto& p : points) {
        EXPECT_GE(p.value, 0.0);
        if (std::string(metric) != "relative_update") EXPECT_LE(p.value, 1.0);
      }
    }
  }
  EXPECT_GT(sink.Named("layer/fc1.weight/relative_update")[0].value, 0.0);
  EXPECT_TRUE(sink.Named("layer/fc1.bias/relative_update").empty());  // weights only
  // Madam has no levels; 0 turns the telemetry off.
  RunConfig m = Config("synthetic-mlp", "madam", 0.01, 1);
  CollectingSink msink;
  hooks.sink = &msink;
  ASSERT_EQ(trainer.Run(m, hooks).status, "succeeded");
  EXPECT_EQ(msink.Named("layer/fc2.weight/relative_update").size(), 4u);
  EXPECT_TRUE(msink.Named("layer/fc2.weight/level_top_fraction").empty());
  m.layer_stats_per_epoch = 0;
  CollectingSink off;
  hooks.sink = &off;
  ASSERT_EQ(trainer.Run(m, hooks).status, "succeeded");
  for (const auto& p : off.points) EXPECT_NE(p.name.rfind("layer/", 0), 0u) << p.name;
}

TEST_F(TrainerTest, UnknownDeviceFailsEveryRun) {
  WorkerOptions o = CpuOptions();
  o.device = "tpu:0";
  Trainer trainer(o);
  RunSummary s = trainer.Run(Config("synthetic-mlp", "madam", 0.01, 1), RunHooks{});
  EXPECT_EQ(s.status, "failed");
  EXPECT_NE(s.error.find("tpu:0"), std::string::npos) << s.error;
}

TEST_F(TrainerTest, FashionMnistTasksOnGeneratedFiles) {
  WriteFashionMnistDir(Path("fm"), 200, 50);
  Trainer trainer(CpuOptions(Path("fm")));
  for (const char* task : {"fmnist-mlp", "fmnist-cnn"}) {
    RunConfig c = Config(task, "madam", 0.01, 1);
    c.batch_size = 50;
    RunSummary s = trainer.Run(c, RunHooks{});
    ASSERT_EQ(s.status, "succeeded") << task << ": " << s.error;
    EXPECT_EQ(s.steps, 4);
    EXPECT_EQ(s.final.count("test/error"), 1u);
  }
}

TEST_F(TrainerTest, CifarTasksOnGeneratedFiles) {
  WriteCifar10Dir(Path("c10"), 2, 4);
  WriteCifar100Dir(Path("c100"), 6, 4);
  for (auto [task, dir] : {std::make_pair("cifar10-resnet18", "c10"),
                           std::make_pair("cifar100-resnet18", "c100")}) {
    Trainer trainer(CpuOptions(Path(dir)));
    RunConfig c = Config(task, "madam", 0.01, 1);
    c.batch_size = 5;
    RunSummary s = trainer.Run(c, RunHooks{});
    ASSERT_EQ(s.status, "succeeded") << task << ": " << s.error;
    EXPECT_EQ(s.steps, 2);
    EXPECT_EQ(s.final.count("test/error"), 1u);
  }
}

TEST_F(TrainerTest, WikiTextReportsValidationEachEpochAndTheBestValidationTestPerplexity) {
  WriteWikiTextDir(Path("wt"), 60);
  Trainer trainer(CpuOptions(Path("wt")));
  // The recipe's best-validation model selection, small and fast; a high
  // rate so that validation does not improve every epoch.
  RunConfig c = Resolved("wikitext2-transformer", "sgd",
                         {{"epochs", ParamValue::Number(6)}, {"batch_size", ParamValue::Number(8)},
                          {"lr", ParamValue::Number(5)}, {"lr_schedule", ParamValue::String("constant")},
                          {"emsize", ParamValue::Number(16)}, {"nhid", ParamValue::Number(16)}});
  ASSERT_EQ(c.model_selection, "best_val");
  ASSERT_EQ(c.grad_clip, 0.25);
  CollectingSink sink;
  RunHooks hooks;
  hooks.sink = &sink;
  RunSummary s = trainer.Run(c, hooks);
  ASSERT_EQ(s.status, "succeeded") << s.error;
  auto val = sink.Named("val/perplexity");
  ASSERT_EQ(val.size(), 6u);
  // The best epoch by validation, and the test points: one at every epoch
  // whose validation was the best so far, the last of them at the best one.
  size_t best = 0;
  std::vector<int64_t> improving;
  for (size_t e = 0; e < val.size(); ++e) {
    if (e == 0 || val[e].value < val[best].value) {
      best = e;
      improving.push_back(val[e].step);
    }
  }
  EXPECT_EQ(s.best_val_epoch, static_cast<int64_t>(best + 1));
  auto test = sink.Named("test/perplexity");
  ASSERT_EQ(test.size(), improving.size());
  for (size_t i = 0; i < test.size(); ++i) EXPECT_EQ(test[i].step, improving[i]);
  EXPECT_EQ(s.final.at("test/perplexity"), test.back().value);
  EXPECT_EQ(s.final.at("val/best_epoch"), static_cast<double>(best + 1));
  std::printf("best validation epoch %zu of %zu; test points %zu\n", best + 1, val.size(),
              test.size());
}

TEST_F(TrainerTest, CifarMadamTrainsBatchNormWithoutAffineParameters) {
  WriteCifar10Dir(Path("c10"), 2, 4);
  DatasetCache cache;
  TaskContext context;
  context.data_dir = Path("c10");
  context.cache = &cache;
  auto count_bn_params = [&](const RunConfig& c) {
    auto task = MakeTask(c.task);
    task->Prepare(c, context);
    int64_t bn = 0, all = 0;
    for (const auto& net : task->BuildNetworks()) {
      for (const auto& p : net.module->named_parameters()) {
        ++all;
        if (p.key().find("bn") != std::string::npos || p.key().find("shortcut.1") != std::string::npos) ++bn;
      }
    }
    EXPECT_GT(all, 0);
    return bn;
  };
  for (const char* optimizer : {"madam", "int_madam"}) {
    RunConfig c = Resolved("cifar10-resnet18", optimizer);
    EXPECT_FALSE(c.bn_affine);
    EXPECT_EQ(count_bn_params(c), 0) << optimizer;
  }
  RunConfig sgd = Resolved("cifar10-resnet18", "sgd");
  EXPECT_TRUE(sgd.bn_affine);
  EXPECT_EQ(count_bn_params(sgd), 2 * 20);  // 20 BatchNorms, weight and bias each
}

TEST_F(TrainerTest, WikiTextOnGeneratedFiles) {
  WriteWikiTextDir(Path("wt"), 60);
  Trainer trainer(CpuOptions(Path("wt")));
  RunConfig c = Config("wikitext2-transformer", "adam", 0.001, 2);
  c.batch_size = 8;
  CollectingSink sink;
  RunHooks hooks;
  hooks.sink = &sink;
  RunSummary s = trainer.Run(c, hooks);
  ASSERT_EQ(s.status, "succeeded") << s.error;
  ASSERT_EQ(s.final.count("test/perplexity"), 1u);
  EXPECT_EQ(s.final.count("test/error"), 0u);
  auto ppl = sink.Named("test/perplexity");
  ASSERT_EQ(ppl.size(), 2u);
  EXPECT_LT(ppl[1].value, ppl[0].value);
  EXPECT_LT(ppl[1].value, 40.0);  // 23-word vocabulary (with <unk>, <eos>, headings)
}

TEST_F(TrainerTest, TrainCommandRejectsBadInput) {
  TrainCommandOptions o;
  o.task = "synthetic-mlp";
  o.optimizer = "madam";
  o.params = {"learning_rate=0.1"};
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(RunTrainCommand(o), 2);
  std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("learning_rate"), std::string::npos) << err;

  o.params = {};
  o.optimizer = "rmsprop";
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(RunTrainCommand(o), 2);
  err = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("rmsprop"), std::string::npos) << err;

  o.optimizer = "madam";
  o.task = "mnist";
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(RunTrainCommand(o), 2);
  EXPECT_NE(::testing::internal::GetCapturedStderr().find("mnist"), std::string::npos);

  o.task = "synthetic-mlp";
  o.device = "tpu";
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(RunTrainCommand(o), 2);
  ::testing::internal::GetCapturedStderr();

  // B-bit Madam below its ladder (eta < eta0) is refused, naming both.
  o.device = "cpu";
  o.optimizer = "int_madam";
  o.lr = "0.01";
  o.base_lr = "0.016";
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(RunTrainCommand(o), 2);
  err = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("int_madam needs lr >= base_lr (eta >= eta0, the paper's section 6), got lr "
                     "0.01 and base_lr 0.016"),
            std::string::npos)
      << err;

  // A parameter the task does not have.
  o.optimizer = "madam";
  o.lr.clear();
  o.base_lr.clear();
  o.params = {"bptt=70"};
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(RunTrainCommand(o), 2);
  err = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("parameter bptt does not apply to task synthetic-mlp"), std::string::npos) << err;
}

TEST_F(TrainerTest, RecipeCommandPrintsEveryParameterWithItsSource) {
  RecipeCommandOptions o;
  o.task = "wikitext2-transformer";
  o.optimizer = "sgd";
  o.params = {"epochs=7", "lr_milestones=[3,5]"};
  o.json = true;
  ::testing::internal::CaptureStdout();
  EXPECT_EQ(RunRecipeCommand(o), 0);
  const std::string out = ::testing::internal::GetCapturedStdout();
  auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["task"], "wikitext2-transformer");
  EXPECT_EQ(j["params"]["grad_clip"], 0.25);  // numbers as numbers
  EXPECT_EQ(j["params"]["momentum"], 0);
  EXPECT_EQ(j["params"]["epochs"], 7);
  EXPECT_EQ(j["params"]["lr_milestones"], nlohmann::json::array({3, 5}));
  EXPECT_EQ(j["params"]["model_selection"], "best_val");
  EXPECT_EQ(j["sources"]["epochs"], "set");
  EXPECT_EQ(j["sources"]["grad_clip"].get<std::string>().rfind("confirmed: ", 0), 0u);
  EXPECT_EQ(j["params"].size(), j["sources"].size());

  o.params = {"val_split=10"};
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(RunRecipeCommand(o), 2);
  EXPECT_NE(::testing::internal::GetCapturedStderr().find(
                "parameter val_split does not apply to task wikitext2-transformer"),
            std::string::npos);
}

TEST_F(TrainerTest, TrainCommandWritesMetricsAndSummary) {
  TrainCommandOptions o;
  o.task = "synthetic-mlp";
  o.optimizer = "int_madam";
  o.epochs = "2";
  o.bits = "10";
  o.base_lr = "0.004";
  o.lr = "0.02";
  o.threads = 1;
  o.device = "cpu";
  o.progress = false;
  o.metrics_out = Path("m.jsonl");
  o.summary_json = Path("s.json");
  o.export_model = Path("model.mdq");
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(RunTrainCommand(o), 0);
  std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("FP32"), std::string::npos) << err;
  std::ifstream s(Path("s.json"));
  std::string summary((std::istreambuf_iterator<char>(s)), std::istreambuf_iterator<char>());
  EXPECT_NE(summary.find("\"status\": \"succeeded\""), std::string::npos) << summary;
  EXPECT_NE(summary.find("\"steps\": 32"), std::string::npos) << summary;
  EXPECT_NE(summary.find("\"export_bytes\""), std::string::npos) << summary;
  std::ifstream m(Path("m.jsonl"));
  std::string line;
  int lines = 0;
  while (std::getline(m, line)) {
    ++lines;
    EXPECT_EQ(line.front(), '{');
    EXPECT_NE(line.find("\"step\":"), std::string::npos);
  }
  EXPECT_GT(lines, 10);

  o.params = {"fail_at_step=3"};
  o.export_model.clear();
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(RunTrainCommand(o), 1);
  ::testing::internal::GetCapturedStderr();
  std::ifstream s2(Path("s.json"));
  std::string failed((std::istreambuf_iterator<char>(s2)), std::istreambuf_iterator<char>());
  EXPECT_NE(failed.find("injected failure at step 3"), std::string::npos) << failed;
}

}  // namespace
}  // namespace madam::worker
