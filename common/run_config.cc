#include "common/run_config.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <sstream>

namespace madam {

namespace {

std::string ShortestNumber(double number) {
  if (std::isfinite(number) && number == std::floor(number) && std::fabs(number) < 1e15) {
    return std::to_string(static_cast<long long>(number));
  }
  // Shortest representation that round-trips.
  char buf[64];
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof buf, "%.*g", precision, number);
    if (std::strtod(buf, nullptr) == number) break;
  }
  return buf;
}

}  // namespace

std::string ParamValue::ToString() const {
  switch (kind) {
    case Kind::kString:
      return text;
    case Kind::kList: {
      std::string out = "[";
      for (size_t i = 0; i < list.size(); ++i) out += (i ? ", " : "") + ShortestNumber(list[i]);
      return out + "]";
    }
    case Kind::kNumber:
      break;
  }
  return ShortestNumber(number);
}

namespace {

template <typename Range>
std::string Join(const Range& items) {
  std::string out;
  for (const auto& s : items) {
    if (!out.empty()) out += ", ";
    out += std::string(s);
  }
  return out;
}

std::string Describe(const ParamValue& v) {
  return v.is_string() ? "\"" + v.text + "\"" : v.ToString();
}

// One entry per parameter: its facts, how to read it into a RunConfig and
// write it back.
struct ParamSpec {
  RunParamInfo info;
  std::function<Status(const ParamValue&, RunConfig&)> read;
  std::function<ParamValue(const RunConfig&)> write;
};

Status Invalid(std::string_view name, const std::string& what, const ParamValue& v) {
  return Status::InvalidArgument("parameter " + std::string(name) + " must be " + what + ", got " +
                                 Describe(v));
}

Status NeedNumber(std::string_view name, const ParamValue& v) {
  if (!v.is_number()) return Invalid(name, "a number", v);
  if (!std::isfinite(v.number)) return Invalid(name, "finite", v);
  return Status::Ok();
}

Status NeedInteger(std::string_view name, const ParamValue& v, int64_t lo, int64_t hi) {
  MADAM_RETURN_IF_ERROR(NeedNumber(name, v));
  if (v.number != std::floor(v.number) || v.number < static_cast<double>(lo) ||
      v.number > static_cast<double>(hi)) {
    return Invalid(name, "an integer in " + std::to_string(lo) + ".." + std::to_string(hi), v);
  }
  return Status::Ok();
}

// The facts of a parameter: `feature` (0: every task), the optimisers it
// applies to (empty: every one).
RunParamInfo Facts(std::string_view name, uint32_t feature = 0,
                   std::vector<std::string_view> optimizers = {}) {
  return RunParamInfo{name, feature, std::move(optimizers), false, false};
}

ParamSpec Positive(RunParamInfo info, double RunConfig::*field) {
  const std::string_view name = info.name;
  return {std::move(info),
          [name, field](const ParamValue& v, RunConfig& c) {
            MADAM_RETURN_IF_ERROR(NeedNumber(name, v));
            if (!(v.number > 0)) return Invalid(name, "positive", v);
            c.*field = v.number;
            return Status::Ok();
          },
          [field](const RunConfig& c) { return ParamValue::Number(c.*field); }};
}

ParamSpec InRange(RunParamInfo info, double RunConfig::*field, double lo, double hi,
                  bool hi_open) {
  const std::string_view name = info.name;
  return {std::move(info),
          [=](const ParamValue& v, RunConfig& c) {
            MADAM_RETURN_IF_ERROR(NeedNumber(name, v));
            bool ok = v.number >= lo && (hi_open ? v.number < hi : v.number <= hi);
            if (!ok) {
              std::ostringstream range;
              range << "in [" << lo << ", " << hi << (hi_open ? ")" : "]");
              return Invalid(name, range.str(), v);
            }
            c.*field = v.number;
            return Status::Ok();
          },
          [field](const RunConfig& c) { return ParamValue::Number(c.*field); }};
}

ParamSpec Integer(RunParamInfo info, int64_t RunConfig::*field, int64_t lo, int64_t hi) {
  const std::string_view name = info.name;
  return {std::move(info),
          [=](const ParamValue& v, RunConfig& c) {
            MADAM_RETURN_IF_ERROR(NeedInteger(name, v, lo, hi));
            c.*field = static_cast<int64_t>(v.number);
            return Status::Ok();
          },
          [field](const RunConfig& c) { return ParamValue::Number(static_cast<double>(c.*field)); }};
}

ParamSpec OneOf(RunParamInfo info, std::string RunConfig::*field,
                std::vector<std::string_view> allowed) {
  const std::string_view name = info.name;
  return {std::move(info),
          [=](const ParamValue& v, RunConfig& c) {
            if (v.is_string()) {
              for (auto a : allowed) {
                if (a == v.text) {
                  c.*field = v.text;
                  return Status::Ok();
                }
              }
            }
            return Invalid(name, "one of " + Join(allowed), v);
          },
          [field](const RunConfig& c) { return ParamValue::String(c.*field); }};
}

// Booleans travel as the names true and false (YAML's spelling).
ParamSpec Boolean(RunParamInfo info, bool RunConfig::*field) {
  const std::string_view name = info.name;
  return {std::move(info),
          [=](const ParamValue& v, RunConfig& c) {
            if (v.is_string() && (v.text == "true" || v.text == "false")) {
              c.*field = v.text == "true";
              return Status::Ok();
            }
            return Invalid(name, "true or false", v);
          },
          [field](const RunConfig& c) { return ParamValue::String(c.*field ? "true" : "false"); }};
}

// A list of `size` numbers (0: any length), each checked by `ok`.
ParamSpec NumberList(RunParamInfo info, std::vector<double> RunConfig::*field, size_t size,
                     std::function<bool(double)> ok, std::string what) {
  const std::string_view name = info.name;
  return {std::move(info),
          [=](const ParamValue& v, RunConfig& c) {
            std::string shape = size ? "a list of " + std::to_string(size) + " " + what
                                     : "a list of " + what;
            if (!v.is_list() || (size && v.list.size() != size)) return Invalid(name, shape, v);
            for (double x : v.list) {
              if (!std::isfinite(x) || !ok(x)) return Invalid(name, shape, v);
            }
            c.*field = v.list;
            return Status::Ok();
          },
          [field](const RunConfig& c) { return ParamValue::List(c.*field); }};
}

ParamSpec EpochList(RunParamInfo info, std::vector<int64_t> RunConfig::*field) {
  const std::string_view name = info.name;
  return {std::move(info),
          [=](const ParamValue& v, RunConfig& c) {
            if (!v.is_list()) return Invalid(name, "a list of epochs, e.g. [100, 200]", v);
            std::vector<int64_t> out;
            for (double x : v.list) {
              if (!std::isfinite(x) || x != std::floor(x) || x < 1 || x > 1e9) {
                return Invalid(name, "a list of whole epochs, each at least 1", v);
              }
              out.push_back(static_cast<int64_t>(x));
            }
            c.*field = std::move(out);
            return Status::Ok();
          },
          [field](const RunConfig& c) {
            std::vector<double> out;
            for (int64_t x : c.*field) out.push_back(static_cast<double>(x));
            return ParamValue::List(std::move(out));
          }};
}

// A square crop side: at least 32 and a multiple of 8 (ResNet-50 halves it
// five times).
ParamSpec ImageSize(RunParamInfo info, int64_t RunConfig::*field) {
  const std::string_view name = info.name;
  return {std::move(info),
          [=](const ParamValue& v, RunConfig& c) {
            MADAM_RETURN_IF_ERROR(NeedInteger(name, v, 32, 4096));
            if (static_cast<int64_t>(v.number) % 8 != 0) {
              return Invalid(name, "a multiple of 8 (at least 32)", v);
            }
            c.*field = static_cast<int64_t>(v.number);
            return Status::Ok();
          },
          [field](const RunConfig& c) { return ParamValue::Number(static_cast<double>(c.*field)); }};
}

ParamSpec Schedule(ParamSpec spec) {
  spec.info.schedule = true;
  return spec;
}

ParamSpec TestOnly(ParamSpec spec) {
  spec.info.test_only = true;
  return spec;
}

ParamSpec OmitDefault(ParamSpec spec) {
  spec.info.omit_default = true;
  return spec;
}

const std::vector<ParamSpec>& Specs() {
  static const std::vector<ParamSpec> specs = [] {
    std::vector<std::string_view> tasks, optimizers;
    for (const auto& t : KnownTasks()) tasks.push_back(t.name);
    for (const auto& o : KnownOptimizers()) optimizers.push_back(o.name);
    const std::vector<std::string_view> kSgd = {"sgd"}, kAdam = {"adam"},
                                         kSgdAdam = {"sgd", "adam"},
                                         kMultiplicative = {"madam", "int_madam"},
                                         kBits = {"int_madam"},
                                         kAdditive = {"sgd", "adam", "madam"};
    const auto positive = [](double x) { return x > 0; };
    const auto unit = [](double x) { return x >= 0 && x <= 1; };
    return std::vector<ParamSpec>{
        OneOf(Facts("task"), &RunConfig::task, tasks),
        OneOf(Facts("optimizer"), &RunConfig::optimizer, optimizers),
        OneOf(Facts("recipe"), &RunConfig::recipe, {"paper", "none"}),
        Positive(Facts("lr"), &RunConfig::lr),
        Integer(Facts("epochs"), &RunConfig::epochs, 1, 100000),
        Integer(Facts("batch_size"), &RunConfig::batch_size, 1, 1 << 20),
        Integer(Facts("seed"), &RunConfig::seed, 0, (int64_t{1} << 53)),
        InRange(Facts("momentum", 0, kSgd), &RunConfig::momentum, 0, 1, true),
        InRange(Facts("weight_decay", 0, kSgdAdam), &RunConfig::weight_decay, 0, 1e9, false),
        InRange(Facts("adam_beta1", 0, kAdam), &RunConfig::adam_beta1, 0, 1, true),
        InRange(Facts("adam_beta2", 0, kAdam), &RunConfig::adam_beta2, 0, 1, true),
        Positive(Facts("adam_eps", 0, kAdam), &RunConfig::adam_eps),
        InRange(Facts("beta", 0, kMultiplicative), &RunConfig::beta, 0, 1, true),
        Positive(Facts("g_bound", 0, kMultiplicative), &RunConfig::g_bound),
        Positive(Facts("p_scale", 0, kMultiplicative), &RunConfig::p_scale),
        Integer(Facts("bits", 0, kBits), &RunConfig::bits, 1, 16),
        Positive(Facts("base_lr", 0, kBits), &RunConfig::base_lr),
        OneOf(Facts("init", 0, kBits), &RunConfig::init, {"uniform", "nearest"}),
        Schedule(InRange(Facts("lr_factor_decay", 0, kBits), &RunConfig::lr_factor_decay, 1, 1e9,
                         false)),
        InRange(Facts("grad_clip"), &RunConfig::grad_clip, 0, 1e9, false),
        Schedule(OneOf(Facts("lr_schedule"), &RunConfig::lr_schedule,
                       {"constant", "step", "plateau"})),
        Schedule(EpochList(Facts("lr_milestones"), &RunConfig::lr_milestones)),
        Schedule(InRange(Facts("lr_decay_factor", 0, kAdditive), &RunConfig::lr_decay_factor, 1,
                         1e9, false)),
        Schedule(Integer(Facts("warmup_epochs", 0, kAdditive), &RunConfig::warmup_epochs, 0,
                         100000)),
        Schedule(Integer(Facts("lr_decay_patience"), &RunConfig::lr_decay_patience, 0, 100000)),
        Schedule(InRange(Facts("lr_min"), &RunConfig::lr_min, 0, 1e9, false)),
        Integer(Facts("val_split", kHoldout), &RunConfig::val_split, 0, int64_t{1} << 40),
        OneOf(Facts("model_selection"), &RunConfig::model_selection, {"last", "best_val"}),
        OneOf(Facts("bias_init"), &RunConfig::bias_init, {"keep", "normal"}),
        Positive(Facts("bias_init_std"), &RunConfig::bias_init_std),
        OneOf(Facts("zero_init"), &RunConfig::zero_init, {"keep", "normal"}),
        Positive(Facts("zero_init_std"), &RunConfig::zero_init_std),
        Boolean(Facts("bn_affine", kBatchNorm), &RunConfig::bn_affine),
        Integer(Facts("crop_padding", kCifarAugment), &RunConfig::crop_padding, 0, 16),
        Boolean(Facts("hflip", kCifarAugment), &RunConfig::hflip),
        InRange(Facts("rotation_degrees", kCifarAugment), &RunConfig::rotation_degrees, 0, 180,
                false),
        NumberList(Facts("normalize_mean", kCifarAugment), &RunConfig::normalize_mean, 3, unit,
                   "numbers in [0, 1]"),
        NumberList(Facts("normalize_std", kCifarAugment), &RunConfig::normalize_std, 3, positive,
                   "positive numbers"),
        Integer(Facts("emsize", kTransformerLm), &RunConfig::emsize, 2, 65536),
        Integer(Facts("nhid", kTransformerLm), &RunConfig::nhid, 1, 1 << 20),
        Integer(Facts("nlayers", kTransformerLm), &RunConfig::nlayers, 1, 256),
        Integer(Facts("nhead", kTransformerLm), &RunConfig::nhead, 1, 256),
        InRange(Facts("dropout", kTransformerLm), &RunConfig::dropout, 0, 1, true),
        Integer(Facts("bptt", kTransformerLm), &RunConfig::bptt, 1, 65536),
        Integer(Facts("eval_batch_size", kTransformerLm), &RunConfig::eval_batch_size, 1, 65536),
        ImageSize(Facts("image_size", kImageFolder), &RunConfig::image_size),
        Integer(Facts("gan_channels", kGan), &RunConfig::gan_channels, 4, 4096),
        InRange(Facts("attention_gain_init", kGan), &RunConfig::attention_gain_init, 0, 1000,
                false),
        Integer(Facts("fid_samples", kGan), &RunConfig::fid_samples, 2, 1000000),
        Integer(Facts("fid_every", kGan), &RunConfig::fid_every, 1, 100000),
        Integer(Facts("layer_stats_per_epoch"), &RunConfig::layer_stats_per_epoch, 0, 1000),
        TestOnly(Integer(Facts("fail_at_step"), &RunConfig::fail_at_step, -1, int64_t{1} << 53)),
        TestOnly(Integer(Facts("pause_at_step"), &RunConfig::pause_at_step, -1, int64_t{1} << 53)),
        TestOnly(Integer(Facts("pause_attempt"), &RunConfig::pause_attempt, 0, 1000)),
        OmitDefault(Integer(Facts("devices"), &RunConfig::devices, 1, kMaxRunDevices)),
        TestOnly(Integer(Facts("fault_rank"), &RunConfig::fault_rank, 0, kMaxRunDevices - 1)),
        TestOnly(Integer(Facts("fail_attempt"), &RunConfig::fail_attempt, 0, 1000)),
    };
  }();
  return specs;
}

const ParamSpec* FindSpec(std::string_view name) {
  // Sorted once, then binary search: resolving a 100,000-cell grid looks
  // parameters up millions of times.
  static const std::vector<const ParamSpec*> sorted = [] {
    std::vector<const ParamSpec*> out;
    for (const auto& s : Specs()) out.push_back(&s);
    std::sort(out.begin(), out.end(),
              [](const ParamSpec* a, const ParamSpec* b) { return a->info.name < b->info.name; });
    return out;
  }();
  auto it = std::lower_bound(sorted.begin(), sorted.end(), name,
                             [](const ParamSpec* s, std::string_view n) { return s->info.name < n; });
  return it != sorted.end() && (*it)->info.name == name ? *it : nullptr;
}

// The rules between parameters; each message names the parameters.
Status CheckConsistent(const RunConfig& c, std::string& bad) {
  std::ostringstream msg;
  if (c.fault_rank >= c.devices) {
    bad = "fault_rank";
    msg << "parameter fault_rank: " << c.fault_rank << " names no rank of a run with devices "
        << c.devices << " (ranks 0.." << c.devices - 1 << ")";
    return Status::InvalidArgument(msg.str());
  }
  if (c.optimizer == "int_madam") {
    // The paper, section 6: eta0 <= eta. A smaller eta could never be
    // reached by a whole number of levels per step.
    if (c.lr < c.base_lr) {
      bad = "lr";
      msg << "int_madam needs lr >= base_lr (eta >= eta0, the paper's section 6), got lr "
          << c.lr << " and base_lr " << c.base_lr;
      return Status::InvalidArgument(msg.str());
    }
    // A level step is round(g_hat * lr / base_lr) with |g_hat| <= g_bound:
    // below one half every step rounds to zero and no weight ever moves.
    if (c.lr * c.g_bound / c.base_lr < 0.5) {
      bad = "lr";
      msg << "int_madam can never move a level with lr " << c.lr << ", base_lr " << c.base_lr
          << " and g_bound " << c.g_bound << " (needs lr * g_bound / base_lr >= 0.5)";
      return Status::InvalidArgument(msg.str());
    }
  }
  const bool step = c.lr_schedule == "step";
  if (step && c.lr_milestones.empty()) {
    bad = "lr_milestones";
    return Status::InvalidArgument(
        "parameter lr_milestones: lr_schedule step needs at least one milestone epoch");
  }
  if (!step && !c.lr_milestones.empty()) {
    bad = "lr_milestones";
    return Status::InvalidArgument("parameter lr_milestones is set but lr_schedule is " +
                                   c.lr_schedule + " (milestones belong to lr_schedule step)");
  }
  for (size_t i = 0; i < c.lr_milestones.size(); ++i) {
    const int64_t m = c.lr_milestones[i];
    bad = "lr_milestones";
    if (m < 1 || m > c.epochs) {
      msg << "parameter lr_milestones: milestone " << m << " is outside 1.." << c.epochs
          << " (the run's epochs)";
      return Status::InvalidArgument(msg.str());
    }
    if (i > 0 && m <= c.lr_milestones[i - 1]) {
      return Status::InvalidArgument("parameter lr_milestones must increase, got " +
                                     ParamValue::List({c.lr_milestones.begin(),
                                                       c.lr_milestones.end()})
                                         .ToString());
    }
  }
  bad.clear();
  if (c.warmup_epochs > c.epochs) {
    bad = "warmup_epochs";
    msg << "parameter warmup_epochs " << c.warmup_epochs << " is more than the run's "
        << c.epochs << " epochs";
    return Status::InvalidArgument(msg.str());
  }
  if (c.lr_schedule == "plateau") {
    if (c.lr_min > c.lr) {
      bad = "lr_min";
      msg << "parameter lr_min " << c.lr_min << " is above lr " << c.lr;
      return Status::InvalidArgument(msg.str());
    }
    if (!HasValidation(c)) {
      bad = "lr_schedule";
      return Status::InvalidArgument(
          "parameter lr_schedule plateau watches the validation metric, and this run has no "
          "validation split: set val_split (the plateau never reads the test set)");
    }
  }
  const TaskInfo* task = FindTask(c.task);
  if (task != nullptr && task->has(kTransformerLm) && c.emsize % c.nhead != 0) {
    bad = "nhead";
    msg << "parameter nhead " << c.nhead << " must divide emsize " << c.emsize
        << " (each attention head takes emsize / nhead features)";
    return Status::InvalidArgument(msg.str());
  }
  if (c.model_selection == "best_val" && !HasValidation(c)) {
    bad = "model_selection";
    return Status::InvalidArgument(
        "parameter model_selection best_val needs a validation split: set val_split");
  }
  return Status::Ok();
}

}  // namespace

