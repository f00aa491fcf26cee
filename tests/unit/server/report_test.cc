// Reports (server/report.h) on fixture runs whose figure values and table
// cells are worked out by hand below, and the SVG plot (server/svg_plot.h)
// checked as XML.
#include "server/report.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "server/svg_plot.h"

namespace madam::server {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// ---- fixtures ---------------------------------------------------------------

class SweepBuilder {
 public:
  explicit SweepBuilder(std::string id, std::string metric = "test/error") {
    sweep_.sweep.id = std::move(id);
    sweep_.sweep.name = "fixture";
    sweep_.sweep.metric_name = std::move(metric);
    sweep_.sweep.metric_goal = "minimize";
  }

  // A run of `optimizer` at `lr` with `seed` in `state`; `final` is the
  // metric's final value (ignored unless succeeded).
  SweepBuilder& Run(const std::string& optimizer, double lr, int seed, RunState state, double final,
                    int bits = 0, const std::string& task = "fmnist-mlp") {
    RunRow r;
    r.sweep_id = sweep_.sweep.id;
    r.index = static_cast<int64_t>(sweep_.runs.size());
    r.id = sweep_.sweep.id + "-" + std::to_string(r.index);
    r.params["task"] = ParamValue::String(task);
    r.params["optimizer"] = ParamValue::String(optimizer);
    r.params["lr"] = ParamValue::Number(lr);
    r.params["seed"] = ParamValue::Number(seed);
    if (bits > 0) r.params["bits"] = ParamValue::Number(bits);
    r.state = state;
    if (state != RunState::kPending) r.lease_worker = "wk-1";
    if (state == RunState::kSucceeded) {
      r.final[sweep_.sweep.metric_name] = final;
      r.final["train/loss"] = 0.5;
    }
    if (state == RunState::kDiverged) r.final[sweep_.sweep.metric_name] = std::nan("");
    sweep_.runs.push_back(r);
    return *this;
  }
  SweepBuilder& Ok(const std::string& opt, double lr, int seed, double final, int bits = 0,
                   const std::string& task = "fmnist-mlp") {
    return Run(opt, lr, seed, RunState::kSucceeded, final, bits, task);
  }

  ReportSweep Build() const { return sweep_; }

