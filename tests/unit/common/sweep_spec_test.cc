// Tests for the sweep-file parser, validator and grid expander
// (common/sweep_spec.h): the committed sweeps, the grid semantics, every
// validation rule and the hostile inputs of ARCHITECTURE.md section 9.
#include "common/sweep_spec.h"

#include <gtest/gtest.h>

#include "common/recipe.h"
#include <malloc.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <new>
#include <regex>
#include <set>
#include <sstream>
#include <string>

// Heap accounting for the "< 64 MiB" criterion: every operator new in this
// binary (yaml-cpp's included) goes through these.
namespace {
std::atomic<int64_t> g_live_bytes{0};
std::atomic<int64_t> g_peak_bytes{0};

void* CountedAlloc(size_t size) {
  void* p = std::malloc(size == 0 ? 1 : size);
  if (p == nullptr) throw std::bad_alloc();
  int64_t live = g_live_bytes += static_cast<int64_t>(malloc_usable_size(p));
  int64_t peak = g_peak_bytes.load();
  while (live > peak && !g_peak_bytes.compare_exchange_weak(peak, live)) {
  }
  return p;
}

void CountedFree(void* p) {
  if (p == nullptr) return;
  g_live_bytes -= static_cast<int64_t>(malloc_usable_size(p));
  std::free(p);
}
}  // namespace

void* operator new(size_t size) { return CountedAlloc(size); }
void* operator new[](size_t size) { return CountedAlloc(size); }
void operator delete(void* p) noexcept { CountedFree(p); }
void operator delete[](void* p) noexcept { CountedFree(p); }
void operator delete(void* p, size_t) noexcept { CountedFree(p); }
void operator delete[](void* p, size_t) noexcept { CountedFree(p); }

namespace madam {
namespace {

constexpr int64_t kMaxHostileBytes = int64_t{64} << 20;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

std::string SweepPath(const std::string& name) {
  return std::string(MADAM_SOURCE_DIR) + "/sweeps/" + name;
}

Result<SweepSpec> Parse(const std::string& text, const SweepLimits& limits = {}) {
  return ParseSweepSpec(text, "s.yaml", limits);
}

// A stored run resolved as a worker resolves it.
Result<RunConfig> AsWorkerSees(const ExpandedRun& run) {
  ResolveOptions options;
  options.drop_inapplicable = true;
  return ResolveConfig(run.params, options);
}

// The error of a parse that must fail, with its code checked.
std::string ErrorOf(const std::string& text, StatusCode code = StatusCode::kInvalidArgument,
                    const SweepLimits& limits = {}) {
  auto spec = Parse(text, limits);
  EXPECT_FALSE(spec.ok()) << text;
  if (spec.ok()) return "";
  EXPECT_EQ(spec.status().code(), code) << spec.status().ToString();
  return spec.status().message();
}

const char kBase[] =
    "name: t\n"
    "task: synthetic-mlp\n";

// --- the committed sweep files -------------------------------------------

TEST(SweepFilesTest, LrGridIsNineLogSpacedRatesForThreeOptimizers) {
  auto spec = ParseSweepSpec(ReadFile(SweepPath("lr_grid.yaml")), "lr_grid.yaml");
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->name, "fig1-fmnist");
  EXPECT_EQ(spec->task, "fmnist-mlp");
  EXPECT_EQ(spec->metric_name, "test/error");
  EXPECT_EQ(spec->metric_goal, "minimize");
  EXPECT_EQ(spec->params.at("epochs").number, 3);
  EXPECT_EQ(spec->params.at("batch_size").number, 128);
  ASSERT_EQ(spec->axes.size(), 2u);
  EXPECT_EQ(spec->axes[0].name, "optimizer");
  EXPECT_EQ(spec->axes[1].name, "lr");
  EXPECT_EQ(spec->axes[1].values.size(), 9u);
  EXPECT_EQ(spec->seeds, std::vector<int64_t>{0});
  EXPECT_EQ(spec->max_concurrent, 16);
  EXPECT_EQ(spec->max_attempts, 3);
  EXPECT_EQ(spec->device, "any");
  EXPECT_EQ(spec->stage, SweepStage::kFigure1);
  EXPECT_EQ(CountRuns(*spec), 27u);
  auto runs = ExpandSweep(*spec);
  EXPECT_EQ(runs.size(), 27u);
  // Figure 1 is a fixed eta: the recipe's plateau decay is written out.
  for (const auto& run : runs) {
    auto config = AsWorkerSees(run);
    ASSERT_TRUE(config.ok()) << config.status().ToString();
    EXPECT_EQ(config->lr_schedule, "constant");
    EXPECT_EQ(config->val_split, 5000);
  }
}

TEST(SweepFilesTest, BitsIsFourPrecisionsTimesThreeSeeds) {
  auto spec = ParseSweepSpec(ReadFile(SweepPath("bits.yaml")), "bits.yaml");
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->name, "table2-fmnist");
  EXPECT_EQ(spec->params.at("epochs").number, 5);
  ASSERT_EQ(spec->axes.size(), 1u);
  EXPECT_EQ(spec->axes[0].name, "precision");
  EXPECT_EQ(spec->seeds, (std::vector<int64_t>{0, 1, 2}));
  EXPECT_EQ(spec->stage, SweepStage::kTable2);
  EXPECT_EQ(CountRuns(*spec), 12u);
  auto runs = ExpandSweep(*spec);
  EXPECT_EQ(runs.size(), 12u);
  // eta0 <= eta in every ladder (the paper, section 6), and Table 2 keeps
  // the recipe's schedule.
  for (const auto& run : runs) {
    auto config = AsWorkerSees(run);
    ASSERT_TRUE(config.ok()) << config.status().ToString();
    EXPECT_EQ(config->lr_schedule, "plateau");
    if (config->optimizer == "int_madam") EXPECT_LE(config->base_lr, config->lr);
  }
}

TEST(SweepFilesTest, SmokeIsEveryOptimizerOnSyntheticData) {
  auto spec = ParseSweepSpec(ReadFile(SweepPath("smoke.yaml")), "smoke.yaml");
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->task, "synthetic-mlp");
  EXPECT_EQ(spec->axes[0].values.size(), 4u);
  EXPECT_EQ(CountRuns(*spec), 8u);
}

