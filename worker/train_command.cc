#include "worker/train_command.h"

#include "common/devices.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "common/catalogue.h"
#include "common/param_json.h"
#include "common/recipe.h"
#include "common/run_config.h"
#include "worker/fid.h"
#include "worker/trainer.h"

namespace madam::worker {
namespace {

using json = nlohmann::json;

// Writes metric points as JSON Lines {"name","step","value","time"}.
class JsonLinesSink : public MetricSink {
 public:
  explicit JsonLinesSink(const std::string& path) : out_(path, std::ios::trunc) {}
  bool ok() const { return static_cast<bool>(out_); }
  void Write(const MetricPoint& p) override {
    json j = {{"name", p.name}, {"step", p.step}, {"value", p.value}, {"time", p.time}};
    out_ << j.dump() << '\n';
  }

 private:
  std::ofstream out_;
};

// A number, a list of numbers written [a,b,...], or a name.
ParamValue ParseParamValue(const std::string& text) {
  auto number = [](const std::string& t, double* out) {
    char* end = nullptr;
    *out = std::strtod(t.c_str(), &end);
    return !t.empty() && end == t.c_str() + t.size();
  };
  double v = 0;
  if (number(text, &v)) return ParamValue::Number(v);
  if (text.size() >= 2 && text.front() == '[' && text.back() == ']') {
    std::vector<double> list;
    std::stringstream items(text.substr(1, text.size() - 2));
    std::string item;
    while (std::getline(items, item, ',')) {
      item.erase(0, item.find_first_not_of(' '));
      item.erase(item.find_last_not_of(' ') + 1);
      if (item.empty() && list.empty() && items.eof()) break;  // "[]"
      if (!number(item, &v)) return ParamValue::String(text);
      list.push_back(v);
    }
    return ParamValue::List(std::move(list));
  }
  return ParamValue::String(text);
}

// Adds `--param k=v` pairs to `params`; false (with a message) on a pair
// without "=".
bool AddParamFlags(const std::vector<std::string>& pairs, RunParams& params, const char* command) {
  for (const auto& kv : pairs) {
    auto eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) {
      std::cerr << "madam-worker " << command << ": --param expects k=v, got \"" << kv << "\"\n";
      return false;
    }
    params[kv.substr(0, eq)] = ParseParamValue(kv.substr(eq + 1));
  }
  return true;
}

std::string FormatDuration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) seconds = 0;
  long s = static_cast<long>(seconds + 0.5);
  char buf[32];
  if (s >= 3600) {
    std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%02ld:%02ld", s / 60, s % 60);
  }
  return buf;
}

void ShowProgress(const ProgressInfo& p, bool tty) {
  if (tty) {
    constexpr int kWidth = 24;
    double frac = p.total_steps > 0 ? static_cast<double>(p.step) / static_cast<double>(p.total_steps) : 0;
    int filled = static_cast<int>(frac * kWidth);
    std::string bar(static_cast<size_t>(filled), '#');
    bar.resize(kWidth, '.');
    std::fprintf(stderr, "\r\033[Kepoch %lld/%lld [%s] step %lld/%lld loss %.4f %.0f samples/s eta %s",
                 static_cast<long long>(p.epoch), static_cast<long long>(p.epochs), bar.c_str(),
                 static_cast<long long>(p.step), static_cast<long long>(p.total_steps), p.loss,
                 p.samples_per_second, FormatDuration(p.eta_seconds).c_str());
    if (p.epoch_end && p.epoch == p.epochs) std::fprintf(stderr, "\n");
    std::fflush(stderr);
  } else if (p.epoch_end) {
    std::fprintf(stderr, "epoch %lld/%lld step %lld/%lld loss %.4f %.0f samples/s eta %s\n",
                 static_cast<long long>(p.epoch), static_cast<long long>(p.epochs),
                 static_cast<long long>(p.step), static_cast<long long>(p.total_steps), p.loss,
                 p.samples_per_second, FormatDuration(p.eta_seconds).c_str());
  }
}


}  // namespace

