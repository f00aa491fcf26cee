// The promote selection rule (server/promote.h; ARCHITECTURE.md section 4,
// "Two stages"): best mean lr per baseline under the metric's goal, a
// diverged or failed run the worst, Madam fixed at 0.01, B-bit Madam cells
// carried over, and the preconditions.
#include "server/promote.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <map>
#include <set>
#include <limits>
#include <string>
#include <vector>

#include "common/sweep_spec.h"

namespace madam::server {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// A stored Figure 1 sweep: its row and its runs as ExpandSweep made them,
// each ended by `outcome(params)`.
struct Fixture {
  SweepRow sweep;
  std::vector<RunRow> runs;
};

struct End {
  RunState state = RunState::kSucceeded;
  double value = 0;
};

Fixture MakeSweep(const std::string& text, const std::function<End(const RunParams&)>& outcome) {
  Fixture f;
  auto spec = ParseSweepSpec(text, "fig1.yaml");
  EXPECT_TRUE(spec.ok()) << spec.status().ToString();
  f.sweep.id = "sw-0000abcd";
  f.sweep.name = spec->name;
  f.sweep.spec_text = text;
  f.sweep.metric_name = spec->metric_name;
  f.sweep.metric_goal = spec->metric_goal;
  f.sweep.state = kSweepFinished;
  for (const ExpandedRun& e : ExpandSweep(*spec)) {
    RunRow r;
    r.id = f.sweep.id + "-" + std::to_string(e.index);
    r.sweep_id = f.sweep.id;
    r.index = e.index;
    r.params = e.params;
    r.labels = e.labels;
    End end = outcome(e.params);
    r.state = end.state;
    if (end.state == RunState::kSucceeded && !std::isnan(end.value)) r.final[f.sweep.metric_name] = end.value;
    f.runs.push_back(r);
  }
  return f;
}

double Num(const RunParams& p, const char* name) { return p.at(name).number; }
std::string Str(const RunParams& p, const char* name) { return p.at(name).text; }

// The promoted file, parsed back and expanded: what madamd would store.
std::vector<ExpandedRun> Expand(const Promotion& p, SweepSpec* spec_out = nullptr) {
  auto spec = ParseSweepSpec(p.spec_text, "promoted.yaml");
  EXPECT_TRUE(spec.ok()) << spec.status().ToString() << "\n" << p.spec_text;
  if (!spec.ok()) return {};
  if (spec_out) *spec_out = *spec;
  return ExpandSweep(*spec);
}

// The lr each optimiser's promoted runs use (all seeds agree).
std::map<std::string, std::set<double>> LrsByOptimizer(const std::vector<ExpandedRun>& runs) {
  std::map<std::string, std::set<double>> out;
  for (const auto& r : runs) out[Str(r.params, "optimizer")].insert(Num(r.params, "lr"));
  return out;
}

const char* kFigure1 = R"(name: fig1-synth
figure: 1
task: synthetic-mlp
metric: {name: test/error, goal: minimize}
epochs: 1
grid:
  optimizer: [sgd, adam, madam]
  lr: [0.001, 0.01, 0.1]
seeds: [0, 1]
)";

TEST(PromoteTest, BaselinesTakeTheLrWithTheBestMeanAndMadamTakesPointZeroOne) {
  // sgd: best mean at 0.1 (seed 1 alone would prefer 0.01); adam: 0.001;
  // madam's own best (0.1) is ignored.
  Fixture f = MakeSweep(kFigure1, [](const RunParams& p) {
    const std::string opt = Str(p, "optimizer");
    const double lr = Num(p, "lr"), seed = Num(p, "seed");
    if (opt == "sgd") return End{RunState::kSucceeded, lr == 0.1 ? (seed == 0 ? 10.0 : 30.0) : lr == 0.01 ? (seed == 0 ? 40.0 : 25.0) : 50.0};
    if (opt == "adam") return End{RunState::kSucceeded, lr == 0.001 ? 12.0 : 35.0};
    return End{RunState::kSucceeded, lr == 0.1 ? 5.0 : 20.0};
  });
  auto p = BuildPromotion(f.sweep, f.runs, PromoteOptions{});
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  SweepSpec spec;
  auto runs = Expand(*p, &spec);
  EXPECT_EQ(spec.stage, SweepStage::kTable1);
  EXPECT_EQ(spec.seeds, (std::vector<int64_t>{0, 1, 2}));
  EXPECT_EQ(p->name, "table1-synth");
  auto lrs = LrsByOptimizer(runs);
  EXPECT_EQ(lrs["sgd"], std::set<double>{0.1});
  EXPECT_EQ(lrs["adam"], std::set<double>{0.001});
  EXPECT_EQ(lrs["madam"], std::set<double>{0.01});
  EXPECT_EQ(runs.size(), 9u);  // 3 cells x 3 seeds
  // Figure 1's fixed eta is not carried: the recipe's schedule applies.
  for (const auto& r : runs) {
    EXPECT_EQ(r.params.count("lr_schedule"), 0u);
    EXPECT_EQ(r.params.count("warmup_epochs"), 0u);
    EXPECT_EQ(Num(r.params, "epochs"), 1);
  }
  ASSERT_EQ(p->reasons.size(), 3u);
  EXPECT_EQ(p->reasons[0], "sgd lr 1e-1: best mean test/error 20 over 2 seeds of 3 lrs 1e-3..1e-1 in sw-0000abcd");
  EXPECT_NE(p->reasons[2].find("madam lr 1e-2: fixed at the paper's 0.01, never tuned"), std::string::npos)
      << p->reasons[2];
}