TEST(SweepFilesTest, EveryExpandedRunPassesRunConfig) {
  for (const char* file : {"lr_grid.yaml", "bits.yaml", "smoke.yaml"}) {
    auto spec = ParseSweepSpec(ReadFile(SweepPath(file)), file);
    ASSERT_TRUE(spec.ok()) << spec.status().ToString();
    for (const auto& run : ExpandSweep(*spec)) {
      auto config = AsWorkerSees(run);
      EXPECT_TRUE(config.ok()) << file << " run " << run.index << ": "
                               << config.status().ToString();
    }
  }
}

// The two stages start from sweeps/lr_grid.yaml (sweeps/README.md): it must
// be a Figure 1 file, or promote and the fixed-eta rule would not apply.
TEST(SweepFilesTest, LrGridIsAFigureOneSweepOverLr) {
  auto spec = ParseSweepSpec(ReadFile(std::string(MADAM_SOURCE_DIR) + "/sweeps/lr_grid.yaml"), "lr_grid.yaml");
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->stage, SweepStage::kFigure1);
  bool lr_axis = false;
  for (const auto& axis : spec->axes) lr_axis = lr_axis || axis.name == "lr";
  EXPECT_TRUE(lr_axis);
}

// Every sweep file committed under sweeps/ (sweeps/paper/ included) parses,
// and every run it expands passes RunConfig: a file that rots fails here.
TEST(SweepFilesTest, EveryCommittedSweepFileParses) {
  namespace fs = std::filesystem;
  int files = 0;
  for (const auto& entry : fs::recursive_directory_iterator(fs::path(MADAM_SOURCE_DIR) / "sweeps")) {
    if (!entry.is_regular_file() || entry.path().extension() != ".yaml") continue;
    ++files;
    const std::string name = entry.path().lexically_relative(MADAM_SOURCE_DIR).string();
    auto spec = ParseSweepSpec(ReadFile(entry.path().string()), name);
    ASSERT_TRUE(spec.ok()) << spec.status().ToString();
    for (const auto& run : ExpandSweep(*spec)) {
      auto config = AsWorkerSees(run);
      EXPECT_TRUE(config.ok()) << name << " run " << run.index << ": " << config.status().ToString();
    }
  }
  EXPECT_GE(files, 13);  // lr_grid, bits, smoke and the ten paper sweeps
}

TEST(SweepFilesTest, PaperFigure1SweepsAreFiveRatesOnSeedZeroAtAFixedEta) {
  for (const char* file : {"paper/cifar10-resnet18-fig1.yaml", "paper/cifar100-resnet18-fig1.yaml",
                           "paper/imagenet-resnet50-fig1.yaml", "paper/cifar10-cgan-fig1.yaml",
                           "paper/wikitext2-transformer-fig1.yaml"}) {
    auto spec = ParseSweepSpec(ReadFile(SweepPath(file)), file);
    ASSERT_TRUE(spec.ok()) << spec.status().ToString();
    EXPECT_EQ(spec->stage, SweepStage::kFigure1) << file;
    ASSERT_EQ(spec->axes.size(), 2u) << file;
    EXPECT_EQ(spec->axes[0].name, "optimizer");
    ASSERT_EQ(spec->axes[0].values.size(), 3u);
    EXPECT_EQ(spec->axes[0].values[0].label, "sgd");
    EXPECT_EQ(spec->axes[0].values[2].label, "madam");
    EXPECT_EQ(spec->axes[1].name, "lr");
    ASSERT_EQ(spec->axes[1].values.size(), 5u);
    EXPECT_DOUBLE_EQ(spec->axes[1].values.front().params.at("lr").number, 1.0);
    EXPECT_DOUBLE_EQ(spec->axes[1].values.back().params.at("lr").number, 1e-4);
    EXPECT_EQ(spec->seeds, (std::vector<int64_t>{0}));
    EXPECT_EQ(spec->device, "cuda");
    EXPECT_EQ(CountRuns(*spec), 15u) << file;
    for (const auto& run : ExpandSweep(*spec)) {
      auto config = AsWorkerSees(run);
      ASSERT_TRUE(config.ok()) << file << ": " << config.status().ToString();
      EXPECT_EQ(config->lr_schedule, "constant") << file;
      EXPECT_TRUE(config->lr_milestones.empty()) << file;
    }
  }
  auto wikitext = ParseSweepSpec(ReadFile(SweepPath("paper/wikitext2-transformer-fig1.yaml")), "w");
  ASSERT_TRUE(wikitext.ok());
  EXPECT_EQ(wikitext->metric_name, "test/perplexity");
}

TEST(SweepFilesTest, PaperTable2SweepsKeepEtaZeroAtMostEtaAndTheRecipeSchedule) {
  for (const char* file : {"paper/cifar10-resnet18-table2.yaml",
                           "paper/cifar100-resnet18-table2.yaml",
                           "paper/imagenet-resnet50-table2.yaml",
                           "paper/wikitext2-transformer-table2.yaml"}) {
    auto spec = ParseSweepSpec(ReadFile(SweepPath(file)), file);
    ASSERT_TRUE(spec.ok()) << spec.status().ToString();
    EXPECT_EQ(spec->stage, SweepStage::kTable2) << file;
    EXPECT_EQ(CountRuns(*spec), 12u) << file;
    std::set<int64_t> widths;
    for (const auto& run : ExpandSweep(*spec)) {
      auto config = AsWorkerSees(run);
      ASSERT_TRUE(config.ok()) << file << ": " << config.status().ToString();
      EXPECT_EQ(config->lr_schedule, "step") << file;
      if (config->optimizer == "int_madam") {
        EXPECT_LE(config->base_lr, config->lr) << file;
        widths.insert(config->bits);
      }
    }
    EXPECT_EQ(widths, (std::set<int64_t>{8, 10, 12})) << file;
  }
}

// --- grid semantics --------------------------------------------------------

TEST(SweepGridTest, Log10ValuesAreExactPowersOfTen) {
  auto spec = Parse(std::string(kBase) +
                    "params: {optimizer: sgd}\n"
                    "grid:\n"
                    "  lr: {log10: {from: -4, to: 0, count: 9}}\n");
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  const auto& values = spec->axes.at(0).values;
  ASSERT_EQ(values.size(), 9u);
  const double expected[] = {1e-4, std::pow(10.0, -3.5), 1e-3, std::pow(10.0, -2.5), 1e-2,
                             std::pow(10.0, -1.5), 1e-1, std::pow(10.0, -0.5), 1.0};
  for (size_t i = 0; i < 9; ++i) {
    EXPECT_EQ(values[i].params.at("lr").number, expected[i]) << i;
  }
  EXPECT_EQ(values[0].label, "0.0001");
  EXPECT_EQ(values[8].label, "1");
}

