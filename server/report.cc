#include "server/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <limits>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "common/catalogue.h"
#include "common/paper_results.h"
#include "common/recipe.h"
#include "common/sweep_spec.h"
#include "server/claims.h"
#include "server/svg_plot.h"

#ifndef MADAM_GIT_REVISION
#define MADAM_GIT_REVISION "unknown"
#endif
#ifndef MADAM_LIBTORCH_VERSION
#define MADAM_LIBTORCH_VERSION "unknown"
#endif

namespace madam::server {
namespace {

using Json = nlohmann::ordered_json;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kLrTolerance = 1e-9;  // relative
constexpr double kMadamDefaultLr = 0.01;
constexpr int kDefaultBits = 12;  // RunConfig's default when a run names none

bool SameLr(double a, double b) {
  return std::fabs(a - b) <= kLrTolerance * std::max(std::fabs(a), std::fabs(b));
}

// ---- reading runs -----------------------------------------------------------

enum class Outcome { kCounted, kDiverged, kMissing };

// One run as a report sees it.
struct Sample {
  std::string task;
  std::string optimizer;
  bool has_lr = false;
  double lr = 0;
  bool has_bits = false;
  int bits = 0;
  bool minimize = true;
  Outcome outcome = Outcome::kMissing;
  double value = 0;  // the final metric (counted), +-inf (diverged)
  RunState state = RunState::kPending;
};

std::string ParamText(const RunParams& params, const char* name) {
  auto it = params.find(name);
  if (it == params.end()) return "";
  return it->second.is_number() ? it->second.ToString() : it->second.text;
}

bool ParamNumber(const RunParams& params, const char* name, double* out) {
  auto it = params.find(name);
  if (it == params.end() || !it->second.is_number()) return false;
  *out = it->second.number;
  return true;
}

Sample ReadSample(const SweepRow& sweep, const RunRow& run) {
  Sample s;
  // The parameters the run trained with: its recipe's lr and bits where its
  // sweep left them to the recipe.
  const RunParams params = ResolvedRunParams(run.params);
  s.task = ParamText(params, "task");
  if (s.task.empty()) s.task = "(no task)";
  s.optimizer = ParamText(params, "optimizer");
  s.has_lr = ParamNumber(params, "lr", &s.lr);
  double bits = 0;
  if (ParamNumber(params, "bits", &bits)) {
    s.has_bits = true;
    s.bits = static_cast<int>(bits);
  }
  s.minimize = sweep.metric_goal != "maximize";
  s.state = run.state;
  const double worst = s.minimize ? kInf : -kInf;
  if (run.state == RunState::kDiverged) {
    s.outcome = Outcome::kDiverged;
    s.value = worst;
  } else if (run.state == RunState::kSucceeded) {
    auto it = run.final.find(sweep.metric_name);
    if (it == run.final.end()) {
      s.outcome = Outcome::kMissing;
    } else if (!std::isfinite(it->second)) {
      s.outcome = Outcome::kDiverged;  // a non-finite final metric is a divergence
      s.value = worst;
    } else {
      s.outcome = Outcome::kCounted;
      s.value = it->second;
    }
  }
  return s;
}

void CountMissing(const Sample& s, MissingRuns* m) {
  switch (s.state) {
    case RunState::kPending: ++m->pending; break;
    case RunState::kRunning: ++m->running; break;
    case RunState::kFailed: ++m->failed; break;
    case RunState::kCancelled: ++m->cancelled; break;
    default: ++m->no_metric; break;  // succeeded without the metric
  }
}

// Mean, half range and counts over the samples of one cell.
struct CellStats {
  int n = 0;
  int diverged = 0;
  double mean = kNaN;
  double half_range = kNaN;
  double min = kNaN, max = kNaN;
  MissingRuns missing;
};

CellStats Aggregate(const std::vector<const Sample*>& samples) {
  CellStats c;
  double sum = 0, lo = kInf, hi = -kInf;
  for (const Sample* s : samples) {
    if (s->outcome == Outcome::kMissing) {
      CountMissing(*s, &c.missing);
      continue;
    }
    ++c.n;
    if (s->outcome == Outcome::kDiverged) ++c.diverged;
    sum += s->value;
    lo = std::min(lo, s->value);
    hi = std::max(hi, s->value);
  }
  if (c.n > 0) {
    c.mean = sum / c.n;  // +-inf when a seed diverged
    c.half_range = c.diverged > 0 ? kInf : (hi - lo) / 2;
    c.min = lo;
    c.max = hi;
  }
  return c;
}

// True when `a` is a better metric value than `b`.
bool Better(double a, double b, bool minimize) { return minimize ? a < b : a > b; }

// Optimisers in the catalogue's (the paper's) order, then any other by
// name. A series name may carry a suffix: "int_madam/12".
int OptimizerRank(const std::string& name) {
  const std::string base = name.substr(0, name.find('/'));
  const auto& known = KnownOptimizers();
  for (size_t i = 0; i < known.size(); ++i) {
    if (known[i].name == base) return static_cast<int>(i);
  }
  return static_cast<int>(known.size());
}

// B-bit Madam (stores integer levels: a Table 2 width column).
bool UsesBits(const std::string& optimizer) {
  const OptimizerInfo* o = FindOptimizer(optimizer);
  return o != nullptr && o->uses_bits;
}

// FP32 Madam: multiplicative, weights as floats (Table 1's untuned column,
// Table 2's baseline).
bool IsFp32Madam(const std::string& optimizer) {
  const OptimizerInfo* o = FindOptimizer(optimizer);
  return o != nullptr && o->multiplicative && !o->uses_bits;
}

bool OptimizerLess(const std::string& a, const std::string& b) {
  int ra = OptimizerRank(a), rb = OptimizerRank(b);
  if (ra != rb) return ra < rb;
  return a < b;
}

// Samples grouped by task (in order of first appearance).
struct TaskSamples {
  std::string task;
  std::vector<const Sample*> samples;
};

std::vector<TaskSamples> GroupByTask(const std::vector<Sample>& samples) {
  std::vector<TaskSamples> out;
  for (const Sample& s : samples) {
    auto it = std::find_if(out.begin(), out.end(), [&](const TaskSamples& t) { return t.task == s.task; });
    if (it == out.end()) {
      out.push_back({s.task, {}});
      it = out.end() - 1;
    }
    it->samples.push_back(&s);
  }
  return out;
}

// Samples with an lr, grouped by lr (ascending, equal within tolerance).
std::vector<std::pair<double, std::vector<const Sample*>>> GroupByLr(
    const std::vector<const Sample*>& samples) {
  std::vector<const Sample*> sorted;
  for (const Sample* s : samples) {
    if (s->has_lr) sorted.push_back(s);
  }
  std::stable_sort(sorted.begin(), sorted.end(), [](const Sample* a, const Sample* b) { return a->lr < b->lr; });
  std::vector<std::pair<double, std::vector<const Sample*>>> out;
  for (const Sample* s : sorted) {
    if (out.empty() || !SameLr(out.back().first, s->lr)) out.push_back({s->lr, {}});
    out.back().second.push_back(s);
  }
  return out;
}

std::string SweepList(const ReportInput& input) {
  std::string out;
  for (const ReportSweep& s : input.sweeps) out += (out.empty() ? "" : ", ") + s.sweep.id;
  return (input.sweeps.size() == 1 ? "sweep " : "sweeps ") + out;
}

std::string CountsText(const RunCounts& c) {
  std::string out = std::to_string(c.total()) + " runs";
  std::string parts;
  auto add = [&](int64_t v, const char* name) {
    if (v > 0) parts += (parts.empty() ? "" : ", ") + std::to_string(v) + " " + name;
  };
  add(c.succeeded, "succeeded");
  add(c.diverged, "diverged");
  add(c.failed, "failed");
  add(c.cancelled, "cancelled");
  add(c.running, "running");
  add(c.pending, "pending");
  return parts.empty() ? out : out + ": " + parts;
}

RunCounts CountRuns(const std::vector<RunRow>& runs) {
  RunCounts c;
  for (const RunRow& r : runs) {
    switch (r.state) {
      case RunState::kPending: ++c.pending; break;
      case RunState::kRunning: ++c.running; break;
      case RunState::kSucceeded: ++c.succeeded; break;
      case RunState::kDiverged: ++c.diverged; break;
      case RunState::kFailed: ++c.failed; break;
      case RunState::kCancelled: ++c.cancelled; break;
    }
  }
  return c;
}

Provenance MakeProvenance(const ReportInput& input) {
  Provenance p;
  std::set<std::string> devices;
  for (const ReportSweep& s : input.sweeps) {
    SweepProvenance sp;
    sp.id = s.sweep.id;
    sp.name = s.sweep.name;
    sp.metric = s.sweep.metric_name + " (" + (s.sweep.metric_goal.empty() ? "minimize" : s.sweep.metric_goal) + ")";
    sp.counts = CountRuns(s.runs);
    p.counts.pending += sp.counts.pending;
    p.counts.running += sp.counts.running;
    p.counts.succeeded += sp.counts.succeeded;
    p.counts.diverged += sp.counts.diverged;
    p.counts.failed += sp.counts.failed;
    p.counts.cancelled += sp.counts.cancelled;
    p.sweeps.push_back(std::move(sp));
    for (const RunRow& r : s.runs) {
      if (r.lease_worker.empty()) continue;
      auto w = input.workers.find(r.lease_worker);
      devices.insert(w != input.workers.end() && !w->second.device.empty() ? w->second.device
                                                                             : "unknown");
    }
  }
  p.devices.assign(devices.begin(), devices.end());
  p.git_revision = input.build.git_revision.empty() ? "unknown" : input.build.git_revision;
  p.libtorch_version = input.build.libtorch_version.empty() ? "unknown" : input.build.libtorch_version;
  // A worker that reports its LibTorch ("... libtorch X.Y.Z") outranks the
  // build's own version: the workers, not madamd, ran the runs.
  std::set<std::string> worker_torch;
  for (const auto& [id, w] : input.workers) {
    auto at = w.info.find("libtorch ");
    if (at == std::string::npos) continue;
    std::string v = w.info.substr(at + 9);
    v = v.substr(0, v.find_first_of(" ,;)"));
    if (!v.empty()) worker_torch.insert(v);
  }
  if (!worker_torch.empty()) {
    std::string joined;
    for (const std::string& v : worker_torch) joined += (joined.empty() ? "" : ", ") + v;
    p.libtorch_version = joined + " (workers)";
  }
  return p;
}

// Every sweep whose succeeded runs all lack its metric: the metric is missing,
// not merely late.
Status CheckMetricPresent(const ReportInput& input) {
  for (const ReportSweep& s : input.sweeps) {
    int succeeded = 0, with_metric = 0;
    std::set<std::string> seen;
    for (const RunRow& r : s.runs) {
      if (r.state != RunState::kSucceeded) continue;
      ++succeeded;
      if (r.final.count(s.sweep.metric_name)) ++with_metric;
      for (const auto& [name, v] : r.final) seen.insert(name);
    }
    if (succeeded > 0 && with_metric == 0) {
      std::string names;
      for (const std::string& n : seen) names += (names.empty() ? "" : ", ") + n;
      return Status::FailedPrecondition("metric " + s.sweep.metric_name + ": none of the " +
                                        std::to_string(succeeded) + " succeeded runs of sweep " +
                                        s.sweep.id + " reported it (they report: " +
                                        (names.empty() ? "nothing" : names) + ")");
    }
  }
  return Status::Ok();
}

// ---- the three reports --------------------------------------------------------

Result<Report> ComputeLrSensitivity(const ReportInput& input, const std::vector<Sample>& samples) {
  Report report;
  report.kind = ReportKind::kLrSensitivity;
  bool any_lr_axis = false;
  int with_optimizer_and_lr = 0;
  for (const TaskSamples& task : GroupByTask(samples)) {
    std::map<std::string, std::vector<const Sample*>, bool (*)(const std::string&, const std::string&)>
        by_opt(OptimizerLess);
    for (const Sample* s : task.samples) {
      if (s->optimizer.empty() || !s->has_lr) continue;
      ++with_optimizer_and_lr;
      std::string series = s->optimizer;
      if (UsesBits(s->optimizer)) series += "/" + std::to_string(s->has_bits ? s->bits : kDefaultBits);
      by_opt[series].push_back(s);
    }
    for (const auto& [opt, opt_samples] : by_opt) {
      auto lrs = GroupByLr(opt_samples);
      if (lrs.size() > 1) any_lr_axis = true;
      const bool minimize = opt_samples.front()->minimize;
      std::vector<LrSensitivityRow> rows;
      double best = kNaN;
      for (const auto& [lr, cell] : lrs) {
        CellStats c = Aggregate(cell);
        LrSensitivityRow row;
        row.task = task.task;
        row.optimizer = opt;
        row.lr = lr;
        row.err = c.mean;
        row.seeds = c.n;
        row.diverged = c.diverged;
        row.missing = c.missing;
        if (c.n > 0 && (std::isnan(best) || Better(c.mean, best, minimize))) best = c.mean;
        rows.push_back(row);
      }
      for (LrSensitivityRow& row : rows) {
        if (row.seeds == 0) {
          row.value = kNaN;
        } else if (!std::isfinite(row.err)) {
          row.value = 0;  // diverged
        } else if (row.err == best) {
          row.value = 1;  // ties all get exactly 1
        } else if (minimize) {
          row.value = row.err == 0 ? 1 : best / row.err;
        } else {
          row.value = best == 0 ? 0 : row.err / best;
        }
        report.lr_rows.push_back(row);
      }
    }
    report.task_metric.emplace(task.task, "");
  }
  if (with_optimizer_and_lr == 0) {
    return Status::FailedPrecondition(
        "lr-sensitivity needs runs with optimizer and lr parameters; " + SweepList(input) +
        " has none");
  }
  if (!any_lr_axis) {
    return Status::FailedPrecondition(
        "lr-sensitivity needs an lr axis (several learning rates per optimizer); every optimizer "
        "of " + SweepList(input) + " ran at a single lr");
  }
  return report;
}

// The row of a column at lr group `chosen` (a row without runs when `lrs` is
// empty).
TableRow MakeColumnRow(const std::string& task, const std::string& column,
                       const std::vector<std::pair<double, std::vector<const Sample*>>>& lrs,
                       size_t chosen) {
  TableRow row;
  row.task = task;
  row.column = column;
  if (lrs.empty()) {
    row.lr = kNaN;
    row.mean = kNaN;
    row.half_range = kNaN;
    row.min = row.max = kNaN;
    return row;
  }
  CellStats c = Aggregate(lrs[chosen].second);
  row.lr = lrs[chosen].first;
  row.mean = c.mean;
  row.half_range = c.half_range;
  row.min = c.min;
  row.max = c.max;
  row.n = c.n;
  row.diverged = c.diverged;
  row.missing = c.missing;
  return row;
}

// The lr group with the best mean (ties: the smaller lr); if none has a
// counted run, the first.
size_t BestLrIndex(const std::vector<std::pair<double, std::vector<const Sample*>>>& lrs) {
  size_t best = 0;
  double best_mean = kNaN;
  for (size_t i = 0; i < lrs.size(); ++i) {
    CellStats c = Aggregate(lrs[i].second);
    if (c.n == 0) continue;
    const bool minimize = lrs[i].second.front()->minimize;
    if (std::isnan(best_mean) || Better(c.mean, best_mean, minimize)) {
      best = i;
      best_mean = c.mean;
    }
  }
  return best;
}

// The lr group nearest `target` in log space.
size_t NearestLrIndex(const std::vector<std::pair<double, std::vector<const Sample*>>>& lrs,
                      double target) {
  size_t best = 0;
  double dist = kInf;
  for (size_t i = 0; i < lrs.size(); ++i) {
    double d = lrs[i].first > 0 ? std::fabs(std::log(lrs[i].first / target)) : kInf;
    if (d < dist) {
      dist = d;
      best = i;
    }
  }
  return best;
}

std::vector<const Sample*> WithOptimizer(const std::vector<const Sample*>& samples, const std::string& opt) {
  std::vector<const Sample*> out;
  for (const Sample* s : samples) {
    if (s->optimizer == opt) out.push_back(s);
  }
  return out;
}

// The stage a sweep's file declares (its figure:/table: key).
SweepStage StageOf(const SweepRow& sweep) {
  auto spec = ParseSweepSpec(sweep.spec_text, sweep.name);
  return spec.ok() ? spec->stage : SweepStage::kNone;
}

Result<Report> ComputeTable1(const ReportInput& input, const std::vector<Sample>& samples) {
  // Table 1 is the second stage (ARCHITECTURE.md section 4): the runs that
  // chose each baseline's lr must not also report its result.
  bool all_figure1 = !input.sweeps.empty();
  for (const ReportSweep& s : input.sweeps) all_figure1 = all_figure1 && StageOf(s.sweep) == SweepStage::kFigure1;
  if (all_figure1) {
    std::string ids, commands;
    for (const ReportSweep& s : input.sweeps) {
      ids += (ids.empty() ? "" : ", ") + s.sweep.id;
      commands += (commands.empty() ? "" : "; ") + ("madamctl sweep promote " + s.sweep.id);
    }
    return Status::FailedPrecondition(
        "table1 needs a promoted sweep: " + ids + (input.sweeps.size() == 1 ? " is a" : " are") +
        " Figure 1 sweep" + (input.sweeps.size() == 1 ? "" : "s") +
        " (figure: 1), whose runs choose each baseline's lr; Table 1 reruns each baseline at its "
        "best lr and Madam at 0.01 with fresh seeds and the recipe's schedule. Make it with: " +
        commands);
  }
  Report report;
  report.kind = ReportKind::kTable1;
  bool any_baseline = false, any_madam_default = false;
  std::set<double> madam_lrs;
  auto tasks = GroupByTask(samples);
  for (const TaskSamples& task : tasks) {
    const size_t first_baseline = report.table_rows.size();
    for (const auto& o : KnownOptimizers()) {
      if (!o.baseline) continue;
      const std::string opt(o.name);
      auto lrs = GroupByLr(WithOptimizer(task.samples, opt));
      if (!lrs.empty()) any_baseline = true;
      report.table_rows.push_back(MakeColumnRow(task.task, opt, lrs, lrs.empty() ? 0 : BestLrIndex(lrs)));
    }
    const size_t end_baseline = report.table_rows.size();
    auto madam = GroupByLr(WithOptimizer(task.samples, "madam"));
    std::vector<std::pair<double, std::vector<const Sample*>>> at_default;
    for (const auto& group : madam) {
      madam_lrs.insert(group.first);
      if (SameLr(group.first, kMadamDefaultLr)) at_default.push_back(group);
    }
    if (!at_default.empty()) any_madam_default = true;
    TableRow madam_row = MakeColumnRow(task.task, "madam", at_default, 0);
    if (at_default.empty()) madam_row.lr = kMadamDefaultLr;
    report.table_rows.push_back(madam_row);
    report.task_metric.emplace(task.task, "");

    // The better of the baselines (the first of them on a tie).
    const bool minimize = task.samples.front()->minimize;
    const TableRow* best = nullptr;
    for (size_t i = first_baseline; i < end_baseline; ++i) {
      const TableRow& row = report.table_rows[i];
      if (row.n > 0 && (best == nullptr || Better(row.mean, best->mean, minimize))) best = &row;
    }
    if (best != nullptr) report.best_baseline[task.task] = best->column;
  }
  if (!any_baseline) {
    return Status::FailedPrecondition("table1 needs sgd or adam runs (an optimizer axis with sgd/adam "
                                      "and an lr axis); " + SweepList(input) + " has none");
  }
  if (!any_madam_default) {
    std::string lrs;
    for (double lr : madam_lrs) lrs += (lrs.empty() ? "" : ", ") + ParamValue::Number(lr).ToString();
    return Status::FailedPrecondition(
        "table1 needs madam runs at lr 0.01; " + SweepList(input) +
        (madam_lrs.empty() ? std::string(" has no madam runs") : " has madam only at lr " + lrs));
  }
  return report;
}

Result<Report> ComputeTable2(const ReportInput& input, const std::vector<Sample>& samples) {
  Report report;
  report.kind = ReportKind::kTable2;
  std::set<int, std::greater<int>> widths;
  bool any_fp32 = false;
  for (const Sample& s : samples) {
    if (UsesBits(s.optimizer)) widths.insert(s.has_bits ? s.bits : kDefaultBits);
    if (IsFp32Madam(s.optimizer)) any_fp32 = true;
  }
  if (widths.empty()) {
    return Status::FailedPrecondition("table2 needs runs of int_madam with a bits parameter; " +
                                      SweepList(input) + " has none");
  }
  if (!any_fp32) {
    return Status::FailedPrecondition("table2 needs FP32 runs (optimizer madam) to compare the bit "
                                      "widths against; " + SweepList(input) + " has none");
  }
  for (const TaskSamples& task : GroupByTask(samples)) {
    auto fp32 = GroupByLr(WithOptimizer(task.samples, "madam"));
    report.table_rows.push_back(
        MakeColumnRow(task.task, "fp32", fp32, fp32.empty() ? 0 : NearestLrIndex(fp32, kMadamDefaultLr)));
    for (int bits : widths) {
      std::vector<const Sample*> of_width;
      for (const Sample* s : task.samples) {
        if (UsesBits(s->optimizer) && (s->has_bits ? s->bits : kDefaultBits) == bits) of_width.push_back(s);
      }
      auto lrs = GroupByLr(of_width);
      report.table_rows.push_back(MakeColumnRow(task.task, std::to_string(bits) + "bit", lrs,
                                                lrs.empty() ? 0 : NearestLrIndex(lrs, kMadamDefaultLr)));
    }
    report.task_metric.emplace(task.task, "");
  }
  return report;
}

// ---- formatting -------------------------------------------------------------

// Shortest text that reads back as the same double.
std::string Exact(double v) {
  if (std::isnan(v)) return "";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[40];
  // Integers print whole ("10", not "1e+01"); other values in the fewest
  // significant digits that round-trip.
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    std::snprintf(buf, sizeof buf, "%.0f", v);
    return buf;
  }
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof buf, "%.*g", precision, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  return buf;
}

std::string Fixed(double v, int decimals) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

std::string LrText(double lr) {
  if (std::isnan(lr)) return "—";
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.3g", lr);
  return buf;
}

Json JsonNumber(double v) {
  if (std::isnan(v)) return nullptr;
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  return v;
}

std::string CsvField(const std::string& field) {
  if (field.find_first_of(",\"\n\r") == std::string::npos) return field;
  std::string out = "\"";
  for (char c : field) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string LatexEscape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '_': case '%': case '&': case '#': case '$': case '{': case '}':
        out += '\\';
        out += c;
        break;
      case '\\': out += "\\textbackslash{}"; break;
      case '~': out += "\\textasciitilde{}"; break;
      case '^': out += "\\textasciicircum{}"; break;
      default: out += c;
    }
  }
  return out;
}

