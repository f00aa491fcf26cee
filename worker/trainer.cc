// The training loop (ARCHITECTURE.md sections 5 and 6): epochs, the
// learning-rate schedule, validation and model selection, divergence,
// checkpoints and metrics, for any task and optimiser. What a task or an
// optimiser does lives behind worker/tasks/task.h and worker/optimizers.h;
// this file never asks which one it runs.
//
// The only place in the worker that catches LibTorch exceptions:
// Trainer::Run turns every one into a "failed" summary.
#include "worker/trainer.h"

#include <torch/torch.h>

#include <ATen/Parallel.h>

#include <madam/optim/integer_madam.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <limits>
#include <mutex>
#include <sstream>
#include <thread>

#include "common/catalogue.h"
#include "worker/checkpoint_io.h"
#include "worker/lr_schedule.h"
#include "worker/model_export.h"
#include "worker/optimizers.h"
#include "worker/tasks/models.h"
#include "worker/tasks/task.h"
#include "worker/update_stats.h"

namespace madam::worker {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kLogEvery = 10;  // losses and optim/* every N steps
// Per-layer telemetry: at most this many tensors (x 4 metrics, within the
// 256 metric names a run may have), each name at most this long.
constexpr size_t kMaxLayers = 56;
constexpr size_t kMaxLayerName = 100;
// Bumped when the archive's layout changes: an older checkpoint is then
// refused by name (and skipped on resume) rather than misread.
constexpr int64_t kCheckpointFormat = 2;

double UnixNow() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

void ThrowIfError(const Status& s) {
  if (!s.ok()) throw RunError(s.message());
}

std::string WhatOf(const std::exception& e) {
  if (const auto* c10 = dynamic_cast<const c10::Error*>(&e)) return c10->what_without_backtrace();
  return e.what();
}

// "val/error" -> "error": the key a task's Evaluate returns.
std::string LeafOf(std::string_view metric) {
  const size_t slash = metric.rfind('/');
  return std::string(slash == std::string_view::npos ? metric : metric.substr(slash + 1));
}

// One run, start to finish: owns its networks, optimisers and schedule and
// runs entirely on the caller's thread. Its methods throw (RunError for the
// run's own failures, c10::Error from LibTorch); Trainer::Run and
// Trainer::EvaluateExportedModel are the only callers and catch everything.
class RunLoop {
 public:
  RunLoop(const RunConfig& config, const RunHooks& hooks, const TaskInfo& info, Task* task)
      : config_(config), hooks_(hooks), info_(info), task_(task), schedule_(config) {}

  RunSummary Execute();
  // Builds the network, reads an export into it and evaluates it.
  std::map<std::string, double> EvaluateExport(const std::string& path);

 private:
  // Seeds, builds the networks and optimisers afresh and resets the run's
  // progress to step 0.
  void Build();
  void Emit(const std::string& name, int64_t step, double value);
  void TrainEpoch(int64_t epoch);
  // Takes step `batch` of `epoch`; logs its losses and the optim/*
  // diagnostics when `log`. Returns false when a loss is not finite.
  bool Step(int64_t batch, bool log, int64_t epoch);
  void AfterEpoch(int64_t epoch, double epoch_seconds, int64_t epoch_samples);
  // Emits `prefix`/... for a split's metrics; false when its loss is not finite.
  bool EmitEvaluation(Split split, const std::string& prefix, std::map<std::string, double>* out);
  void SaveCheckpoint(int64_t epoch);
  void LoadCheckpoint(const std::string& path);
  void ApplySchedule(int64_t epoch);
  void Progress(int64_t epoch, double loss, bool epoch_end = false);
  // The test-only fail_at_step and pause_at_step parameters, checked before
  // each step: throws for an injected failure; for a pause, waits until the
  // run is told to stop and returns true (the run then ends "stopped").
  bool InjectedFaultStops();
  std::vector<torch::Tensor> AllParams() const;
  std::vector<double> AllBounds() const;
  // Whether step `batch` of an epoch reports per-layer telemetry.
  bool LayerStep(int64_t batch) const;
  void EmitLayerStats(const std::vector<TensorUpdate>& per_tensor);

