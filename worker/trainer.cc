// The training loop. The only place in the worker that catches LibTorch
// exceptions: Trainer::Run turns every one into a "failed" summary.
#include "worker/trainer.h"

#include <torch/torch.h>

#include <ATen/Parallel.h>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <random>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <mutex>
#include <sstream>
#include <thread>

#include <madam/optim/integer_madam.h>
#include <madam/optim/madam.h>

#include "worker/model_export.h"
#include "worker/tasks/datasets.h"
#include "worker/tasks/models.h"

namespace madam::worker {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kLogEvery = 10;       // train/loss and diagnostics every N steps
constexpr int64_t kBptt = 35;           // wikitext2: sequence length
constexpr int64_t kLmEvalBatch = 10;    // wikitext2: eval batch width
constexpr int64_t kEvalChunk = 1000;    // classification eval batch
constexpr int64_t kCheckpointFormat = 1;
const char* const kDefaultFashionMnistDir = "/usr/share/datasets/fashion-mnist";

double UnixNow() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// Opens `path` (a file or a directory) and fsyncs it: after a rename, the
// directory too, so the new name survives a crash.
Status SyncFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::Internal(path + ": cannot open to sync: " + std::strerror(errno));
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return Status::Internal(path + ": fsync failed: " + std::strerror(err));
  return Status::Ok();
}

uint64_t UniqueSuffix() {
  static std::atomic<uint64_t> counter{0};
  return (static_cast<uint64_t>(std::random_device{}()) << 20) ^ counter.fetch_add(1);
}

// A run failure the trainer raises itself (as opposed to a LibTorch error);
// caught with the others in Trainer::Run.
struct RunError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

void ThrowIfError(const Status& s) {
  if (!s.ok()) throw RunError(s.message());
}

bool IsLanguageTask(const std::string& task) { return task == "wikitext2-transformer"; }

// The seed of epoch `epoch`'s randomness (shuffle, augmentation, dropout).
// Deriving it from (seed, epoch) alone makes a run resumed at an epoch
// boundary replay exactly what the uninterrupted run did.
uint64_t EpochSeed(int64_t seed, int64_t epoch) {
  uint64_t x = static_cast<uint64_t>(seed) * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(epoch);
  x ^= x >> 31;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 29;
  return x & ((uint64_t{1} << 62) - 1);
}

struct TaskData {
  std::shared_ptr<ClassificationData> classification;  // on the run device
  std::shared_ptr<LanguageData> language;              // token streams (CPU)
  torch::Tensor lm_train, lm_test;                     // batchified, on the run device
};

// [tokens] -> [rows, width], dropping the remainder (as PyTorch's
// word_language_model example does).
torch::Tensor Batchify(const torch::Tensor& stream, int64_t width) {
  int64_t rows = stream.size(0) / width;
  if (rows < 2) {
    throw RunError("corpus too small for batch width " + std::to_string(width));
  }
  return stream.narrow(0, 0, rows * width).view({width, rows}).t().contiguous();
}

std::shared_ptr<TaskModel> BuildModel(const std::string& task, const TaskData& data) {
  if (task == "fmnist-mlp") return MakeMlp(784, 256, 10);
  if (task == "synthetic-mlp") return MakeMlp(20, 64, 4);
  if (task == "fmnist-cnn") return MakeSmallCnn(10);
  if (task == "cifar10-resnet18") return MakeCifarResNet18(10);
  if (task == "cifar100-resnet18") return MakeCifarResNet18(100);
  if (task == "wikitext2-transformer") {
    return MakeTransformerLm(static_cast<int64_t>(data.language->vocab.size()));
  }
  throw RunError("unknown task \"" + task + "\"");
}

// Random crop (zero padding 4) and horizontal flip of a batch [n, 3, 32, 32],
// without a per-sample loop: one gather with per-sample offsets.
torch::Tensor AugmentCifar(const torch::Tensor& x) {
  const int64_t n = x.size(0);
  auto opts = torch::TensorOptions().dtype(torch::kLong).device(x.device());
  auto padded = torch::constant_pad_nd(x, {4, 4, 4, 4}, 0);
  auto oy = torch::randint(0, 9, {n, 1}, opts);
  auto ox = torch::randint(0, 9, {n, 1}, opts);
  auto ar = torch::arange(32, opts).unsqueeze(0);
  auto rows = (oy + ar).view({n, 1, 32, 1});
  auto cols = (ox + ar).view({n, 1, 1, 32});
  auto bidx = torch::arange(n, opts).view({n, 1, 1, 1});
  auto cidx = torch::arange(3, opts).view({1, 3, 1, 1});
  auto cropped = padded.index({bidx, cidx, rows, cols});
  auto flip = torch::rand({n, 1, 1, 1}, x.options()).lt(0.5);
  return torch::where(flip, cropped.flip(3), cropped);
}