TEST(PromoteTest, SeedsTheParentRanAlreadyAreWarnedAbout) {
  Fixture f = MakeSweep(kFigure1, [](const RunParams&) { return End{RunState::kSucceeded, 10.0}; });
  // The parent ran seeds 0 and 1; the default 0,1,2 repeats two of them.
  auto repeated = BuildPromotion(f.sweep, f.runs, PromoteOptions{});
  ASSERT_TRUE(repeated.ok()) << repeated.status().ToString();
  ASSERT_EQ(repeated->warnings.size(), 1u);
  EXPECT_NE(repeated->warnings[0].find("seeds 0,1 were run by sw-0000abcd already"), std::string::npos)
      << repeated->warnings[0];
  PromoteOptions fresh;
  fresh.seeds = {3, 4, 5};
  auto fresh_seeds = BuildPromotion(f.sweep, f.runs, fresh);
  ASSERT_TRUE(fresh_seeds.ok()) << fresh_seeds.status().ToString();
  EXPECT_TRUE(fresh_seeds->warnings.empty());
}

TEST(PromoteTest, EpochsReplaceTheParentsInEveryCell) {
  Fixture f = MakeSweep(kFigure1, [](const RunParams&) { return End{RunState::kSucceeded, 10.0}; });
  PromoteOptions options;
  options.seeds = {3, 4, 5};
  options.epochs = 6;
  auto p = BuildPromotion(f.sweep, f.runs, options);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  for (const auto& r : Expand(*p)) EXPECT_EQ(Num(r.params, "epochs"), 6) << p->spec_text;
  options.epochs = -1;
  EXPECT_EQ(BuildPromotion(f.sweep, f.runs, options).status().code(), StatusCode::kInvalidArgument);
}

TEST(PromoteTest, ADivergedOrFailedSeedMakesItsLrTheWorst) {
  // sgd at 0.1 has the best single value but one seed diverged; adam at
  // 0.01 one seed failed and another succeeded without the metric.
  Fixture f = MakeSweep(kFigure1, [](const RunParams& p) {
    const std::string opt = Str(p, "optimizer");
    const double lr = Num(p, "lr"), seed = Num(p, "seed");
    if (opt == "sgd" && lr == 0.1) return seed == 0 ? End{RunState::kSucceeded, 1.0} : End{RunState::kDiverged, kNaN};
    if (opt == "sgd") return End{RunState::kSucceeded, lr == 0.01 ? 30.0 : 40.0};
    if (opt == "adam" && lr == 0.01) return seed == 0 ? End{RunState::kFailed, kNaN} : End{RunState::kSucceeded, 1.0};
    if (opt == "adam" && lr == 0.1) return End{RunState::kSucceeded, seed == 0 ? kNaN : 2.0};
    return End{RunState::kSucceeded, 20.0};
  });
  auto p = BuildPromotion(f.sweep, f.runs, PromoteOptions{});
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  auto lrs = LrsByOptimizer(Expand(*p));
  EXPECT_EQ(lrs["sgd"], std::set<double>{0.01});
  EXPECT_EQ(lrs["adam"], std::set<double>{0.001});
}

TEST(PromoteTest, EveryLrDivergedKeepsTheSmallestAndSaysSo) {
  Fixture f = MakeSweep(kFigure1, [](const RunParams& p) {
    if (Str(p, "optimizer") == "sgd") return End{RunState::kDiverged, kNaN};
    return End{RunState::kSucceeded, 10.0};
  });
  auto p = BuildPromotion(f.sweep, f.runs, PromoteOptions{});
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(LrsByOptimizer(Expand(*p))["sgd"], std::set<double>{0.001});
  EXPECT_NE(p->reasons[0].find("diverged or failed"), std::string::npos) << p->reasons[0];
}