TEST(SweepGridTest, LinearRangeEndsExactlyAtItsBounds) {
  auto spec = Parse(std::string(kBase) +
                    "params: {optimizer: sgd}\n"
                    "grid:\n"
                    "  momentum: {linear: {from: 0.1, to: 0.9, count: 5}}\n");
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  const auto& values = spec->axes.at(0).values;
  ASSERT_EQ(values.size(), 5u);
  EXPECT_EQ(values[0].params.at("momentum").number, 0.1);
  EXPECT_DOUBLE_EQ(values[2].params.at("momentum").number, 0.5);
  EXPECT_EQ(values[4].params.at("momentum").number, 0.9);
}

TEST(SweepGridTest, RangeOfOnePointIsItsStart) {
  auto spec = Parse(std::string(kBase) +
                    "params: {optimizer: sgd}\n"
                    "grid:\n"
                    "  lr: {log10: {from: -2, to: 5, count: 1}}\n");
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  ASSERT_EQ(spec->axes.at(0).values.size(), 1u);
  EXPECT_EQ(spec->axes[0].values[0].params.at("lr").number, 0.01);
}

TEST(SweepGridTest, MapAxisLabelsUseFewestValuesThatTellEntriesApart) {
  auto spec = ParseSweepSpec(ReadFile(SweepPath("bits.yaml")), "bits.yaml");
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  const auto& values = spec->axes.at(0).values;
  ASSERT_EQ(values.size(), 4u);
  EXPECT_EQ(values[0].label, "madam");
  EXPECT_EQ(values[1].label, "int_madam/12");
  EXPECT_EQ(values[2].label, "int_madam/10");
  EXPECT_EQ(values[3].label, "int_madam/8");
  EXPECT_EQ(values[1].params.size(), 3u);  // optimizer, bits, base_lr; lr is fixed
  EXPECT_EQ(values[1].params.at("bits").number, 12);
  EXPECT_EQ(values[1].params.at("base_lr").number, 0.001);
  EXPECT_EQ(values[0].params.count("bits"), 0u);
}

TEST(SweepGridTest, ExpansionRunsSeedsOutermostAndLastAxisFastest) {
  auto spec = Parse(std::string(kBase) +
                    "epochs: 2\n"
                    "grid:\n"
                    "  optimizer: [sgd, adam]\n"
                    "  lr: [0.1, 0.01, 0.001]\n"
                    "seeds: [7, 8]\n");
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  auto runs = ExpandSweep(*spec);
  ASSERT_EQ(runs.size(), 12u);
  EXPECT_EQ(CountRuns(*spec), 12u);
  for (size_t i = 0; i < runs.size(); ++i) EXPECT_EQ(runs[i].index, static_cast<int64_t>(i));
  EXPECT_EQ(runs[0].labels.at("optimizer"), "sgd");
  EXPECT_EQ(runs[0].labels.at("lr"), "0.1");
  EXPECT_EQ(runs[1].labels.at("lr"), "0.01");
  EXPECT_EQ(runs[3].labels.at("optimizer"), "adam");
  EXPECT_EQ(runs[5].params.at("seed").number, 7);
  EXPECT_EQ(runs[6].params.at("seed").number, 8);
  EXPECT_EQ(runs[6].labels.at("optimizer"), "sgd");
  // Full parameters: fixed, axis and seed.
  EXPECT_EQ(runs[11].params.at("task").text, "synthetic-mlp");
  EXPECT_EQ(runs[11].params.at("epochs").number, 2);
  EXPECT_EQ(runs[11].params.at("optimizer").text, "adam");
  EXPECT_EQ(runs[11].params.at("lr").number, 0.001);
}

TEST(SweepGridTest, TaskMayBeAnAxis) {
  auto spec = Parse("name: t\n"
                    "params: {optimizer: madam}\n"
                    "grid:\n"
                    "  task: [synthetic-mlp, fmnist-mlp]\n");
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->task, "");
  EXPECT_EQ(spec->metric_name, "test/error");
  EXPECT_EQ(CountRuns(*spec), 2u);
}

TEST(SweepGridTest, DefaultsApplyWhereTheFileIsSilent) {
  auto spec = Parse(std::string(kBase) + "grid: {optimizer: [sgd]}\n");
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->seeds, std::vector<int64_t>{0});
  EXPECT_EQ(spec->max_concurrent, 0);
  EXPECT_EQ(spec->max_attempts, 3);
  EXPECT_EQ(spec->device, "any");
  EXPECT_EQ(spec->metric_name, "test/error");
  EXPECT_EQ(spec->metric_goal, "minimize");
}

TEST(SweepGridTest, UnderflowReadsAsZero) {
  std::string error = ErrorOf(std::string(kBase) + "params: {optimizer: sgd, lr: 1e-999}\n");
  EXPECT_NE(error.find("s.yaml:3:30: params.lr: parameter lr must be positive, got 0"),
            std::string::npos)
      << error;
}

TEST(SweepGridTest, NumbersStayNumbersAndQuotedTextStaysText) {
  auto spec = Parse(std::string(kBase) + "params: {optimizer: sgd, lr: 1e-3, epochs: 4}\n");
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_TRUE(spec->params.at("lr").is_number());
  EXPECT_EQ(spec->params.at("lr").number, 0.001);
  std::string error = ErrorOf(std::string(kBase) + "params: {optimizer: sgd, lr: \"0.01\"}\n");
  EXPECT_NE(error.find("s.yaml:3:30: params.lr"), std::string::npos) << error;
  EXPECT_NE(error.find("must be a number"), std::string::npos) << error;
}

// --- validation: each error names the key at FILE:LINE:COL ---------------------

TEST(SweepValidationTest, ErrorsStartWithFileLineColumn) {
  std::string error = ErrorOf(std::string(kBase) + "grid: {optimizer: [sgd, rmsprop]}\n");
  EXPECT_TRUE(std::regex_search(error, std::regex("^s\\.yaml:3:25: grid\\.optimizer\\[1\\]: ")))
      << error;
  EXPECT_NE(error.find("rmsprop"), std::string::npos) << error;
}