std::vector<std::string> ProvenanceLines(const Provenance& p) {
  std::vector<std::string> lines;
  for (const SweepProvenance& s : p.sweeps) {
    lines.push_back("sweep " + s.id + " \"" + s.name + "\", metric " + s.metric + ": " + CountsText(s.counts));
  }
  if (p.sweeps.size() > 1) lines.push_back("all sweeps: " + CountsText(p.counts));
  std::string devices;
  for (const std::string& d : p.devices) devices += (devices.empty() ? "" : ", ") + d;
  lines.push_back("git revision " + p.git_revision + "; LibTorch " + p.libtorch_version +
                  "; device " + (devices.empty() ? "none (no run was leased)" : devices));
  return lines;
}

Json ProvenanceJson(const Provenance& p) {
  Json sweeps = Json::array();
  auto counts = [](const RunCounts& c) {
    return Json{{"pending", c.pending},     {"running", c.running}, {"succeeded", c.succeeded},
                {"diverged", c.diverged},   {"failed", c.failed},   {"cancelled", c.cancelled},
                {"total", c.total()}};
  };
  for (const SweepProvenance& s : p.sweeps) {
    sweeps.push_back(Json{{"id", s.id}, {"name", s.name}, {"metric", s.metric}, {"counts", counts(s.counts)}});
  }
  return Json{{"sweeps", std::move(sweeps)},
              {"counts", counts(p.counts)},
              {"git_revision", p.git_revision},
              {"libtorch_version", p.libtorch_version},
              {"devices", p.devices}};
}

