// The claims scorecard (server/claims.h): one test per claim rule on
// hand-made runs, each where it holds, where it does not, and where the runs
// cannot say.
#include "server/claims.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace madam::server {
namespace {

class Runs {
 public:
  explicit Runs(std::string id, std::string spec = "", std::string metric = "test/error") {
    s_.sweep.id = std::move(id);
    s_.sweep.name = "claims";
    s_.sweep.metric_name = std::move(metric);
    s_.sweep.metric_goal = "minimize";
    s_.sweep.spec_text = std::move(spec);
  }
  Runs& Ok(const std::string& task, const std::string& optimizer, double lr, double value, int bits = 0,
           int seed = 0) {
    RunRow r;
    r.sweep_id = s_.sweep.id;
    r.index = static_cast<int64_t>(s_.runs.size());
    r.id = s_.sweep.id + "-" + std::to_string(r.index);
    r.params["task"] = ParamValue::String(task);
    r.params["optimizer"] = ParamValue::String(optimizer);
    r.params["lr"] = ParamValue::Number(lr);
    r.params["seed"] = ParamValue::Number(seed);
    if (bits) {
      r.params["bits"] = ParamValue::Number(bits);
      r.params["base_lr"] = ParamValue::Number(0.001);
    }
    r.state = RunState::kSucceeded;
    r.final[s_.sweep.metric_name] = value;
    s_.runs.push_back(r);
    return *this;
  }
  ReportSweep Build() const { return s_; }
  const ReportSweep& sweep() const { return s_; }