 private:
  ReportSweep sweep_;
};

ReportInput Input(std::vector<ReportSweep> sweeps) {
  ReportInput in;
  in.sweeps = std::move(sweeps);
  WorkerRow w;
  w.id = "wk-1";
  w.name = "w";
  w.device = "cpu";
  in.workers["wk-1"] = w;
  in.build = BuildInfo{"abc123", "1.13.0"};
  return in;
}

// Figure 1 / Table 1 fixture, two seeds (0, 1), metric test/error (%):
//   sgd   lr 0.001: 20, 30 -> err 25    value 12/25 = 0.48
//         lr 0.01 : 10, 14 -> err 12    value 1 (tie)
//         lr 0.1  : 12, 12 -> err 12    value 1 (tie)
//         lr 1    : diverged, 50 -> inf value 0
//   adam  lr 0.001: 11, 13 -> err 12    value 1
//         lr 0.01 : 14, 16 -> err 15    value 12/15 = 0.8
//   madam lr 0.001: 16, pending -> err 16 (1 seed)  value 10/16 = 0.625
//         lr 0.01 : 10, 10 -> err 10    value 1
//         lr 0.1  : failed, failed -> missing
ReportInput GridFixture() {
  SweepBuilder b("sw-grid");
  b.Ok("sgd", 0.001, 0, 20).Ok("sgd", 0.001, 1, 30);
  b.Ok("sgd", 0.01, 0, 10).Ok("sgd", 0.01, 1, 14);
  b.Ok("sgd", 0.1, 0, 12).Ok("sgd", 0.1, 1, 12);
  b.Run("sgd", 1, 0, RunState::kDiverged, 0).Ok("sgd", 1, 1, 50);
  b.Ok("adam", 0.001, 0, 11).Ok("adam", 0.001, 1, 13);
  b.Ok("adam", 0.01, 0, 14).Ok("adam", 0.01, 1, 16);
  b.Ok("madam", 0.001, 0, 16).Run("madam", 0.001, 1, RunState::kPending, 0);
  b.Ok("madam", 0.01, 0, 10).Ok("madam", 0.01, 1, 10);
  b.Run("madam", 0.1, 0, RunState::kFailed, 0).Run("madam", 0.1, 1, RunState::kFailed, 0);
  return Input({b.Build()});
}

// Table 2 fixture, lr 0.01 everywhere:
//   fp32 (madam)   : 10, 12      -> 11 ± 1, n 2
//   int_madam 12   : 10.5, 11.5  -> 11 ± 0.5, n 2
//   int_madam 10   : 13, 15, 14  -> 14 ± 1, n 3
//   int_madam 8    : 20          -> 20 ± 0, n 1 (a single seed)
ReportInput BitsFixture() {
  SweepBuilder b("sw-bits");
  b.Ok("madam", 0.01, 0, 10).Ok("madam", 0.01, 1, 12);
  b.Ok("int_madam", 0.01, 0, 10.5, 12).Ok("int_madam", 0.01, 1, 11.5, 12);
  b.Ok("int_madam", 0.01, 0, 13, 10).Ok("int_madam", 0.01, 1, 15, 10).Ok("int_madam", 0.01, 2, 14, 10);
  b.Ok("int_madam", 0.01, 0, 20, 8);
  return Input({b.Build()});
}

const LrSensitivityRow& LrRow(const Report& r, const std::string& opt, double lr) {
  for (const auto& row : r.lr_rows) {
    if (row.optimizer == opt && std::fabs(row.lr - lr) < 1e-12) return row;
  }
  ADD_FAILURE() << "no row " << opt << " " << lr;
  static LrSensitivityRow none;
  return none;
}

const TableRow& Cell(const Report& r, const std::string& column, const std::string& task = "fmnist-mlp") {
  for (const auto& row : r.table_rows) {
    if (row.column == column && row.task == task) return row;
  }
  ADD_FAILURE() << "no cell " << column;
  static TableRow none;
  return none;
}

std::string Render(const Report& r, ReportFormat f) {
  auto text = RenderReport(r, f);
  EXPECT_TRUE(text.ok()) << text.status().ToString();
  return text.ok() ? *text : "";
}

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// ---- lr-sensitivity -----------------------------------------------------------

TEST(LrSensitivityTest, ValuesAreBestErrorOverErrorWorkedByHand) {
  auto report = ComputeReport(ReportKind::kLrSensitivity, GridFixture());
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_DOUBLE_EQ(LrRow(*report, "sgd", 0.001).err, 25);
  EXPECT_DOUBLE_EQ(LrRow(*report, "sgd", 0.001).value, 0.48);
  EXPECT_EQ(LrRow(*report, "sgd", 0.001).seeds, 2);
  EXPECT_DOUBLE_EQ(LrRow(*report, "adam", 0.01).value, 0.8);
  EXPECT_DOUBLE_EQ(LrRow(*report, "adam", 0.001).value, 1.0);
  EXPECT_DOUBLE_EQ(LrRow(*report, "madam", 0.01).value, 1.0);
  // 9 cells: sgd x4, adam x2, madam x3 (the all-failed one included).
  EXPECT_EQ(report->lr_rows.size(), 9u);
}

TEST(LrSensitivityTest, TiedLearningRatesBothGetOne) {
  auto report = ComputeReport(ReportKind::kLrSensitivity, GridFixture());
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(LrRow(*report, "sgd", 0.01).value, 1.0);
  EXPECT_EQ(LrRow(*report, "sgd", 0.1).value, 1.0);
}

TEST(LrSensitivityTest, DivergedRunMakesErrInfiniteAndValueZero) {
  auto report = ComputeReport(ReportKind::kLrSensitivity, GridFixture());
  ASSERT_TRUE(report.ok());
  const auto& row = LrRow(*report, "sgd", 1);
  EXPECT_EQ(row.err, kInf);
  EXPECT_EQ(row.value, 0.0);
  EXPECT_EQ(row.seeds, 2);
  EXPECT_EQ(row.diverged, 1);
}

TEST(LrSensitivityTest, MissingSeedCountsOneAndIsNoted) {
  auto report = ComputeReport(ReportKind::kLrSensitivity, GridFixture());
  ASSERT_TRUE(report.ok());
  const auto& partial = LrRow(*report, "madam", 0.001);
  EXPECT_EQ(partial.seeds, 1);
  EXPECT_DOUBLE_EQ(partial.err, 16);
  EXPECT_DOUBLE_EQ(partial.value, 0.625);
  EXPECT_EQ(partial.missing.pending, 1);
  const auto& failed = LrRow(*report, "madam", 0.1);
  EXPECT_EQ(failed.seeds, 0);
  EXPECT_TRUE(std::isnan(failed.value));
  EXPECT_EQ(failed.missing.failed, 2);

  std::string md = Render(*report, ReportFormat::kMarkdown);
  EXPECT_TRUE(Contains(md, "missing: 1 pending")) << md;
  EXPECT_TRUE(Contains(md, "missing: 2 failed")) << md;
}

TEST(LrSensitivityTest, CsvHasTheContractHeaderAndHandComputedRows) {
  auto report = ComputeReport(ReportKind::kLrSensitivity, GridFixture());
  ASSERT_TRUE(report.ok());
  std::string csv = Render(*report, ReportFormat::kCsv);
  std::istringstream lines(csv);
  std::string header;
  std::getline(lines, header);
  EXPECT_EQ(header, "task,optimizer,lr,err,value,seeds");
  EXPECT_TRUE(Contains(csv, "\nfmnist-mlp,sgd,0.001,25,0.48,2\n")) << csv;
  EXPECT_TRUE(Contains(csv, "\nfmnist-mlp,sgd,0.01,12,1,2\n")) << csv;
  EXPECT_TRUE(Contains(csv, "\nfmnist-mlp,sgd,0.1,12,1,2\n")) << csv;
  EXPECT_TRUE(Contains(csv, "\nfmnist-mlp,sgd,1,inf,0,2\n")) << csv;
  EXPECT_TRUE(Contains(csv, "\nfmnist-mlp,adam,0.01,15,0.8,2\n")) << csv;
  EXPECT_TRUE(Contains(csv, "\nfmnist-mlp,madam,0.001,16,0.625,1\n")) << csv;
  EXPECT_TRUE(Contains(csv, "\nfmnist-mlp,madam,0.1,,,0\n")) << csv;
  // Plain CSV: the header and one line per row, nothing else.
  int lines_after = 0;
  for (std::string line; std::getline(lines, line);) {
    ++lines_after;
    EXPECT_NE(line.front(), '#') << line;
  }
  EXPECT_EQ(lines_after, 9);
}

TEST(LrSensitivityTest, JsonCarriesRowsAndProvenance) {
  auto report = ComputeReport(ReportKind::kLrSensitivity, GridFixture());
  ASSERT_TRUE(report.ok());
  auto doc = nlohmann::json::parse(Render(*report, ReportFormat::kJson));
  ASSERT_EQ(doc["rows"].size(), 9u);
  const auto& first = doc["rows"][0];
  EXPECT_EQ(first["task"], "fmnist-mlp");
  EXPECT_EQ(first["optimizer"], "sgd");
  EXPECT_DOUBLE_EQ(first["lr"].get<double>(), 0.001);
  EXPECT_DOUBLE_EQ(first["err"].get<double>(), 25);
  EXPECT_DOUBLE_EQ(first["value"].get<double>(), 0.48);
  EXPECT_EQ(first["seeds"], 2);
  EXPECT_EQ(doc["rows"][3]["err"], "inf");
  EXPECT_EQ(doc["provenance"]["sweeps"][0]["id"], "sw-grid");
  EXPECT_EQ(doc["provenance"]["counts"]["pending"], 1);
  EXPECT_EQ(doc["provenance"]["counts"]["failed"], 2);
  EXPECT_EQ(doc["provenance"]["counts"]["diverged"], 1);
  EXPECT_EQ(doc["provenance"]["git_revision"], "abc123");
  EXPECT_EQ(doc["provenance"]["libtorch_version"], "1.13.0");
  EXPECT_EQ(doc["provenance"]["devices"], nlohmann::json::array({"cpu"}));
}

TEST(LrSensitivityTest, EveryFormatButCsvEndsWithProvenance) {
  auto report = ComputeReport(ReportKind::kLrSensitivity, GridFixture());
  ASSERT_TRUE(report.ok());
  for (ReportFormat f : {ReportFormat::kMarkdown, ReportFormat::kLatex, ReportFormat::kSvg}) {
    std::string text = Render(*report, f);
    EXPECT_TRUE(Contains(text, "sweep sw-grid")) << ReportFormatName(f);
    EXPECT_TRUE(Contains(text, "18 runs: 14 succeeded, 1 diverged, 2 failed, 1 pending")) << text;
    EXPECT_TRUE(Contains(text, "git revision abc123; LibTorch 1.13.0; device cpu")) << text;
  }
}

TEST(LrSensitivityTest, LatexIsATabularWithEscapedNames) {
  SweepBuilder b("sw-int");
  b.Ok("int_madam", 0.01, 0, 10, 8).Ok("int_madam", 0.1, 0, 20, 8);
  auto report = ComputeReport(ReportKind::kLrSensitivity, Input({b.Build()}));
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  std::string tex = Render(*report, ReportFormat::kLatex);
  EXPECT_TRUE(Contains(tex, "\\begin{tabular}")) << tex;
  EXPECT_TRUE(Contains(tex, "int\\_madam/8")) << tex;
  EXPECT_TRUE(Contains(tex, "\\textbf{1.000 (10.00)} \\\\\n")) << tex;
  EXPECT_TRUE(Contains(tex, "0.500 (20.00) \\\\\n")) << tex;
  EXPECT_TRUE(Contains(tex, "\\end{tabular}")) << tex;
}

TEST(LrSensitivityTest, SweepWithoutAnLrAxisIsFailedPrecondition) {
  auto report = ComputeReport(ReportKind::kLrSensitivity, BitsFixture());
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(Contains(report.status().message(), "lr axis")) << report.status().message();
  EXPECT_TRUE(Contains(report.status().message(), "sw-bits")) << report.status().message();
}

TEST(LrSensitivityTest, PoolsSeveralSweepsIntoOnePanelPerTask) {
  SweepBuilder a("sw-a"), b("sw-b", "test/perplexity");
  a.Ok("madam", 0.01, 0, 10).Ok("madam", 0.1, 0, 20);
  b.Ok("madam", 0.01, 0, 100, 0, "wikitext2-transformer").Ok("madam", 0.1, 0, 50, 0, "wikitext2-transformer");
  auto report = ComputeReport(ReportKind::kLrSensitivity, Input({a.Build(), b.Build()}));
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_EQ(report->task_metric.at("fmnist-mlp"), "test/error");
  EXPECT_EQ(report->task_metric.at("wikitext2-transformer"), "test/perplexity");
  ASSERT_EQ(report->lr_rows.size(), 4u);
  EXPECT_DOUBLE_EQ(report->lr_rows[0].value, 1.0);   // fmnist 0.01
  EXPECT_DOUBLE_EQ(report->lr_rows[1].value, 0.5);   // fmnist 0.1
  EXPECT_DOUBLE_EQ(report->lr_rows[2].value, 0.5);   // wikitext 0.01: 50/100
  EXPECT_DOUBLE_EQ(report->lr_rows[3].value, 1.0);
  std::string md = Render(*report, ReportFormat::kMarkdown);
  EXPECT_TRUE(Contains(md, "all sweeps: 4 runs: 4 succeeded")) << md;
}

// ---- table1 -------------------------------------------------------------------

TEST(Table1Test, BaselinesAtTheirBestLrAgainstMadamAtDefault) {
  auto report = ComputeReport(ReportKind::kTable1, GridFixture());
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  // sgd: 0.01 and 0.1 tie at 12; the smaller lr wins; (14 - 10) / 2 = 2.
  EXPECT_DOUBLE_EQ(Cell(*report, "sgd").lr, 0.01);
  EXPECT_DOUBLE_EQ(Cell(*report, "sgd").mean, 12);
  EXPECT_DOUBLE_EQ(Cell(*report, "sgd").half_range, 2);
  EXPECT_DOUBLE_EQ(Cell(*report, "adam").lr, 0.001);
  EXPECT_DOUBLE_EQ(Cell(*report, "adam").mean, 12);
  EXPECT_DOUBLE_EQ(Cell(*report, "adam").half_range, 1);
  EXPECT_DOUBLE_EQ(Cell(*report, "madam").lr, 0.01);
  EXPECT_DOUBLE_EQ(Cell(*report, "madam").mean, 10);
  EXPECT_DOUBLE_EQ(Cell(*report, "madam").half_range, 0);
  EXPECT_EQ(Cell(*report, "madam").n, 2);
  EXPECT_EQ(report->best_baseline.at("fmnist-mlp"), "sgd");  // a tie keeps sgd

  std::string csv = Render(*report, ReportFormat::kCsv);
  EXPECT_EQ(csv.substr(0, csv.find('\n')), "task,column,lr,mean,half_range,n");
  EXPECT_TRUE(Contains(csv, "\nfmnist-mlp,sgd,0.01,12,2,2\n")) << csv;
  EXPECT_TRUE(Contains(csv, "\nfmnist-mlp,adam,0.001,12,1,2\n")) << csv;
  EXPECT_TRUE(Contains(csv, "\nfmnist-mlp,madam,0.01,10,0,2\n")) << csv;
  std::string md = Render(*report, ReportFormat::kMarkdown);
  EXPECT_TRUE(Contains(md, "10.00 ± 0.00 [10.00, 10.00] (n=2)")) << md;
  EXPECT_TRUE(Contains(md, "**12.00 ± 2.00 [10.00, 14.00] (lr 0.01, n=2)**")) << md;
}

TEST(Table1Test, MadamNearestDefaultWithinRelativeTolerance) {
  SweepBuilder b("sw-t");
  b.Ok("sgd", 0.1, 0, 9).Ok("madam", 0.01 * (1 + 1e-12), 0, 7).Ok("madam", 0.0100001, 0, 99);
  auto report = ComputeReport(ReportKind::kTable1, Input({b.Build()}));
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_DOUBLE_EQ(Cell(*report, "madam").mean, 7);
  // adam has no runs: its cell is shown empty, not dropped.
  EXPECT_EQ(Cell(*report, "adam").n, 0);
  EXPECT_TRUE(Contains(Render(*report, ReportFormat::kMarkdown), "no runs"));
}

TEST(Table1Test, MissingSeedReportsNOfOneAndNotesIt) {
  SweepBuilder b("sw-t");
  b.Ok("sgd", 0.1, 0, 9).Ok("sgd", 0.1, 1, 11);
  b.Ok("madam", 0.01, 0, 8).Run("madam", 0.01, 1, RunState::kRunning, 0);
  auto report = ComputeReport(ReportKind::kTable1, Input({b.Build()}));
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_EQ(Cell(*report, "madam").n, 1);
  EXPECT_DOUBLE_EQ(Cell(*report, "madam").mean, 8);
  EXPECT_DOUBLE_EQ(Cell(*report, "madam").half_range, 0);
  std::string md = Render(*report, ReportFormat::kMarkdown);
  EXPECT_TRUE(Contains(md, "8.00 ± 0.00 [8.00, 8.00] (n=1, missing: 1 running)")) << md;
}

TEST(Table1Test, SweepWithoutMadamAtDefaultNamesWhatIsMissing) {
  SweepBuilder b("sw-nomadam");
  b.Ok("sgd", 0.1, 0, 9).Ok("madam", 0.1, 0, 9);
  auto report = ComputeReport(ReportKind::kTable1, Input({b.Build()}));
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(Contains(report.status().message(), "madam runs at lr 0.01")) << report.status().message();
  EXPECT_TRUE(Contains(report.status().message(), "sw-nomadam")) << report.status().message();
  EXPECT_TRUE(Contains(report.status().message(), "only at lr 0.1")) << report.status().message();
}

TEST(Table1Test, SvgIsRefusedForTables) {
  auto report = ComputeReport(ReportKind::kTable1, GridFixture());
  ASSERT_TRUE(report.ok());
  auto svg = RenderReport(*report, ReportFormat::kSvg);
  ASSERT_FALSE(svg.ok());
  EXPECT_EQ(svg.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(svg.status().message(), "svg is only for lr-sensitivity"));
}

// ---- table2 -------------------------------------------------------------------

TEST(Table2Test, Fp32AgainstEachBitWidthDescending) {
  auto report = ComputeReport(ReportKind::kTable2, BitsFixture());
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  ASSERT_EQ(report->table_rows.size(), 4u);
  EXPECT_EQ(report->table_rows[0].column, "fp32");
  EXPECT_EQ(report->table_rows[1].column, "12bit");
  EXPECT_EQ(report->table_rows[2].column, "10bit");
  EXPECT_EQ(report->table_rows[3].column, "8bit");
  std::string csv = Render(*report, ReportFormat::kCsv);
  EXPECT_TRUE(Contains(csv, "task,column,lr,mean,half_range,n\n"
                            "fmnist-mlp,fp32,0.01,11,1,2\n"
                            "fmnist-mlp,12bit,0.01,11,0.5,2\n"
                            "fmnist-mlp,10bit,0.01,14,1,3\n"
                            "fmnist-mlp,8bit,0.01,20,0,1\n"))
      << csv;
}

TEST(Table2Test, SingleSeedHasZeroHalfRange) {
  auto report = ComputeReport(ReportKind::kTable2, BitsFixture());
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(Cell(*report, "8bit").n, 1);
  EXPECT_EQ(Cell(*report, "8bit").half_range, 0.0);
  EXPECT_TRUE(Contains(Render(*report, ReportFormat::kMarkdown), "20.00 ± 0.00 [20.00, 20.00] (n=1)"));
}

TEST(Table2Test, DivergedSeedShowsAsDiverged) {
  SweepBuilder b("sw-b");
  b.Ok("madam", 0.01, 0, 10).Run("int_madam", 0.01, 0, RunState::kDiverged, 0, 8).Ok("int_madam", 0.01, 1, 30, 8);
  auto report = ComputeReport(ReportKind::kTable2, Input({b.Build()}));
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(Cell(*report, "8bit").mean, kInf);
  EXPECT_EQ(Cell(*report, "8bit").diverged, 1);
  EXPECT_TRUE(Contains(Render(*report, ReportFormat::kMarkdown), "diverged (1 of 2)"));
}

TEST(Table2Test, SweepWithoutBitsNamesTheMissingAxis) {
  auto report = ComputeReport(ReportKind::kTable2, GridFixture());
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(report.status().message(),
            "table2 needs runs of int_madam with a bits parameter; sweep sw-grid has none");
}

// ---- bad input ----------------------------------------------------------------

TEST(ReportInputTest, UnknownKindAndFormatListTheValidOnes) {
  auto kind = ParseReportKind("figure1");
  ASSERT_FALSE(kind.ok());
  EXPECT_EQ(kind.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(kind.status().message(), "lr-sensitivity, table1, table2"));
  auto format = ParseReportFormat("pdf");
  ASSERT_FALSE(format.ok());
  EXPECT_EQ(format.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(format.status().message(), "md, csv, json, latex, svg"));
  EXPECT_EQ(*ParseReportFormat(""), ReportFormat::kMarkdown);
}

TEST(ReportInputTest, MetricNoRunReportedNamesTheMetric) {
  SweepBuilder b("sw-m", "test/perplexity");
  b.Ok("madam", 0.01, 0, 1).Ok("madam", 0.1, 0, 2);
  ReportSweep s = b.Build();
  for (RunRow& r : s.runs) r.final.erase("test/perplexity");
  auto report = ComputeReport(ReportKind::kLrSensitivity, Input({s}));
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(Contains(report.status().message(), "metric test/perplexity")) << report.status().message();
  EXPECT_TRUE(Contains(report.status().message(), "train/loss")) << report.status().message();
}

class ReportStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("report_test_" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    StoreOptions options;
    options.path = (dir_ / "madam.db").string();
    auto store = Store::Open(options);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(*store);
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  std::filesystem::path dir_;
  std::unique_ptr<Store> store_;
};

TEST_F(ReportStoreTest, UnknownSweepIsNotFoundNamingIt) {
  auto report = MakeReport(*store_, {"sw-00000000"}, "table1", "md");
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(Contains(report.status().message(), "sw-00000000")) << report.status().message();
}

TEST_F(ReportStoreTest, PendingSweepShowsEveryCellMissing) {
  NewSweep sweep;
  sweep.name = "pending";
  sweep.spec_text = "x";
  sweep.metric_name = "test/error";
  sweep.metric_goal = "minimize";
  for (double lr : {0.001, 0.01}) {
    NewRun run;
    run.params["task"] = ParamValue::String("fmnist-mlp");
    run.params["optimizer"] = ParamValue::String("madam");
    run.params["lr"] = ParamValue::Number(lr);
    run.params["seed"] = ParamValue::Number(0);
    sweep.runs.push_back(run);
  }
  auto row = store_->CreateSweep(sweep);
  ASSERT_TRUE(row.ok()) << row.status().ToString();
  auto report = MakeReport(*store_, {row->id}, "lr-sensitivity", "csv");
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_EQ(report->content_type, "text/csv; charset=utf-8");
  EXPECT_TRUE(Contains(report->content, "fmnist-mlp,madam,0.001,,,0\nfmnist-mlp,madam,0.01,,,0\n"))
      << report->content;
  auto md = MakeReport(*store_, {row->id}, "lr-sensitivity", "md");
  ASSERT_TRUE(md.ok()) << md.status().ToString();
  EXPECT_TRUE(Contains(md->content, "2 runs: 2 pending")) << md->content;
  EXPECT_TRUE(Contains(md->content, "device none (no run was leased)")) << md->content;

  auto svg_table = MakeReport(*store_, {row->id}, "table2", "svg");
  ASSERT_FALSE(svg_table.ok());
  EXPECT_EQ(svg_table.status().code(), StatusCode::kInvalidArgument);
}

// ---- SVG, parsed as XML --------------------------------------------------------

// A minimal XML reader: elements, attributes, text, the five predefined
// entities, comments and the XML declaration. Anything malformed (an
// unclosed or mismatched tag, a bad entity, a stray '<') fails the parse.
struct XmlNode {
  std::string name;
  std::map<std::string, std::string> attrs;
  std::vector<XmlNode> children;
  std::string text;