TEST(SweepValidationTest, MisspelledKeyGetsASuggestion) {
  std::string error = ErrorOf(std::string(kBase) + "learning_rat: 0.01\n");
  EXPECT_NE(error.find("s.yaml:3:1:"), std::string::npos) << error;
  EXPECT_NE(error.find("\"learning_rat\""), std::string::npos) << error;
  EXPECT_NE(error.find("did you mean the run parameter lr"), std::string::npos) << error;

  error = ErrorOf(std::string(kBase) + "epoch: 3\n");
  EXPECT_NE(error.find("s.yaml:3:1: unknown key \"epoch\" (did you mean epochs?)"),
            std::string::npos)
      << error;

  error = ErrorOf(std::string(kBase) + "params: {optimiser: sgd}\n");
  EXPECT_NE(error.find("s.yaml:3:10:"), std::string::npos) << error;
  EXPECT_NE(error.find("did you mean optimizer?"), std::string::npos) << error;

  error = ErrorOf(std::string(kBase) + "params: {optimizer: sgd}\ngrid: {learning_rate: [1]}\n");
  EXPECT_NE(error.find("s.yaml:4:8: grid.learning_rate"), std::string::npos) << error;
  EXPECT_NE(error.find("did you mean lr?"), std::string::npos) << error;
}

TEST(SweepValidationTest, RunParameterAtTopLevelSaysWhereItGoes) {
  std::string error = ErrorOf(std::string(kBase) + "lr: 0.1\n");
  EXPECT_NE(error.find("s.yaml:3:1:"), std::string::npos) << error;
  EXPECT_NE(error.find("under params:"), std::string::npos) << error;
}

TEST(SweepValidationTest, DuplicateKeyReportsBothPositions) {
  std::string error = ErrorOf(std::string(kBase) + "epochs: 2\nepochs: 3\n");
  EXPECT_NE(error.find("s.yaml:4:1: duplicate key \"epochs\" (first at 3:1)"), std::string::npos)
      << error;
  error = ErrorOf(std::string(kBase) + "grid: {precision: [{optimizer: sgd, optimizer: adam}]}\n");
  EXPECT_NE(error.find("s.yaml:3:37: duplicate key \"optimizer\" (first at 3:21)"),
            std::string::npos)
      << error;
}

TEST(SweepValidationTest, UnknownTaskIsRejectedAtItsValue) {
  std::string error = ErrorOf("name: t\ntask: imagenet\ngrid: {optimizer: [sgd]}\n");
  EXPECT_NE(error.find("s.yaml:2:7: task:"), std::string::npos) << error;
  EXPECT_NE(error.find("imagenet"), std::string::npos) << error;
}

TEST(SweepValidationTest, UnknownOptimizerIsRejectedAtItsValue) {
  std::string error = ErrorOf(std::string(kBase) +
                              "grid:\n"
                              "  precision:\n"
                              "    - {optimizer: madam}\n"
                              "    - {optimizer: lion}\n");
  EXPECT_NE(error.find("s.yaml:6:19: grid.precision[1].optimizer:"), std::string::npos) << error;
  EXPECT_NE(error.find("lion"), std::string::npos) << error;
}

TEST(SweepValidationTest, BitsOutsideOneToSixteenAreRejected) {
  std::string error = ErrorOf(std::string(kBase) +
                              "params: {optimizer: int_madam}\n"
                              "grid: {bits: [8, 17]}\n");
  EXPECT_NE(error.find("s.yaml:4:18: grid.bits[1]:"), std::string::npos) << error;
  EXPECT_NE(error.find("1..16"), std::string::npos) << error;
  error = ErrorOf(std::string(kBase) + "params: {optimizer: int_madam, bits: 0}\n");
  EXPECT_NE(error.find("s.yaml:3:38: params.bits"), std::string::npos) << error;
}

TEST(SweepValidationTest, NegativeLearningRateIsRejected) {
  std::string error = ErrorOf(std::string(kBase) + "params: {optimizer: sgd}\ngrid: {lr: [0.1, -1]}\n");
  EXPECT_NE(error.find("s.yaml:4:18: grid.lr[1]:"), std::string::npos) << error;
  EXPECT_NE(error.find("must be positive, got -1"), std::string::npos) << error;
  error = ErrorOf(std::string(kBase) + "params: {optimizer: sgd}\n"
                                       "grid: {lr: {log10: {from: -1, to: 400, count: 3}}}\n");
  EXPECT_NE(error.find("s.yaml:4:12: grid.lr[2] (log10)"), std::string::npos) << error;
}

TEST(SweepValidationTest, NonFiniteValuesAreRejected) {
  const std::string huge(400, '9');
  for (const std::string& bad : {std::string(".nan"), std::string(".NaN"), std::string(".inf"),
                                 std::string("-.inf"), std::string("1e999"), huge}) {
    std::string error = ErrorOf(std::string(kBase) + "params: {optimizer: sgd, lr: " + bad + "}\n");
    EXPECT_NE(error.find("s.yaml:3:30: params.lr"), std::string::npos) << bad << ": " << error;
    EXPECT_NE(error.find("finite"), std::string::npos) << bad << ": " << error;
  }
  std::string error = ErrorOf(std::string(kBase) + "params: {optimizer: sgd}\ngrid: {lr: [0.1, .nan]}\n");
  EXPECT_NE(error.find("s.yaml:4:18: grid.lr[1]: parameter lr must be finite, got nan"),
            std::string::npos)
      << error;
  error = ErrorOf(std::string(kBase) +
                  "params: {optimizer: sgd}\n"
                  "grid: {lr: {log10: {from: .nan, to: 0, count: 3}}}\n");
  EXPECT_NE(error.find("s.yaml:4:27: grid.lr.log10.from must be finite"), std::string::npos)
      << error;
}