 private:
  ReportSweep s_;
};

const char kFigure1[] = "name: f\nfigure: 1\ntask: fmnist-mlp\nparams: {optimizer: sgd}\n";
const char kTable1[] = "name: t\ntable: 1\ntask: fmnist-mlp\nparams: {optimizer: sgd}\n";

ReportInput In(std::vector<ReportSweep> sweeps) {
  ReportInput in;
  in.sweeps = std::move(sweeps);
  in.build = BuildInfo{"abc", "1.13"};
  return in;
}

// By value: the claims are often a temporary.
Claim Find(const std::vector<Claim>& claims, const std::string& id) {
  for (const auto& c : claims) {
    if (c.id == id) return c;
  }
  ADD_FAILURE() << "no claim " << id;
  return claims.front();
}

// A Figure 1 grid over two tasks: Madam's best `madam_best` on the second.
ReportSweep Grid(double madam_best_on_cnn, double sgd_best_on_cnn) {
  Runs r("sw-fig", kFigure1);
  for (const std::string task : {"fmnist-mlp", "fmnist-cnn"}) {
    for (double lr : {0.001, 0.01, 0.1}) {
      const double madam_best = task == "fmnist-mlp" ? 0.01 : madam_best_on_cnn;
      const double sgd_best = task == "fmnist-mlp" ? 0.1 : sgd_best_on_cnn;
      r.Ok(task, "madam", lr, lr == madam_best ? 10 : 20);
      r.Ok(task, "sgd", lr, lr == sgd_best ? 9 : 30);
    }
  }
  return r.Build();
}

TEST(ClaimsTest, MadamBestLrHoldsOnlyWhenItIsOneHundredthEverywhere) {
  auto holds = JudgeClaims(In({Grid(0.01, 0.01)}), {});
  EXPECT_EQ(Find(holds, "madam_best_lr").verdict, Verdict::kHolds) << Find(holds, "madam_best_lr").evidence;
  auto fails = JudgeClaims(In({Grid(0.1, 0.01)}), {});
  const Claim c = Find(fails, "madam_best_lr");
  EXPECT_EQ(c.verdict, Verdict::kDoesNotHold);
  EXPECT_NE(c.evidence.find("fmnist-cnn: 0.1"), std::string::npos) << c.evidence;
  // One lr per cell is no Figure 1: it cannot be judged, and says why.
  Runs single("sw-1", kFigure1);
  single.Ok("fmnist-mlp", "madam", 0.01, 10).Ok("fmnist-mlp", "sgd", 0.1, 9);
  const Claim none = Find(JudgeClaims(In({single.Build()}), {}), "madam_best_lr");
  EXPECT_EQ(none.verdict, Verdict::kNotEnoughRuns);
  EXPECT_NE(none.evidence.find("lr"), std::string::npos) << none.evidence;
  EXPECT_NE(none.evidence.find("no Figure 1 to read"), std::string::npos) << none.evidence;
}

TEST(ClaimsTest, BaselineLrMovesWhenItsBestDiffersBetweenTasks) {
  const Claim moves = Find(JudgeClaims(In({Grid(0.01, 0.01)}), {}), "baseline_lr_moves");
  EXPECT_EQ(moves.verdict, Verdict::kHolds) << moves.evidence;  // sgd: 0.1 on the MLP, 0.01 on the CNN
  const Claim same = Find(JudgeClaims(In({Grid(0.01, 0.1)}), {}), "baseline_lr_moves");
  EXPECT_EQ(same.verdict, Verdict::kDoesNotHold) << same.evidence;
  EXPECT_NE(same.evidence.find("(the same)"), std::string::npos);
}

TEST(ClaimsTest, ClaimsWithoutAnLrAxisSayWhyTheyCannotBeJudged) {
  Runs r("sw-nolr");
  r.Ok("fmnist-mlp", "madam", 0.01, 10);
  auto claims = JudgeClaims(In({r.Build()}), {});
  EXPECT_EQ(Find(claims, "madam_best_lr").verdict, Verdict::kNotEnoughRuns);
  EXPECT_EQ(Find(claims, "baseline_lr_moves").verdict, Verdict::kNotEnoughRuns);
  EXPECT_EQ(Find(claims, "bits12_near_fp32").verdict, Verdict::kNotEnoughRuns);
  EXPECT_NE(Find(claims, "bits12_near_fp32").evidence.find("no Table 2 to read"), std::string::npos);
}

TEST(ClaimsTest, MadamWithinMarginUsesThePapersGapOrItsWorstRelativeGap) {
  // CIFAR-10 in the paper: Madam 7.8 vs Adam 6.6, a gap of 1.2.
  Runs ok("sw-t1", kTable1);
  ok.Ok("cifar10-resnet18", "adam", 0.001, 6.0).Ok("cifar10-resnet18", "madam", 0.01, 7.0);
  const Claim c = Find(JudgeClaims(In({ok.Build()}), {}), "madam_within_margin");
  EXPECT_EQ(c.verdict, Verdict::kHolds) << c.evidence;
  EXPECT_NE(c.evidence.find("the paper's gap 1.2"), std::string::npos) << c.evidence;
  Runs bad("sw-t1b", kTable1);
  bad.Ok("cifar10-resnet18", "adam", 0.001, 6.0).Ok("cifar10-resnet18", "madam", 0.01, 7.5);
  EXPECT_EQ(Find(JudgeClaims(In({bad.Build()}), {}), "madam_within_margin").verdict, Verdict::kDoesNotHold);
  // Outside the paper: its worst relative gap (ImageNet, 4.8 / 24.1 = 19.9%).
  Runs fm("sw-t1c", kTable1);
  fm.Ok("fmnist-mlp", "sgd", 0.1, 10.0).Ok("fmnist-mlp", "madam", 0.01, 11.9);
  const Claim f = Find(JudgeClaims(In({fm.Build()}), {}), "madam_within_margin");
  EXPECT_EQ(f.verdict, Verdict::kHolds) << f.evidence;
  EXPECT_NE(f.evidence.find("19.9%"), std::string::npos) << f.evidence;
  // A Figure 1 sweep alone cannot judge Table 1.
  const Claim fig = Find(JudgeClaims(In({Grid(0.01, 0.01)}), {}), "madam_within_margin");
  EXPECT_EQ(fig.verdict, Verdict::kNotEnoughRuns);
  EXPECT_NE(fig.evidence.find("promote"), std::string::npos) << fig.evidence;
}

TEST(ClaimsTest, TwelveBitsWithinOnePointOfFp32) {
  Runs near("sw-b");
  near.Ok("fmnist-mlp", "madam", 0.01, 10.0).Ok("fmnist-mlp", "int_madam", 0.01, 10.8, 12);
  EXPECT_EQ(Find(JudgeClaims(In({near.Build()}), {}), "bits12_near_fp32").verdict, Verdict::kHolds);
  Runs far("sw-b2");
  far.Ok("fmnist-mlp", "madam", 0.01, 10.0).Ok("fmnist-mlp", "int_madam", 0.01, 11.5, 12);
  const Claim c = Find(JudgeClaims(In({far.Build()}), {}), "bits12_near_fp32");
  EXPECT_EQ(c.verdict, Verdict::kDoesNotHold);
  EXPECT_NE(c.evidence.find("gap 1.5 > one point"), std::string::npos) << c.evidence;
  // WikiText-2 (perplexity): the paper's own gap, 182.3 - 173.3 = 9.
  Runs lm("sw-b3", "", "test/perplexity");
  lm.Ok("wikitext2-transformer", "madam", 0.01, 170).Ok("wikitext2-transformer", "int_madam", 0.01, 178, 12);
  const Claim l = Find(JudgeClaims(In({lm.Build()}), {}), "bits12_near_fp32");
  EXPECT_EQ(l.verdict, Verdict::kHolds) << l.evidence;
  EXPECT_NE(l.evidence.find("the paper's gap 9"), std::string::npos) << l.evidence;
}

TEST(ClaimsTest, SignsFixedReadsEveryLoggedStep) {
  Runs r("sw-s");
  r.Ok("fmnist-mlp", "madam", 0.01, 10).Ok("fmnist-mlp", "int_madam", 0.01, 11, 12);
  const auto sweep = r.Build();
  SignFlips clean{{sweep.runs[0].id, 0}, {sweep.runs[1].id, 0}};
  EXPECT_EQ(Find(JudgeClaims(In({sweep}), clean), "madam_signs_fixed").verdict, Verdict::kHolds);
  SignFlips flipped{{sweep.runs[0].id, 0}, {sweep.runs[1].id, 3}};
  const Claim c = Find(JudgeClaims(In({sweep}), flipped), "madam_signs_fixed");
  EXPECT_EQ(c.verdict, Verdict::kDoesNotHold);
  EXPECT_NE(c.evidence.find(sweep.runs[1].id), std::string::npos);
  EXPECT_EQ(Find(JudgeClaims(In({sweep}), {}), "madam_signs_fixed").verdict, Verdict::kNotEnoughRuns);
}

TEST(ClaimsTest, RendersMarkdownAndJsonOnly) {
  auto claims = JudgeClaims(In({Grid(0.01, 0.01)}), {});
  Report provenance;
  provenance.provenance = MakeReportProvenance(In({Grid(0.01, 0.01)}));
  auto md = RenderClaims(claims, provenance, ReportFormat::kMarkdown, true);
  ASSERT_TRUE(md.ok());
  EXPECT_NE(md->find("| claim | verdict | evidence | paper |"), std::string::npos) << *md;
  EXPECT_NE(md->find("**holds**"), std::string::npos);
  auto json = RenderClaims(claims, provenance, ReportFormat::kJson, false);
  ASSERT_TRUE(json.ok());
  auto doc = nlohmann::json::parse(*json);
  ASSERT_EQ(doc["claims"].size(), 5u);
  EXPECT_EQ(doc["claims"][0]["verdict"], "holds");
  EXPECT_FALSE(doc["claims"][0].contains("paper"));
  EXPECT_FALSE(RenderClaims(claims, provenance, ReportFormat::kCsv, false).ok());
}

}  // namespace
}  // namespace madam::server