struct EvalResult {
  double loss = 0;
  double error = 0;  // percent (classification)
};

// Learning-rate schedule: divide by `factor` after `patience` epochs without
// improvement of the test metric (lower is better).
struct PlateauState {
  double lr = 0;
  double best = std::numeric_limits<double>::infinity();
  int64_t bad_epochs = 0;
};

// One run, start to finish: owns its model, optimiser and schedule and runs
// entirely on the caller's thread. Its methods throw (RunError for the run's
// own failures, c10::Error from LibTorch); Trainer::Run and
// Trainer::EvaluateExportedModel are the only callers and catch everything.
class RunLoop {
 public:
  RunLoop(const RunConfig& config, const RunHooks& hooks, torch::Device device, TaskData data)
      : config_(config), hooks_(hooks), device_(device), data_(std::move(data)) {}

  RunSummary Execute();
  // Builds the model, reads an export into it and evaluates it.
  std::map<std::string, double> EvaluateExport(const std::string& path);

 private:
  // Seeds, builds the model and optimiser afresh and resets the run's
  // progress to step 0.
  void Build();
  void BuildOptimizer();
  void Emit(const std::string& name, int64_t step, double value);
  void TrainEpoch(int64_t epoch);
  EvalResult Evaluate();
  void AfterEpoch(int64_t epoch, double epoch_seconds, int64_t epoch_samples);
  void SaveCheckpoint(int64_t epoch);
  void LoadCheckpoint(const std::string& path);
  double CurrentLr() const { return optimizer_->param_groups()[0].options().get_lr(); }
  void SetLr(double lr) {
    for (auto& g : optimizer_->param_groups()) g.options().set_lr(lr);
  }
  // Per-tensor bound for optim/at_bound_fraction: sigma* from the optimiser's
  // state for madam/int_madam; p_scale * RMS(initial) for sgd/adam.
  double BoundOf(size_t i) const;
  // Takes one step on (x, y); logs train/loss and diagnostics when `log`.
  // Returns false when the loss is not finite.
  bool Step(const torch::Tensor& x, const torch::Tensor& y, bool log, int64_t epoch);
  void Progress(int64_t epoch, double loss, bool epoch_end = false);
  // The test-only fail_at_step and pause_at_step parameters, checked before
  // each step: throws for an injected failure; for a pause, waits until the
  // run is told to stop and returns true (the run then ends "stopped").
  bool InjectedFaultStops();

  const RunConfig& config_;
  const RunHooks& hooks_;
  torch::Device device_;
  TaskData data_;
  std::shared_ptr<TaskModel> model_;
  std::vector<torch::Tensor> params_;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  std::vector<double> ref_bounds_;  // sgd/adam reference bounds
  std::vector<torch::Tensor> snapshot_;  // parameters before a logged step
  PlateauState plateau_;
  int64_t step_ = 0;
  int64_t start_epoch_ = 1;
  int64_t steps_per_epoch_ = 0;
  std::map<std::string, double> final_;
  std::string last_checkpoint_;
  double last_loss_ = 0;
  bool diverged_ = false;
  bool stopped_ = false;
  std::chrono::steady_clock::time_point started_;
  int64_t samples_done_ = 0;     // this process, for throughput/eta
  double epoch_train_seconds_ = 0;
};

void RunLoop::Emit(const std::string& name, int64_t step, double value) {
  final_[name] = value;
  if (hooks_.sink != nullptr) hooks_.sink->Write(MetricPoint{name, step, value, UnixNow()});
}

