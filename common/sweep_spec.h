// SweepSpec: a sweep file (ARCHITECTURE.md section 4) parsed, validated and
// ready to expand into runs.
//
// There is one parser and validator. The coordinator calls ParseSweepSpec on
// the text a client sends (it trusts no client), stores the runs ExpandSweep
// returns, and answers `--dry-run` with CountRuns; the CLI may link the same
// code to check a file offline.
//
// Sweep files are untrusted input. ParseSweepSpec bounds every cost before it
// is paid: the file size is checked before parsing; YAML anchors and aliases
// are refused; nesting depth and the number of YAML nodes are bounded while
// yaml-cpp emits events, so the parser never recurses deeply; grid sizes are
// multiplied out (saturating) before anything is expanded. Every error says
// where it is: "FILE:LINE:COL: message" with 1-based positions, and the
// message names the key.
//
// Every function here is thread-compatible: no shared state; a SweepSpec is a
// plain value.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/run_config.h"
#include "common/status.h"

namespace madam {

// Caps on what one sweep file may cost. Going over max_bytes, max_nodes or
// max_runs is RESOURCE_EXHAUSTED; over max_depth is INVALID_ARGUMENT (no
// real sweep file nests that deep).
struct SweepLimits {
  size_t max_bytes = size_t{1} << 20;  // file size
  int max_depth = 32;                  // nesting of YAML maps and sequences
  size_t max_runs = 100000;            // grid cells x seeds
  size_t max_nodes = 200000;           // YAML scalars, maps and sequences
};

// A position in the sweep file, 1-based; 0 when unknown.
struct SourcePos {
  int line = 0;
  int col = 0;
};

// One value on a grid axis. A scalar axis sets one parameter, named after
// the axis; an axis of maps sets each entry's parameters at once.
struct AxisValue {
  // How reports name this value: the scalar itself ("0.001", "madam"), or
  // for a map entry its values joined by "/" in file order, using the fewest
  // leading values that tell the axis's entries apart ("madam",
  // "int_madam/12").
  std::string label;
  RunParams params;
  SourcePos pos;
};

struct Axis {
  std::string name;
  std::vector<AxisValue> values;  // never empty
  SourcePos pos;                  // of the axis name under grid:
};

// Which of the paper's reports a sweep feeds (its `figure:` / `table:` key),
// which sets its schedule rule (ARCHITECTURE.md section 4): Figure 1 runs a
// fixed eta; Tables 1 and 2 (and a sweep with neither key) the recipe's
// schedule.
enum class SweepStage { kNone, kFigure1, kTable1, kTable2 };
// "figure: 1", "table: 1", "table: 2"; "" for kNone.
std::string_view StageName(SweepStage stage);

struct SweepSpec {
  std::string name;
  std::string description;
  std::string task;         // empty when task is a grid axis
  std::string metric_name;  // default: the task's test metric
  std::string metric_goal;  // minimize | maximize
  // Parameters every run shares: task, epochs, batch_size and `params:`;
  // also `recipe: none` when the file says so, and for a Figure 1 sweep the
  // fixed eta written out (lr_schedule constant, warmup_epochs 0), so that
  // each stored run resolves (common/recipe.h) from its parameters alone.
  RunParams params;
  bool use_recipe = true;  // `recipe: paper` (default) or `recipe: none`
  SweepStage stage = SweepStage::kNone;
  // Cartesian product, in file order; the first axis varies slowest.
  std::vector<Axis> axes;
  std::vector<int64_t> seeds;  // default [0], distinct
  int64_t max_concurrent = 0;  // 0 = unlimited
  int64_t max_attempts = 3;
  std::string device = "any";  // any | cpu | cuda
};

struct ExpandedRun {
  int64_t index = 0;                          // 0 .. CountRuns() - 1
  RunParams params;                           // complete, seed included
  std::map<std::string, std::string> labels;  // axis name -> value label
};

// Parses and validates a sweep file. Errors are INVALID_ARGUMENT
// "FILE:LINE:COL: message", or RESOURCE_EXHAUSTED when the file or its grid
// is over `limits`. On success every run ExpandSweep yields resolves
// (ResolveRun with drop_inapplicable, common/recipe.h) without error, and
// every parameter the file sets applies to at least one of its runs.
Result<SweepSpec> ParseSweepSpec(std::string_view text, std::string_view filename,
                                 const SweepLimits& limits = {});

// Grid cells times seeds, saturating at SIZE_MAX.
size_t CountRuns(const SweepSpec& spec);

// Every run of the sweep, in a fixed order: seeds outermost (so the first
// pass covers every cell once), then the axes in file order with the last
// axis varying fastest. Indexes are positions in that order.
std::vector<ExpandedRun> ExpandSweep(const SweepSpec& spec);

}  // namespace madam