  void FindAll(const std::string& tag, std::vector<const XmlNode*>* out) const {
    if (name == tag) out->push_back(this);
    for (const XmlNode& c : children) c.FindAll(tag, out);
  }
  bool HasClass(const std::string& cls) const {
    auto it = attrs.find("class");
    if (it == attrs.end()) return false;
    std::istringstream words(it->second);
    for (std::string w; words >> w;) {
      if (w == cls) return true;
    }
    return false;
  }
};

class XmlParser {
 public:
  explicit XmlParser(const std::string& text) : s_(text) {}

  bool Parse(XmlNode* root, std::string* error) {
    SkipMisc();
    if (!Element(root)) {
      *error = error_ + " at offset " + std::to_string(i_);
      return false;
    }
    SkipMisc();
    if (i_ != s_.size()) {
      *error = "trailing content at offset " + std::to_string(i_);
      return false;
    }
    return true;
  }

 private:
  void SkipSpace() {
    while (i_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[i_]))) ++i_;
  }
  void SkipMisc() {
    for (;;) {
      SkipSpace();
      if (s_.compare(i_, 5, "<?xml") == 0) {
        i_ = s_.find("?>", i_) + 2;
      } else if (s_.compare(i_, 4, "<!--") == 0) {
        i_ = s_.find("-->", i_) + 3;
      } else {
        return;
      }
    }
  }
  bool Fail(const std::string& why) {
    error_ = why;
    return false;
  }
  std::string Name() {
    size_t start = i_;
    while (i_ < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[i_])) || s_[i_] == '-' ||
                              s_[i_] == '_' || s_[i_] == ':' || s_[i_] == '.')) {
      ++i_;
    }
    return s_.substr(start, i_ - start);
  }
  bool Decode(const std::string& raw, std::string* out) {
    static const std::map<std::string, char> kEntities = {
        {"amp", '&'}, {"lt", '<'}, {"gt", '>'}, {"quot", '"'}, {"apos", '\''}};
    for (size_t k = 0; k < raw.size(); ++k) {
      if (raw[k] == '<') return Fail("'<' in text or attribute");
      if (raw[k] != '&') {
        *out += raw[k];
        continue;
      }
      size_t semi = raw.find(';', k);
      if (semi == std::string::npos) return Fail("unterminated entity");
      auto it = kEntities.find(raw.substr(k + 1, semi - k - 1));
      if (it == kEntities.end()) return Fail("unknown entity " + raw.substr(k, semi - k + 1));
      *out += it->second;
      k = semi;
    }
    return true;
  }
  bool Element(XmlNode* node) {
    if (i_ >= s_.size() || s_[i_] != '<') return Fail("expected '<'");
    ++i_;
    node->name = Name();
    if (node->name.empty()) return Fail("empty element name");
    for (;;) {
      SkipSpace();
      if (i_ >= s_.size()) return Fail("unterminated start tag");
      if (s_.compare(i_, 2, "/>") == 0) {
        i_ += 2;
        return true;
      }
      if (s_[i_] == '>') {
        ++i_;
        break;
      }
      std::string attr = Name();
      if (attr.empty()) return Fail("bad attribute name");
      SkipSpace();
      if (i_ >= s_.size() || s_[i_] != '=') return Fail("expected '=' after " + attr);
      ++i_;
      SkipSpace();
      if (i_ >= s_.size() || (s_[i_] != '"' && s_[i_] != '\'')) return Fail("unquoted attribute " + attr);
      char quote = s_[i_++];
      size_t end = s_.find(quote, i_);
      if (end == std::string::npos) return Fail("unterminated attribute " + attr);
      std::string value;
      if (!Decode(s_.substr(i_, end - i_), &value)) return false;
      if (node->attrs.count(attr)) return Fail("duplicate attribute " + attr);
      node->attrs[attr] = value;
      i_ = end + 1;
    }
    for (;;) {
      size_t lt = s_.find('<', i_);
      if (lt == std::string::npos) return Fail("unclosed <" + node->name + ">");
      if (!Decode(s_.substr(i_, lt - i_), &node->text)) return false;
      i_ = lt;
      if (s_.compare(i_, 4, "<!--") == 0) {
        i_ = s_.find("-->", i_) + 3;
        continue;
      }
      if (s_.compare(i_, 2, "</") == 0) {
        i_ += 2;
        std::string closing = Name();
        if (closing != node->name) return Fail("</" + closing + "> closes <" + node->name + ">");
        SkipSpace();
        if (i_ >= s_.size() || s_[i_] != '>') return Fail("bad end tag");
        ++i_;
        return true;
      }
      node->children.emplace_back();
      if (!Element(&node->children.back())) return false;
    }
  }

  const std::string& s_;
  size_t i_ = 0;
  std::string error_;
};

