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
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <mutex>
#include <sstream>
#include <thread>

#include "common/catalogue.h"
#include "common/devices.h"
#include "worker/checkpoint_io.h"
#include "worker/distributed.h"
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
// Data parallel: the ranks' weights are compared (RankGroup::CheckIdentical)
// after every epoch, and in debug builds every this many steps too.
#ifdef NDEBUG
constexpr int64_t kRankCheckEvery = 0;
#else
constexpr int64_t kRankCheckEvery = 100;
#endif

// The default generator is the process's: a data-parallel run's ranks
// (threads) seed it and build their networks one at a time.
std::mutex& BuildMutex() {
  static std::mutex mu;
  return mu;
}

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
//
// One rank of a data-parallel run when `ranks` is given: every decision
// that changes what the ranks do next (stop, divergence, the validation
// metric the schedule and model selection read) is rank 0's, broadcast, so
// all ranks take the same steps and call the same collectives.
class RunLoop {
 public:
  RunLoop(const RunConfig& config, const RunHooks& hooks, const TaskInfo& info, Task* task,
          RankGroup* ranks = nullptr)
      : config_(config), hooks_(hooks), info_(info), task_(task), ranks_(ranks),
        rank_(ranks != nullptr ? ranks->rank() : 0), schedule_(config) {}

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
  // Data parallel: rank 0's `value` on every rank (unchanged on one rank).
  double Agree(double value);
  // Data parallel: every network's parameters and buffers as rank 0 has them.
  void BroadcastNetworks();
  // Whether step `batch` of an epoch reports per-layer telemetry.
  bool LayerStep(int64_t batch) const;
  void EmitLayerStats(const std::vector<TensorUpdate>& per_tensor);

  const RunConfig& config_;
  const RunHooks& hooks_;
  const TaskInfo& info_;
  Task* task_;  // not owned
  RankGroup* ranks_;  // not owned; null: one rank
  const int rank_;
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
  bool stop_agreed_ = false;  // data parallel: rank 0 asked to stop (TrainEpoch)
  std::chrono::steady_clock::time_point started_;
  int64_t samples_done_ = 0;  // this process, for throughput and eta
};

void RunLoop::Emit(const std::string& name, int64_t step, double value) {
  final_[name] = value;
  if (hooks_.sink != nullptr) hooks_.sink->Write(MetricPoint{name, step, value, UnixNow()});
}

double RunLoop::Agree(double value) {
  if (ranks_ == nullptr) return value;
  std::vector<double> v{value};
  ranks_->BroadcastValues(v);
  return v.front();
}

void RunLoop::BroadcastNetworks() {
  std::vector<torch::Tensor> tensors;
  for (const auto& net : networks_) {
    for (const auto& p : net.module->parameters()) tensors.push_back(p);
    for (const auto& b : net.module->buffers()) tensors.push_back(b);
  }
  ranks_->Broadcast(tensors);
}

