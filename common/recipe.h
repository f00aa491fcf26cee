// Recipes: what the paper's authors actually ran, task by task and
// optimiser by optimiser (ARCHITECTURE.md section 6; the facts and their
// sources are in PAPER_RECIPES.md), and the one resolution of a run's
// parameters from them.
//
// A run's parameters resolve in layers: the paper's defaults (every
// parameter, each with its provenance), then the task's recipe for the
// run's optimiser (unless the run parameter `recipe` is none), then what the
// run's parameters set, then the schedule rule of a Figure 1 sweep (a fixed
// eta). Resolution depends on the parameters alone: madamd checks every grid
// cell with it at submit and stores each run's own parameters (with the
// sweep's `recipe:` and Figure 1 rule written into them, see
// common/sweep_spec.h); the worker resolves them the same way before it
// trains, and exports show the resolved set. `madam-worker train` and
// `madam-worker recipe` resolve with the same function.
//
// Every recipe value says whether it is confirmed (the reference: a file of
// the authors' code, jxbz/madam, or the paper) or assumed (and why).
// Constant data; every function is thread-safe.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/run_config.h"
#include "common/status.h"

namespace madam {

enum class Provenance { kConfirmed, kAssumed };

struct RecipeValue {
  std::string param;
  ParamValue value;
  Provenance provenance;
  // Confirmed: where, e.g. "pytorch/cifar/main.py". Assumed: why.
  std::string reference;
};

// Values for some of a task's optimisers.
struct RecipeRule {
  std::vector<std::string_view> optimizers;  // empty: every optimiser
  std::vector<RecipeValue> values;
};

struct TaskRecipe {
  std::string_view task;
  std::string note;  // one line on where the recipe comes from
  std::vector<RecipeRule> rules;  // applied in order; a later value wins
};

// The paper's defaults: one value per run parameter that has a default
// (every one but task and optimizer), with its provenance.
const std::vector<RecipeValue>& PaperDefaults();
// The recipe of a task, or nullptr (a task with no recipe runs the defaults).
const TaskRecipe* FindRecipe(std::string_view task);
// Every recipe, one per task of the catalogue.
const std::vector<TaskRecipe>& AllRecipes();

// How a sweep's `figure:` / `table:` key governs the schedule
// (ARCHITECTURE.md section 4).
enum class ScheduleRule {
  kRecipe,  // table 1 / table 2, or no key: the recipe's schedule
  kFixed,   // figure 1: a fixed eta, no decay and no warm-up (the figure's caption)
};

struct ResolveOptions {
  ScheduleRule schedule = ScheduleRule::kRecipe;
  // A given parameter that does not apply to the run's task or optimiser:
  // false fails (one run named on a command line); true leaves it out (a
  // grid cell of a sweep whose other cells use it; the sweep checks that
  // some cell does).
  bool drop_inapplicable = false;
};

struct ResolvedRun {
  RunConfig config;
  // Every parameter that applies to the run's task and optimiser.
  RunParams params;
  // For each of them, where its value came from: "set" (the sweep or the
  // command line), "confirmed: <reference>", "assumed: <why>", or the
  // schedule rule ("figure 1: fixed eta, no decay").
  std::map<std::string, std::string> sources;
};

// Resolves `given` (task and optimizer included; `recipe: none` skips the
// task's recipe) into a complete run. An
// error names the parameter at fault in its message and, when `bad_param`
// is given, there too (so a sweep file's error can point at its line):
// an unknown or ill-typed value, a parameter the task or optimiser does not
// have, a schedule parameter the schedule does not use, a schedule set under
// Figure 1's fixed eta, and every rule of RunConfigFromParams.
Result<ResolvedRun> ResolveRun(const RunParams& given, const ResolveOptions& options,
                               std::string* bad_param = nullptr);
// The same, the RunConfig only (no parameter map or sources): what checking a
// sweep's cells and a worker's training need.
Result<RunConfig> ResolveConfig(const RunParams& given, const ResolveOptions& options,
                                std::string* bad_param = nullptr);

// A stored run's parameters as its worker trains with them, every one
// (ResolveRun with drop_inapplicable): what exports, `run show` and the
// dashboard print. The stored parameters themselves when they do not
// resolve (a run stored by an older madamd).
RunParams ResolvedRunParams(const RunParams& stored);

}  // namespace madam