XmlNode ParseSvg(const std::string& svg) {
  XmlNode root;
  std::string error;
  EXPECT_TRUE(XmlParser(svg).Parse(&root, &error)) << error << "\n" << svg;
  return root;
}

double Attr(const XmlNode& n, const std::string& name) {
  auto it = n.attrs.find(name);
  EXPECT_NE(it, n.attrs.end()) << name;
  return it == n.attrs.end() ? std::nan("") : std::strtod(it->second.c_str(), nullptr);
}

// The vertices of a path "M x,y L x,y ...".
std::vector<std::pair<double, double>> Vertices(const std::string& d) {
  std::vector<std::pair<double, double>> out;
  std::istringstream in(d);
  for (std::string token; in >> token;) {
    double x = 0, y = 0;
    if (std::sscanf(token.c_str() + 1, "%lf,%lf", &x, &y) == 2) out.push_back({x, y});
  }
  return out;
}

TEST(XmlParserTest, RejectsMalformedXml) {
  for (const char* bad : {"<svg><g></svg>", "<svg a=1/>", "<svg>&bogus;</svg>", "<svg>", "<svg/><x/>"}) {
    XmlNode root;
    std::string error;
    EXPECT_FALSE(XmlParser(bad).Parse(&root, &error)) << bad;
  }
}