const std::vector<std::string_view>& KnownRunParams() {
  static const std::vector<std::string_view> names = [] {
    std::vector<std::string_view> out;
    for (const auto& s : Specs()) out.push_back(s.info.name);
    return out;
  }();
  return names;
}

const RunParamInfo* FindRunParam(std::string_view name) {
  const ParamSpec* spec = FindSpec(name);
  return spec ? &spec->info : nullptr;
}

bool ParamApplies(const RunParamInfo& param, const TaskInfo& task,
                  const OptimizerInfo& optimizer) {
  if (param.feature != 0 && !task.has(static_cast<TaskFeature>(param.feature))) return false;
  if (param.optimizers.empty()) return true;
  for (auto o : param.optimizers) {
    if (o == optimizer.name) return true;
  }
  return false;
}

bool HasValidation(const RunConfig& config) {
  const TaskInfo* task = FindTask(config.task);
  if (task == nullptr) return false;
  if (task->kind == TaskKind::kLanguageModel) return true;
  return task->has(kHoldout) && config.val_split > 0;
}

Status ApplyRunParam(std::string_view name, const ParamValue& value, RunConfig& config) {
  const ParamSpec* spec = FindSpec(name);
  if (spec == nullptr) {
    return Status::InvalidArgument("unknown run parameter \"" + std::string(name) +
                                   "\" (known: " + Join(KnownRunParams()) + ")");
  }
  return spec->read(value, config);
}