// The paper's number for a table cell of ours, for the paper's tasks.
std::optional<PaperCell> PaperCellFor(const Report& report, const std::string& task,
                                      const std::string& column) {
  if (report.kind == ReportKind::kTable1) {
    auto t = FindPaperTable1(task);
    if (!t) return std::nullopt;
    if (column == t->baseline) return t->baseline_cell;
    if (column == "madam") return t->madam;
    return std::nullopt;
  }
  if (report.kind == ReportKind::kTable2) return FindPaperTable2(task, column);
  return std::nullopt;
}

// The paper's Figure 1 at one lr: its error and value (best / error, as
// ours; the paper's metrics are all minimised). False when it has none.
bool PaperLrPoint(const std::string& task, const std::string& optimizer, double lr, double* err,
                  double* value) {
  auto curve = PaperFigure1(task, optimizer);
  double best = kInf;
  bool found = false;
  for (const auto& p : curve) {
    best = std::min(best, p.metric);
    if (SameLr(p.lr, lr)) {
      *err = p.metric;
      found = true;
    }
  }
  if (found) *value = best / *err;
  return found;
}

std::string PaperCellText(const PaperCell& c, bool latex) {
  return Fixed(c.mean, 1) + (latex ? " $\\pm$ " : " ± ") + Fixed(c.plus_minus, 1);
}