TEST(SvgPlotTest, XmlEscapeCoversMarkup) {
  EXPECT_EQ(XmlEscape("a<b & \"c\" 'd'>"), "a&lt;b &amp; &quot;c&quot; &apos;d&apos;&gt;");
}

TEST(SvgPlotTest, LrSensitivityFigureHasAxesOnePathPerOptimizerAndBestMarkers) {
  auto report = ComputeReport(ReportKind::kLrSensitivity, GridFixture());
  ASSERT_TRUE(report.ok());
  std::string svg = Render(*report, ReportFormat::kSvg);
  XmlNode root = ParseSvg(svg);
  EXPECT_EQ(root.name, "svg");
  EXPECT_EQ(root.attrs["xmlns"], "http://www.w3.org/2000/svg");

  std::vector<const XmlNode*> groups;
  root.FindAll("g", &groups);
  std::vector<const XmlNode*> panels;
  for (const XmlNode* g : groups) {
    if (g->HasClass("panel")) panels.push_back(g);
  }
  ASSERT_EQ(panels.size(), 1u);  // one task
  const XmlNode& panel = *panels[0];
  EXPECT_EQ(panel.attrs.at("data-title"), "fmnist-mlp (test/error)");

  // Axes and their labels.
  std::vector<const XmlNode*> lines, texts, paths, circles;
  panel.FindAll("line", &lines);
  panel.FindAll("text", &texts);
  panel.FindAll("path", &paths);
  panel.FindAll("circle", &circles);
  const XmlNode *x_axis = nullptr, *y_axis = nullptr;
  for (const XmlNode* l : lines) {
    if (l->HasClass("x-axis")) x_axis = l;
    if (l->HasClass("y-axis")) y_axis = l;
  }
  ASSERT_NE(x_axis, nullptr);
  ASSERT_NE(y_axis, nullptr);
  bool x_label = false, y_label = false;
  for (const XmlNode* t : texts) {
    if (t->HasClass("x-label")) x_label = t->text == "learning rate";
    if (t->HasClass("y-label")) y_label = t->text == "best error / error";
  }
  EXPECT_TRUE(x_label);
  EXPECT_TRUE(y_label);

  // One path per optimiser, in the paper's order.
  ASSERT_EQ(paths.size(), 3u);
  EXPECT_EQ(paths[0]->attrs.at("data-series"), "sgd");
  EXPECT_EQ(paths[1]->attrs.at("data-series"), "adam");
  EXPECT_EQ(paths[2]->attrs.at("data-series"), "madam");

  // x: lrs 0.001..1 -> log domain [-3, 0] over the x axis; y: 0..1 bottom to top.
  const double left = Attr(*x_axis, "x1"), right = Attr(*x_axis, "x2");
  const double bottom = Attr(*y_axis, "y1"), top = Attr(*y_axis, "y2");
  auto px = [&](double lr) { return left + (std::log10(lr) + 3) / 3 * (right - left); };
  auto py = [&](double v) { return bottom + v * (top - bottom); };

  // sgd: 4 vertices at values 0.48, 1, 1, 0 (the diverged lr drawn at 0).
  auto sgd = Vertices(paths[0]->attrs.at("d"));
  ASSERT_EQ(sgd.size(), 4u);
  EXPECT_NEAR(sgd[0].first, px(0.001), 0.01);
  EXPECT_NEAR(sgd[0].second, py(0.48), 0.01);
  EXPECT_NEAR(sgd[3].first, px(1), 0.01);
  EXPECT_NEAR(sgd[3].second, py(0), 0.01);
  // madam: the all-failed lr 0.1 is a gap, so 2 vertices.
  EXPECT_EQ(Vertices(paths[2]->attrs.at("d")).size(), 2u);

  // Best-lr markers: sgd's tie gives two, adam and madam one each.
  std::multimap<std::string, const XmlNode*> best;
  for (const XmlNode* c : circles) {
    if (c->HasClass("best")) best.emplace(c->attrs.at("data-series"), c);
  }
  EXPECT_EQ(best.count("sgd"), 2u);
  ASSERT_EQ(best.count("adam"), 1u);
  ASSERT_EQ(best.count("madam"), 1u);
  const XmlNode& madam = *best.find("madam")->second;
  EXPECT_EQ(madam.attrs.at("data-x"), "0.01");
  EXPECT_NEAR(Attr(madam, "cx"), px(0.01), 0.01);
  EXPECT_NEAR(Attr(madam, "cy"), py(1), 0.01);
  const XmlNode& adam = *best.find("adam")->second;
  EXPECT_NEAR(Attr(adam, "cx"), px(0.001), 0.01);

  // A legend entry per optimiser, and the provenance footer.
  int legend = 0;
  for (const XmlNode* g : groups) legend += g->HasClass("legend-entry") && g->attrs.count("data-series");
  EXPECT_EQ(legend, 3);
  EXPECT_TRUE(Contains(svg, "git revision abc123"));
}