CLI::App* AddTrainCommand(CLI::App& app, TrainCommandOptions& o) {
  CLI::App* cmd = app.add_subcommand("train", "Run one training run without a coordinator");
  // The names come from the catalogue, so the help lists every task and
  // optimiser this build has (and nothing it lacks).
  std::string tasks, optimizers;
  for (const TaskInfo& t : KnownTasks()) tasks += (tasks.empty() ? "" : ", ") + std::string(t.name);
  for (const OptimizerInfo& opt : KnownOptimizers()) {
    optimizers += (optimizers.empty() ? "" : ", ") + std::string(opt.name);
  }
  cmd->add_option("--task", o.task, "Task (" + tasks + ")")->required();
  cmd->add_option("--optimizer", o.optimizer, "Optimiser (" + optimizers + ")")->required();
  cmd->add_option("--lr", o.lr, "Learning rate (default 0.01)");
  cmd->add_option("--epochs", o.epochs, "Epochs (default 3)");
  cmd->add_option("--batch-size", o.batch_size, "Batch size (default 128)");
  cmd->add_option("--seed", o.seed, "Seed (default 0)");
  cmd->add_option("--bits", o.bits, "int_madam: bits per weight (default 12)");
  cmd->add_option("--base-lr", o.base_lr, "int_madam: eta0, the ladder spacing (default 0.001)");
  cmd->add_option("--param", o.params, "Any run parameter as k=v (repeatable)");
  cmd->add_option("--device", o.device,
                  "auto | cpu | cuda:N | cuda:0,cuda:1,... | all (a list: one rank per device)");
  cmd->add_option("--devices", o.device, "The same as --device (--devices all)");
  cmd->add_option("--cpu-ranks", o.cpu_ranks,
                  "CPU ranks for a data-parallel run (--param devices=N takes N of them)");
  cmd->add_option("--collective-timeout", o.collective_timeout_seconds,
                  "Seconds a data-parallel collective may wait before the run fails (default 60)")
      ->check(CLI::Range(1.0, 86400.0));
  cmd->add_option("--data-dir", o.data_dir, "Dataset directory (default: per task)");
  cmd->add_option("--loader-threads", o.loader_threads,
                  "Input-pipeline threads for image tasks (0: the cores left after --threads)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--threads", o.threads, "Intra-op threads (0: LibTorch default)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--metrics-out", o.metrics_out, "Write metric points as JSON Lines");
  cmd->add_option("--summary-json", o.summary_json, "Write the run summary as JSON");
  cmd->add_option("--checkpoint-dir", o.checkpoint_dir, "Write a checkpoint every epoch here");
  cmd->add_option("--resume-from", o.resume_from, "Continue from this checkpoint file");
  cmd->add_option("--export-model", o.export_model, "int_madam: write the B-bit model here");
  cmd->add_option("--fid-model", o.fid_model,
                  "TorchScript feature extractor for test/fid (tools/export_fid_inception.py)");
  cmd->add_option("--output-dir", o.output_dir, "Write the run's own files (GAN sample grids) here");
  cmd->add_flag("!--no-progress", o.progress, "Never draw a progress bar");
  return cmd;
}