void RunLoop::Build() {
  InitRules rules;
  rules.biases_normal = config_.bias_init == "normal";
  rules.bias_std = config_.bias_init_std;
  rules.zeros_normal = config_.zero_init == "normal";
  rules.zero_std = config_.zero_init_std;
  {
    std::lock_guard<std::mutex> lock(BuildMutex());
    torch::manual_seed(static_cast<uint64_t>(config_.seed));
    networks_ = task_->BuildNetworks();
    for (auto& net : networks_) ApplyInitRules(*net.module, rules);
  }
  // Before the optimisers see the weights (B-bit Madam reads its levels
  // from them): every rank starts from rank 0's.
  if (ranks_ != nullptr) BroadcastNetworks();
  optimizers_.clear();
  optimizer_ptrs_.clear();
  for (auto& net : networks_) {
    optimizers_.push_back(MakeOptimizer(config_, net.module->parameters()));
    optimizers_.back()->SetRanks(ranks_);
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
  if (config_.fail_at_step >= 0 && step_ == config_.fail_at_step && rank_ == config_.fault_rank &&
      (config_.fail_attempt == 0 || config_.fail_attempt == hooks_.attempt)) {
    throw RunError("injected failure at step " + std::to_string(step_));
  }
  // Data parallel: rank fault_rank pauses; the others wait for it in their
  // next collective, so such a pause lasts at most the collective timeout.
  const bool pause_here = rank_ == config_.fault_rank && config_.pause_at_step >= 0 &&
                          step_ == config_.pause_at_step &&
                          (config_.pause_attempt == 0 || config_.pause_attempt == hooks_.attempt);
  if (!pause_here) return false;
  if (rank_ != 0) {
    // A rank other than 0 has no stop hook: its pause never ends, a hung
    // rank for the tests of the collective timeout.
    for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
  }
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
  if (ranks_ != nullptr && kRankCheckEvery > 0 && step_ % kRankCheckEvery == 0) {
    ranks_->CheckIdentical(AllParams(), step_);
  }
  if (!log && !layer) return true;
  // The step's loss: the sum of the ranks' shares of the global batch.
  std::vector<double> values;
  for (const auto& entry : losses) values.push_back(entry.second.item<double>());
  if (ranks_ != nullptr) ranks_->AllReduceSum(values);
  bool finite = true;
  for (size_t i = 0; i < losses.size(); ++i) {
    if (log) Emit(losses[i].first, step_, values[i]);
    finite = finite && std::isfinite(values[i]);
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
  if (ranks_ != nullptr) {
    for (auto& o : optimizers_) o->SeedStepRandomness(seed);
  }
  for (auto& net : networks_) net.module->train();
  task_->BeginEpoch(epoch, seed);
  decays_ = schedule_.DecaysFor(epoch);
  for (int64_t b = 0; b < steps_per_epoch_; ++b) {
    const bool stop = hooks_.should_stop && hooks_.should_stop();
    if (ranks_ == nullptr ? stop : stop_agreed_) {
      stopped_ = true;
      return;
    }
    // Data parallel: rank 0's stop decision travels with this step's
    // gradients, and every rank stops before the next step.
    if (ranks_ != nullptr) ranks_->SetStepFlag(stop ? 1.0 : 0.0);
    if (InjectedFaultStops()) return;
    ApplySchedule(epoch);
    const bool log = (step_ + 1) % kLogEvery == 0 || b == steps_per_epoch_ - 1;
    const bool finite = Step(b, log, epoch);
    if (ranks_ != nullptr) stop_agreed_ = ranks_->TakeStepFlag() != 0.0;
    if (!finite) {
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
  // Every rank evaluates (the weights are the same; BatchNorm statistics
  // are each rank's own), rank 0's metrics are the run's.
  if (task_->HasValidation()) {
    std::map<std::string, double> val;
    finite = Agree(EmitEvaluation(Split::kValidation, "val/", &val) ? 1.0 : 0.0) != 0.0 && finite;
    const double metric = Agree(val.at(LeafOf(info_.validation_metric)));
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
    finite = Agree(EmitEvaluation(Split::kTest, "test/", &test) ? 1.0 : 0.0) != 0.0 && finite;
  }
  if (ranks_ != nullptr) ranks_->CheckIdentical(AllParams(), step_);
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
  std::vector<torch::Device> devices{torch::Device(torch::kCPU)};  // one per rank; [0] by default
  std::string device_error;  // set when options.device does not parse; every run fails with it
  DatasetCache cache;        // one copy of each dataset per process

  // The task for `config` as rank `rank` of `world` on `device`, its data
  // prepared. Throws RunError.
  std::unique_ptr<Task> PrepareTask(const RunConfig& config, const std::string& output_dir,
                                    const TaskInfo** info, int rank = 0, int world = 1) {
    *info = FindTask(config.task);
    if (*info == nullptr) throw RunError("unknown task \"" + config.task + "\"");
    if (!IsKnownOptimizer(config.optimizer)) {
      throw RunError("unknown optimizer \"" + config.optimizer + "\"");
    }
    if (!device_error.empty()) throw RunError(device_error);
    const torch::Device device = devices.at(static_cast<size_t>(rank));
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
    if (world > 1) {
      // The ranks share the machine: each gets its share of the threads.
      const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
      const int loaders = options.loader_threads > 0 ? options.loader_threads
                                                     : std::max(1, cores - std::max(0, options.threads));
      context.loader_threads = std::max(1, loaders / world);
      context.training_threads = std::max(1, (options.threads > 0 ? options.threads : cores) / world);
    }
    context.fid_model = options.fid_model;
    context.output_dir = output_dir;
    context.rank = rank;
    context.world = world;
    task->Prepare(config, context);
    return task;
  }

  RunSummary RunRanks(const RunConfig& config, const RunHooks& hooks);
};

// A data-parallel run: ranks 1..N-1 on threads of their own, rank 0 on the
// caller's (it calls the hooks). A rank that fails records its error while
// its connections are still open, so the first error recorded is the cause
// and not a peer's "connection closed" that follows it.
RunSummary Trainer::Impl::RunRanks(const RunConfig& config, const RunHooks& hooks) {
  const int world = static_cast<int>(config.devices);
  RunSummary failed;
  failed.status = "failed";
  if (!device_error.empty()) {
    failed.error = device_error;
    return failed;
  }
  if (static_cast<size_t>(world) > devices.size()) {
    failed.error = "run needs devices " + std::to_string(world) + " but this worker has " +
                   std::to_string(devices.size()) +
                   " (give madam-worker --device with a list, --devices all, or --cpu-ranks N)";
    return failed;
  }
  // Refused before any rank starts (a rank that fails before it joins
  // would leave the others waiting for it until the timeout).
  if (std::unique_ptr<Task> probe = MakeTask(config.task); probe && !probe->ShardsAcrossRanks()) {
    failed.error = "task " + config.task + " does not shard its data across ranks: run it with "
                   "devices 1 (got devices " + std::to_string(world) + ")";
    return failed;
  }
  RankGroupOptions group_options;
  group_options.timeout = std::chrono::milliseconds(
      static_cast<int64_t>(std::max(1.0, hooks.collective_timeout_seconds > 0
                                             ? hooks.collective_timeout_seconds
                                             : options.collective_timeout_seconds) *
                           1000));
  std::unique_ptr<RankRendezvous> rendezvous;
  try {
    rendezvous = std::make_unique<RankRendezvous>(group_options.timeout);
  } catch (const std::exception& e) {
    failed.error = "cannot start the ranks' rendezvous on 127.0.0.1: " + WhatOf(e);
    return failed;
  }
  const uint16_t port = rendezvous->port();
  // The worker's intra-op threads, shared out between the ranks.
  const int total_threads = options.threads > 0 ? options.threads : at::get_num_threads();
  const int rank_threads = std::max(1, total_threads / world);

  std::mutex mu;
  std::string first_error;
  auto run_rank = [&](int rank, const RunHooks& rank_hooks) -> RunSummary {
    at::set_num_threads(rank_threads);
    RunSummary summary;
    auto record = [&](const std::string& what) {
      std::lock_guard<std::mutex> lock(mu);
      if (first_error.empty()) first_error = "rank " + std::to_string(rank) + ": " + what;
      summary.status = "failed";
      summary.error = what;
    };
    try {
      const TaskInfo* info = nullptr;
      std::unique_ptr<Task> task =
          PrepareTask(config, rank == 0 ? rank_hooks.output_dir : std::string(), &info, rank, world);
      RankGroup group(port, rank, world, devices[static_cast<size_t>(rank)], group_options);
      try {
        RunLoop loop(config, rank_hooks, *info, task.get(), &group);
        return loop.Execute();
      } catch (const std::exception& e) {
        record(WhatOf(e));  // before ~RankGroup closes this rank's connections
        return summary;
      }
    } catch (const std::exception& e) {
      record(WhatOf(e));
    }
    return summary;
  };
  // The other ranks read the same checkpoints and nothing else of the hooks.
  RunHooks peer_hooks;
  peer_hooks.resume_from = hooks.resume_from;
  peer_hooks.resume_candidates = hooks.resume_candidates;
  peer_hooks.attempt = hooks.attempt;
  std::condition_variable peer_ended;
  int peers_running = world - 1;  // guarded by mu
  std::vector<std::thread> peers;
  for (int rank = 1; rank < world; ++rank) {
    peers.emplace_back([&, rank] {
      run_rank(rank, peer_hooks);
      std::lock_guard<std::mutex> lock(mu);
      --peers_running;
      peer_ended.notify_all();
    });
  }
  RunSummary summary = run_rank(0, hooks);
  {
    // Every peer's collectives fail within the timeout once rank 0 has
    // ended. One that is still running after twice that is stuck outside
    // them, and a thread cannot be killed: the process ends instead, so
    // that no rank is left running (its lease then expires, and the run is
    // retried elsewhere like any other).
    std::unique_lock<std::mutex> lock(mu);
    if (!peer_ended.wait_for(lock, 2 * group_options.timeout + std::chrono::seconds(5),
                             [&] { return peers_running == 0; })) {
      std::fprintf(stderr,
                   "madam-worker: %d rank(s) of a %d-rank run did not end %lld s after rank 0 "
                   "(%s); exiting so that no rank is left running\n",
                   peers_running, world,
                   static_cast<long long>(2 * group_options.timeout.count() / 1000 + 5),
                   !first_error.empty() ? first_error.c_str() : summary.status.c_str());
      std::fflush(stderr);
      std::_Exit(70);
    }
  }
  for (auto& t : peers) t.join();
  at::set_num_threads(total_threads);
  // Rank 0 ended on its own terms (its last collective done): its summary
  // is the run's. Otherwise the first rank to fail says why.
  if (summary.status != "failed") return summary;
  std::lock_guard<std::mutex> lock(mu);
  if (!first_error.empty()) summary.error = first_error;
  return summary;
}

Trainer::Trainer(WorkerOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
  const std::string& dev = impl_->options.device;
  const int64_t cuda = torch::cuda::is_available() ? static_cast<int64_t>(torch::cuda::device_count()) : 0;
  auto names = ResolveWorkerDevices(dev, impl_->options.cpu_ranks, cuda);
  if (!names.ok()) {
    impl_->device_error = "unknown device \"" + dev + "\" (" + names.status().message() +
                          "; expected auto, all, cpu, cuda:N or a list of them)";
  } else {
    impl_->devices.clear();
    for (const std::string& name : *names) impl_->devices.emplace_back(name);
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

std::string Trainer::DeviceName() const {
  std::string out;
  for (const auto& d : impl_->devices) out += (out.empty() ? "" : ",") + d.str();
  return out;
}

RunSummary Trainer::Run(const RunConfig& config, const RunHooks& hooks) {
  if (config.devices > 1) return impl_->RunRanks(config, hooks);
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