  const RunConfig& config_;
  const RunHooks& hooks_;
  const TaskInfo& info_;
  Task* task_;  // not owned
  std::vector<Network> networks_;
  std::vector<std::unique_ptr<RunOptimizer>> optimizers_;  // one per network
  std::vector<RunOptimizer*> optimizer_ptrs_;
  // Per-layer telemetry: metric prefixes ("layer/<tensor>/") by position in
  // AllParams(), empty for tensors that report none.
  std::vector<std::string> layer_prefix_;
  LrSchedule schedule_;
  UpdateTracker tracker_;
  int64_t step_ = 0;
  int64_t start_epoch_ = 1;
  int64_t steps_per_epoch_ = 0;
  int64_t decays_ = 0;  // in force this epoch
  // model_selection best_val: the best validation metric and its epoch.
  double best_val_ = std::numeric_limits<double>::infinity();
  int64_t best_val_epoch_ = 0;
  std::map<std::string, double> final_;
  std::string last_checkpoint_;
  double last_loss_ = 0;
  bool diverged_ = false;
  bool stopped_ = false;
  std::chrono::steady_clock::time_point started_;
  int64_t samples_done_ = 0;  // this process, for throughput and eta
};

void RunLoop::Emit(const std::string& name, int64_t step, double value) {
  final_[name] = value;
  if (hooks_.sink != nullptr) hooks_.sink->Write(MetricPoint{name, step, value, UnixNow()});
}

void RunLoop::Build() {
  torch::manual_seed(static_cast<uint64_t>(config_.seed));
  networks_ = task_->BuildNetworks();
  InitRules rules;
  rules.biases_normal = config_.bias_init == "normal";
  rules.bias_std = config_.bias_init_std;
  rules.zeros_normal = config_.zero_init == "normal";
  rules.zero_std = config_.zero_init_std;
  optimizers_.clear();
  optimizer_ptrs_.clear();
  for (auto& net : networks_) {
    ApplyInitRules(*net.module, rules);
    optimizers_.push_back(MakeOptimizer(config_, net.module->parameters()));
    optimizer_ptrs_.push_back(optimizers_.back().get());
  }
  // The weight matrices and kernels (dim >= 2), spread evenly when there are
  // more than a run's metric-name budget allows (ARCHITECTURE.md section 9).
  layer_prefix_.clear();
  std::vector<size_t> weights;
  for (const auto& net : networks_) {
    for (const auto& item : net.module->named_parameters()) {
      if (item.value().dim() >= 2) weights.push_back(layer_prefix_.size());
      std::string name = (networks_.size() > 1 ? net.name + "." : std::string()) + item.key();
      if (name.size() > kMaxLayerName) name = name.substr(name.size() - kMaxLayerName);
      layer_prefix_.push_back("layer/" + name + "/");
    }
  }
  std::vector<bool> keep(layer_prefix_.size(), false);
  for (size_t j = 0; j < weights.size() && j < kMaxLayers; ++j) {
    keep[weights[weights.size() <= kMaxLayers ? j : j * weights.size() / kMaxLayers]] = true;
  }
  for (size_t i = 0; i < keep.size(); ++i) {
    if (!keep[i]) layer_prefix_[i].clear();
  }
  schedule_.Restore(LrSchedule::State{});
  step_ = 0;
  start_epoch_ = 1;
  best_val_ = std::numeric_limits<double>::infinity();
  best_val_epoch_ = 0;
  final_.clear();
  steps_per_epoch_ = task_->StepsPerEpoch();
}

std::vector<torch::Tensor> RunLoop::AllParams() const {
  std::vector<torch::Tensor> out;
  for (const auto& o : optimizers_) out.insert(out.end(), o->params().begin(), o->params().end());
  return out;
}

std::vector<double> RunLoop::AllBounds() const {
  std::vector<double> out;
  for (const auto& o : optimizers_) {
    for (size_t i = 0; i < o->params().size(); ++i) out.push_back(o->BoundOf(i));
  }
  return out;
}

void RunLoop::Progress(int64_t epoch, double loss, bool epoch_end) {
  if (!hooks_.on_progress) return;
  ProgressInfo info;
  info.epoch = epoch;
  info.epochs = config_.epochs;
  info.step = step_;
  info.total_steps = steps_per_epoch_ * config_.epochs;
  info.loss = loss;
  info.epoch_end = epoch_end;
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
  int64_t done_steps = step_ - (start_epoch_ - 1) * steps_per_epoch_;
  if (elapsed > 0 && done_steps > 0) {
    info.samples_per_second = static_cast<double>(samples_done_) / elapsed;
    info.eta_seconds = elapsed / static_cast<double>(done_steps) *
                       static_cast<double>(info.total_steps - step_);
  }
  hooks_.on_progress(info);
}

bool RunLoop::InjectedFaultStops() {
  if (config_.fail_at_step >= 0 && step_ == config_.fail_at_step) {
    throw RunError("injected failure at step " + std::to_string(step_));
  }
  const bool pause_here = config_.pause_at_step >= 0 && step_ == config_.pause_at_step &&
                          (config_.pause_attempt == 0 || config_.pause_attempt == hooks_.attempt);
  if (!pause_here) return false;
  // Without a stop hook nothing could ever end the pause.
  if (!hooks_.should_stop) throw RunError("pause_at_step needs a run that can be stopped");
  while (!hooks_.should_stop()) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  stopped_ = true;
  return true;
}

void RunLoop::ApplySchedule(int64_t epoch) {
  const double warmup = schedule_.WarmupScale(step_, steps_per_epoch_);
  for (auto& o : optimizers_) o->SetSchedule(decays_, warmup);
  (void)epoch;
}

bool RunLoop::LayerStep(int64_t batch) const {
  const int64_t per_epoch = std::min(config_.layer_stats_per_epoch, steps_per_epoch_);
  if (per_epoch <= 0) return false;
  // The last step of each of per_epoch equal slices of the epoch.
  for (int64_t k = 1; k <= per_epoch; ++k) {
    if (batch == k * steps_per_epoch_ / per_epoch - 1) return true;
  }
  return false;
}

void RunLoop::EmitLayerStats(const std::vector<TensorUpdate>& per_tensor) {
  size_t i = 0;
  for (const auto& o : optimizers_) {
    for (size_t p = 0; p < o->params().size(); ++p, ++i) {
      const std::string& prefix = layer_prefix_[i];
      if (prefix.empty()) continue;
      Emit(prefix + "relative_update", step_, per_tensor[i].relative_update);
      Emit(prefix + "at_bound_fraction", step_, per_tensor[i].at_bound_fraction);
      double top = 0, bottom = 0;
      if (o->LevelShares(p, &top, &bottom)) {
        Emit(prefix + "level_top_fraction", step_, top);
        Emit(prefix + "level_bottom_fraction", step_, bottom);
      }
    }
  }
}

bool RunLoop::Step(int64_t batch, bool log, int64_t epoch) {
  // Per-layer telemetry has its own steps; losses and optim/* keep theirs
  // (every kLogEvery steps and the epoch's last), so the two never mix.
  const bool layer = LayerStep(batch);
  if (log || layer) tracker_.Snapshot(AllParams());
  StepLosses losses = task_->TrainStep(batch, optimizer_ptrs_);
  ++step_;
  if (!log && !layer) return true;
  bool finite = true;
  for (const auto& [name, loss] : losses) {
    const double value = loss.item<double>();
    if (log) Emit(name, step_, value);
    finite = finite && std::isfinite(value);
  }
  if (log) last_loss_ = losses.empty() ? 0.0 : final_[losses.front().first];
  if (!finite) return false;
  std::vector<TensorUpdate> per_tensor;
  UpdateSummary u = tracker_.Compare(AllParams(), AllBounds(), layer ? &per_tensor : nullptr);
  if (layer) EmitLayerStats(per_tensor);
  if (!log) return true;
  Emit("optim/relative_update", step_, u.relative_update);
  Emit("optim/at_bound_fraction", step_, u.at_bound_fraction);
  Emit("optim/sign_flips", step_, u.sign_flips);
  Progress(epoch, last_loss_);
  return true;
}

void RunLoop::TrainEpoch(int64_t epoch) {
  const uint64_t seed = EpochSeed(config_.seed, epoch);
  torch::manual_seed(seed);
  for (auto& net : networks_) net.module->train();
  task_->BeginEpoch(epoch, seed);
  decays_ = schedule_.DecaysFor(epoch);
  for (int64_t b = 0; b < steps_per_epoch_; ++b) {
    if (hooks_.should_stop && hooks_.should_stop()) {
      stopped_ = true;
      return;
    }
    if (InjectedFaultStops()) return;
    ApplySchedule(epoch);
    const bool log = (step_ + 1) % kLogEvery == 0 || b == steps_per_epoch_ - 1;
    if (!Step(b, log, epoch)) {
      diverged_ = true;
      return;
    }
    samples_done_ += task_->SamplesInStep(b);
  }
}

bool RunLoop::EmitEvaluation(Split split, const std::string& prefix,
                             std::map<std::string, double>* out) {
  *out = task_->Evaluate(split);
  for (const auto& [name, value] : *out) Emit(prefix + name, step_, value);
  // A non-finite loss diverges a run; so does a non-finite value of a task
  // metric that has no loss beside it (a GAN's FID of NaN images).
  auto loss = out->find("loss");
  if (loss != out->end()) return std::isfinite(loss->second);
  for (const auto& [name, value] : *out) {
    if (!std::isfinite(value)) return false;
  }
  return true;
}

void RunLoop::AfterEpoch(int64_t epoch, double epoch_seconds, int64_t epoch_samples) {
  const double trained_lr = optimizers_.front()->lr();
  bool finite = true;
  bool test_now = config_.model_selection != "best_val";
  if (task_->HasValidation()) {
    std::map<std::string, double> val;
    finite = EmitEvaluation(Split::kValidation, "val/", &val) && finite;
    const double metric = val.at(LeafOf(info_.validation_metric));
    schedule_.ObserveValidation(metric);
    if (config_.model_selection == "best_val" && std::isfinite(metric) &&
        (best_val_epoch_ == 0 || metric < best_val_)) {
      best_val_ = metric;
      best_val_epoch_ = epoch;
      Emit("val/best_epoch", step_, static_cast<double>(epoch));
      test_now = true;
    }
  }
  if (test_now) {
    std::map<std::string, double> test;
    finite = EmitEvaluation(Split::kTest, "test/", &test) && finite;
  }
  for (const auto& [name, value] : task_->EpochMetrics()) Emit(name, step_, value);
  Emit("lr", step_, trained_lr);
  Emit("samples_per_second", step_,
       epoch_seconds > 0 ? static_cast<double>(epoch_samples) / epoch_seconds : 0.0);
  if (!finite) {
    diverged_ = true;
    return;
  }
  Progress(epoch, last_loss_, /*epoch_end=*/true);
  if (!hooks_.checkpoint_dir.empty()) SaveCheckpoint(epoch);
}

void RunLoop::SaveCheckpoint(int64_t epoch) {
  torch::serialize::OutputArchive archive;
  archive.write("format", c10::IValue(kCheckpointFormat));
  archive.write("task", c10::IValue(config_.task));
  archive.write("optimizer", c10::IValue(config_.optimizer));
  archive.write("epoch", c10::IValue(epoch));
  archive.write("step", c10::IValue(step_));
  const LrSchedule::State& s = schedule_.state();
  archive.write("sched_plateau_decays", c10::IValue(s.plateau_decays));
  archive.write("sched_best", c10::IValue(s.best));
  archive.write("sched_has_best", c10::IValue(s.has_best));
  archive.write("sched_bad_epochs", c10::IValue(s.bad_epochs));
  archive.write("best_val", c10::IValue(best_val_));
  archive.write("best_val_epoch", c10::IValue(best_val_epoch_));
  std::string names;
  std::vector<double> values;
  for (const auto& [k, v] : final_) {
    names += k + "\n";
    values.push_back(v);
  }
  archive.write("final_names", c10::IValue(names));
  archive.write("final_values", torch::tensor(values.empty() ? std::vector<double>{0.0} : values,
                                              torch::kDouble));
  for (size_t i = 0; i < networks_.size(); ++i) {
    torch::serialize::OutputArchive net, optim;
    networks_[i].module->save(net);
    optimizers_[i]->save(optim);
    archive.write("net/" + networks_[i].name, net);
    archive.write("optim/" + networks_[i].name, optim);
  }
  const std::string name = CheckpointName(epoch);
  // Prune to keep - 1 before the new file appears, so the directory never
  // holds more than keep_checkpoints of them (ARCHITECTURE.md section 5).
  ThrowIfError(WriteFileDurably(
      hooks_.checkpoint_dir, name, [&](const std::string& tmp) { archive.save_to(tmp); },
      [&] {
        if (hooks_.keep_checkpoints > 0) {
          PruneCheckpoints(hooks_.checkpoint_dir, hooks_.keep_checkpoints - 1);
        }
      }));
  last_checkpoint_ = (fs::path(hooks_.checkpoint_dir) / name).string();
  if (hooks_.keep_checkpoints > 0) PruneCheckpoints(hooks_.checkpoint_dir, hooks_.keep_checkpoints);
  if (hooks_.on_checkpoint) hooks_.on_checkpoint(epoch, last_checkpoint_);
}

void RunLoop::LoadCheckpoint(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) throw RunError(path + ": checkpoint not found");
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(path, networks_.front().module->parameters().empty()
                                ? torch::Device(torch::kCPU)
                                : networks_.front().module->parameters().front().device());
  } catch (const c10::Error& e) {
    throw RunError(path + ": not a readable checkpoint: " + e.what_without_backtrace());
  }
  c10::IValue v;
  if (!archive.try_read("format", v) || !v.isInt() || v.toInt() != kCheckpointFormat) {
    throw RunError(path + ": not a madam-worker checkpoint (format " +
                   std::to_string(kCheckpointFormat) + ")");
  }
  archive.read("task", v);
  if (v.toStringRef() != config_.task) {
    throw RunError(path + ": checkpoint is for task " + v.toStringRef() + ", this run's task is " +
                   config_.task);
  }
  archive.read("optimizer", v);
  if (v.toStringRef() != config_.optimizer) {
    throw RunError(path + ": checkpoint is for optimizer " + v.toStringRef() +
                   ", this run's optimizer is " + config_.optimizer);
  }
  archive.read("epoch", v);
  const int64_t epoch = v.toInt();
  archive.read("step", v);
  const int64_t step = v.toInt();
  LrSchedule::State s;
  archive.read("sched_plateau_decays", v);
  s.plateau_decays = v.toInt();
  archive.read("sched_best", v);
  s.best = v.toDouble();
  archive.read("sched_has_best", v);
  s.has_best = v.toBool();
  archive.read("sched_bad_epochs", v);
  s.bad_epochs = v.toInt();
  archive.read("best_val", v);
  const double best_val = v.toDouble();
  archive.read("best_val_epoch", v);
  const int64_t best_val_epoch = v.toInt();
  archive.read("final_names", v);
  torch::Tensor values;
  archive.read("final_values", values);
  values = values.to(torch::kCPU).contiguous();
  std::map<std::string, double> final;
  std::istringstream names(v.toStringRef());
  std::string name;
  for (int64_t i = 0; std::getline(names, name) && i < values.numel(); ++i) {
    final[name] = values.data_ptr<double>()[i];
  }
  for (size_t i = 0; i < networks_.size(); ++i) {
    torch::serialize::InputArchive net, optim;
    try {
      archive.read("net/" + networks_[i].name, net);
      networks_[i].module->load(net);
      archive.read("optim/" + networks_[i].name, optim);
      optimizers_[i]->load(optim);
    } catch (const c10::Error& e) {
      throw RunError(path + ": checkpoint does not match this task's " + networks_[i].name + ": " +
                     e.what_without_backtrace());
    }
  }
  // Only now, with everything read, does the run's progress change.
  start_epoch_ = epoch + 1;
  step_ = step;
  schedule_.Restore(s);
  best_val_ = best_val;
  best_val_epoch_ = best_val_epoch;
  final_ = std::move(final);
}