TEST(SweepValidationTest, WrongTypesAreRejected) {
  struct Case {
    std::string text;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {"epochs: three\n", "s.yaml:3:9: epochs: parameter epochs must be a number"},
      {"epochs: [1, 2]\n", "s.yaml:3:9: epochs: parameter epochs must be a number, got [1, 2]"},
      {"grid: {s: [{lr_milestones: [a, 2]}]}\n",
       "s.yaml:3:28: grid.s[0].lr_milestones must be a single value or a list of numbers"},
      {"grid: [optimizer, lr]\n", "s.yaml:3:7: grid must be a map"},
      {"grid: {optimizer: sgd}\n", "s.yaml:3:19: grid.optimizer must be a list"},
      {"seeds: 0\n", "s.yaml:3:8: seeds must be a list"},
      {"seeds: [0, 1.5]\n", "s.yaml:3:12: seeds[1]:"},
      {"seeds: [1, 1]\n", "s.yaml:3:12: seeds[1]: seed 1 repeats (first at 3:9)"},
      {"metric: test/error\n", "s.yaml:3:9: metric must be a map"},
      {"metric: {name: x, goal: lowest}\n", "s.yaml:3:25: metric.goal must be minimize or"},
      {"max_attempts: 0\n", "s.yaml:3:15: max_attempts must be an integer in 1..100"},
      {"max_concurrent: -1\n", "s.yaml:3:17: max_concurrent must be an integer"},
      {"resources: {device: tpu}\n", "s.yaml:3:21: resources.device must be any, cpu or cuda"},
      {"resources: {gpus: 1}\n", "s.yaml:3:13: unknown key \"gpus\" in resources"},
      {"resources: {devices: 0}\n", "s.yaml:3:22: resources.devices: parameter devices"},
      {"resources: {devices: 65}\n", "s.yaml:3:22: resources.devices: parameter devices"},
      {"grid: {devices: [1, 2]}\nresources: {devices: 2}\n", "devices is already set"},
      {"batch_size: 0.5\n", "s.yaml:3:13: batch_size: parameter batch_size must be an integer"},
      {"grid: {lr: {log10: {from: -4, to: 0}}}\n", "grid.lr.log10.count is missing"},
      {"grid: {lr: {log10: {from: -4, to: 0, count: 2.5}}}\n",
       "s.yaml:3:45: grid.lr.log10.count must be a positive integer"},
      {"grid: {lr: {log10: {from: -4, to: 0, count: 3, step: 1}}}\n",
       "s.yaml:3:48: unknown key \"step\" in grid.lr.log10"},
      {"grid: {lr: []}\n", "s.yaml:3:12: grid.lr has no values"},
      {"grid: {lr: [0.1, 0.1]}\n", "s.yaml:3:18: grid.lr[1]: value \"0.1\" repeats"},
      {"grid: {precision: [{lr: 0.1}, 0.2]}\n", "s.yaml:3:31: grid.precision[1] must be a map"},
      {"grid: {precision: [{}]}\n", "s.yaml:3:20: grid.precision[0] sets no parameters"},
      {"grid: {lr: [[0.1]]}\n", "s.yaml:3:13: grid.lr[0] must be a single value"},
  };
  for (const auto& c : cases) {
    std::string error = ErrorOf(std::string(kBase) + "params: {optimizer: sgd}\n" + c.text);
    // The params line shifts everything by one line.
    std::string expected = std::regex_replace(c.expected, std::regex("s\\.yaml:3:"), "s.yaml:4:");
    expected = std::regex_replace(expected, std::regex("first at 3:"), "first at 4:");
    EXPECT_NE(error.find(expected), std::string::npos) << c.text << "  ->  " << error;
  }
}

// resources.devices: every run's `devices` parameter (data parallel).
TEST(SweepValidationTest, ResourcesDevicesSetsEveryRunsDevices) {
  auto spec = ParseSweepSpec(std::string(kBase) +
                                 "params: {optimizer: sgd}\n"
                                 "resources: {device: cpu, devices: 2}\n",
                             "s.yaml");
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->device, "cpu");
  for (const auto& run : ExpandSweep(*spec)) {
    EXPECT_EQ(run.params.at("devices"), ParamValue::Number(2));
  }
}

TEST(SweepValidationTest, ParameterIsFixedOrOnOneAxis) {
  std::string error = ErrorOf(std::string(kBase) +
                              "params: {optimizer: sgd, lr: 0.1}\n"
                              "grid: {lr: [0.1, 0.2]}\n");
  EXPECT_NE(error.find("s.yaml:4:12: grid.lr: lr is already set by params.lr (3:30)"),
            std::string::npos)
      << error;
  error = ErrorOf(std::string(kBase) +
                  "grid:\n"
                  "  optimizer: [sgd, adam]\n"
                  "  precision: [{optimizer: madam}]\n");
  EXPECT_NE(error.find("s.yaml:5:16: grid.precision: optimizer is already set by grid.optimizer"),
            std::string::npos)
      << error;
  error = ErrorOf("name: t\ntask: synthetic-mlp\nparams: {task: fmnist-mlp, optimizer: sgd}\n");
  EXPECT_NE(error.find("s.yaml:3:16: params.task: task is already set by task (2:7)"),
            std::string::npos)
      << error;
}

TEST(SweepValidationTest, SeedIsNotAnAxisOrAParam) {
  std::string error = ErrorOf(std::string(kBase) + "params: {optimizer: sgd}\ngrid: {seed: [1, 2]}\n");
  EXPECT_NE(error.find("s.yaml:4:8: grid.seed: seeds are not a grid axis"), std::string::npos)
      << error;
  error = ErrorOf(std::string(kBase) + "params: {optimizer: sgd, seed: 3}\n");
  EXPECT_NE(error.find("s.yaml:3:26: params.seed"), std::string::npos) << error;
}

TEST(SweepValidationTest, RequiredKeysAreNamed) {
  EXPECT_NE(ErrorOf("task: synthetic-mlp\nparams: {optimizer: sgd}\n").find("s.yaml:1:1: name is missing"),
            std::string::npos);
  EXPECT_NE(ErrorOf("name: t\nparams: {optimizer: sgd}\n").find("s.yaml:1:1: task is missing"),
            std::string::npos);
  EXPECT_NE(ErrorOf(kBase).find("s.yaml:1:1: optimizer is missing"), std::string::npos);
  EXPECT_NE(ErrorOf("").find("s.yaml:1:1: the sweep file is empty"), std::string::npos);
  EXPECT_NE(ErrorOf("- a\n- b\n").find("s.yaml:1:1: a sweep file is a map"), std::string::npos);
}

TEST(SweepValidationTest, CellWhereParametersClashIsNamed) {
  // int_madam needs lr >= base_lr (the paper's eta0 <= eta); only the cell
  // (lr 0.00001, int_madam) breaks it.
  std::string error = ErrorOf(std::string(kBase) +
                              "grid:\n"
                              "  optimizer: [sgd, int_madam]\n"
                              "  lr: [0.1, 0.00001]\n");
  EXPECT_NE(error.find("s.yaml:5:13: grid cell optimizer=int_madam, lr=1e-05: int_madam needs "
                       "lr >= base_lr (eta >= eta0, the paper's section 6), got lr 1e-05 and "
                       "base_lr 0.001"),
            std::string::npos)
      << error;
  // With lr >= base_lr but a g_bound too small for any level step.
  error = ErrorOf(std::string(kBase) +
                  "params: {optimizer: int_madam, lr: 0.001, g_bound: 0.1}\n");
  EXPECT_NE(error.find("int_madam can never move a level"), std::string::npos) << error;
}