TEST(SvgPlotTest, PanelPerTaskAndLinearAxisForOtherPlots) {
  PlotPanel a{"a", {PlotSeries{"loss", {{0, 2}, {1, 1}, {2, 0.5}}, {}}}};
  PlotPanel b{"b", {PlotSeries{"loss", {{0, 3}, {1, std::nan("")}, {2, 1}}, {2}}}};
  LinePlotOptions options;
  options.x_label = "step";
  options.y_label = "loss";
  options.marker_legend = "";
  XmlNode root = ParseSvg(RenderLinePlot({a, b}, options));
  std::vector<const XmlNode*> paths;
  root.FindAll("path", &paths);
  ASSERT_EQ(paths.size(), 2u);
  // The NaN breaks panel b's line into two pieces.
  EXPECT_EQ(std::count(paths[1]->attrs.at("d").begin(), paths[1]->attrs.at("d").end(), 'M'), 2);
  std::vector<const XmlNode*> circles;
  root.FindAll("circle", &circles);
  EXPECT_EQ(circles.size(), 1u);
}


// ---- the two stages and the paper's numbers (ARCHITECTURE.md sections 4, 7) --

TEST(Table1Test, AFigure1SweepIsRefusedNamingThePromoteCommand) {
  ReportInput in = GridFixture();
  in.sweeps[0].sweep.spec_text =
      "name: f\nfigure: 1\ntask: fmnist-mlp\ngrid: {optimizer: [sgd, adam, madam], lr: [0.01]}\n";
  auto report = ComputeReport(ReportKind::kTable1, in);
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(Contains(report.status().message(), "table1 needs a promoted sweep: sw-grid is a Figure 1 sweep"))
      << report.status().message();
  EXPECT_TRUE(Contains(report.status().message(), "madamctl sweep promote sw-grid"));
  // A Table 1 sweep (a promoted one) is computed from its own runs.
  in.sweeps[0].sweep.spec_text = "name: t\ntable: 1\ntask: fmnist-mlp\nparams: {optimizer: sgd}\n";
  EXPECT_TRUE(ComputeReport(ReportKind::kTable1, in).ok());
}

