#include "server/claims.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <set>
#include <sstream>

#include "common/catalogue.h"
#include "common/paper_results.h"

namespace madam::server {
namespace {

using Json = nlohmann::ordered_json;

constexpr double kMadamLr = 0.01;
constexpr double kPointMargin = 1.0;       // "within one point" (error %)
constexpr double kRelativeMargin = 0.05;   // for perplexity and FID outside the paper

bool SameLr(double a, double b) { return std::fabs(a - b) <= 1e-9 * std::max(std::fabs(a), std::fabs(b)); }

std::string Num(double v, int digits = 3) {
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.*g", digits, v);
  return buf;
}

std::string Join(const std::vector<std::string>& parts, const char* sep = "; ") {
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : sep) + p;
  return out;
}

// The input restricted to the sweeps `keep` accepts (none kept: empty).
ReportInput Only(const ReportInput& input, bool (*keep)(SweepStage)) {
  ReportInput out;
  out.workers = input.workers;
  out.build = input.build;
  for (const auto& s : input.sweeps) {
    if (keep(ReportSweepStage(s.sweep))) out.sweeps.push_back(s);
  }
  return out;
}

bool IsFigure1(SweepStage s) { return s == SweepStage::kFigure1; }
bool IsNotFigure1(SweepStage s) { return s != SweepStage::kFigure1; }

// Figure 1 from the Figure 1 sweeps when there are any, else from all.
Result<Report> Figure1(const ReportInput& input) {
  ReportInput fig = Only(input, IsFigure1);
  return ComputeReport(ReportKind::kLrSensitivity, fig.sweeps.empty() ? input : fig);
}

// Each (task, optimiser)'s best lrs, from a Figure 1 report: the lrs with
// value 1, for series with runs at two lrs or more.
std::map<std::string, std::map<std::string, std::vector<double>>> BestLrs(const Report& fig) {
  std::map<std::string, std::map<std::string, int>> lrs_seen;
  std::map<std::string, std::map<std::string, std::vector<double>>> best;
  for (const auto& r : fig.lr_rows) {
    if (r.seeds > 0) ++lrs_seen[r.task][r.optimizer];
  }
  for (const auto& r : fig.lr_rows) {
    if (r.seeds > 0 && r.value == 1 && lrs_seen[r.task][r.optimizer] >= 2) {
      best[r.task][r.optimizer].push_back(r.lr);
    }
  }
  return best;
}

std::string LrList(const std::vector<double>& lrs) {
  std::vector<std::string> parts;
  for (double lr : lrs) parts.push_back(Num(lr));
  return Join(parts, " and ");
}

Claim MadamBestLr(const Result<Report>& fig) {
  Claim c{"madam_best_lr", "Madam's best learning rate is 0.01 on every task (Figure 1)",
          Verdict::kNotEnoughRuns, "", "the paper: 0.01 on all five of its tasks"};
  if (!fig.ok()) {
    c.evidence = "no Figure 1 to read: " + fig.status().message();
    return c;
  }
  std::vector<std::string> evidence;
  int tasks = 0, at_default = 0;
  for (const auto& [task, by_opt] : BestLrs(*fig)) {
    auto it = by_opt.find("madam");
    if (it == by_opt.end()) continue;
    ++tasks;
    const bool hit = std::any_of(it->second.begin(), it->second.end(),
                                 [](double lr) { return SameLr(lr, kMadamLr); });
    at_default += hit;
    evidence.push_back(task + ": " + LrList(it->second));
  }
  if (tasks == 0) {
    c.evidence = "no task has Madam runs at two learning rates or more";
    return c;
  }
  c.verdict = at_default == tasks ? Verdict::kHolds : Verdict::kDoesNotHold;
  c.evidence = "Madam's best lr: " + Join(evidence);
  return c;
}

Claim BaselineLrMoves(const Result<Report>& fig) {
  Claim c{"baseline_lr_moves", "SGD's and Adam's best learning rates differ between tasks (Figure 1)",
          Verdict::kNotEnoughRuns, "",
          "the paper: SGD's best is 0.1 on the image tasks and 1.0 on WikiText-2; Adam's moves "
          "between 0.001 and 0.0001"};
  if (!fig.ok()) {
    c.evidence = "no Figure 1 to read: " + fig.status().message();
    return c;
  }
  const auto best = BestLrs(*fig);
  std::vector<std::string> evidence;
  int judged = 0, moving = 0;
  for (const auto& o : KnownOptimizers()) {
    if (!o.baseline) continue;
    const std::string opt(o.name);
    std::vector<std::string> per_task;
    std::set<double> lrs;
    for (const auto& [task, by_opt] : best) {
      auto it = by_opt.find(opt);
      if (it == by_opt.end()) continue;
      // A tie counts as its smallest lr, as Table 1 chooses.
      lrs.insert(*std::min_element(it->second.begin(), it->second.end()));
      per_task.push_back(task + " " + LrList(it->second));
    }
    if (per_task.size() < 2) continue;
    ++judged;
    moving += lrs.size() > 1;
    evidence.push_back(opt + ": " + Join(per_task, ", ") + (lrs.size() > 1 ? " (moves)" : " (the same)"));
  }
  if (judged == 0) {
    c.evidence = "no baseline has a best lr on two tasks or more";
    return c;
  }
  c.verdict = moving == judged ? Verdict::kHolds : Verdict::kDoesNotHold;
  c.evidence = Join(evidence);
  return c;
}

// Worse-is-positive difference for a metric with this goal.
double Gap(double madam, double other, bool minimize) { return minimize ? madam - other : other - madam; }

bool Minimized(const Report& r, const std::string& task) {
  auto it = r.task_metric.find(task);
  if (it == r.task_metric.end()) return true;
  return GoalOfMetric(it->second).value_or(MetricGoal::kMinimize) == MetricGoal::kMinimize;
}

const TableRow* Row(const Report& r, const std::string& task, const std::string& column) {
  for (const auto& row : r.table_rows) {
    if (row.task == task && row.column == column) return &row;
  }
  return nullptr;
}

// The paper's worst relative Table 1 gap (Madam against the better baseline).
double PaperWorstRelativeGap() {
  double worst = 0;
  for (const auto& t : KnownTasks()) {
    auto p = FindPaperTable1(t.name);
    if (p) worst = std::max(worst, (p->madam.mean - p->baseline_cell.mean) / p->baseline_cell.mean);
  }
  return worst;
}

Claim MadamWithinMargin(const ReportInput& input) {
  Claim c{"madam_within_margin",
          "Madam at lr 0.01, untuned, is within the paper's margin of the tuned baseline (Table 1)",
          Verdict::kNotEnoughRuns, "", ""};
  std::vector<std::string> paper;
  for (const auto& t : KnownTasks()) {
    if (auto p = FindPaperTable1(t.name)) {
      paper.push_back(std::string(t.name) + " " + Num(p->madam.mean) + " vs " + p->baseline + " " +
                      Num(p->baseline_cell.mean));
    }
  }
  c.paper = "the paper (Madam vs the better baseline): " + Join(paper);
  ReportInput stage2 = Only(input, IsNotFigure1);
  if (stage2.sweeps.empty()) {
    c.evidence = "Table 1 needs a promoted sweep (madamctl sweep promote); these are Figure 1 sweeps";
    return c;
  }
  auto t1 = ComputeReport(ReportKind::kTable1, stage2);
  if (!t1.ok()) {
    c.evidence = "no Table 1 to read: " + t1.status().message();
    return c;
  }
  std::vector<std::string> evidence;
  int judged = 0, within = 0;
  const double worst = PaperWorstRelativeGap();
  for (const auto& [task, baseline] : t1->best_baseline) {
    const TableRow* b = Row(*t1, task, baseline);
    const TableRow* m = Row(*t1, task, "madam");
    if (!b || !m || b->n == 0 || m->n == 0 || !std::isfinite(b->mean)) continue;
    const bool minimize = Minimized(*t1, task);
    const double ours = Gap(m->mean, b->mean, minimize);
    double margin;
    std::string margin_text;
    if (auto p = FindPaperTable1(task)) {
      margin = Gap(p->madam.mean, p->baseline_cell.mean, minimize);
      margin_text = "the paper's gap " + Num(margin);
    } else {
      margin = worst * std::fabs(b->mean);
      margin_text = "the paper's worst relative gap " + Num(100 * worst) + "% = " + Num(margin);
    }
    ++judged;
    const bool ok = ours <= margin + 1e-12;
    within += ok;
    evidence.push_back(task + ": Madam " + Num(m->mean) + " vs " + baseline + " " + Num(b->mean) +
                       " (gap " + Num(ours) + (ok ? " <= " : " > ") + margin_text + ")");
  }
  if (judged == 0) {
    c.evidence = "no task has both Madam at 0.01 and a tuned baseline with counted runs";
    return c;
  }
  c.verdict = within == judged ? Verdict::kHolds : Verdict::kDoesNotHold;
  c.evidence = Join(evidence);
  return c;
}

Claim Bits12NearFp32(const ReportInput& input) {
  Claim c{"bits12_near_fp32", "12-bit Madam is within one point (or the paper's gap) of FP32 Madam (Table 2)",
          Verdict::kNotEnoughRuns, "", ""};
  std::vector<std::string> paper;
  for (const auto& t : KnownTasks()) {
    auto f = FindPaperTable2(t.name, "fp32");
    auto b = FindPaperTable2(t.name, "12bit");
    if (f && b) paper.push_back(std::string(t.name) + " " + Num(f->mean) + " -> " + Num(b->mean));
  }
  c.paper = "the paper (FP32 -> 12-bit): " + Join(paper);
  auto t2 = ComputeReport(ReportKind::kTable2, input);
  if (!t2.ok()) {
    c.evidence = "no Table 2 to read: " + t2.status().message();
    return c;
  }
  std::vector<std::string> evidence;
  int judged = 0, within = 0;
  for (const auto& [task, metric] : t2->task_metric) {
    const TableRow* f = Row(*t2, task, "fp32");
    const TableRow* b = Row(*t2, task, "12bit");
    if (!f || !b || f->n == 0 || b->n == 0 || !std::isfinite(f->mean)) continue;
    const bool minimize = Minimized(*t2, task);
    const double ours = Gap(b->mean, f->mean, minimize);
    const bool percent = metric.find("error") != std::string::npos;
    double margin = percent ? kPointMargin : kRelativeMargin * std::fabs(f->mean);
    std::string margin_text = percent ? "one point" : Num(100 * kRelativeMargin) + "% of FP32";
    auto pf = FindPaperTable2(task, "fp32");
    auto pb = FindPaperTable2(task, "12bit");
    if (pf && pb) {
      const double paper_gap = Gap(pb->mean, pf->mean, minimize);
      if (!percent || paper_gap > margin) {
        margin = paper_gap;
        margin_text = "the paper's gap " + Num(paper_gap);
      }
    }
    ++judged;
    const bool ok = ours <= margin + 1e-12;
    within += ok;
    evidence.push_back(task + ": FP32 " + Num(f->mean) + ", 12-bit " + Num(b->mean) + " (gap " + Num(ours) +
                       (ok ? " <= " : " > ") + margin_text + ")");
  }
  if (judged == 0) {
    c.evidence = "no task has counted FP32 and 12-bit runs";
    return c;
  }
  c.verdict = within == judged ? Verdict::kHolds : Verdict::kDoesNotHold;
  c.evidence = Join(evidence);
  return c;
}

Claim SignsFixed(const ReportInput& input, const SignFlips& flips) {
  Claim c{"madam_signs_fixed", "Signs never flip under Madam and B-bit Madam (optim/sign_flips is 0)",
          Verdict::kNotEnoughRuns, "", "the paper: a multiplicative update cannot change a sign (section 4)"};
  int runs = 0, flipped = 0;
  std::vector<std::string> bad;
  for (const auto& s : input.sweeps) {
    for (const auto& r : s.runs) {
      auto it = flips.find(r.id);
      if (it == flips.end()) continue;
      ++runs;
      if (it->second > 0) {
        ++flipped;
        if (bad.size() < 5) bad.push_back(r.id + " (" + Num(it->second) + ")");
      }
    }
  }
  if (runs == 0) {
    c.evidence = "no Madam or B-bit Madam run has logged optim/sign_flips";
    return c;
  }
  c.verdict = flipped == 0 ? Verdict::kHolds : Verdict::kDoesNotHold;
  c.evidence = flipped == 0 ? "0 at every logged step of " + std::to_string(runs) + " runs"
                            : std::to_string(flipped) + " of " + std::to_string(runs) +
                                  " runs flipped signs: " + Join(bad, ", ");
  return c;
}

}  // namespace

