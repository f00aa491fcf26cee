// Reports: the paper's Figure 1 (lr-sensitivity), Table 1 and Table 2
// computed from stored sweep results, and rendered as Markdown, CSV, JSON,
// LaTeX or SVG (ARCHITECTURE.md section 7). This is the one code path: the
// gRPC GetReport handler and the HTTP dashboard both call it. No gRPC here.
//
// Semantics, for each run the report uses its own sweep's metric
// (sweep.metric_name) and that metric's final value (RunRow::final):
//   - A run "counts" when it is SUCCEEDED with the metric in `final`, or
//     DIVERGED (its value is +inf for a minimised metric, -inf for a
//     maximised one; a SUCCEEDED run whose final value is non-finite, stored
//     as NaN, counts as diverged too). Every other run — pending, running,
//     failed, cancelled, or succeeded without the metric — is "missing": the
//     cell it belongs to shows it (e.g. "missing: 2 pending, 1 failed") and
//     its `n`/`seeds` counts only the runs that count. Nothing is dropped.
//   - lr-sensitivity: per (task, optimizer, lr), err = mean over counted
//     seeds; value = best err over the task-optimizer's lrs / err (for a
//     maximised metric: err / best), so 1.0 marks the best lr (ties: every
//     tied lr gets 1.0) and a diverged cell gets 0. A cell with no counted
//     run has err and value NaN (shown as missing).
//   - table1: per task, columns `sgd` and `adam` at their best lr (the lr of
//     the lowest mean; ties: the smaller lr) and `madam` at lr 0.01 (equal
//     within 1e-9 relative); each `mean ± half range` over seeds, half range
//     = (max - min) / 2 (0 for one seed; +inf when a seed diverged).
//   - table2: per task, `fp32` (optimizer madam) and `<B>bit` (int_madam with
//     bits B; absent bits means the worker's default, 12), widths
//     descending. Within a column that holds several lrs, the lr nearest 0.01
//     (in log space) is used.
//   - Learning rates from different runs are the same lr when they agree
//     within 1e-9 relative.
//
//   - table1 is the second stage (ARCHITECTURE.md section 4): computed from
//     a promoted sweep's own runs. Asked of Figure 1 sweeps only, it is
//     FAILED_PRECONDITION naming the `madamctl sweep promote` command.
//   - Table cells print `mean ± half range [min, max]`.
//   - With `paper` (ARCHITECTURE.md section 7, `--paper`), the paper's
//     published numbers (common/paper_results.h) stand beside ours for the
//     paper's tasks, with the difference ours - paper; the Figure 1 SVG draws
//     the paper's curve dashed.
//
// Formats: md (Markdown tables), csv (plain CSV: the header, then one line
// per row — `task,optimizer,lr,err,value,seeds` for lr-sensitivity,
// `task,column,lr,mean,half_range,n` for the tables, each followed with
// `paper` by `paper_err,paper_value` or `paper_mean,paper_plus_minus,diff`),
// json ({"kind", "metric", "rows": [...], "provenance": {...}}; a non-finite
// number is the string "inf"/"-inf", a missing one null), latex (a tabular
// per report), svg (lr-sensitivity only: log-x lr axis, value 0..1, a panel
// per task, a line per optimiser, the best lr circled; the tables are not
// plots, so svg for them is INVALID_ARGUMENT). md, json, latex and svg carry
// the provenance: sweep ids, run counts per state, git revision, LibTorch
// version and the devices of the workers that ran the runs; csv carries
// none, so that any CSV reader takes it as it is.
//
// Thread-safety: everything here is a pure function of its arguments except
// LoadReportInput, which reads the (thread-safe) Store.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "common/sweep_spec.h"
#include "server/store.h"