std::string DiffText(double ours, double paper) {
  if (!std::isfinite(ours)) return "—";
  const double d = ours - paper;
  return (d >= 0 ? "+" : "") + Fixed(d, 2);
}

std::string MissingNote(const MissingRuns& m) {
  return m.total() == 0 ? "" : "missing: " + m.ToString();
}

// "12.34 ± 0.56" for a table cell, with n, diverged and missing notes.
std::string CellText(const TableRow& r, bool with_lr, bool latex) {
  std::string pm = latex ? " $\\pm$ " : " ± ";
  std::string text;
  if (r.n == 0) {
    text = latex ? "--" : "—";
  } else if (r.diverged > 0) {
    text = "diverged (" + std::to_string(r.diverged) + " of " + std::to_string(r.n) + ")";
  } else {
    text = Fixed(r.mean, 2) + pm + Fixed(r.half_range, 2) + " [" + Fixed(r.min, 2) + ", " +
           Fixed(r.max, 2) + "]";
  }
  std::vector<std::string> notes;
  if (with_lr && !std::isnan(r.lr)) notes.push_back("lr " + LrText(r.lr));
  notes.push_back("n=" + std::to_string(r.n));
  if (r.missing.total() > 0) notes.push_back(MissingNote(r.missing));
  if (r.n == 0 && r.missing.total() == 0) notes.push_back("no runs");
  std::string joined;
  for (const std::string& n : notes) joined += (joined.empty() ? "" : ", ") + n;
  return text + " (" + joined + ")";
}