std::map<std::string, double> RunLoop::EvaluateExport(const std::string& path) {
  Build();
  if (networks_.size() != 1) {
    throw RunError("task " + config_.task + " has " + std::to_string(networks_.size()) +
                   " networks: B-bit exports hold one");
  }
  ThrowIfError(LoadExportedModel(path, config_.task, *networks_.front().module));
  return task_->Evaluate(Split::kTest);
}

RunSummary RunLoop::Execute() {
  RunSummary summary;
  started_ = std::chrono::steady_clock::now();
  const OptimizerInfo* optimizer = FindOptimizer(config_.optimizer);
  if (!hooks_.export_model.empty() && !(optimizer && optimizer->uses_bits)) {
    throw RunError("--export-model needs a B-bit optimizer (int_madam), got " + config_.optimizer);
  }
  Build();
  // Refused before training rather than after it: an export holds one network.
  if (!hooks_.export_model.empty() && networks_.size() != 1) {
    throw RunError("--export-model needs one network; task " + config_.task + " has " +
                   std::to_string(networks_.size()));
  }
  if (!hooks_.resume_from.empty()) {
    LoadCheckpoint(hooks_.resume_from);
    summary.resumed_from = hooks_.resume_from;
  } else {
    for (const std::string& candidate : hooks_.resume_candidates) {
      try {
        LoadCheckpoint(candidate);
        summary.resumed_from = candidate;
        break;
      } catch (const std::exception& e) {
        summary.warnings.push_back("skipped checkpoint " + candidate + ": " + WhatOf(e));
        // A half-read checkpoint may have changed a network or optimiser:
        // start again from a clean build before the next candidate.
        Build();
      }
    }
    if (summary.resumed_from.empty() && !hooks_.resume_candidates.empty()) {
      summary.warnings.push_back("no checkpoint could be read; starting from step 0");
    }
  }

  auto train_start = std::chrono::steady_clock::now();
  for (int64_t epoch = start_epoch_; epoch <= config_.epochs; ++epoch) {
    auto t0 = std::chrono::steady_clock::now();
    int64_t samples_before = samples_done_;
    TrainEpoch(epoch);
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (diverged_ || stopped_) break;
    AfterEpoch(epoch, secs, samples_done_ - samples_before);
    if (diverged_) break;
  }
  summary.train_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - train_start).count();
  summary.status = diverged_ ? "diverged" : stopped_ ? "stopped" : "succeeded";
  if (summary.status == "succeeded" && !hooks_.export_model.empty()) {
    const auto* bits =
        dynamic_cast<const madam::optim::IntegerMadam*>(&optimizers_.front()->torch_optimizer());
    if (bits == nullptr || networks_.size() != 1) {
      throw RunError("--export-model needs one network trained by int_madam");
    }
    auto stats = ExportIntegerModel(*networks_.front().module, *bits, config_.task,
                                    hooks_.export_model);
    ThrowIfError(stats.status());
    summary.export_bytes = stats->file_bytes;
    summary.fp32_bytes = stats->fp32_bytes;
  }
  summary.steps = step_;
  summary.final = final_;
  summary.last_checkpoint = last_checkpoint_;
  summary.best_val_epoch = best_val_epoch_;
  return summary;
}

}  // namespace