const char* VerdictName(Verdict v) {
  switch (v) {
    case Verdict::kHolds: return "holds";
    case Verdict::kDoesNotHold: return "does not hold";
    case Verdict::kNotEnoughRuns: return "not enough runs";
  }
  return "";
}

std::vector<Claim> JudgeClaims(const ReportInput& input, const SignFlips& flips) {
  auto fig = Figure1(input);
  return {MadamBestLr(fig), BaselineLrMoves(fig), MadamWithinMargin(input), Bits12NearFp32(input),
          SignsFixed(input, flips)};
}

Result<std::string> RenderClaims(const std::vector<Claim>& claims, const Report& provenance_of,
                                 ReportFormat format, bool paper) {
  if (format == ReportFormat::kJson) {
    Json list = Json::array();
    for (const auto& c : claims) {
      Json j{{"id", c.id}, {"claim", c.statement}, {"verdict", VerdictName(c.verdict)},
             {"evidence", c.evidence}};
      if (paper) j["paper"] = c.paper;
      list.push_back(std::move(j));
    }
    Json doc{{"kind", "claims"}, {"claims", std::move(list)},
             {"provenance", ReportProvenanceJson(provenance_of.provenance)}};
    return doc.dump(2) + "\n";
  }
  if (format != ReportFormat::kMarkdown) {
    return Status::InvalidArgument(std::string("format: claims come as md or json, not ") +
                                   ReportFormatName(format));
  }
  std::ostringstream out;
  out << "## The paper's claims on these runs\n\n| claim | verdict | evidence |" << (paper ? " paper |" : "")
      << "\n|---|---|---|" << (paper ? "---|" : "") << "\n";
  auto cell = [](std::string text) {
    for (size_t i = 0; (i = text.find('|', i)) != std::string::npos; i += 2) text.replace(i, 1, "\\|");
    return text;
  };
  for (const auto& c : claims) {
    out << "| " << cell(c.statement) << " | **" << VerdictName(c.verdict) << "** | " << cell(c.evidence) << " |";
    if (paper) out << ' ' << cell(c.paper) << " |";
    out << '\n';
  }
  out << "\n**Provenance**\n\n";
  for (const auto& line : ReportProvenanceLines(provenance_of.provenance)) out << "- " << line << '\n';
  return out.str();
}