void RunLoop::BuildOptimizer() {
  const auto& c = config_;
  if (c.optimizer == "sgd") {
    optimizer_ = std::make_unique<torch::optim::SGD>(
        params_, torch::optim::SGDOptions(c.lr).momentum(c.momentum).weight_decay(c.weight_decay));
  } else if (c.optimizer == "adam") {
    optimizer_ = std::make_unique<torch::optim::Adam>(
        params_, torch::optim::AdamOptions(c.lr).weight_decay(c.weight_decay));
  } else if (c.optimizer == "madam") {
    optimizer_ = std::make_unique<madam::optim::Madam>(
        params_, madam::optim::MadamOptions(c.lr).beta(c.beta).g_bound(c.g_bound).p_scale(c.p_scale));
  } else if (c.optimizer == "int_madam") {
    optimizer_ = std::make_unique<madam::optim::IntegerMadam>(
        params_, madam::optim::IntegerMadamOptions(c.base_lr)
                     .lr_factor(c.lr / c.base_lr)
                     .bits(c.bits)
                     .init(c.init)
                     .p_scale(c.p_scale)
                     .g_bound(c.g_bound)
                     .beta(c.beta));
  } else {
    throw RunError("unknown optimizer \"" + c.optimizer + "\"");
  }
}

double RunLoop::BoundOf(size_t i) const {
  if (config_.optimizer == "madam") {
    const auto* s = static_cast<const madam::optim::Madam&>(*optimizer_).param_state(params_[i]);
    return s ? s->max() : 0.0;
  }
  if (config_.optimizer == "int_madam") {
    const auto* s = static_cast<const madam::optim::IntegerMadam&>(*optimizer_).param_state(params_[i]);
    return s ? s->max() : 0.0;
  }
  return ref_bounds_[i];
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

// What one optimiser step did to one tensor (the optim/* diagnostics).
struct UpdateStats {
  double delta_sq = 0;   // ||W_after - W_before||^2
  double before_sq = 0;  // ||W_before||^2
  int64_t flips = 0;     // weights whose sign changed
  int64_t at_bound = 0;  // weights with |w| >= bound * (1 - 1e-6)
};

UpdateStats CompareUpdate(const torch::Tensor& before, const torch::Tensor& after, double bound) {
  UpdateStats st;
  const double threshold = bound > 0 ? bound * (1 - 1e-6) : std::numeric_limits<double>::infinity();
  if (before.device().is_cpu() && before.scalar_type() == torch::kFloat && before.is_contiguous() &&
      after.is_contiguous() && after.scalar_type() == torch::kFloat) {
    // One pass over raw memory: the diagnostics run every kLogEvery steps and
    // must not cost a noticeable share of training time.
    // Eight independent lanes per block so the compiler can vectorise
    // without reassociating; block sums go to doubles to keep precision.
    const float* b = before.data_ptr<float>();
    const float* a = after.data_ptr<float>();
    const float t = static_cast<float>(threshold);
    const int64_t n = before.numel();
    constexpr int64_t kLanes = 8, kBlock = 1024;
    double d2 = 0, b2 = 0;
    int64_t flips = 0, at_bound = 0;
    int64_t i = 0;
    for (; i + kBlock <= n; i += kBlock) {
      float ld[kLanes] = {}, lb[kLanes] = {};
      int32_t lf[kLanes] = {}, lt[kLanes] = {};
      for (int64_t j = i; j < i + kBlock; j += kLanes) {
        for (int64_t k = 0; k < kLanes; ++k) {
          const float d = a[j + k] - b[j + k];
          ld[k] += d * d;
          lb[k] += b[j + k] * b[j + k];
          lf[k] += (a[j + k] * b[j + k] < 0.0f) ? 1 : 0;
          lt[k] += (std::fabs(a[j + k]) >= t) ? 1 : 0;
        }
      }
      for (int64_t k = 0; k < kLanes; ++k) {
        d2 += ld[k];
        b2 += lb[k];
        flips += lf[k];
        at_bound += lt[k];
      }
    }
    for (; i < n; ++i) {
      const float d = a[i] - b[i];
      d2 += static_cast<double>(d) * d;
      b2 += static_cast<double>(b[i]) * b[i];
      flips += (a[i] * b[i] < 0.0f);
      at_bound += (std::fabs(a[i]) >= t);
    }
    st.delta_sq = d2;
    st.before_sq = b2;
    st.flips = flips;
    st.at_bound = at_bound;
    return st;
  }
  auto b = before.to(torch::kDouble);
  auto a = after.to(torch::kDouble);
  st.delta_sq = (a - b).pow(2).sum().item<double>();
  st.before_sq = b.pow(2).sum().item<double>();
  st.flips = (a * b).lt(0).sum().item<int64_t>();
  st.at_bound = a.abs().ge(threshold).sum().item<int64_t>();
  return st;
}

bool RunLoop::Step(const torch::Tensor& x, const torch::Tensor& y, bool log, int64_t epoch) {
  if (log) {
    // Snapshot into buffers reused across logged steps.
    torch::NoGradGuard no_grad;
    snapshot_.resize(params_.size());
    for (size_t i = 0; i < params_.size(); ++i) {
      if (!snapshot_[i].defined() || !snapshot_[i].sizes().equals(params_[i].sizes())) {
        snapshot_[i] = torch::empty_like(params_[i], torch::MemoryFormat::Contiguous);
      }
      snapshot_[i].copy_(params_[i].detach());
    }
  }
  // Undefined gradients are cheaper than zero-filled ones; every optimiser
  // here accumulates into a fresh gradient.
  for (auto& p : params_) p.mutable_grad() = torch::Tensor();
  torch::Tensor out = model_->forward(x);
  torch::Tensor loss;
  if (out.dim() == 3) {
    loss = torch::cross_entropy_loss(out.reshape({-1, out.size(2)}), y);
  } else {
    loss = torch::cross_entropy_loss(out, y);
  }
  loss.backward();
  optimizer_->step();
  ++step_;
  if (!log) return true;
  double value = loss.item<double>();
  last_loss_ = value;
  Emit("train/loss", step_, value);
  if (!std::isfinite(value)) return false;
  torch::NoGradGuard no_grad;
  double rel_sum = 0;
  int64_t rel_count = 0;
  int64_t flips = 0, at_bound = 0, total = 0;
  for (size_t i = 0; i < params_.size(); ++i) {
    auto now = params_[i].detach();
    if (!now.is_contiguous()) now = now.contiguous();
    UpdateStats st = CompareUpdate(snapshot_[i], now, BoundOf(i));
    if (st.before_sq > 0) {
      rel_sum += std::sqrt(st.delta_sq / st.before_sq);
      ++rel_count;
    }
    flips += st.flips;
    at_bound += st.at_bound;
    total += now.numel();
  }
  Emit("optim/relative_update", step_, rel_count ? rel_sum / static_cast<double>(rel_count) : 0.0);
  Emit("optim/at_bound_fraction", step_,
       total ? static_cast<double>(at_bound) / static_cast<double>(total) : 0.0);
  Emit("optim/sign_flips", step_, static_cast<double>(flips));
  Progress(epoch, value);
  return true;
}

void RunLoop::TrainEpoch(int64_t epoch) {
  torch::manual_seed(EpochSeed(config_.seed, epoch));
  model_->train();
  if (data_.language) {
    const auto& source = data_.lm_train;
    const int64_t rows = source.size(0);
    int64_t b = 0;
    for (int64_t i = 0; i < rows - 1; i += kBptt, ++b) {
      if (hooks_.should_stop && hooks_.should_stop()) { stopped_ = true; return; }
      if (InjectedFaultStops()) return;
      int64_t len = std::min(kBptt, rows - 1 - i);
      auto x = source.narrow(0, i, len);
      auto y = source.narrow(0, i + 1, len).reshape({-1});
      bool log = (step_ + 1) % kLogEvery == 0 || b == steps_per_epoch_ - 1;
      if (!Step(x, y, log, epoch)) { diverged_ = true; return; }
      samples_done_ += x.numel();
    }
    return;
  }
  const auto& d = *data_.classification;
  const int64_t n = d.train_x.size(0);
  auto gen = at::detail::createCPUGenerator(EpochSeed(config_.seed, epoch) ^ 0x5bd1e995u);
  auto perm = torch::randperm(n, gen, torch::TensorOptions().dtype(torch::kLong)).to(device_);
  const bool augment = config_.task.rfind("cifar", 0) == 0;
  for (int64_t b = 0; b < steps_per_epoch_; ++b) {
    if (hooks_.should_stop && hooks_.should_stop()) { stopped_ = true; return; }
    if (InjectedFaultStops()) return;
    int64_t start = b * config_.batch_size;
    int64_t len = std::min(config_.batch_size, n - start);
    auto idx = perm.narrow(0, start, len);
    auto x = d.train_x.index_select(0, idx);
    auto y = d.train_y.index_select(0, idx);
    if (augment) x = AugmentCifar(x);
    bool log = (step_ + 1) % kLogEvery == 0 || b == steps_per_epoch_ - 1;
    if (!Step(x, y, log, epoch)) { diverged_ = true; return; }
    samples_done_ += len;
  }
}

EvalResult RunLoop::Evaluate() {
  torch::NoGradGuard no_grad;
  model_->eval();
  EvalResult r;
  if (data_.language) {
    const auto& source = data_.lm_test;
    const int64_t rows = source.size(0);
    double total = 0;
    int64_t tokens = 0;
    for (int64_t i = 0; i < rows - 1; i += kBptt) {
      int64_t len = std::min(kBptt, rows - 1 - i);
      auto out = model_->forward(source.narrow(0, i, len));
      auto y = source.narrow(0, i + 1, len).reshape({-1});
      total += torch::cross_entropy_loss(out.reshape({-1, out.size(2)}), y, {},
                                         at::Reduction::Sum)
                   .item<double>();
      tokens += y.numel();
    }
    r.loss = total / static_cast<double>(tokens);
  } else {
    const auto& d = *data_.classification;
    const int64_t n = d.test_x.size(0);
    torch::Tensor loss_sum = torch::zeros({}, torch::TensorOptions().dtype(torch::kDouble).device(device_));
    torch::Tensor wrong = torch::zeros({}, torch::TensorOptions().dtype(torch::kLong).device(device_));
    for (int64_t s = 0; s < n; s += kEvalChunk) {
      int64_t len = std::min(kEvalChunk, n - s);
      auto out = model_->forward(d.test_x.narrow(0, s, len));
      auto y = d.test_y.narrow(0, s, len);
      loss_sum += torch::cross_entropy_loss(out, y, {}, at::Reduction::Sum).to(torch::kDouble);
      wrong += out.argmax(1).ne(y).sum();
    }
    r.loss = loss_sum.item<double>() / static_cast<double>(n);
    r.error = 100.0 * static_cast<double>(wrong.item<int64_t>()) / static_cast<double>(n);
  }
  model_->train();
  return r;
}

void RunLoop::AfterEpoch(int64_t epoch, double epoch_seconds, int64_t epoch_samples) {
  EvalResult r = Evaluate();
  double metric = 0;
  Emit("test/loss", step_, r.loss);
  if (data_.language) {
    metric = std::exp(r.loss);
    Emit("test/perplexity", step_, metric);
  } else {
    metric = r.error;
    Emit("test/error", step_, metric);
  }
  Emit("lr", step_, CurrentLr());
  Emit("samples_per_second", step_,
       epoch_seconds > 0 ? static_cast<double>(epoch_samples) / epoch_seconds : 0.0);
  if (!std::isfinite(r.loss)) {
    diverged_ = true;
    return;
  }
  if (config_.lr_decay == "plateau") {
    if (metric < plateau_.best) {
      plateau_.best = metric;
      plateau_.bad_epochs = 0;
    } else if (++plateau_.bad_epochs >= config_.lr_decay_patience) {
      double lr = CurrentLr() / config_.lr_decay_factor;
      // int_madam decays eta toward eta0: lr_factor never drops below 1.
      if (config_.optimizer == "int_madam") lr = std::max(lr, config_.base_lr);
      SetLr(lr);
      plateau_.bad_epochs = 0;
    }
  }
  plateau_.lr = CurrentLr();
  Progress(epoch, last_loss_, /*epoch_end=*/true);
  if (!hooks_.checkpoint_dir.empty()) SaveCheckpoint(epoch);
}

void RunLoop::SaveCheckpoint(int64_t epoch) {
  fs::create_directories(hooks_.checkpoint_dir);
  torch::serialize::OutputArchive archive;
  archive.write("format", c10::IValue(kCheckpointFormat));
  archive.write("task", c10::IValue(config_.task));
  archive.write("optimizer", c10::IValue(config_.optimizer));
  archive.write("epoch", c10::IValue(epoch));
  archive.write("step", c10::IValue(step_));
  archive.write("sched_lr", c10::IValue(plateau_.lr));
  archive.write("sched_best", c10::IValue(plateau_.best));
  archive.write("sched_bad_epochs", c10::IValue(plateau_.bad_epochs));
  archive.write("rng_cpu", at::detail::getDefaultCPUGenerator().get_state());
  archive.write("ref_bounds", torch::tensor(ref_bounds_.empty() ? std::vector<double>{0.0} : ref_bounds_,
                                            torch::kDouble));
  std::string names;
  std::vector<double> values;
  for (const auto& [k, v] : final_) {
    names += k + "\n";
    values.push_back(v);
  }
  archive.write("final_names", c10::IValue(names));
  archive.write("final_values", torch::tensor(values.empty() ? std::vector<double>{0.0} : values,
                                              torch::kDouble));
  torch::serialize::OutputArchive model_archive;
  model_->save(model_archive);
  archive.write("model", model_archive);
  torch::serialize::OutputArchive optim_archive;
  optimizer_->save(optim_archive);
  archive.write("optim", optim_archive);

  const std::string name = "epoch-" + std::to_string(epoch) + ".pt";
  const fs::path dir(hooks_.checkpoint_dir);
  const fs::path path = dir / name;
  // A name no other writer (another attempt, another process) can share.
  const fs::path tmp = dir / (name + ".tmp-" + std::to_string(::getpid()) + "-" +
                              std::to_string(UniqueSuffix()));
  archive.save_to(tmp.string());
  ThrowIfError(SyncFile(tmp.string()));
  fs::rename(tmp, path);
  ThrowIfError(SyncFile(dir.string()));
  last_checkpoint_ = path.string();
  if (hooks_.keep_checkpoints > 0) {
    const auto all = ListCheckpoints(dir.string());
    for (size_t i = static_cast<size_t>(hooks_.keep_checkpoints); i < all.size(); ++i) {
      std::error_code ec;
      fs::remove(all[i], ec);  // best effort: a leftover file costs disk, not correctness
    }
  }
  if (hooks_.on_checkpoint) hooks_.on_checkpoint(epoch, path.string());
}

void RunLoop::LoadCheckpoint(const std::string& path) {
  if (!fs::exists(path)) throw RunError(path + ": checkpoint not found");
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(path, device_);
  } catch (const c10::Error& e) {
    throw RunError(path + ": not a readable checkpoint: " + e.what_without_backtrace());
  }
  c10::IValue v;
  if (!archive.try_read("format", v) || v.toInt() != kCheckpointFormat) {
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
  start_epoch_ = v.toInt() + 1;
  archive.read("step", v);
  step_ = v.toInt();
  archive.read("sched_lr", v);
  plateau_.lr = v.toDouble();
  archive.read("sched_best", v);
  plateau_.best = v.toDouble();
  archive.read("sched_bad_epochs", v);
  plateau_.bad_epochs = v.toInt();
  torch::Tensor rng;
  archive.read("rng_cpu", rng);
  at::Generator cpu_gen = at::detail::getDefaultCPUGenerator();
  {
    std::lock_guard<std::mutex> lock(cpu_gen.mutex());
    cpu_gen.set_state(rng.to(torch::kCPU));
  }
  torch::Tensor bounds;
  archive.read("ref_bounds", bounds);
  if (!ref_bounds_.empty()) {
    auto b = bounds.to(torch::kCPU).contiguous();
    if (b.numel() != static_cast<int64_t>(ref_bounds_.size())) {
      throw RunError(path + ": checkpoint does not match this task's model");
    }
    for (size_t i = 0; i < ref_bounds_.size(); ++i) ref_bounds_[i] = b.data_ptr<double>()[i];
  }
  archive.read("final_names", v);
  torch::Tensor values;
  archive.read("final_values", values);
  values = values.to(torch::kCPU).contiguous();
  std::istringstream names(v.toStringRef());
  std::string name;
  for (int64_t i = 0; std::getline(names, name); ++i) final_[name] = values.data_ptr<double>()[i];
  torch::serialize::InputArchive model_archive;
  archive.read("model", model_archive);
  try {
    model_->load(model_archive);
  } catch (const c10::Error& e) {
    throw RunError(path + ": checkpoint does not match this task's model: " +
                   e.what_without_backtrace());
  }
  torch::serialize::InputArchive optim_archive;
  archive.read("optim", optim_archive);
  optimizer_->load(optim_archive);
  SetLr(plateau_.lr);
}

std::map<std::string, double> RunLoop::EvaluateExport(const std::string& path) {
  torch::manual_seed(static_cast<uint64_t>(config_.seed));
  model_ = BuildModel(config_.task, data_);
  model_->to(device_);
  ThrowIfError(LoadExportedModel(path, config_.task, *model_));
  EvalResult r = Evaluate();
  std::map<std::string, double> out{{"test/loss", r.loss}};
  if (data_.language) {
    out["test/perplexity"] = std::exp(r.loss);
  } else {
    out["test/error"] = r.error;
  }
  return out;
}

void RunLoop::Build() {
  torch::manual_seed(static_cast<uint64_t>(config_.seed));
  model_ = BuildModel(config_.task, data_);
  if ((config_.optimizer == "madam" || config_.optimizer == "int_madam") && config_.bias_init > 0) {
    InitBiasesAwayFromZero(*model_, config_.bias_init);
  }
  model_->to(device_);
  params_ = model_->parameters();
  ref_bounds_.clear();
  if (config_.optimizer == "sgd" || config_.optimizer == "adam") {
    torch::NoGradGuard no_grad;
    for (auto& p : params_) {
      double rms = p.detach().pow(2).mean().sqrt().item<double>();
      ref_bounds_.push_back(config_.p_scale * rms);
    }
  }
  BuildOptimizer();
  plateau_ = PlateauState{};
  plateau_.lr = config_.lr;
  step_ = 0;
  start_epoch_ = 1;
  final_.clear();
  if (data_.language) {
    steps_per_epoch_ = (data_.lm_train.size(0) - 1 + kBptt - 1) / kBptt;
  } else {
    int64_t n = data_.classification->train_x.size(0);
    steps_per_epoch_ = (n + config_.batch_size - 1) / config_.batch_size;
  }
}

RunSummary RunLoop::Execute() {
  RunSummary summary;
  started_ = std::chrono::steady_clock::now();
  if (!hooks_.export_model.empty() && config_.optimizer != "int_madam") {
    throw RunError("--export-model needs optimizer int_madam (B-bit weights), got " +
                   config_.optimizer);
  }
  Build();
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
        const char* what = e.what();
        if (const auto* c10 = dynamic_cast<const c10::Error*>(&e)) what = c10->what_without_backtrace();
        summary.warnings.push_back("skipped checkpoint " + candidate + ": " + what);
        // A half-read checkpoint may have changed the model or optimiser:
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
    auto stats = ExportIntegerModel(*model_, static_cast<const madam::optim::IntegerMadam&>(*optimizer_),
                                    config_.task, hooks_.export_model);
    ThrowIfError(stats.status());
    summary.export_bytes = stats->file_bytes;
    summary.fp32_bytes = stats->fp32_bytes;
  }
  summary.steps = step_;
  summary.final = final_;
  summary.last_checkpoint = last_checkpoint_;
  return summary;
}

}  // namespace

