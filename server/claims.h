// The claims scorecard: each claim of the paper judged on stored runs
// (`madamctl report claims`, ARCHITECTURE.md section 7), one line per claim
// with its evidence and a verdict. The rules are written once, here:
//
//   madam_best_lr      Madam's best lr is 0.01 on every task (Figure 1).
//                      Holds when 0.01 is among Madam's best lrs on every
//                      task with Madam at two lrs or more.
//   baseline_lr_moves  SGD's and Adam's best lrs differ between tasks
//                      (Figure 1). Holds when every baseline seen on two
//                      tasks or more has more than one best lr among them.
//   madam_within_margin  Madam at 0.01, untuned, is within the paper's own
//                      margin of the tuned baseline (Table 1): per task,
//                      ours = Madam - best baseline (sign by the metric's
//                      goal: positive is worse for Madam). The margin is the
//                      paper's gap on that task, or for a task outside the
//                      paper its worst relative gap (ImageNet's, 19.9%).
//                      Needs a Table 1 (promoted) sweep.
//   bits12_near_fp32   12-bit Madam is within one point (or the paper's
//                      gap, if larger) of FP32 Madam (Table 2). For
//                      metrics that are not percentages (perplexity, FID)
//                      the margin is the paper's gap on the task, else 5%.
//   madam_signs_fixed  Signs never flip under Madam or B-bit Madam:
//                      optim/sign_flips is 0 at every logged step.
//
// Verdicts: holds | does not hold | not enough runs (with why). Pure
// functions of the report input; thread-compatible.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "server/report.h"

namespace madam::server {

enum class Verdict { kHolds, kDoesNotHold, kNotEnoughRuns };
const char* VerdictName(Verdict v);  // "holds" | "does not hold" | "not enough runs"

struct Claim {
  std::string id;        // madam_best_lr, ...
  std::string statement;  // the claim, as the paper makes it
  Verdict verdict = Verdict::kNotEnoughRuns;
  std::string evidence;  // what the runs show (or why they cannot say)
  std::string paper;     // what the paper reports for it
};

// The largest optim/sign_flips value each run logged (by run id), for the
// runs of multiplicative optimisers; read by LoadClaimsInput.
using SignFlips = std::map<std::string, double>;

std::vector<Claim> JudgeClaims(const ReportInput& input, const SignFlips& flips);

// md (a table) or json ({"claims": [{"id", "claim", "verdict", "evidence",
// "paper"}], "provenance": {...}}); INVALID_ARGUMENT for other formats.
Result<std::string> RenderClaims(const std::vector<Claim>& claims, const Report& provenance_of,
                                 ReportFormat format, bool paper);

// Judge and render rows already loaded (`flips` as JudgeClaims takes them).
Result<RenderedReport> RenderClaimsReport(const ReportInput& input, const SignFlips& flips,
                                          ReportFormat format, bool paper);

// Load, judge and render: what GetReport does for kind "claims".
Result<RenderedReport> MakeClaimsReport(Store& store, const std::vector<std::string>& sweep_ids,
                                        ReportFormat format, bool paper);

}  // namespace madam::server