int RunTrainCommand(const TrainCommandOptions& o) {
  RunParams params;
  params["task"] = ParamValue::String(o.task);
  params["optimizer"] = ParamValue::String(o.optimizer);
  auto set = [&](const char* name, const std::string& v) {
    if (!v.empty()) params[name] = ParseParamValue(v);
  };
  set("lr", o.lr);
  set("epochs", o.epochs);
  set("batch_size", o.batch_size);
  set("seed", o.seed);
  set("bits", o.bits);
  set("base_lr", o.base_lr);
  if (!AddParamFlags(o.params, params, "train")) return 2;
  // The task's recipe fills what the flags leave unset (common/recipe.h);
  // --param recipe=none turns it off.
  auto config = ResolveConfig(params, ResolveOptions{});
  if (!config.ok()) {
    std::cerr << "madam-worker train: " << config.status().message() << "\n";
    return 2;
  }
  if (auto devices = ResolveWorkerDevices(o.device, o.cpu_ranks, 0); !devices.ok()) {
    std::cerr << "madam-worker train: --device " << o.device << ": " << devices.status().message()
              << "\n";
    return 2;
  }

  if (!o.fid_model.empty()) {
    Status fid = CheckFidModel(o.fid_model);
    if (!fid.ok()) {
      std::cerr << "madam-worker train: " << fid.message() << "\n";
      return 2;
    }
  }
  std::unique_ptr<JsonLinesSink> sink;
  if (!o.metrics_out.empty()) {
    sink = std::make_unique<JsonLinesSink>(o.metrics_out);
    if (!sink->ok()) {
      std::cerr << "madam-worker train: cannot write --metrics-out " << o.metrics_out << "\n";
      return 1;
    }
  }
  WorkerOptions wo;
  wo.device = o.device;
  wo.cpu_ranks = o.cpu_ranks;
  wo.collective_timeout_seconds = o.collective_timeout_seconds;
  wo.data_dir = o.data_dir;
  wo.threads = o.threads;
  wo.loader_threads = o.loader_threads;
  wo.fid_model = o.fid_model;
  Trainer trainer(wo);
  RunHooks hooks;
  hooks.sink = sink.get();
  hooks.checkpoint_dir = o.checkpoint_dir;
  hooks.resume_from = o.resume_from;
  hooks.export_model = o.export_model;
  hooks.output_dir = o.output_dir;
  const bool tty = o.progress && isatty(STDERR_FILENO);
  hooks.on_progress = [tty](const ProgressInfo& p) { ShowProgress(p, tty); };

  RunSummary s = trainer.Run(*config, hooks);
  sink.reset();  // flush metrics before reporting

  std::cerr << "status " << s.status;
  for (const auto& [k, v] : s.final) {
    if (k.rfind("test/", 0) == 0) std::cerr << "  " << k << " " << v;
  }
  std::cerr << "  train_seconds " << s.train_seconds << "  steps " << s.steps << "\n";
  for (const auto& w : s.warnings) std::cerr << "warning: " << w << "\n";
  if (s.best_val_epoch > 0) {
    std::cerr << "test metrics are from epoch " << s.best_val_epoch
              << " (model_selection best_val)\n";
  }
  if (!s.error.empty()) std::cerr << "error: " << s.error << "\n";
  if (s.export_bytes > 0) {
    std::fprintf(stderr, "exported %s: %lld bytes (%lld-bit) vs %lld bytes FP32 (%.1f%%)\n",
                 o.export_model.c_str(), static_cast<long long>(s.export_bytes),
                 static_cast<long long>(config->bits), static_cast<long long>(s.fp32_bytes),
                 s.fp32_bytes ? 100.0 * static_cast<double>(s.export_bytes) / static_cast<double>(s.fp32_bytes) : 0.0);
  }
  if (!o.summary_json.empty()) {
    json j = {{"status", s.status}, {"final", s.final}, {"train_seconds", s.train_seconds},
              {"steps", s.steps}};
    if (!s.error.empty()) j["error"] = s.error;
    if (s.best_val_epoch > 0) j["best_val_epoch"] = s.best_val_epoch;
    if (!s.resumed_from.empty()) j["resumed_from"] = s.resumed_from;
    if (!s.warnings.empty()) j["warnings"] = s.warnings;
    if (s.export_bytes > 0) {
      j["export_bytes"] = s.export_bytes;
      j["fp32_bytes"] = s.fp32_bytes;
    }
    std::ofstream out(o.summary_json, std::ios::trunc);
    out << j.dump(2) << "\n";
    if (!out) {
      std::cerr << "madam-worker train: cannot write --summary-json " << o.summary_json << "\n";
      return 1;
    }
  }
  return s.status == "failed" ? 1 : 0;
}

CLI::App* AddRecipeCommand(CLI::App& app, RecipeCommandOptions& o) {
  CLI::App* cmd = app.add_subcommand(
      "recipe", "Print the run parameters a task's recipe resolves to, with their sources");
  cmd->add_option("task", o.task, "Task")->required();
  cmd->add_option("--optimizer", o.optimizer, "Optimiser (sgd, adam, madam, int_madam)")->required();
  cmd->add_option("--param", o.params, "A run parameter as k=v (repeatable), overriding the recipe");
  cmd->add_flag("--json", o.json, "JSON: {task, optimizer, params, sources}");
  return cmd;
}

int RunRecipeCommand(const RecipeCommandOptions& o) {
  RunParams params{{"task", ParamValue::String(o.task)},
                   {"optimizer", ParamValue::String(o.optimizer)}};
  if (!AddParamFlags(o.params, params, "recipe")) return 2;
  auto resolved = ResolveRun(params, ResolveOptions{});
  if (!resolved.ok()) {
    std::cerr << "madam-worker recipe: " << resolved.status().message() << "\n";
    return 2;
  }
  if (o.json) {
    json j = {{"task", o.task},
              {"optimizer", o.optimizer},
              {"params", ParamsToJsonObject(resolved->params)},
              {"sources", resolved->sources}};
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  size_t width = 0;
  for (const auto& [name, value] : resolved->params) width = std::max(width, name.size());
  for (const auto& [name, value] : resolved->params) {
    std::string text = value.ToString();
    std::cout << name << std::string(width + 2 - name.size(), ' ') << text
              << std::string(text.size() < 24 ? 24 - text.size() : 1, ' ')
              << resolved->sources.at(name) << "\n";
  }
  return 0;
}

}  // namespace madam::worker
