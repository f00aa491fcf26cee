#include "common/run_config.h"

#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cmath>
#include <functional>
#include <sstream>

namespace madam {

std::string ParamValue::ToString() const {
  if (kind == Kind::kString) return text;
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

const std::vector<TaskInfo>& KnownTasks() {
  static const std::vector<TaskInfo> tasks = {
      {"fmnist-mlp", "test/error", "Fashion-MNIST, 784-256-256-10 MLP"},
      {"fmnist-cnn", "test/error", "Fashion-MNIST, small CNN"},
      {"cifar10-resnet18", "test/error", "CIFAR-10, ResNet-18 (CIFAR variant)"},
      {"cifar100-resnet18", "test/error", "CIFAR-100, ResNet-18 (CIFAR variant)"},
      {"wikitext2-transformer", "test/perplexity", "WikiText-2, word-level Transformer LM"},
      {"synthetic-mlp", "test/error", "generated data, tiny MLP (tests and benchmarks)"},
  };
  return tasks;
}

const std::vector<std::string_view>& KnownOptimizers() {
  static const std::vector<std::string_view> optimizers = {"sgd", "adam", "madam", "int_madam"};
  return optimizers;
}

const TaskInfo* FindTask(std::string_view name) {
  for (const auto& t : KnownTasks()) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

bool IsKnownOptimizer(std::string_view name) {
  for (auto o : KnownOptimizers()) {
    if (o == name) return true;
  }
  return false;
}

namespace {

std::string Join(const std::vector<std::string_view>& items) {
  std::string out;
  for (auto s : items) {
    if (!out.empty()) out += ", ";
    out += s;
  }
  return out;
}

// One entry per parameter: how to read it into a RunConfig and write it back.
struct ParamSpec {
  std::string_view name;
  std::function<Status(const ParamValue&, RunConfig&)> read;
  std::function<ParamValue(const RunConfig&)> write;
};

Status NeedNumber(std::string_view name, const ParamValue& v) {
  if (!v.is_number()) {
    return Status::InvalidArgument("parameter " + std::string(name) + " must be a number, got \"" +
                                   v.text + "\"");
  }
  if (!std::isfinite(v.number)) {
    return Status::InvalidArgument("parameter " + std::string(name) + " must be finite, got " +
                                   v.ToString());
  }
  return Status::Ok();
}

Status NeedInteger(std::string_view name, const ParamValue& v, int64_t lo, int64_t hi) {
  MADAM_RETURN_IF_ERROR(NeedNumber(name, v));
  if (v.number != std::floor(v.number) || v.number < static_cast<double>(lo) ||
      v.number > static_cast<double>(hi)) {
    return Status::InvalidArgument("parameter " + std::string(name) + " must be an integer in " +
                                   std::to_string(lo) + ".." + std::to_string(hi) + ", got " +
                                   v.ToString());
  }
  return Status::Ok();
}

Status NeedString(std::string_view name, const ParamValue& v) {
  if (v.is_number()) {
    return Status::InvalidArgument("parameter " + std::string(name) + " must be a string, got " +
                                   v.ToString());
  }
  return Status::Ok();
}

ParamSpec Positive(std::string_view name, double RunConfig::*field) {
  return {name,
          [name, field](const ParamValue& v, RunConfig& c) {
            MADAM_RETURN_IF_ERROR(NeedNumber(name, v));
            if (!(v.number > 0)) {
              return Status::InvalidArgument("parameter " + std::string(name) +
                                             " must be positive, got " + v.ToString());
            }
            c.*field = v.number;
            return Status::Ok();
          },
          [field](const RunConfig& c) { return ParamValue::Number(c.*field); }};
}

ParamSpec InRange(std::string_view name, double RunConfig::*field, double lo, double hi,
                  bool hi_open) {
  return {name,
          [=](const ParamValue& v, RunConfig& c) {
            MADAM_RETURN_IF_ERROR(NeedNumber(name, v));
            bool ok = v.number >= lo && (hi_open ? v.number < hi : v.number <= hi);
            if (!ok) {
              std::ostringstream msg;
              msg << "parameter " << name << " must be in [" << lo << ", " << hi
                  << (hi_open ? ")" : "]") << ", got " << v.ToString();
              return Status::InvalidArgument(msg.str());
            }
            c.*field = v.number;
            return Status::Ok();
          },
          [field](const RunConfig& c) { return ParamValue::Number(c.*field); }};
}

ParamSpec Integer(std::string_view name, int64_t RunConfig::*field, int64_t lo, int64_t hi) {
  return {name,
          [=](const ParamValue& v, RunConfig& c) {
            MADAM_RETURN_IF_ERROR(NeedInteger(name, v, lo, hi));
            c.*field = static_cast<int64_t>(v.number);
            return Status::Ok();
          },
          [field](const RunConfig& c) { return ParamValue::Number(static_cast<double>(c.*field)); }};
}

ParamSpec OneOf(std::string_view name, std::string RunConfig::*field,
                std::vector<std::string_view> allowed) {
  return {name,
          [=](const ParamValue& v, RunConfig& c) {
            MADAM_RETURN_IF_ERROR(NeedString(name, v));
            for (auto a : allowed) {
              if (a == v.text) {
                c.*field = v.text;
                return Status::Ok();
              }
            }
            return Status::InvalidArgument("parameter " + std::string(name) + " must be one of " +
                                           Join(allowed) + ", got \"" + v.text + "\"");
          },
          [field](const RunConfig& c) { return ParamValue::String(c.*field); }};
}

const std::vector<ParamSpec>& Specs() {
  static const std::vector<ParamSpec> specs = [] {
    std::vector<std::string_view> tasks;
    for (const auto& t : KnownTasks()) tasks.push_back(t.name);
    return std::vector<ParamSpec>{
        OneOf("task", &RunConfig::task, tasks),
        OneOf("optimizer", &RunConfig::optimizer, KnownOptimizers()),
        Positive("lr", &RunConfig::lr),
        Integer("epochs", &RunConfig::epochs, 1, 100000),
        Integer("batch_size", &RunConfig::batch_size, 1, 1 << 20),
        Integer("seed", &RunConfig::seed, 0, (int64_t{1} << 53)),
        InRange("momentum", &RunConfig::momentum, 0, 1, true),
        InRange("weight_decay", &RunConfig::weight_decay, 0, 1e9, false),
        InRange("beta", &RunConfig::beta, 0, 1, true),
        Positive("g_bound", &RunConfig::g_bound),
        Positive("p_scale", &RunConfig::p_scale),
        Integer("bits", &RunConfig::bits, 1, 16),
        Positive("base_lr", &RunConfig::base_lr),
        OneOf("init", &RunConfig::init, {"uniform", "nearest"}),
        OneOf("lr_decay", &RunConfig::lr_decay, {"plateau", "none"}),
        InRange("lr_decay_factor", &RunConfig::lr_decay_factor, 1, 1e9, false),
        Integer("lr_decay_patience", &RunConfig::lr_decay_patience, 0, 100000),
        InRange("bias_init", &RunConfig::bias_init, 0, 1e9, false),
        Integer("fail_at_step", &RunConfig::fail_at_step, -1, int64_t{1} << 53),
        Integer("pause_at_step", &RunConfig::pause_at_step, -1, int64_t{1} << 53),
        Integer("pause_attempt", &RunConfig::pause_attempt, 0, 1000),
    };
  }();
  return specs;
}

}  // namespace

const std::vector<std::string_view>& KnownRunParams() {
  static const std::vector<std::string_view> names = [] {
    std::vector<std::string_view> out;
    for (const auto& s : Specs()) out.push_back(s.name);
    return out;
  }();
  return names;
}

Result<RunConfig> RunConfigFromParams(const RunParams& params) {
  RunConfig config;
  for (const auto& [name, value] : params) {
    const ParamSpec* spec = nullptr;
    for (const auto& s : Specs()) {
      if (s.name == name) spec = &s;
    }
    if (spec == nullptr) {
      return Status::InvalidArgument("unknown run parameter \"" + name + "\" (known: " +
                                     Join(KnownRunParams()) + ")");
    }
    MADAM_RETURN_IF_ERROR(spec->read(value, config));
  }
  if (config.task.empty()) return Status::InvalidArgument("run parameter task is required");
  if (config.optimizer.empty()) return Status::InvalidArgument("run parameter optimizer is required");
  // int_madam steps round(g_hat * lr / base_lr) levels with |g_hat| <= g_bound:
  // below one half, every step rounds to zero and no weight ever moves.
  if (config.optimizer == "int_madam" && config.lr * config.g_bound / config.base_lr < 0.5) {
    std::ostringstream msg;
    msg << "int_madam can never move a level with lr " << config.lr << ", base_lr "
        << config.base_lr << " and g_bound " << config.g_bound
        << " (needs lr * g_bound / base_lr >= 0.5)";
    return Status::InvalidArgument(msg.str());
  }
  return config;
}

RunParams RunConfigToParams(const RunConfig& config) {
  RunParams out;
  for (const auto& s : Specs()) out.emplace(std::string(s.name), s.write(config));
  return out;
}

}  // namespace madam
