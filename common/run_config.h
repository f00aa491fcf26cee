// RunConfig: the typed parameters of one run (ARCHITECTURE.md sections 4
// and 6).
//
// One definition serves every side: the coordinator resolves each expanded
// grid cell (common/recipe.h) and checks it with RunConfigFromParams before
// storing it, and the worker parses the same parameters before training.
// Torch-free; plain values.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/catalogue.h"
#include "common/status.h"

namespace madam {

// A run parameter's value as a sweep file or the wire carries it: a number,
// a name, or a list of numbers (lr_milestones, normalize_mean).
struct ParamValue {
  enum class Kind { kNumber, kString, kList };
  Kind kind = Kind::kNumber;
  double number = 0;
  std::string text;
  std::vector<double> list;

  static ParamValue Number(double v) { return {Kind::kNumber, v, {}, {}}; }
  static ParamValue String(std::string s) { return {Kind::kString, 0, std::move(s), {}}; }
  static ParamValue List(std::vector<double> v) { return {Kind::kList, 0, {}, std::move(v)}; }
  bool is_number() const { return kind == Kind::kNumber; }
  bool is_string() const { return kind == Kind::kString; }
  bool is_list() const { return kind == Kind::kList; }
  // Numbers print in their shortest round-tripping form ("0.01", "3");
  // lists as "[100, 200]".
  std::string ToString() const;
  friend bool operator==(const ParamValue& a, const ParamValue& b) {
    return a.kind == b.kind && a.number == b.number && a.text == b.text && a.list == b.list;
  }
  friend bool operator!=(const ParamValue& a, const ParamValue& b) { return !(a == b); }
};

// Ordered by name, so a run's parameters print and hash the same everywhere.
using RunParams = std::map<std::string, ParamValue>;

// What is known about one run parameter besides how to read it.
struct RunParamInfo {
  std::string_view name;
  // The TaskFeature a task needs for the parameter to mean anything; 0: every task.
  uint32_t feature = 0;
  // The optimisers it means something for; empty: every optimiser.
  std::vector<std::string_view> optimizers;
  // Part of the learning-rate schedule (ARCHITECTURE.md section 6): Figure 1
  // sweeps may not set it.
  bool schedule = false;
  // A fault-injection hook for tests; left out of a run's parameters while
  // it has its default value.
  bool test_only = false;
  // Left out of a run's parameters while it has its default value (a
  // parameter added after runs were stored without it).
  bool omit_default = false;
};

// Every parameter name RunConfigFromParams accepts, and its facts.
// The most devices (data-parallel ranks) one run may train on.
constexpr int64_t kMaxRunDevices = 64;

const std::vector<std::string_view>& KnownRunParams();
const RunParamInfo* FindRunParam(std::string_view name);
// Whether `param` means anything for a run of `task` with `optimizer`.
bool ParamApplies(const RunParamInfo& param, const TaskInfo& task, const OptimizerInfo& optimizer);

struct RunConfig {
  std::string task;
  std::string optimizer;
  // paper: the task's recipe fills what the run leaves unset; none: the
  // paper's defaults only (common/recipe.h).
  std::string recipe = "paper";
  double lr = 0.01;
  int64_t epochs = 3;
  int64_t batch_size = 128;
  int64_t seed = 0;
  // sgd (and weight_decay for adam)
  double momentum = 0.0;
  double weight_decay = 0.0;
  // adam
  double adam_beta1 = 0.9;
  double adam_beta2 = 0.999;
  double adam_eps = 1e-8;
  // madam / int_madam
  double beta = 0.999;
  double g_bound = 10.0;
  double p_scale = 3.0;
  // int_madam
  int64_t bits = 12;
  double base_lr = 0.001;  // eta0; lr / base_lr is the initial lr_factor
  std::string init = "uniform";  // uniform | nearest
  // A decay divides int_madam's lr_factor by this (floored at 1 by the
  // optimiser) where the other optimisers divide lr by lr_decay_factor.
  double lr_factor_decay = 10.0;
  // Gradient-norm clipping before every step (0: off).
  double grad_clip = 0.0;
  // The learning-rate schedule (ARCHITECTURE.md section 6).
  std::string lr_schedule = "constant";  // constant | step | plateau
  std::vector<int64_t> lr_milestones;    // step: epochs after which lr /= lr_decay_factor
  double lr_decay_factor = 10.0;
  int64_t warmup_epochs = 0;  // linear warm-up over the first epochs, per step
  int64_t lr_decay_patience = 2;  // plateau: epochs without a better validation metric
  double lr_min = 0.0;            // plateau: never below
  // Training examples held out for validation (never trained on).
  int64_t val_split = 0;
  // last | best_val: which epoch's model the final test metrics come from.
  std::string model_selection = "last";
  // Initialisation rules (ARCHITECTURE.md section 6: multiplicative
  // optimisers cannot move a zero): every bias re-drawn from N(0, std), and
  // every all-zero tensor re-drawn from N(0, std); "keep" leaves the model's
  // own initialisation.
  std::string bias_init = "keep";  // keep | normal
  double bias_init_std = 0.01;
  std::string zero_init = "keep";  // keep | normal
  double zero_init_std = 0.2;
  // BatchNorm with learnable scale and shift.
  bool bn_affine = true;
  // CIFAR augmentation and normalisation.
  int64_t crop_padding = 4;      // random crop after zero (black) padding; 0: none
  bool hflip = true;             // random horizontal flip
  double rotation_degrees = 0;   // random rotation in [-d, d]; 0: none
  // Per-channel mean and std of the inputs (CIFAR-10's, as the authors'
  // code has them, unless a recipe says otherwise).
  std::vector<double> normalize_mean = {0.4914, 0.4822, 0.4465};
  std::vector<double> normalize_std = {0.2023, 0.1994, 0.2010};
  // Transformer language model.
  int64_t emsize = 200;
  int64_t nhid = 200;
  int64_t nlayers = 2;
  int64_t nhead = 2;
  double dropout = 0.2;
  int64_t bptt = 35;
  int64_t eval_batch_size = 10;
  // JPEG image folders (ImageNet): the side of the square crop the network
  // sees; the validation resize is image_size * 256 / 224.
  int64_t image_size = 224;
  // The class-conditional GAN (ARCHITECTURE.md section 6): the width of
  // both networks' residual blocks; the self-attention block's output gain
  // at initialisation (0 would be a weight a multiplicative optimiser can
  // never move); FID over fid_samples generated images against as many
  // training images, after every fid_every epochs and after the last.
  int64_t gan_channels = 256;
  double attention_gain_init = 0.0;
  int64_t fid_samples = 10000;
  int64_t fid_every = 10;
  // Per-layer telemetry (layer/<tensor>/... metrics, ARCHITECTURE.md
  // section 6): this many evenly spaced steps an epoch; 0: none.
  int64_t layer_stats_per_epoch = 4;
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
  // Data parallelism (ARCHITECTURE.md section 6): the run trains on this
  // many devices of one worker, one rank each, batch_size examples per rank
  // per step (the authors' "100 per GPU"). Left out of a run's parameters
  // at 1, so single-device runs read as they always have.
  int64_t devices = 1;
  // Fault injection for tests, with fail_at_step: the rank that fails (the
  // others then fail with it), and the attempt it fails on (0: every
  // attempt). With pause_at_step, the rank that pauses: a rank other than 0
  // has no stop hook and never resumes (a hung rank). Not paper parameters.
  int64_t fault_rank = 0;
  int64_t fail_attempt = 0;
};

// Whether a run of `config` has a validation split: the language model's
// own valid file, or val_split examples held out of train.
bool HasValidation(const RunConfig& config);

// Checks one parameter's value on its own: a known name, the right type and
// range. The rules between parameters wait for RunConfigFromParams.
Status CheckRunParamValue(std::string_view name, const ParamValue& value);

// Reads one parameter's value into `config` (type and range checked).
Status ApplyRunParam(std::string_view name, const ParamValue& value, RunConfig& config);
// The rules between parameters (int_madam's lr >= base_lr, milestones
// inside the run, plateau needing validation, ...). When `bad_param` is
// given, an error also stores there the parameter at fault.
Status CheckRunConfig(const RunConfig& config, std::string* bad_param = nullptr);

// Builds a RunConfig from named parameters, the paper's defaults where a
// parameter is absent (no recipe: common/recipe.h applies those). Rejects
// unknown names, wrong types, out-of-range values and parameters that
// contradict each other, with a message naming the parameter and its
// value. `task` and `optimizer` are required. When `bad_param` is given, an
// error also stores there the parameter at fault.
Result<RunConfig> RunConfigFromParams(const RunParams& params, std::string* bad_param = nullptr);

// The inverse: every parameter that applies to the config's task and
// optimiser, numbers as numbers; test-only parameters only when set.
RunParams RunConfigToParams(const RunConfig& config);

}  // namespace madam