TEST(PromoteTest, TheCatalogueGoalDecidesAMaximisedMetric) {
  // samples_per_second is maximised in the catalogue, whatever the sweep says.
  const std::string text = R"(name: fig1-speed
figure: 1
task: synthetic-mlp
metric: {name: samples_per_second, goal: minimize}
epochs: 1
grid:
  optimizer: [sgd, adam]
  lr: [0.001, 0.01, 0.1]
)";
  Fixture f = MakeSweep(text, [](const RunParams& p) {
    return End{RunState::kSucceeded, Num(p, "lr") * (Str(p, "optimizer") == "sgd" ? 1000 : -1000)};
  });
  auto p = BuildPromotion(f.sweep, f.runs, PromoteOptions{});
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  SweepSpec spec;
  auto lrs = LrsByOptimizer(Expand(*p, &spec));
  EXPECT_EQ(lrs["sgd"], std::set<double>{0.1});     // the largest value
  EXPECT_EQ(lrs["adam"], std::set<double>{0.001});  // the least negative
  EXPECT_EQ(spec.metric_goal, "maximize");
  // No madam on the grid: Table 1 still gets madam at 0.01.
  EXPECT_EQ(lrs["madam"], std::set<double>{0.01});
}

TEST(PromoteTest, AnUnknownMetricFallsBackToTheSweepsGoal) {
  const std::string text = R"(name: fig1-acc
figure: 1
task: synthetic-mlp
metric: {name: test/score, goal: maximize}
epochs: 1
grid:
  optimizer: [sgd, madam]
  lr: [0.01, 0.1]
)";
  Fixture f = MakeSweep(text, [](const RunParams& p) { return End{RunState::kSucceeded, Num(p, "lr")}; });
  auto p = BuildPromotion(f.sweep, f.runs, PromoteOptions{});
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(LrsByOptimizer(Expand(*p))["sgd"], std::set<double>{0.1});
  // A diverged run under maximise is -inf, still the worst.
  Fixture g = MakeSweep(text, [](const RunParams& p) {
    return Num(p, "lr") == 0.1 ? End{RunState::kDiverged, kNaN} : End{RunState::kSucceeded, 1.0};
  });
  auto q = BuildPromotion(g.sweep, g.runs, PromoteOptions{});
  ASSERT_TRUE(q.ok()) << q.status().ToString();
  EXPECT_EQ(LrsByOptimizer(Expand(*q))["sgd"], std::set<double>{0.01});
}

TEST(PromoteTest, MadamRunsAtPointZeroOneEvenWhenTheGridHadNone) {
  const std::string text = R"(name: grid-no-001
figure: 1
task: synthetic-mlp
epochs: 1
grid:
  optimizer: [sgd, madam]
  lr: {log10: {from: -3, to: -1, count: 3}}
)";
  // The grid is 1e-3, 1e-2, 1e-1 — now one without 0.01:
  const std::string odd = R"(name: grid-no-001
figure: 1
task: synthetic-mlp
epochs: 1
grid:
  optimizer: [sgd, madam]
  lr: [0.003, 0.03]
)";
  for (const std::string& t : {text, odd}) {
    Fixture f = MakeSweep(t, [](const RunParams& p) { return End{RunState::kSucceeded, Num(p, "lr")}; });
    auto p = BuildPromotion(f.sweep, f.runs, PromoteOptions{{5}, "mine"});
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    SweepSpec spec;
    auto runs = Expand(*p, &spec);
    EXPECT_EQ(LrsByOptimizer(runs)["madam"], std::set<double>{0.01});
    EXPECT_EQ(spec.name, "mine");
    EXPECT_EQ(spec.seeds, std::vector<int64_t>{5});
  }
}

TEST(PromoteTest, BBitMadamCellsAreCarriedOverAsTheyWere) {
  const std::string text = R"(name: fig1-bits
figure: 1
task: synthetic-mlp
epochs: 1
grid:
  optimizer: [sgd, madam, int_madam]
  lr: [0.01, 0.02]
)";
  Fixture f = MakeSweep(text, [](const RunParams& p) { return End{RunState::kSucceeded, Num(p, "lr")}; });
  auto p = BuildPromotion(f.sweep, f.runs, PromoteOptions{});
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  auto runs = Expand(*p);
  EXPECT_EQ(LrsByOptimizer(runs)["int_madam"], (std::set<double>{0.01, 0.02}));
  EXPECT_EQ(LrsByOptimizer(runs)["sgd"], std::set<double>{0.01});
  int carried = 0;
  for (const std::string& r : p->reasons) carried += r.find("int_madam lr") == 0 && r.find("carried over") != std::string::npos;
  EXPECT_EQ(carried, 2);
}