struct Trainer::Impl {
  WorkerOptions options;
  torch::Device device{torch::kCPU};
  std::string device_error;  // set when options.device does not parse; every run fails with it
  // Loaded datasets, keyed by (kind, directory); one copy per process.
  std::map<std::string, std::shared_ptr<ClassificationData>> classification;
  std::map<std::string, std::shared_ptr<LanguageData>> language;

  std::string DataDir(const std::string& task) const {
    if (!options.data_dir.empty()) return options.data_dir;
    if (task.rfind("fmnist", 0) == 0) return kDefaultFashionMnistDir;
    return "";
  }

  // REQUIRES: a known task. Throws RunError when data cannot be loaded.
  TaskData Load(const std::string& task, int64_t batch_size) {
    TaskData out;
    const std::string dir = DataDir(task);
    if (task == "synthetic-mlp" || task.rfind("fmnist", 0) == 0 || task.rfind("cifar", 0) == 0) {
      std::string key = task.rfind("cifar", 0) == 0 ? task + "|" + dir
                        : task == "synthetic-mlp"    ? std::string("synthetic")
                                                     : "fmnist|" + dir;
      auto it = classification.find(key);
      if (it == classification.end()) {
        std::shared_ptr<ClassificationData> d;
        if (task == "synthetic-mlp") {
          d = std::make_shared<ClassificationData>(MakeSyntheticData());
        } else if (task.rfind("fmnist", 0) == 0) {
          auto r = LoadFashionMnist(dir);
          ThrowIfError(r.status());
          d = std::make_shared<ClassificationData>(std::move(r.value()));
        } else {
          if (dir.empty()) {
            throw RunError(task + " needs --data-dir: a directory with the CIFAR binary files (" +
                           (task == "cifar10-resnet18" ? "data_batch_1..5.bin, test_batch.bin"
                                                       : "train.bin, test.bin") + ")");
          }
          auto r = LoadCifar(dir, task == "cifar10-resnet18" ? 10 : 100);
          ThrowIfError(r.status());
          d = std::make_shared<ClassificationData>(std::move(r.value()));
        }
        if (device != torch::kCPU) {
          d->train_x = d->train_x.to(device);
          d->train_y = d->train_y.to(device);
          d->test_x = d->test_x.to(device);
          d->test_y = d->test_y.to(device);
        }
        it = classification.emplace(key, d).first;
      }
      out.classification = it->second;
      return out;
    }
    if (task == "wikitext2-transformer") {
      if (dir.empty()) {
        throw RunError(task + " needs --data-dir: a directory with wiki.train.tokens, "
                              "wiki.valid.tokens and wiki.test.tokens");
      }
      auto it = language.find(dir);
      if (it == language.end()) {
        auto r = LoadWikiText(dir);
        ThrowIfError(r.status());
        it = language.emplace(dir, std::make_shared<LanguageData>(std::move(r.value()))).first;
      }
      out.language = it->second;
      // Batchified per run: the train width is the run's batch size.
      out.lm_train = Batchify(out.language->train, batch_size).to(device);
      out.lm_test = Batchify(out.language->test, kLmEvalBatch).to(device);
      return out;
    }
    throw RunError("unknown task \"" + task + "\"");
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
    if (FindTask(config.task) == nullptr) throw RunError("unknown task \"" + config.task + "\"");
    if (!IsKnownOptimizer(config.optimizer)) {
      throw RunError("unknown optimizer \"" + config.optimizer + "\"");
    }
    if (!impl_->device_error.empty()) throw RunError(impl_->device_error);
    if (impl_->device.is_cuda()) {
      if (!torch::cuda::is_available()) {
        throw RunError("device " + impl_->device.str() + " requested but CUDA is not available");
      }
      const auto count = static_cast<int64_t>(torch::cuda::device_count());
      if (impl_->device.has_index() && impl_->device.index() >= count) {
        throw RunError("device " + impl_->device.str() + " requested but only " +
                       std::to_string(count) + " CUDA device(s) are visible");
      }
    }
    RunLoop run(config, hooks, impl_->device, impl_->Load(config.task, config.batch_size));
    return run.Execute();
  } catch (const c10::Error& e) {
    summary.error = e.what_without_backtrace();
  } catch (const std::exception& e) {
    summary.error = e.what();
  }
  summary.status = "failed";
  return summary;
}