std::string LrCellText(const LrSensitivityRow& r, bool latex) {
  std::string text;
  if (r.seeds == 0) {
    text = latex ? "--" : "—";
  } else if (r.diverged > 0) {
    text = "0 (diverged)";
  } else {
    text = Fixed(r.value, 3) + " (" + Fixed(r.err, 2) + ")";
    if (r.value == 1 && !latex) text = "**" + text + "**";  // RenderLatex bolds after escaping
  }
  std::vector<std::string> notes;
  if (r.missing.total() > 0) {
    notes.push_back("n=" + std::to_string(r.seeds));
    notes.push_back(MissingNote(r.missing));
  }
  if (!notes.empty()) {
    std::string joined;
    for (const std::string& n : notes) joined += (joined.empty() ? "" : ", ") + n;
    text += " [" + joined + "]";
  }
  return text;
}

// The tasks and the series of an lr-sensitivity report, in row order.
std::vector<std::string> TasksOf(const Report& report) {
  std::vector<std::string> tasks;
  auto add = [&](const std::string& t) {
    if (std::find(tasks.begin(), tasks.end(), t) == tasks.end()) tasks.push_back(t);
  };
  for (const auto& r : report.lr_rows) add(r.task);
  for (const auto& r : report.table_rows) add(r.task);
  return tasks;
}

std::vector<std::string> SeriesOf(const Report& report, const std::string& task) {
  std::vector<std::string> out;
  for (const auto& r : report.lr_rows) {
    if (r.task == task && std::find(out.begin(), out.end(), r.optimizer) == out.end()) out.push_back(r.optimizer);
  }
  return out;
}

std::vector<double> LrsOf(const Report& report, const std::string& task) {
  std::vector<double> lrs;
  for (const auto& r : report.lr_rows) {
    if (r.task != task) continue;
    if (std::none_of(lrs.begin(), lrs.end(), [&](double x) { return SameLr(x, r.lr); })) lrs.push_back(r.lr);
  }
  std::sort(lrs.begin(), lrs.end());
  return lrs;
}

const LrSensitivityRow* FindLrRow(const Report& report, const std::string& task, const std::string& opt,
                                  double lr) {
  for (const auto& r : report.lr_rows) {
    if (r.task == task && r.optimizer == opt && SameLr(r.lr, lr)) return &r;
  }
  return nullptr;
}

const TableRow* FindTableRow(const Report& report, const std::string& task, const std::string& column) {
  for (const auto& r : report.table_rows) {
    if (r.task == task && r.column == column) return &r;
  }
  return nullptr;
}

std::vector<std::string> ColumnsOf(const Report& report) {
  std::vector<std::string> cols;
  for (const auto& r : report.table_rows) {
    if (std::find(cols.begin(), cols.end(), r.column) == cols.end()) cols.push_back(r.column);
  }
  if (report.kind == ReportKind::kTable2) {
    // fp32 first, then the widths from the widest down.
    auto width = [](const std::string& c) { return c == "fp32" ? 1000 : std::atoi(c.c_str()); };
    std::stable_sort(cols.begin(), cols.end(),
                     [&](const std::string& a, const std::string& b) { return width(a) > width(b); });
  }
  return cols;
}

std::string ColumnTitle(const Report& report, const std::string& column) {
  if (report.kind == ReportKind::kTable1) {
    if (column == "sgd") return "SGD (best lr)";
    if (column == "adam") return "Adam (best lr)";
    if (column == "madam") return "Madam (lr 0.01)";
  }
  if (column == "fp32") return "FP32 Madam";
  if (column.size() > 3 && column.compare(column.size() - 3, 3, "bit") == 0) {
    return column.substr(0, column.size() - 3) + "-bit Madam";
  }
  return column;
}

const char* KindTitle(ReportKind kind) {
  switch (kind) {
    case ReportKind::kLrSensitivity:
      return "Figure 1: learning-rate sensitivity (value = best error / error; 1 marks the best lr)";
    case ReportKind::kTable1:
      return "Table 1: tuned SGD and Adam against Madam at lr 0.01 (mean ± half range over seeds)";
    case ReportKind::kTable2:
      return "Table 2: FP32 Madam against B-bit Madam (mean ± half range over seeds)";
  }
  return "";
}