TEST(PromoteTest, SeveralTasksAreTunedEachOnTheirOwn) {
  const std::string text = R"(name: fig1-two
figure: 1
epochs: 1
grid:
  task: [synthetic-mlp, fmnist-mlp]
  optimizer: [sgd, madam]
  lr: [0.01, 0.1]
)";
  Fixture f = MakeSweep(text, [](const RunParams& p) {
    const bool fm = Str(p, "task") == "fmnist-mlp";
    return End{RunState::kSucceeded, (Num(p, "lr") == 0.1) == fm ? 1.0 : 2.0};
  });
  auto p = BuildPromotion(f.sweep, f.runs, PromoteOptions{});
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  std::map<std::string, std::set<double>> sgd;
  for (const auto& r : Expand(*p)) {
    if (Str(r.params, "optimizer") == "sgd") sgd[Str(r.params, "task")].insert(Num(r.params, "lr"));
  }
  EXPECT_EQ(sgd["synthetic-mlp"], std::set<double>{0.01});
  EXPECT_EQ(sgd["fmnist-mlp"], std::set<double>{0.1});
}

TEST(PromoteTest, AnUnfinishedSweepNamesItsPendingRuns) {
  Fixture f = MakeSweep(kFigure1, [](const RunParams&) { return End{RunState::kSucceeded, 1.0}; });
  f.runs[3].state = RunState::kPending;
  f.runs[4].state = RunState::kRunning;
  auto p = BuildPromotion(f.sweep, f.runs, PromoteOptions{});
  ASSERT_EQ(p.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(p.status().message().find(f.runs[3].id + " (pending)"), std::string::npos) << p.status().message();
  EXPECT_NE(p.status().message().find(f.runs[4].id + " (running)"), std::string::npos) << p.status().message();
  EXPECT_NE(p.status().message().find("2 runs are still pending or running"), std::string::npos);
}

TEST(PromoteTest, RefusesWhatCannotBePromoted) {
  auto refuse = [](const std::string& text, const std::string& words) {
    Fixture f = MakeSweep(text, [](const RunParams&) { return End{RunState::kSucceeded, 1.0}; });
    auto p = BuildPromotion(f.sweep, f.runs, PromoteOptions{});
    EXPECT_EQ(p.status().code(), StatusCode::kFailedPrecondition) << text;
    EXPECT_NE(p.status().message().find(words), std::string::npos) << p.status().message();
  };
  refuse(R"(name: t2
table: 2
task: synthetic-mlp
epochs: 1
params: {lr: 0.01}
grid:
  precision:
    - {optimizer: madam}
    - {optimizer: int_madam, bits: 8, base_lr: 0.01}
)", "Table 2 sweep (table: 2)");
  refuse(R"(name: no-lr
figure: 1
task: synthetic-mlp
epochs: 1
params: {lr: 0.01}
grid:
  optimizer: [sgd, adam, madam]
)", "has no lr axis");
  refuse(R"(name: madam-only
figure: 1
task: synthetic-mlp
epochs: 1
grid:
  optimizer: [madam]
  lr: [0.01, 0.1]
)", "has no sgd or adam runs");
}

TEST(PromoteTest, SeedsMustBeDistinctNonNegativeAndSome) {
  EXPECT_TRUE(ValidateSeeds({0, 1, 2}).ok());
  Status empty = ValidateSeeds({});
  EXPECT_EQ(empty.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(empty.message().find("empty"), std::string::npos);
  Status twice = ValidateSeeds({1, 2, 1});
  EXPECT_EQ(twice.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(twice.message().find("1 is given twice"), std::string::npos) << twice.message();
  Status negative = ValidateSeeds({0, -3});
  EXPECT_EQ(negative.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(negative.message().find("-3 is negative"), std::string::npos) << negative.message();
  Fixture f = MakeSweep(kFigure1, [](const RunParams&) { return End{RunState::kSucceeded, 1.0}; });
  EXPECT_EQ(BuildPromotion(f.sweep, f.runs, PromoteOptions{{2, 2}, ""}).status().code(),
            StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace madam::server
