// Promotion: the second stage of Figure 1 and Table 1 (ARCHITECTURE.md
// section 4, "Two stages"; PAPER_RECIPES.md "The two stages"). From the
// finished runs of a Figure 1 sweep it writes the Table 1 sweep file: per
// task (and per setting of any other axis), SGD and Adam at the lr whose mean
// final metric over seeds was best, Madam at lr 0.01 (never tuned), B-bit
// Madam cells as they were, fresh seeds, `table: 1` so the recipe's schedule
// applies. The result is an ordinary sweep file: madamd stores and expands
// it like a submitted one, and a user may edit and resubmit it.
//
// The selection rule (the paper's Figure 1 caption and Table 1): the metric
// is the sweep's, its goal the catalogue's (common/catalogue.h) where the
// catalogue knows the metric, else the sweep's; a run that diverged, failed,
// was cancelled or ended without a finite metric counts as the worst value
// (+inf when minimising), so one bad seed makes its lr's mean the worst;
// ties go to the smaller lr.
//
// Pure functions: rows in, text out; no Store, no gRPC. Thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "server/store.h"

namespace madam::server {

// Table 1 runs Madam here, untuned (the paper, section 5).
inline constexpr double kPromotedMadamLr = 0.01;

struct PromoteOptions {
  std::vector<int64_t> seeds = {0, 1, 2};
  std::string name;  // empty: from the parent's ("fig1-x" -> "table1-x", else "<name>-table1")
  // 0: the parent's epochs. A short Figure 1 (chosen to rank lrs cheaply)
  // may be shorter than the recipe's schedule needs (a milestone past its
  // last epoch); Table 1 then takes the recipe's length or this one.
  int64_t epochs = 0;
};

struct Promotion {
  std::string name;
  std::string spec_text;             // the Table 1 sweep file
  std::vector<std::string> reasons;  // one line per promoted cell, in cell order
  // What the user should know but that does not stop the promotion: seeds
  // the parent already ran (Table 1 would then repeat Figure 1's runs, not
  // test the chosen lrs on fresh ones).
  std::vector<std::string> warnings;
};

// Seeds for promote and extend: non-empty, each >= 0, no repeats.
// INVALID_ARGUMENT naming the offending value otherwise.
Status ValidateSeeds(const std::vector<int64_t>& seeds);

// The name a promotion of `parent` gets when the user gives none.
std::string DefaultPromotedName(const std::string& parent_name);

// Builds the Table 1 sweep file from `parent` and its runs (every run of
// the sweep). FAILED_PRECONDITION, naming the cause, when the parent is a
// Table 1 or Table 2 sweep, has no lr axis, still has pending or running
// runs (their ids are named), or has no sgd/adam runs; INVALID_ARGUMENT for
// bad seeds.
Result<Promotion> BuildPromotion(const SweepRow& parent, const std::vector<RunRow>& runs,
                                 const PromoteOptions& options);

}  // namespace madam::server