std::string RenderMarkdown(const Report& report) {
  std::ostringstream out;
  out << "## " << KindTitle(report.kind) << "\n\n";
  if (report.kind == ReportKind::kLrSensitivity) {
    for (const std::string& task : TasksOf(report)) {
      const auto series = SeriesOf(report, task);
      // With --paper: a column of the paper's value (error) per optimiser
      // that the paper has on this task.
      std::vector<std::string> paper_series;
      if (report.paper) {
        for (const auto& s : series) {
          if (!PaperFigure1(task, s).empty()) paper_series.push_back(s);
        }
      }
      out << "### " << task << " (" << report.task_metric.at(task) << ")\n\n| lr |";
      for (const auto& s : series) out << ' ' << s << " |";
      for (const auto& s : paper_series) out << ' ' << s << " (paper) |";
      out << "\n|---|";
      for (size_t i = 0; i < series.size() + paper_series.size(); ++i) out << "---|";
      out << '\n';
      for (double lr : LrsOf(report, task)) {
        out << "| " << LrText(lr) << " |";
        for (const auto& s : series) {
          const LrSensitivityRow* r = FindLrRow(report, task, s, lr);
          out << ' ' << (r ? LrCellText(*r, false) : "") << " |";
        }
        for (const auto& s : paper_series) {
          double err = 0, value = 0;
          out << ' ' << (PaperLrPoint(task, s, lr, &err, &value)
                              ? Fixed(value, 3) + " (" + Fixed(err, 2) + ")"
                              : std::string("—"))
              << " |";
        }
        out << '\n';
      }
      out << "\nBest lr:";
      bool first = true;
      for (const auto& s : series) {
        std::string best;
        for (const auto& r : report.lr_rows) {
          if (r.task == task && r.optimizer == s && r.value == 1) best += (best.empty() ? "" : " and ") + LrText(r.lr);
        }
        out << (first ? " " : "; ") << s << " " << (best.empty() ? "—" : best);
        first = false;
      }
      out << ".\n\n";
    }
    out << "Cells: value (mean final metric over seeds); **bold** = best lr; a diverged run "
           "counts as +inf (value 0).\n\n";
  } else {
    const auto columns = ColumnsOf(report);
    out << "| task | metric |";
    for (const auto& c : columns) out << ' ' << ColumnTitle(report, c) << " |";
    out << "\n|---|---|";
    for (size_t i = 0; i < columns.size(); ++i) out << "---|";
    out << '\n';
    for (const std::string& task : TasksOf(report)) {
      out << "| " << task << " | " << report.task_metric.at(task) << " |";
      auto best = report.best_baseline.find(task);
      for (const auto& c : columns) {
        const TableRow* r = FindTableRow(report, task, c);
        std::string cell = r ? CellText(*r, report.kind == ReportKind::kTable1 && c != "madam", false) : "";
        if (best != report.best_baseline.end() && best->second == c) cell = "**" + cell + "**";
        out << ' ' << cell << " |";
      }
      out << '\n';
      if (report.paper) {
        std::string paper_row, diff_row;
        bool any = false;
        for (const auto& c : columns) {
          auto p = PaperCellFor(report, task, c);
          const TableRow* r = FindTableRow(report, task, c);
          any = any || p.has_value();
          paper_row += ' ' + (p ? PaperCellText(*p, false) : std::string("—")) + " |";
          diff_row += ' ' + (p && r && r->n > 0 ? DiffText(r->mean, p->mean) : std::string("—")) + " |";
        }
        if (any) {
          auto t1 = report.kind == ReportKind::kTable1 ? FindPaperTable1(task) : std::nullopt;
          out << "| " << task << " (paper" << (t1 ? ", " + t1->baseline + " at lr " + LrText(t1->baseline_lr) : "")
              << ") | |" << paper_row << "\n| " << task << " (ours - paper) | |" << diff_row << '\n';
        }
      }
    }
    out << '\n';
    if (report.paper) {
      out << "Paper rows: the published numbers (Bernstein et al., NeurIPS 2020, Tables 1 and 2; their "
             "\"±\" is range-based); ours - paper compares means.\n\n";
    }
    if (report.kind == ReportKind::kTable1) {
      out << "**Bold**: the better of SGD and Adam at their best lr, the baseline Madam is compared with.\n\n";
    }
  }
  out << "**Provenance**\n\n";
  for (const std::string& line : ProvenanceLines(report.provenance)) out << "- " << line << '\n';
  return out.str();
}

std::string RenderCsv(const Report& report) {
  // Plain CSV: the header, then the rows. Provenance and missing runs are in
  // the md, json and latex forms, never here.
  std::ostringstream out;
  if (report.kind == ReportKind::kLrSensitivity) {
    out << "task,optimizer,lr,err,value,seeds" << (report.paper ? ",paper_err,paper_value" : "") << '\n';
    for (const auto& r : report.lr_rows) {
      out << CsvField(r.task) << ',' << CsvField(r.optimizer) << ',' << Exact(r.lr) << ',' << Exact(r.err)
          << ',' << Exact(r.value) << ',' << r.seeds;
      if (report.paper) {
        double err = kNaN, value = kNaN;
        PaperLrPoint(r.task, r.optimizer, r.lr, &err, &value);
        out << ',' << Exact(err) << ',' << Exact(value);
      }
      out << '\n';
    }
  } else {
    out << "task,column,lr,mean,half_range,n" << (report.paper ? ",paper_mean,paper_plus_minus,diff" : "")
        << '\n';
    for (const auto& r : report.table_rows) {
      out << CsvField(r.task) << ',' << CsvField(r.column) << ',' << Exact(r.lr) << ',' << Exact(r.mean)
          << ',' << Exact(r.half_range) << ',' << r.n;
      if (report.paper) {
        auto p = PaperCellFor(report, r.task, r.column);
        out << ',' << (p ? Exact(p->mean) : "") << ',' << (p ? Exact(p->plus_minus) : "") << ','
            << (p && r.n > 0 ? Exact(r.mean - p->mean) : "");
      }
      out << '\n';
    }
  }
  return out.str();
}

std::string RenderJson(const Report& report) {
  Json rows = Json::array();
  auto missing = [](const MissingRuns& m) {
    return Json{{"pending", m.pending}, {"running", m.running}, {"failed", m.failed},
                {"cancelled", m.cancelled}, {"no_metric", m.no_metric}};
  };
  for (const auto& r : report.lr_rows) {
    Json row{{"task", r.task}, {"optimizer", r.optimizer}, {"lr", JsonNumber(r.lr)},
             {"err", JsonNumber(r.err)}, {"value", JsonNumber(r.value)}, {"seeds", r.seeds},
             {"diverged", r.diverged}, {"missing", missing(r.missing)}};
    if (report.paper) {
      double err = 0, value = 0;
      row["paper"] = PaperLrPoint(r.task, r.optimizer, r.lr, &err, &value)
                         ? Json{{"err", err}, {"value", value}}
                         : Json(nullptr);
    }
    rows.push_back(std::move(row));
  }
  for (const auto& r : report.table_rows) {
    Json row{{"task", r.task}, {"column", r.column}, {"lr", JsonNumber(r.lr)},
             {"mean", JsonNumber(r.mean)}, {"half_range", JsonNumber(r.half_range)},
             {"min", JsonNumber(r.min)}, {"max", JsonNumber(r.max)}, {"n", r.n},
             {"diverged", r.diverged}, {"missing", missing(r.missing)}};
    if (report.paper) {
      auto p = PaperCellFor(report, r.task, r.column);
      row["paper"] = p ? Json{{"mean", p->mean}, {"plus_minus", p->plus_minus}} : Json(nullptr);
      row["diff"] = p && r.n > 0 ? JsonNumber(r.mean - p->mean) : Json(nullptr);
    }
    rows.push_back(std::move(row));
  }
  Json metrics = Json::object();
  for (const auto& [task, metric] : report.task_metric) metrics[task] = metric;
  Json doc{{"kind", ReportKindName(report.kind)}, {"metrics", std::move(metrics)}, {"rows", std::move(rows)}};
  if (report.kind == ReportKind::kTable1) doc["best_baseline"] = report.best_baseline;
  doc["provenance"] = ProvenanceJson(report.provenance);
  return doc.dump(2) + "\n";
}