namespace madam::server {

enum class ReportKind { kLrSensitivity, kTable1, kTable2 };

struct ReportOptions {
  bool paper = false;  // the paper's numbers beside ours (`--paper`)
};
enum class ReportFormat { kMarkdown, kCsv, kJson, kLatex, kSvg };

// "lr-sensitivity" | "table1" | "table2"; anything else is INVALID_ARGUMENT
// listing those.
Result<ReportKind> ParseReportKind(std::string_view name);
// "md" | "csv" | "json" | "latex" | "svg" ("" means "md"); anything else is
// INVALID_ARGUMENT listing those.
Result<ReportFormat> ParseReportFormat(std::string_view name);
const char* ReportKindName(ReportKind kind);
const char* ReportFormatName(ReportFormat format);
// The MIME type of a rendered report, e.g. "image/svg+xml".
const char* ReportContentType(ReportFormat format);

// What the build knows about itself; BuildInfo::Current() reads the values
// CMake passed at configure time.
struct BuildInfo {
  std::string git_revision;      // short hash, or "unknown"
  std::string libtorch_version;  // the LibTorch this tree was built against
  static BuildInfo Current();
};

// The stored rows a report is computed from.
struct ReportSweep {
  SweepRow sweep;
  std::vector<RunRow> runs;
};
struct ReportInput {
  std::vector<ReportSweep> sweeps;          // in request order, no duplicates
  std::map<std::string, WorkerRow> workers;  // by id: the lease holders of the runs
  BuildInfo build;
};

// Reads the sweeps, their runs and the workers that ran them. NOT_FOUND
// naming the first unknown sweep id; INVALID_ARGUMENT for an empty list.
Result<ReportInput> LoadReportInput(Store& store, const std::vector<std::string>& sweep_ids);

// Runs of a cell that did not count, by reason.
struct MissingRuns {
  int pending = 0, running = 0, failed = 0, cancelled = 0, no_metric = 0;
  int total() const { return pending + running + failed + cancelled + no_metric; }
  // "" when none, else e.g. "2 pending, 1 failed".
  std::string ToString() const;
};

// One point of Figure 1.
struct LrSensitivityRow {
  std::string task;
  std::string optimizer;
  double lr = 0;
  double err = 0;    // mean over counted seeds; +-inf: diverged; NaN: no counted run
  double value = 0;  // best / err in [0, 1]; NaN: no counted run
  int seeds = 0;     // counted runs
  int diverged = 0;  // of which diverged
  MissingRuns missing;
};

// One cell of Table 1 or Table 2.
struct TableRow {
  std::string task;
  std::string column;  // sgd | adam | madam; fp32 | 12bit | 10bit | ...
  double lr = 0;       // NaN when the column has no runs for the task
  double mean = 0;     // NaN: no counted run; +-inf: a seed diverged
  double half_range = 0;
  double min = 0, max = 0;  // over the counted runs; NaN when none
  int n = 0;           // counted runs
  int diverged = 0;
  MissingRuns missing;
};

struct SweepProvenance {
  std::string id;
  std::string name;
  std::string metric;  // metric_name (goal)
  RunCounts counts;
};

struct Provenance {
  std::vector<SweepProvenance> sweeps;
  RunCounts counts;  // over every sweep
  std::string git_revision;
  std::string libtorch_version;
  std::vector<std::string> devices;  // distinct, sorted; empty: no run was leased
};

struct Report {
  ReportKind kind = ReportKind::kLrSensitivity;
  // Each task's metric (its sweep's metric_name), for labels.
  std::map<std::string, std::string> task_metric;
  std::vector<LrSensitivityRow> lr_rows;  // lr-sensitivity: by task, optimizer, lr
  std::vector<TableRow> table_rows;       // table1/table2: by task, then column order
  // table1: per task, the better of the sgd and adam columns ("sgd"/"adam";
  // absent when neither has a counted run).
  std::map<std::string, std::string> best_baseline;
  Provenance provenance;
  bool paper = false;  // render the paper's numbers beside ours
};

// Computes a report. FAILED_PRECONDITION names what the sweeps lack: an
// optimizer/lr (lr-sensitivity), sgd/adam/madam-at-0.01 runs (table1), or
// madam and int_madam-with-bits runs (table2), and the sweeps searched.
Result<Report> ComputeReport(ReportKind kind, const ReportInput& input,
                             const ReportOptions& options = {});

// Renders a computed report. INVALID_ARGUMENT for svg of a table.
Result<std::string> RenderReport(const Report& report, ReportFormat format);

// Figure 1 as SVG (what RenderReport does for lr-sensitivity + svg).
std::string RenderLrSensitivitySvg(const Report& report);

// The pieces other reports (server/claims.h) share with these.
Provenance MakeReportProvenance(const ReportInput& input);
std::vector<std::string> ReportProvenanceLines(const Provenance& provenance);
nlohmann::ordered_json ReportProvenanceJson(const Provenance& provenance);
// The stage a sweep's stored file declares (figure: 1, table: 1, ...).
SweepStage ReportSweepStage(const SweepRow& sweep);

// Load, compute and render in one call: what GetReport and the dashboard do.
struct RenderedReport {
  std::string content;
  std::string content_type;
};
Result<RenderedReport> MakeReport(Store& store, const std::vector<std::string>& sweep_ids,
                                  std::string_view kind, std::string_view format,
                                  const ReportOptions& options = {});
// The same from rows already loaded: what MakeReport does after
// LoadReportInput, and what `madamctl report --from-export` does with
// exported runs. Kind "claims" judges sign flips only for the runs `flips`
// names (an export carries final values, not series).
Result<RenderedReport> MakeReportFromInput(const ReportInput& input, std::string_view kind,
                                           std::string_view format,
                                           const ReportOptions& options = {},
                                           const std::map<std::string, double>& flips = {});

}  // namespace madam::server