// The paper's Table 2 CIFAR-10 row: 7.8 ± 0.2, 7.0 ± 0.1, 7.8 ± 0.3, 8.6 ± 1.5.
TEST(PaperColumnsTest, Table2PrintsThePapersCifar10RowBesideOursInEveryFormat) {
  SweepBuilder b("sw-c10");
  const std::string task = "cifar10-resnet18";
  b.Ok("madam", 0.01, 0, 8.0, 0, task).Ok("madam", 0.01, 1, 8.4, 0, task);
  b.Ok("int_madam", 0.016, 0, 7.5, 12, task).Ok("int_madam", 0.016, 0, 9.0, 8, task);
  ReportOptions paper;
  paper.paper = true;
  auto report = ComputeReport(ReportKind::kTable2, Input({b.Build()}), paper);
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  std::string md = Render(*report, ReportFormat::kMarkdown);
  EXPECT_TRUE(Contains(md, "| cifar10-resnet18 (paper) | | 7.8 ± 0.2 | 7.0 ± 0.1 | 7.8 ± 0.3 | 8.6 ± 1.5 |"))
      << md;
  // ours - paper: fp32 8.2 - 7.8, 12-bit 7.5 - 7.0, no 10-bit runs, 8-bit 9.0 - 8.6.
  EXPECT_TRUE(Contains(md, "| cifar10-resnet18 (ours - paper) | | +0.40 | +0.50 | — | +0.40 |")) << md;
  std::string csv = Render(*report, ReportFormat::kCsv);
  EXPECT_EQ(csv.substr(0, csv.find('\n')),
            "task,column,lr,mean,half_range,n,paper_mean,paper_plus_minus,diff");
  EXPECT_TRUE(Contains(csv, "\ncifar10-resnet18,12bit,0.016,7.5,0,1,7,0.1,0.5\n")) << csv;
  EXPECT_TRUE(Contains(csv, "\ncifar10-resnet18,10bit,,,,0,7.8,0.3,\n")) << csv;
  auto doc = nlohmann::json::parse(Render(*report, ReportFormat::kJson));
  bool found = false;
  for (const auto& row : doc["rows"]) {
    if (row["column"] == "8bit") {
      found = true;
      EXPECT_DOUBLE_EQ(row["paper"]["mean"].get<double>(), 8.6);
      EXPECT_DOUBLE_EQ(row["paper"]["plus_minus"].get<double>(), 1.5);
      EXPECT_NEAR(row["diff"].get<double>(), 0.4, 1e-12);
    }
  }
  EXPECT_TRUE(found);
  std::string tex = Render(*report, ReportFormat::kLatex);
  EXPECT_TRUE(Contains(tex, "\\quad paper & & 7.8 $\\pm$ 0.2 & 7.0 $\\pm$ 0.1")) << tex;
  // Without --paper nothing of it shows.
  auto plain = ComputeReport(ReportKind::kTable2, Input({b.Build()}));
  ASSERT_TRUE(plain.ok());
  EXPECT_FALSE(Contains(Render(*plain, ReportFormat::kMarkdown), "(paper)"));
}