TEST(SweepValidationTest, MapAxisEntryMissingARequiredParamIsNamed) {
  std::string error = ErrorOf(std::string(kBase) +
                              "grid:\n"
                              "  precision:\n"
                              "    - {optimizer: madam}\n"
                              "    - {lr: 0.1}\n");
  EXPECT_NE(error.find("s.yaml:6:7: grid cell precision=0.1: run parameter optimizer is required"),
            std::string::npos)
      << error;
}

TEST(SweepValidationTest, SyntaxErrorCarriesYamlPosition) {
  std::string error = ErrorOf("name: t\ngrid: {lr: [0.1, 0.2}\n");
  EXPECT_TRUE(std::regex_search(error, std::regex("^s\\.yaml:2:[0-9]+: "))) << error;
}

TEST(SweepValidationTest, SecondDocumentIsRejected) {
  std::string error = ErrorOf(std::string(kBase) + "params: {optimizer: sgd}\n---\nname: u\n");
  EXPECT_NE(error.find("one YAML document"), std::string::npos) << error;
  EXPECT_TRUE(std::regex_search(error, std::regex("^s\\.yaml:[0-9]+:[0-9]+: "))) << error;
}

TEST(SweepValidationTest, TagsAreRejected) {
  std::string error = ErrorOf(std::string(kBase) + "params: {optimizer: !!str sgd}\n");
  EXPECT_NE(error.find("s.yaml:3:21: YAML tags"), std::string::npos) << error;
}

// --- hostile input: rejected within 1 s and 64 MiB ---------------------------

struct Outcome {
  Status status;
  double seconds = 0;
  int64_t peak_heap_growth = 0;
};

Outcome ParseTimed(const std::string& text, const SweepLimits& limits = {}) {
  int64_t before = g_live_bytes.load();
  g_peak_bytes.store(before);
  auto start = std::chrono::steady_clock::now();
  auto spec = ParseSweepSpec(text, "evil.yaml", limits);
  auto end = std::chrono::steady_clock::now();
  Outcome out;
  out.status = spec.ok() ? Status::Ok() : spec.status();
  out.seconds = std::chrono::duration<double>(end - start).count();
  out.peak_heap_growth = g_peak_bytes.load() - before;
  return out;
}

void ExpectRejectedCheaply(const Outcome& out, StatusCode code, const std::string& needle) {
  EXPECT_EQ(out.status.code(), code) << out.status.ToString();
  EXPECT_TRUE(std::regex_search(out.status.message(), std::regex("^evil\\.yaml:[0-9]+:[0-9]+: ")))
      << out.status.message();
  EXPECT_NE(out.status.message().find(needle), std::string::npos) << out.status.message();
  EXPECT_LT(out.peak_heap_growth, kMaxHostileBytes);
}

std::string BillionLaughs() {
  std::string text = "name: lol\na0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n";
  for (int i = 1; i <= 9; ++i) {
    std::string prev = "*a" + std::to_string(i - 1);
    text += "a" + std::to_string(i) + ": &a" + std::to_string(i) + " [";
    for (int j = 0; j < 9; ++j) text += (j ? ", " : "") + prev;
    text += "]\n";
  }
  return text;
}

TEST(SweepHostileTest, AliasBombIsRejectedAtTheFirstAnchor) {
  ExpectRejectedCheaply(ParseTimed(BillionLaughs()), StatusCode::kInvalidArgument,
                     "evil.yaml:2:5: YAML anchors");
}

TEST(SweepHostileTest, AliasWithoutAnchorIsRejected) {
  auto out = ParseTimed("name: t\ntask: *x\n");
  EXPECT_EQ(out.status.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(std::regex_search(out.status.message(), std::regex("^evil\\.yaml:2:[0-9]+: ")))
      << out.status.message();
}

TEST(SweepHostileTest, HundredThousandDeepFlowNestingIsRejected) {
  std::string text = "name: t\ngrid: {lr: " + std::string(100000, '[') + "\n";
  ExpectRejectedCheaply(ParseTimed(text), StatusCode::kInvalidArgument,
                     "nesting deeper than 32 levels");
  std::string maps = "name: t\ngrid: ";
  for (int i = 0; i < 100000; ++i) maps += "{a: ";
  ExpectRejectedCheaply(ParseTimed(maps), StatusCode::kInvalidArgument,
                     "nesting deeper than 32 levels");
}

TEST(SweepHostileTest, HundredThousandDeepBlockNestingIsRejected) {
  std::string text = "name: t\ngrid:\n  lr:\n    ";
  for (int i = 0; i < 100000; ++i) text += "- ";
  text += "1\n";
  ExpectRejectedCheaply(ParseTimed(text), StatusCode::kInvalidArgument,
                     "nesting deeper than 32 levels");
}

TEST(SweepHostileTest, HundredMebibyteFileIsRejectedBeforeParsing) {
  std::string text = "name: t\ndescription: " + std::string(100u << 20, 'a') + "\n";
  ExpectRejectedCheaply(ParseTimed(text), StatusCode::kResourceExhausted,
                     "evil.yaml:1:1: file is 104857622 bytes, over the limit of 1048576");
}

TEST(SweepHostileTest, GridOfABillionRunsIsRejectedWithoutExpanding) {
  std::string text = std::string(kBase) +
                     "params: {optimizer: sgd}\n"
                     "grid:\n"
                     "  lr: {log10: {from: -4, to: 0, count: 1000}}\n"
                     "  momentum: {linear: {from: 0, to: 0.99, count: 1000}}\n"
                     "  weight_decay: {linear: {from: 0, to: 0.1, count: 1000}}\n";
  ExpectRejectedCheaply(ParseTimed(text), StatusCode::kResourceExhausted,
                     "evil.yaml:4:1: grid: grid has 1000000000 runs (1000 lr x 1000 momentum x "
                     "1000 weight_decay x 1 seed), over the limit of 100000");
}

TEST(SweepHostileTest, GridCountThatOverflowsIsRejected) {
  std::string text = std::string(kBase) +
                     "params: {optimizer: sgd}\n"
                     "grid:\n"
                     "  lr: {log10: {from: -4, to: 0, count: 1e300}}\n"
                     "  momentum: {linear: {from: 0, to: 0.99, count: 18446744073709551615}}\n";
  ExpectRejectedCheaply(ParseTimed(text), StatusCode::kResourceExhausted,
                     "grid has more than 18446744073709551615 runs");
}

TEST(SweepHostileTest, ManySeedsCountTowardTheCap) {
  std::string text = std::string(kBase) + "params: {optimizer: sgd}\nseeds: [";
  for (int i = 0; i < 20; ++i) text += (i ? ", " : "") + std::to_string(i);
  text += "]\n";
  SweepLimits limits;
  limits.max_runs = 10;
  auto out = ParseTimed(text, limits);
  EXPECT_EQ(out.status.code(), StatusCode::kResourceExhausted);
  EXPECT_NE(out.status.message().find("evil.yaml:4:8: seeds: grid has 20 runs"),
            std::string::npos)
      << out.status.message();
}

TEST(SweepHostileTest, TooManyNodesIsRejected) {
  std::string text = "name: t\ndescription: [";
  for (int i = 0; i < 250000; ++i) text += "1,";
  text += "1]\n";
  ExpectRejectedCheaply(ParseTimed(text), StatusCode::kResourceExhausted,
                     "more than 200000 YAML nodes");
}

TEST(SweepHostileTest, LongKeyIsEchoedTruncated) {
  // YAML caps an implicit key at 1024 characters; under that it reaches us.
  std::string key(1000, 'k');
  auto out = ParseTimed("name: t\n" + key + ": 1\n");
  ExpectRejectedCheaply(out, StatusCode::kInvalidArgument, "evil.yaml:2:1: unknown key \"kkkk");
  EXPECT_LT(out.status.message().size(), 1000u);
  out = ParseTimed("name: t\n" + std::string(500000, 'k') + ": 1\n");
  EXPECT_EQ(out.status.code(), StatusCode::kInvalidArgument);
  EXPECT_LT(out.status.message().size(), 1000u);
}

TEST(SweepHostileTest, ControlCharactersAreEscapedInMessages) {
  auto out = ParseTimed("name: t\ntask: \"\\e[31mred\"\n");
  EXPECT_EQ(out.status.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(out.status.message().find('\x1b'), std::string::npos) << out.status.message();
  EXPECT_NE(out.status.message().find("\\x1b"), std::string::npos) << out.status.message();
}

TEST(SweepHostileTest, FuzzCorpusNeverCrashesAndFailsFast) {
  // The libFuzzer target's seed corpus and regression inputs, replayed in
  // every build (the fuzz target itself needs clang).
  namespace fs = std::filesystem;
  fs::path dir = fs::path(MADAM_SOURCE_DIR) / "tests/fuzz/corpus/sweep_spec";
  ASSERT_TRUE(fs::is_directory(dir)) << dir;
  int files = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    ++files;
    auto out = ParseTimed(ReadFile(entry.path().string()));
    EXPECT_LT(out.peak_heap_growth, kMaxHostileBytes) << entry.path();
    if (!out.status.ok()) {
      EXPECT_TRUE(
          std::regex_search(out.status.message(), std::regex("^evil\\.yaml:[0-9]+:[0-9]+: ")))
          << entry.path() << ": " << out.status.message();
    }
  }
  EXPECT_GT(files, 5);
}

}  // namespace
}  // namespace madam