Result<RenderedReport> MakeClaimsReport(Store& store, const std::vector<std::string>& sweep_ids,
                                        ReportFormat format, bool paper) {
  if (format != ReportFormat::kMarkdown && format != ReportFormat::kJson) {
    return Status::InvalidArgument(std::string("format: claims come as md or json, not ") +
                                   ReportFormatName(format));
  }
  auto input = LoadReportInput(store, sweep_ids);
  if (!input.ok()) return input.status();
  SignFlips flips;
  for (const auto& s : input->sweeps) {
    for (const auto& r : s.runs) {
      auto opt = r.params.find("optimizer");
      const OptimizerInfo* info = opt == r.params.end() ? nullptr : FindOptimizer(opt->second.text);
      if (info == nullptr || !info->multiplicative) continue;
      auto points = store.GetMetrics(r.id, std::string("optim/sign_flips"));
      if (!points.ok() || points->empty()) continue;
      double most = 0;
      for (const auto& p : *points) most = std::max(most, p.value);
      flips[r.id] = most;
    }
  }
  return RenderClaimsReport(*input, flips, format, paper);
}

Result<RenderedReport> RenderClaimsReport(const ReportInput& input, const SignFlips& flips,
                                          ReportFormat format, bool paper) {
  if (format != ReportFormat::kMarkdown && format != ReportFormat::kJson) {
    return Status::InvalidArgument(std::string("format: claims come as md or json, not ") +
                                   ReportFormatName(format));
  }
  Report provenance;
  provenance.provenance = MakeReportProvenance(input);
  auto content = RenderClaims(JudgeClaims(input, flips), provenance, format, paper);
  if (!content.ok()) return content.status();
  return RenderedReport{std::move(*content), ReportContentType(format)};
}

}  // namespace madam::server