struct Trainer::Impl {
  WorkerOptions options;
  torch::Device device{torch::kCPU};
  std::string device_error;  // set when options.device does not parse; every run fails with it
  DatasetCache cache;        // one copy of each dataset per process

  // The task for `config`, its data prepared. Throws RunError.
  std::unique_ptr<Task> PrepareTask(const RunConfig& config, const std::string& output_dir,
                                    const TaskInfo** info) {
    *info = FindTask(config.task);
    if (*info == nullptr) throw RunError("unknown task \"" + config.task + "\"");
    if (!IsKnownOptimizer(config.optimizer)) {
      throw RunError("unknown optimizer \"" + config.optimizer + "\"");
    }
    if (!device_error.empty()) throw RunError(device_error);
    if (device.is_cuda()) {
      if (!torch::cuda::is_available()) {
        throw RunError("device " + device.str() + " requested but CUDA is not available");
      }
      const auto count = static_cast<int64_t>(torch::cuda::device_count());
      if (device.has_index() && device.index() >= count) {
        throw RunError("device " + device.str() + " requested but only " + std::to_string(count) +
                       " CUDA device(s) are visible");
      }
    }
    std::unique_ptr<Task> task = MakeTask(config.task);
    if (task == nullptr) throw RunError("task \"" + config.task + "\" has no implementation");
    TaskContext context;
    context.device = device;
    context.data_dir = options.data_dir;
    context.cache = &cache;
    context.training_threads = options.threads;
    context.loader_threads = options.loader_threads;
    context.fid_model = options.fid_model;
    context.output_dir = output_dir;
    task->Prepare(config, context);
    return task;
  }
};