std::string RenderLatex(const Report& report) {
  std::ostringstream out;
  out << "% " << KindTitle(report.kind) << "\n";
  if (report.kind == ReportKind::kLrSensitivity) {
    for (const std::string& task : TasksOf(report)) {
      const auto series = SeriesOf(report, task);
      out << "% " << LatexEscape(task) << " (" << LatexEscape(report.task_metric.at(task)) << ")\n";
      out << "\\begin{tabular}{l" << std::string(series.size(), 'c') << "}\n\\hline\n$\\eta$";
      for (const auto& s : series) out << " & " << LatexEscape(s);
      out << " \\\\\n\\hline\n";
      for (double lr : LrsOf(report, task)) {
        out << LrText(lr);
        for (const auto& s : series) {
          const LrSensitivityRow* r = FindLrRow(report, task, s, lr);
          std::string cell = r ? LatexEscape(LrCellText(*r, true)) : "";
          if (r && r->seeds > 0 && r->value == 1) cell = "\\textbf{" + cell + "}";
          out << " & " << cell;
        }
        out << " \\\\\n";
      }
      out << "\\hline\n\\end{tabular}\n";
    }
  } else {
    const auto columns = ColumnsOf(report);
    out << "\\begin{tabular}{ll" << std::string(columns.size(), 'c') << "}\n\\hline\nTask & Metric";
    for (const auto& c : columns) out << " & " << LatexEscape(ColumnTitle(report, c));
    out << " \\\\\n\\hline\n";
    for (const std::string& task : TasksOf(report)) {
      out << LatexEscape(task) << " & " << LatexEscape(report.task_metric.at(task));
      auto best = report.best_baseline.find(task);
      for (const auto& c : columns) {
        const TableRow* r = FindTableRow(report, task, c);
        std::string cell = r ? CellText(*r, report.kind == ReportKind::kTable1 && c != "madam", true) : "";
        // CellText's own LaTeX ($\pm$, --) must survive; escape only the rest.
        std::string escaped;
        for (size_t i = 0; i < cell.size();) {
          if (cell.compare(i, 7, " $\\pm$ ") == 0) {
            escaped += " $\\pm$ ";
            i += 7;
          } else {
            escaped += LatexEscape(std::string(1, cell[i]));
            ++i;
          }
        }
        if (best != report.best_baseline.end() && best->second == c) escaped = "\\textbf{" + escaped + "}";
        out << " & " << escaped;
      }
      out << " \\\\\n";
      if (report.paper) {
        std::string paper_row, diff_row;
        bool any = false;
        for (const auto& c : columns) {
          auto p = PaperCellFor(report, task, c);
          const TableRow* r = FindTableRow(report, task, c);
          any = any || p.has_value();
          paper_row += " & " + (p ? PaperCellText(*p, true) : std::string("--"));
          diff_row += " & " + (p && r && r->n > 0 ? DiffText(r->mean, p->mean) : std::string("--"));
        }
        if (any) {
          out << "\\quad paper &" << paper_row << " \\\\\n\\quad ours $-$ paper &" << diff_row
              << " \\\\\n";
        }
      }
    }
    out << "\\hline\n\\end{tabular}\n";
  }
  for (const std::string& line : ProvenanceLines(report.provenance)) out << "% provenance: " << line << '\n';
  return out.str();
}

}  // namespace

// ---- public ------------------------------------------------------------------

std::string MissingRuns::ToString() const {
  std::string out;
  auto add = [&](int v, const char* name) {
    if (v > 0) out += (out.empty() ? "" : ", ") + std::to_string(v) + " " + name;
  };
  add(pending, "pending");
  add(running, "running");
  add(failed, "failed");
  add(cancelled, "cancelled");
  add(no_metric, "without the metric");
  return out;
}

Result<ReportKind> ParseReportKind(std::string_view name) {
  if (name == "lr-sensitivity") return ReportKind::kLrSensitivity;
  if (name == "table1") return ReportKind::kTable1;
  if (name == "table2") return ReportKind::kTable2;
  return Status::InvalidArgument("kind: unknown report \"" + std::string(name) +
                                 "\"; valid kinds: lr-sensitivity, table1, table2, claims");
}

Result<ReportFormat> ParseReportFormat(std::string_view name) {
  if (name.empty() || name == "md") return ReportFormat::kMarkdown;
  if (name == "csv") return ReportFormat::kCsv;
  if (name == "json") return ReportFormat::kJson;
  if (name == "latex") return ReportFormat::kLatex;
  if (name == "svg") return ReportFormat::kSvg;
  return Status::InvalidArgument("format: unknown format \"" + std::string(name) +
                                 "\"; valid formats: md, csv, json, latex, svg");
}

const char* ReportKindName(ReportKind kind) {
  switch (kind) {
    case ReportKind::kLrSensitivity: return "lr-sensitivity";
    case ReportKind::kTable1: return "table1";
    case ReportKind::kTable2: return "table2";
  }
  return "";
}

const char* ReportFormatName(ReportFormat format) {
  switch (format) {
    case ReportFormat::kMarkdown: return "md";
    case ReportFormat::kCsv: return "csv";
    case ReportFormat::kJson: return "json";
    case ReportFormat::kLatex: return "latex";
    case ReportFormat::kSvg: return "svg";
  }
  return "";
}

const char* ReportContentType(ReportFormat format) {
  switch (format) {
    case ReportFormat::kMarkdown: return "text/markdown; charset=utf-8";
    case ReportFormat::kCsv: return "text/csv; charset=utf-8";
    case ReportFormat::kJson: return "application/json";
    case ReportFormat::kLatex: return "application/x-latex; charset=utf-8";
    case ReportFormat::kSvg: return "image/svg+xml";
  }
  return "text/plain";
}

Provenance MakeReportProvenance(const ReportInput& input) { return MakeProvenance(input); }
std::vector<std::string> ReportProvenanceLines(const Provenance& p) { return ProvenanceLines(p); }
nlohmann::ordered_json ReportProvenanceJson(const Provenance& p) { return ProvenanceJson(p); }
SweepStage ReportSweepStage(const SweepRow& sweep) { return StageOf(sweep); }

BuildInfo BuildInfo::Current() { return BuildInfo{MADAM_GIT_REVISION, MADAM_LIBTORCH_VERSION}; }

Result<ReportInput> LoadReportInput(Store& store, const std::vector<std::string>& sweep_ids) {
  if (sweep_ids.empty()) return Status::InvalidArgument("sweep_ids: name at least one sweep");
  ReportInput input;
  input.build = BuildInfo::Current();
  std::set<std::string> seen;
  std::set<std::string> worker_ids;
  for (const std::string& id : sweep_ids) {
    if (id.empty()) return Status::InvalidArgument("sweep_ids: an empty sweep id");
    if (!seen.insert(id).second) continue;
    auto sweep = store.GetSweep(id);
    if (!sweep.ok()) return sweep.status();
    auto runs = store.ListRuns(id);
    if (!runs.ok()) return runs.status();
    for (const RunRow& r : *runs) {
      if (!r.lease_worker.empty()) worker_ids.insert(r.lease_worker);
    }
    input.sweeps.push_back(ReportSweep{std::move(*sweep), std::move(*runs)});
  }
  for (const std::string& id : worker_ids) {
    auto worker = store.GetWorker(id);
    if (worker.ok()) input.workers.emplace(id, std::move(*worker));
  }
  return input;
}