Result<std::map<std::string, double>> Trainer::EvaluateExportedModel(const RunConfig& config,
                                                                    const std::string& path) {
  try {
    RunHooks hooks;
    RunLoop run(config, hooks, impl_->device, impl_->Load(config.task, config.batch_size));
    return run.EvaluateExport(path);
  } catch (const c10::Error& e) {
    return Status::FailedPrecondition(e.what_without_backtrace());
  } catch (const std::exception& e) {
    return Status::FailedPrecondition(e.what());
  }
}

int64_t CheckpointEpoch(const std::string& path) {
  const std::string f = fs::path(path).filename().string();
  if (f.size() < 10 || f.rfind("epoch-", 0) != 0 || f.compare(f.size() - 3, 3, ".pt") != 0) {
    return -1;
  }
  const std::string digits = f.substr(6, f.size() - 9);
  if (digits.empty() || digits.size() > 12 ||
      digits.find_first_not_of("0123456789") != std::string::npos) {
    return -1;
  }
  return std::stoll(digits);
}

std::vector<std::string> ListCheckpoints(const std::string& dir) {
  std::vector<std::pair<int64_t, std::string>> found;
  std::error_code ec;
  fs::directory_iterator it(dir, ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    const int64_t epoch = CheckpointEpoch(it->path().string());
    if (epoch >= 0) found.emplace_back(epoch, it->path().string());
  }
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<std::string> out;
  for (auto& f : found) out.push_back(std::move(f.second));
  return out;
}

std::string FindLatestCheckpoint(const std::string& dir) {
  auto all = ListCheckpoints(dir);
  return all.empty() ? std::string() : all.front();
}

}  // namespace madam::worker
