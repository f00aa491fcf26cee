// Task: one of the catalogue's tasks (common/catalogue.h) as the training
// loop sees it — its data, its networks, one training step and one
// evaluation (ARCHITECTURE.md section 6).
//
// The loop (worker/trainer.cc) owns the run: it seeds the generators, builds
// one optimiser per network (worker/optimizers.h), drives the schedule,
// validation, checkpoints and metrics, and never asks which task it runs. A
// task owns its data and networks; a task with two networks (a GAN's
// generator and discriminator) gets two optimisers and steps both in
// TrainStep. Implementations live one family per file under worker/tasks/
// and are found by name through MakeTask.
//
// Thread-compatible: one run uses a Task on one thread. Methods throw
// RunError (or LibTorch's c10::Error) on failure; Trainer::Run catches both.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/run_config.h"

namespace madam::worker {

class RunOptimizer;  // worker/optimizers.h

// A run's own failure (bad data, a bad parameter for this data), as opposed
// to an error inside LibTorch.
struct RunError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Datasets loaded once per process and shared by every run that reads the
// same files. Thread-safe: a data-parallel run's ranks (threads) share one
// cache, and the first to ask loads while the others wait.
class DatasetCache {
 public:
  // The entry under `key`, loaded by `load` the first time. `key` names the
  // data, its directory and its device, so entries never collide.
  template <typename T>
  std::shared_ptr<T> GetOrLoad(const std::string& key, const std::function<T()>& load) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = entries_.find(key);
    if (it == entries_.end()) {
      it = entries_.emplace(key, std::make_shared<T>(load())).first;
    }
    return std::static_pointer_cast<T>(it->second);
  }

 private:
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<void>> entries_;
};

struct TaskContext {
  torch::Device device{torch::kCPU};
  std::string data_dir;  // the worker's --data-dir; empty: the task's default
  DatasetCache* cache = nullptr;
  int training_threads = 0;  // the worker's --threads (0: LibTorch's default)
  int loader_threads = 0;    // the worker's --loader-threads (0: the cores left over)
  // The worker's --fid-model (a TorchScript feature extractor, worker/fid.h);
  // empty: none. Tasks that report test/fid load it in Prepare.
  std::string fid_model;
  // Where the run writes files of its own besides checkpoints (a GAN's
  // sample grids): train's --output-dir, a served run's own directory;
  // empty: nowhere.
  std::string output_dir;
  // Data parallelism (ARCHITECTURE.md section 6, `devices`): this rank of
  // `world`. A task that shards (Task::ShardsAcrossRanks) trains rank r on
  // the r-th slice of each global batch of world x batch_size examples.
  int rank = 0;
  int world = 1;
};

// A trainable network and its name in checkpoints.
struct Network {
  std::string name;  // "model", or "generator" / "discriminator"
  std::shared_ptr<torch::nn::Module> module;
};

enum class Split { kValidation, kTest };

// The losses of one step by metric name (train/loss, or train/loss_d and
// train/loss_g), as 0-dim tensors: reading one back waits for the device,
// so the loop reads them only on the steps it logs.
using StepLosses = std::vector<std::pair<std::string, torch::Tensor>>;

class Task {
 public:
  virtual ~Task() = default;

  // Loads the run's data (through the context's cache) before any network
  // is built. Throws RunError naming the path or parameter at fault.
  virtual void Prepare(const RunConfig& config, const TaskContext& context) = 0;
  // Builds fresh networks from the default generator (the loop seeds it) on
  // the run's device, replacing any built before. The loop calls it again
  // when a checkpoint it tried to resume from could not be read.
  virtual std::vector<Network> BuildNetworks() = 0;
  virtual int64_t StepsPerEpoch() const = 0;
  // The training samples step `batch` of an epoch consumes (throughput).
  virtual int64_t SamplesInStep(int64_t batch) const = 0;
  // Before each epoch: orders the epoch's data from `seed`.
  virtual void BeginEpoch(int64_t epoch, uint64_t seed) = 0;
  // One training step on the epoch's `batch`-th batch: forward, backward and
  // one step of each optimiser (optimizers[i] holds BuildNetworks()[i]'s
  // parameters).
  virtual StepLosses TrainStep(int64_t batch, const std::vector<RunOptimizer*>& optimizers) = 0;
  // The split's metrics without its prefix ({"loss", "error"} or {"loss",
  // "perplexity"}); the loop names them val/... or test/....
  virtual std::map<std::string, double> Evaluate(Split split) = 0;
  // Whether Evaluate(kValidation) has data: a held-out split or a valid file.
  virtual bool HasValidation() const = 0;
  // Metrics of the task's own after each epoch, by full name (e.g.
  // data/skipped_files); none by default.
  virtual std::map<std::string, double> EpochMetrics() const { return {}; }
  // Whether the task honours TaskContext::rank and world: its steps and
  // samples count global batches, its TrainStep trains on this rank's slice
  // with the loss scaled by the slice's share of the global batch (so the
  // ranks' gradients sum to the global batch's mean), and returns that
  // share as its loss. A task that does not runs on one device only.
  virtual bool ShardsAcrossRanks() const { return false; }
};

// The implementation registered under a catalogue task name; nullptr for a
// name without one.
std::unique_ptr<Task> MakeTask(std::string_view name);
// Every task name with an implementation.
std::vector<std::string_view> ImplementedTasks();

// The seed of one epoch's randomness (shuffle, augmentation, dropout) from
// the run's seed: a run resumed at an epoch boundary replays exactly what
// the uninterrupted run did.
uint64_t EpochSeed(int64_t seed, int64_t epoch);

}  // namespace madam::worker