TEST(PaperColumnsTest, Figure1SvgDrawsThePapersCurveDashed) {
  SweepBuilder b("sw-f1");
  const std::string task = "wikitext2-transformer";
  for (double lr : {1.0, 0.1, 0.01, 0.001, 0.0001}) b.Ok("sgd", lr, 0, 300 / lr, 0, task);
  ReportOptions paper;
  paper.paper = true;
  ReportInput in = Input({b.Build()});
  in.sweeps[0].sweep.metric_name = "test/perplexity";
  for (auto& r : in.sweeps[0].runs) r.final = {{"test/perplexity", r.final["test/error"]}};
  auto report = ComputeReport(ReportKind::kLrSensitivity, in, paper);
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  std::string svg = Render(*report, ReportFormat::kSvg);
  EXPECT_TRUE(Contains(svg, "class=\"series dashed\" data-series=\"sgd (paper)\"")) << svg;
  // The paper's SGD best on WikiText-2 is lr 1 (perplexity 204.4): value 1
  // there, 204.4 / 374.9 at lr 0.1.
  std::string csv = Render(*report, ReportFormat::kCsv);
  EXPECT_TRUE(Contains(csv, "\nwikitext2-transformer,sgd,1,300,1,1,204.4,1\n")) << csv;
  std::string md = Render(*report, ReportFormat::kMarkdown);
  EXPECT_TRUE(Contains(md, "sgd (paper)")) << md;
}

}  // namespace
}  // namespace madam::server