namespace madam {
namespace {

TEST(SweepGridTest, RepeatedMapEntryIsRejected) {
  std::string error = ErrorOf(std::string(kBase) +
                              "grid:\n"
                              "  precision:\n"
                              "    - {optimizer: madam, lr: 0.1}\n"
                              "    - {lr: 0.1, optimizer: madam}\n");
  EXPECT_NE(error.find("s.yaml:6:7: grid.precision[1] repeats entry 0 (5:7)"), std::string::npos)
      << error;
}

TEST(SweepGridTest, MapEntriesDifferingOnlyInKeysAreLabelledInFull) {
  auto spec = Parse(std::string(kBase) +
                    "params: {optimizer: sgd}\n"
                    "grid:\n"
                    "  knob: [{momentum: 0.5}, {weight_decay: 0.5}]\n");
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->axes[0].values[0].label, "momentum=0.5");
  EXPECT_EQ(spec->axes[0].values[1].label, "weight_decay=0.5");
}

TEST(SweepHostileTest, LargestAllowedGridIsValidatedAndExpandedInBoundedMemory) {
  std::string text = std::string(kBase) +
                     "grid:\n"
                     "  optimizer: [sgd, adam, madam, int_madam]\n"
                     "  lr: {log10: {from: -2, to: 0, count: 25000}}\n";
  auto out = ParseTimed(text);
  EXPECT_TRUE(out.status.ok()) << out.status.ToString();
  EXPECT_LT(out.peak_heap_growth, kMaxHostileBytes);
  std::printf("parse and validate 100000 cells: %.3f s\n", out.seconds);
  auto spec = ParseSweepSpec(text, "big.yaml");
  ASSERT_TRUE(spec.ok());
  auto start = std::chrono::steady_clock::now();
  auto runs = ExpandSweep(*spec);
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(runs.size(), 100000u);
  std::printf("expand 100000 runs: %.3f s\n", seconds);
}

TEST(SweepHostileTest, WideMapAxisIsCheckedInBoundedMemory) {
  // Many distinct entries: labels and duplicate checks must not be quadratic.
  std::string text = std::string(kBase) + "params: {optimizer: sgd}\ngrid:\n  wide:\n";
  for (int i = 0; i < 50000; ++i) text += "  - {lr: " + std::to_string(i + 1) + "}\n";
  auto out = ParseTimed(text);
  EXPECT_TRUE(out.status.ok()) << out.status.ToString();
  EXPECT_LT(out.peak_heap_growth, kMaxHostileBytes);
}

}  // namespace
}  // namespace madam

namespace madam {
namespace {

// --- recipes, schedules and stages (ARCHITECTURE.md sections 4 and 6) -------

TEST(SweepRecipeTest, RecipeNoneAndStagesAreReadAndWrittenIntoTheRuns) {
  auto spec = Parse(std::string(kBase) + "recipe: none\ntable: 1\nparams: {optimizer: sgd}\n");
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_FALSE(spec->use_recipe);
  EXPECT_EQ(spec->stage, SweepStage::kTable1);
  auto runs = ExpandSweep(*spec);
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].params.at("recipe"), ParamValue::String("none"));
  // recipe: none means the paper's defaults: synthetic-mlp's recipe would
  // give sgd momentum 0.9, PyTorch's default is 0.
  auto config = AsWorkerSees(runs[0]);
  ASSERT_TRUE(config.ok());
  EXPECT_EQ(config->momentum, 0.0);
}