Trainer::Trainer(WorkerOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
  const std::string& dev = impl_->options.device;
  try {
    if (dev == "auto") {
      impl_->device = torch::cuda::is_available() ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);
    } else {
      impl_->device = torch::Device(dev);
    }
  } catch (const std::exception&) {
    impl_->device_error = "unknown device \"" + dev + "\" (expected auto, cpu or cuda:N)";
  }
  if (impl_->options.threads > 0) {
    static std::once_flag interop_once;
    std::call_once(interop_once, [&] {
      try {
        at::set_num_interop_threads(1);
      } catch (const std::exception&) {
        // Already started: keep LibTorch's pool.
      }
    });
    at::set_num_threads(impl_->options.threads);
  }
}

Trainer::~Trainer() = default;

std::string Trainer::DeviceName() const { return impl_->device.str(); }

RunSummary Trainer::Run(const RunConfig& config, const RunHooks& hooks) {
  RunSummary summary;
  try {
    const TaskInfo* info = nullptr;
    std::unique_ptr<Task> task = impl_->PrepareTask(config, hooks.output_dir, &info);
    RunLoop run(config, hooks, *info, task.get());
    return run.Execute();
  } catch (const std::exception& e) {
    summary.error = WhatOf(e);
  }
  summary.status = "failed";
  return summary;
}

Result<std::map<std::string, double>> Trainer::EvaluateExportedModel(const RunConfig& config,
                                                                    const std::string& path) {
  try {
    RunHooks hooks;
    const TaskInfo* info = nullptr;
    std::unique_ptr<Task> task = impl_->PrepareTask(config, hooks.output_dir, &info);
    RunLoop run(config, hooks, *info, task.get());
    std::map<std::string, double> out;
    for (const auto& [name, value] : run.EvaluateExport(path)) out["test/" + name] = value;
    return out;
  } catch (const std::exception& e) {
    return Status::FailedPrecondition(WhatOf(e));
  }
}

}  // namespace madam::worker
