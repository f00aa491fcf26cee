// RunConfig: the typed parameters of one run (ARCHITECTURE.md section 4),
// and the catalogue of tasks and optimisers a worker has compiled in.
//
// One definition serves every side: the coordinator validates each expanded
// grid cell with RunConfigFromParams before storing it, and the worker parses
// the same parameters before training. Torch-free; plain values.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace madam {

// A run parameter's value as a sweep file or the wire carries it.
struct ParamValue {
  enum class Kind { kNumber, kString };
  Kind kind = Kind::kNumber;
  double number = 0;
  std::string text;

  static ParamValue Number(double v) { return {Kind::kNumber, v, {}}; }
  static ParamValue String(std::string s) { return {Kind::kString, 0, std::move(s)}; }
  bool is_number() const { return kind == Kind::kNumber; }
  // Numbers print in their shortest round-tripping form ("0.01", "3").
  std::string ToString() const;
  friend bool operator==(const ParamValue& a, const ParamValue& b) {
    return a.kind == b.kind && a.number == b.number && a.text == b.text;
  }
};

// Ordered by name, so a run's parameters print and hash the same everywhere.
using RunParams = std::map<std::string, ParamValue>;

struct TaskInfo {
  std::string_view name;
  std::string_view metric;      // the test metric reports use: test/error or test/perplexity
  std::string_view description;
};

// Every task and optimiser a worker can run. A sweep naming anything else is
// rejected at submit.
const std::vector<TaskInfo>& KnownTasks();
const std::vector<std::string_view>& KnownOptimizers();  // sgd adam madam int_madam
const TaskInfo* FindTask(std::string_view name);
bool IsKnownOptimizer(std::string_view name);
// Every parameter name RunConfigFromParams accepts.
const std::vector<std::string_view>& KnownRunParams();

struct RunConfig {
  std::string task;
  std::string optimizer;
  double lr = 0.01;
  int64_t epochs = 3;
  int64_t batch_size = 128;
  int64_t seed = 0;
  // sgd
  double momentum = 0.9;
  double weight_decay = 0.0;
  // madam / int_madam (paper defaults)
  double beta = 0.999;
  double g_bound = 10.0;
  double p_scale = 3.0;
  // int_madam
  int64_t bits = 12;
  double base_lr = 0.001;  // eta0; lr / base_lr is the lr_factor
  std::string init = "uniform";  // uniform | nearest
  // learning-rate decay on a plateau of the test metric
  std::string lr_decay = "plateau";  // plateau | none
  double lr_decay_factor = 10.0;     // lr <- lr / factor
  int64_t lr_decay_patience = 2;     // epochs without improvement before a decay
  // Multiplicative optimisers cannot move a zero bias: biases start here
  // (with a random sign per unit) for madam and int_madam. 0 keeps the
  // model's own initialisation.
  double bias_init = 0.01;
  // Fault injection for tests: fail the run with an error at this global step
  // (-1: never). Not a paper parameter.
  int64_t fail_at_step = -1;
  // Hold for tests: on attempt `pause_attempt` (0: every attempt) the run
  // stops making progress when it reaches global step `pause_at_step` (-1:
  // never) and waits there, heartbeating, until it is stopped (a cancel, a
  // lost lease, a signal). Lets a test act on a run that is certainly
  // running without depending on how long training takes. Not a paper
  // parameter.
  int64_t pause_at_step = -1;
  int64_t pause_attempt = 1;
};

// Builds a RunConfig from named parameters, applying paper defaults where a
// parameter is absent. Rejects unknown names, wrong types and out-of-range
// values with a message naming the parameter and its value. `task` and
// `optimizer` are required.
Result<RunConfig> RunConfigFromParams(const RunParams& params);

// The inverse: every parameter, defaults included, numbers as numbers.
RunParams RunConfigToParams(const RunConfig& config);

}  // namespace madam