TEST(SweepRecipeTest, BadStageAndRecipeValuesAreNamed) {
  EXPECT_NE(ErrorOf(std::string(kBase) + "recipe: authors\nparams: {optimizer: sgd}\n")
                .find("s.yaml:3:9: recipe must be paper (the task's recipe, the default) or none"),
            std::string::npos);
  EXPECT_NE(ErrorOf(std::string(kBase) + "figure: 2\nparams: {optimizer: sgd}\n")
                .find("s.yaml:3:9: figure must be 1"),
            std::string::npos);
  EXPECT_NE(ErrorOf(std::string(kBase) + "table: 3\nparams: {optimizer: sgd}\n")
                .find("s.yaml:3:8: table must be 1"),
            std::string::npos);
  EXPECT_NE(ErrorOf(std::string(kBase) + "figure: 1\ntable: 2\nparams: {optimizer: sgd}\n")
                .find("s.yaml:4:1: table: a sweep feeds one report; figure: 1 is already set at 3:1"),
            std::string::npos);
}

TEST(SweepRecipeTest, Figure1RefusesAScheduleAndWritesOutTheFixedEta) {
  std::string error = ErrorOf(std::string(kBase) + "figure: 1\n"
                              "params: {optimizer: sgd, lr_schedule: step, lr_milestones: [2]}\n");
  EXPECT_NE(error.find("s.yaml:4:60: every run: parameter lr_milestones cannot be set in a Figure 1 "
                       "sweep"),
            std::string::npos)
      << error;
  auto spec = Parse("name: f\nfigure: 1\ntask: cifar10-resnet18\nparams: {optimizer: sgd}\n");
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->params.at("lr_schedule"), ParamValue::String("constant"));
  auto config = AsWorkerSees(ExpandSweep(*spec).at(0));
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->lr_schedule, "constant");
  EXPECT_TRUE(config->lr_milestones.empty());
  EXPECT_EQ(config->epochs, 300);  // the rest of the recipe stays
}

TEST(SweepRecipeTest, ScheduleErrorsNameTheParameterAtItsPosition) {
  struct Case {
    std::string text;
    std::string expected;
  };
  const std::vector<Case> cases = {
      // A milestone outside 1..epochs.
      {"params: {optimizer: sgd, lr_schedule: step, lr_milestones: [2, 9]}\nepochs: 4\n",
       "s.yaml:3:60: every run: parameter lr_milestones: milestone 9 is outside 1..4 (the run's "
       "epochs)"},
      // Milestones that do not increase.
      {"params: {optimizer: sgd, lr_schedule: step, lr_milestones: [3, 2]}\nepochs: 4\n",
       "parameter lr_milestones must increase, got [3, 2]"},
      // A negative warm-up.
      {"params: {optimizer: sgd, warmup_epochs: -1}\n",
       "s.yaml:3:41: params.warmup_epochs: parameter warmup_epochs must be an integer in "
       "0..100000, got -1"},
      // lr_min above lr.
      {"params: {optimizer: sgd, lr: 0.01, lr_schedule: plateau, val_split: 100, lr_min: 0.1}\n",
       "parameter lr_min 0.1 is above lr 0.01"},
      // A schedule parameter the schedule does not read.
      {"params: {optimizer: sgd, lr_decay_patience: 3}\n",
       "s.yaml:3:45: every run: parameter lr_decay_patience is set but lr_schedule is constant "
       "(lr_decay_patience belongs to lr_schedule plateau)"},
      {"params: {optimizer: sgd, lr_milestones: [1]}\n",
       "parameter lr_milestones is set but lr_schedule is constant"},
      // Plateau decay reads the validation split, never the test set.
      {"params: {optimizer: sgd, lr_schedule: plateau}\n",
       "parameter lr_schedule plateau watches the validation metric, and this run has no "
       "validation split"},
      // B-bit Madam with eta below eta0.
      {"params: {optimizer: int_madam, lr: 0.01, base_lr: 0.016}\n",
       "int_madam needs lr >= base_lr (eta >= eta0, the paper's section 6), got lr 0.01 and "
       "base_lr 0.016"},
  };
  for (const auto& c : cases) {
    std::string error = ErrorOf(std::string(kBase) + c.text);
    EXPECT_NE(error.find(c.expected), std::string::npos) << c.text << "  ->  " << error;
  }
}

TEST(SweepRecipeTest, ARecipeMilestoneBeyondAShorterRunSaysWhereItComesFrom) {
  std::string error = ErrorOf("name: c\ntask: cifar10-resnet18\ntable: 1\nepochs: 50\n"
                              "params: {optimizer: sgd}\n");
  EXPECT_NE(error.find("milestone 100 is outside 1..50 (the run's epochs) (lr_milestones comes "
                       "from the cifar10-resnet18 recipe: set it too to change it)"),
            std::string::npos)
      << error;
}

TEST(SweepRecipeTest, AParameterMustApplyToSomeRun) {
  std::string error = ErrorOf(std::string(kBase) + "params: {optimizer: sgd, bptt: 70}\n");
  EXPECT_NE(error.find("s.yaml:3:32: params.bptt: bptt does not apply to any run of this sweep "
                       "(it is a parameter of tasks wikitext2-transformer, kjv-transformer)"),
            std::string::npos)
      << error;
  error = ErrorOf(std::string(kBase) + "params: {optimizer: madam, momentum: 0.5}\n");
  EXPECT_NE(error.find("momentum does not apply to any run of this sweep (it is a parameter of "
                       "optimizer sgd)"),
            std::string::npos)
      << error;
  // On a grid over optimisers, momentum applies to the sgd cells and is left
  // out of the others.
  auto spec = Parse(std::string(kBase) + "params: {momentum: 0.5}\ngrid: {optimizer: [sgd, madam]}\n");
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  auto runs = ExpandSweep(*spec);
  ASSERT_EQ(runs.size(), 2u);
  auto sgd = AsWorkerSees(runs[0]);
  auto madam = AsWorkerSees(runs[1]);
  ASSERT_TRUE(sgd.ok() && madam.ok());
  EXPECT_EQ(sgd->momentum, 0.5);
}

TEST(SweepRecipeTest, ListValuesAreReadUnderParamsAndInMapEntries) {
  auto spec = Parse(std::string(kBase) +
                    "epochs: 6\n"
                    "params: {optimizer: sgd, lr_schedule: step}\n"
                    "grid:\n"
                    "  schedule:\n"
                    "    - {lr_milestones: [2, 4]}\n"
                    "    - {lr_milestones: [3]}\n");
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->axes[0].values[0].label, "[2, 4]");
  auto runs = ExpandSweep(*spec);
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[0].params.at("lr_milestones"), ParamValue::List({2, 4}));
  auto config = AsWorkerSees(runs[1]);
  ASSERT_TRUE(config.ok());
  EXPECT_EQ(config->lr_milestones, (std::vector<int64_t>{3}));
}

}  // namespace
}  // namespace madam