Status CheckRunConfig(const RunConfig& config, std::string* bad_param) {
  std::string ignored;
  return CheckConsistent(config, bad_param ? *bad_param : ignored);
}

Status CheckRunParamValue(std::string_view name, const ParamValue& value) {
  const ParamSpec* spec = FindSpec(name);
  if (spec == nullptr) {
    return Status::InvalidArgument("unknown run parameter \"" + std::string(name) +
                                   "\" (known: " + Join(KnownRunParams()) + ")");
  }
  RunConfig scratch;
  return spec->read(value, scratch);
}

Result<RunConfig> RunConfigFromParams(const RunParams& params, std::string* bad_param) {
  std::string ignored;
  std::string& bad = bad_param ? *bad_param : ignored;
  RunConfig config;
  for (const auto& [name, value] : params) {
    bad = name;
    const ParamSpec* spec = FindSpec(name);
    if (spec == nullptr) {
      return Status::InvalidArgument("unknown run parameter \"" + name + "\" (known: " +
                                     Join(KnownRunParams()) + ")");
    }
    MADAM_RETURN_IF_ERROR(spec->read(value, config));
  }
  bad = "task";
  if (config.task.empty()) return Status::InvalidArgument("run parameter task is required");
  bad = "optimizer";
  if (config.optimizer.empty()) return Status::InvalidArgument("run parameter optimizer is required");
  bad.clear();
  MADAM_RETURN_IF_ERROR(CheckConsistent(config, bad));
  return config;
}

RunParams RunConfigToParams(const RunConfig& config) {
  static const RunConfig defaults;
  const TaskInfo* task = FindTask(config.task);
  const OptimizerInfo* optimizer = FindOptimizer(config.optimizer);
  RunParams out;
  for (const auto& s : Specs()) {
    if (task && optimizer && !ParamApplies(s.info, *task, *optimizer)) continue;
    ParamValue v = s.write(config);
    if ((s.info.test_only || s.info.omit_default) && v == s.write(defaults)) continue;
    out.emplace(std::string(s.info.name), std::move(v));
  }
  return out;
}

}  // namespace madam