Result<Report> ComputeReport(ReportKind kind, const ReportInput& input, const ReportOptions& options) {
  if (input.sweeps.empty()) return Status::InvalidArgument("sweep_ids: name at least one sweep");
  MADAM_RETURN_IF_ERROR(CheckMetricPresent(input));
  std::vector<Sample> samples;
  std::map<std::string, std::string> metric_of_task;
  for (const ReportSweep& s : input.sweeps) {
    for (const RunRow& r : s.runs) {
      samples.push_back(ReadSample(s.sweep, r));
      metric_of_task.emplace(samples.back().task, s.sweep.metric_name);
    }
  }
  Result<Report> report = Status::Internal("unreachable");
  switch (kind) {
    case ReportKind::kLrSensitivity: report = ComputeLrSensitivity(input, samples); break;
    case ReportKind::kTable1: report = ComputeTable1(input, samples); break;
    case ReportKind::kTable2: report = ComputeTable2(input, samples); break;
  }
  if (!report.ok()) return report;
  for (auto& [task, metric] : report->task_metric) metric = metric_of_task[task];
  report->provenance = MakeProvenance(input);
  report->paper = options.paper;
  if (options.paper && kind == ReportKind::kTable2) {
    // Every width the paper has, so its row shows whole beside ours.
    std::vector<TableRow> rows;
    for (const auto& [task, metric] : report->task_metric) {
      (void)metric;
      for (const std::string& column : PaperTable2Columns()) {
        bool present = false;
        for (const auto& r : report->table_rows) present = present || (r.task == task && r.column == column);
        if (present || !FindPaperTable2(task, column)) continue;
        TableRow empty;
        empty.task = task;
        empty.column = column;
        empty.lr = empty.mean = empty.half_range = empty.min = empty.max = kNaN;
        rows.push_back(empty);
      }
    }
    report->table_rows.insert(report->table_rows.end(), rows.begin(), rows.end());
  }
  return report;
}

std::string RenderLrSensitivitySvg(const Report& report) {
  std::vector<PlotPanel> panels;
  for (const std::string& task : TasksOf(report)) {
    PlotPanel panel;
    panel.title = task + " (" + report.task_metric.at(task) + ")";
    for (const std::string& opt : SeriesOf(report, task)) {
      PlotSeries series;
      series.name = opt;
      for (const auto& r : report.lr_rows) {
        if (r.task != task || r.optimizer != opt) continue;
        if (r.value == 1) series.marked.push_back(series.points.size());
        series.points.push_back(PlotPoint{r.lr, r.value});  // NaN (missing): a gap
      }
      panel.series.push_back(std::move(series));
      // The paper's curve (its Figure 1, the same value), dashed in the
      // same colour.
      auto curve = report.paper ? PaperFigure1(task, opt) : std::vector<PaperFigure1Point>{};
      if (!curve.empty()) {
        PlotSeries paper;
        paper.name = opt + " (paper)";
        paper.dashed = true;
        paper.colour_of = opt;
        for (auto it = curve.rbegin(); it != curve.rend(); ++it) {
          double err = 0, value = 0;
          PaperLrPoint(task, opt, it->lr, &err, &value);
          paper.points.push_back(PlotPoint{it->lr, value});
        }
        panel.series.push_back(std::move(paper));
      }
    }
    panels.push_back(std::move(panel));
  }
  LinePlotOptions options;
  options.title = "Learning-rate sensitivity (Figure 1)";
  options.x_label = "learning rate";
  options.y_label = "best error / error";
  options.log_x = true;
  options.y_min = 0;
  options.y_max = 1;
  options.marker_class = "best";
  options.marker_legend = "best lr";
  options.footer = ProvenanceLines(report.provenance);
  for (const auto& r : report.lr_rows) {
    if (r.missing.total() > 0) {
      options.footer.insert(options.footer.begin(), "missing runs are gaps or partial means; see the md/csv report");
      break;
    }
  }
  return RenderLinePlot(panels, options);
}

Result<std::string> RenderReport(const Report& report, ReportFormat format) {
  switch (format) {
    case ReportFormat::kMarkdown: return RenderMarkdown(report);
    case ReportFormat::kCsv: return RenderCsv(report);
    case ReportFormat::kJson: return RenderJson(report);
    case ReportFormat::kLatex: return RenderLatex(report);
    case ReportFormat::kSvg:
      if (report.kind != ReportKind::kLrSensitivity) {
        return Status::InvalidArgument(std::string("format: svg is only for lr-sensitivity; ") +
                                       ReportKindName(report.kind) + " supports md, csv, json, latex");
      }
      return RenderLrSensitivitySvg(report);
  }
  return Status::InvalidArgument("format: unknown");
}

Result<RenderedReport> MakeReport(Store& store, const std::vector<std::string>& sweep_ids,
                                  std::string_view kind_name, std::string_view format_name,
                                  const ReportOptions& options) {
  if (kind_name == "claims") {
    auto format = ParseReportFormat(format_name);
    if (!format.ok()) return format.status();
    return MakeClaimsReport(store, sweep_ids, *format, options.paper);
  }
  auto input = LoadReportInput(store, sweep_ids);
  if (!input.ok()) return input.status();
  return MakeReportFromInput(*input, kind_name, format_name, options);
}

Result<RenderedReport> MakeReportFromInput(const ReportInput& input, std::string_view kind_name,
                                           std::string_view format_name,
                                           const ReportOptions& options,
                                           const std::map<std::string, double>& flips) {
  auto format = ParseReportFormat(format_name);
  if (!format.ok()) return format.status();
  if (kind_name == "claims") return RenderClaimsReport(input, flips, *format, options.paper);
  auto kind = ParseReportKind(kind_name);
  if (!kind.ok()) return kind.status();
  if (*format == ReportFormat::kSvg && *kind != ReportKind::kLrSensitivity) {
    return Status::InvalidArgument(std::string("format: svg is only for lr-sensitivity; ") +
                                   ReportKindName(*kind) + " supports md, csv, json, latex");
  }
  auto report = ComputeReport(*kind, input, options);
  if (!report.ok()) return report.status();
  auto content = RenderReport(*report, *format);
  if (!content.ok()) return content.status();
  return RenderedReport{std::move(*content), ReportContentType(*format)};
}

}  // namespace madam::server
