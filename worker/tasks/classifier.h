// ClassifierTask: what every classification task shares (ARCHITECTURE.md
// section 6) — a dataset held whole on the run's device, the validation
// split held out of train, the epoch's shuffle, a cross-entropy step and
// test/error in percent. A task supplies its data, its network and how a
// batch becomes the network's input (augmentation, normalisation).
//
// The validation split is val_split training examples chosen by a fixed
// permutation (the same for every run and seed, so runs compare), never
// trained on. Thread-compatible, like every Task.
//
// Data parallel: step k of an epoch is the k-th global batch of world x
// batch_size examples of the epoch's permutation, whatever the rank count;
// rank r trains on its r-th slice. Augmentation draws from LibTorch's
// default generator, which the ranks (threads of one process) share: only
// a task without random augmentation replays a 1-rank run exactly.
#pragma once

#include <memory>

#include "worker/tasks/datasets.h"
#include "worker/tasks/models.h"
#include "worker/tasks/task.h"

namespace madam::worker {

class ClassifierTask : public Task {
 public:
  void Prepare(const RunConfig& config, const TaskContext& context) override;
  std::vector<Network> BuildNetworks() override;
  int64_t StepsPerEpoch() const override;
  int64_t SamplesInStep(int64_t batch) const override;
  void BeginEpoch(int64_t epoch, uint64_t seed) override;
  StepLosses TrainStep(int64_t batch, const std::vector<RunOptimizer*>& optimizers) override;
  std::map<std::string, double> Evaluate(Split split) override;
  bool HasValidation() const override { return val_index_.defined(); }
  bool ShardsAcrossRanks() const override { return true; }

 protected:
  // The whole dataset on `context.device`, through the context's cache.
  virtual std::shared_ptr<const ClassificationData> LoadData(const RunConfig& config,
                                                             const TaskContext& context) = 0;
  virtual std::shared_ptr<TaskModel> MakeModel(const RunConfig& config) = 0;
  // A training batch as the network reads it; by default as stored.
  virtual torch::Tensor TrainInputs(const torch::Tensor& x) { return x; }
  // An evaluation batch as the network reads it; by default as stored.
  virtual torch::Tensor EvalInputs(const torch::Tensor& x) { return x; }

  const RunConfig& config() const { return config_; }
  torch::Device device() const { return device_; }

 private:
  // A batch of training examples by their positions in the training split.
  torch::Tensor TrainRows(const torch::Tensor& positions) const;

  RunConfig config_;
  torch::Device device_{torch::kCPU};
  int rank_ = 0;
  int world_ = 1;
  int64_t global_batch_ = 0;  // batch_size x world
  std::shared_ptr<const ClassificationData> data_;
  int64_t train_size_ = 0;
  torch::Tensor train_index_;  // rows of data_->train_x that train; undefined: all of them
  torch::Tensor val_index_;    // rows held out; undefined: no validation split
  torch::Tensor order_;        // this epoch's permutation of the training split
  std::shared_ptr<TaskModel> model_;
};

}  // namespace madam::worker
