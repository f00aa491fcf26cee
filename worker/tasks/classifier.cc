#include "worker/tasks/classifier.h"

#include "worker/optimizers.h"

namespace madam::worker {
namespace {

constexpr int64_t kEvalChunk = 1000;
// The validation split's permutation: fixed, so every run holds out the
// same examples whatever its seed.
constexpr uint64_t kHoldoutSeed = 0x5eed5eedu;

}  // namespace

void ClassifierTask::Prepare(const RunConfig& config, const TaskContext& context) {
  config_ = config;
  device_ = context.device;
  rank_ = context.rank;
  world_ = context.world;
  global_batch_ = config.batch_size * context.world;
  data_ = LoadData(config, context);
  const int64_t n = data_->train_x.size(0);
  train_size_ = n;
  train_index_ = torch::Tensor();
  val_index_ = torch::Tensor();
  if (config.val_split > 0) {
    if (config.val_split >= n) {
      throw RunError("val_split " + std::to_string(config.val_split) +
                     " leaves no training examples: the train split has " + std::to_string(n));
    }
    auto gen = at::detail::createCPUGenerator(kHoldoutSeed);
    auto perm = torch::randperm(n, gen, torch::TensorOptions().dtype(torch::kLong));
    // Sorted, so the training split keeps the files' order before shuffling.
    val_index_ = std::get<0>(perm.narrow(0, 0, config.val_split).sort()).to(device_);
    train_index_ = std::get<0>(perm.narrow(0, config.val_split, n - config.val_split).sort()).to(device_);
    train_size_ = n - config.val_split;
  }
}

std::vector<Network> ClassifierTask::BuildNetworks() {
  model_ = MakeModel(config_);
  model_->to(device_);
  return {{"model", model_}};
}

int64_t ClassifierTask::StepsPerEpoch() const {
  return (train_size_ + global_batch_ - 1) / global_batch_;
}

int64_t ClassifierTask::SamplesInStep(int64_t batch) const {
  return std::min(global_batch_, train_size_ - batch * global_batch_);
}

void ClassifierTask::BeginEpoch(int64_t /*epoch*/, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed ^ 0x5bd1e995u);
  order_ = torch::randperm(train_size_, gen, torch::TensorOptions().dtype(torch::kLong)).to(device_);
}

torch::Tensor ClassifierTask::TrainRows(const torch::Tensor& positions) const {
  return train_index_.defined() ? train_index_.index_select(0, positions) : positions;
}

StepLosses ClassifierTask::TrainStep(int64_t batch, const std::vector<RunOptimizer*>& optimizers) {
  RunOptimizer& optimizer = *optimizers.front();
  const int64_t start = batch * global_batch_;
  const int64_t len = std::min(global_batch_, train_size_ - start);
  // This rank's slice of the global batch (all of it on one rank).
  const int64_t lo = len * rank_ / world_, hi = len * (rank_ + 1) / world_;
  optimizer.ClearGrads();
  torch::Tensor share;
  if (hi > lo) {
    auto rows = TrainRows(order_.narrow(0, start + lo, hi - lo));
    auto x = TrainInputs(data_->train_x.index_select(0, rows));
    auto y = data_->train_y.index_select(0, rows);
    // The slice's mean times its share of the batch: summed over the ranks,
    // the global batch's mean (and exactly the mean on one rank).
    share = torch::cross_entropy_loss(model_->forward(x), y);
    if (hi - lo != len) share = share * (static_cast<double>(hi - lo) / static_cast<double>(len));
    share.backward();
  } else {
    // A last batch smaller than the rank count: nothing here; the optimiser
    // step still runs, on the other ranks' gradients.
    share = torch::zeros({}, torch::TensorOptions().device(device_));
  }
  optimizer.Step();
  return {{"train/loss", share.detach()}};
}

std::map<std::string, double> ClassifierTask::Evaluate(Split split) {
  torch::NoGradGuard no_grad;
  model_->eval();
  const bool val = split == Split::kValidation;
  if (val && !val_index_.defined()) throw RunError("this run has no validation split");
  const int64_t n = val ? val_index_.size(0) : data_->test_x.size(0);
  auto loss_sum = torch::zeros({}, torch::TensorOptions().dtype(torch::kDouble).device(device_));
  auto wrong = torch::zeros({}, torch::TensorOptions().dtype(torch::kLong).device(device_));
  for (int64_t s = 0; s < n; s += kEvalChunk) {
    const int64_t len = std::min(kEvalChunk, n - s);
    torch::Tensor x, y;
    if (val) {
      auto rows = val_index_.narrow(0, s, len);
      x = data_->train_x.index_select(0, rows);
      y = data_->train_y.index_select(0, rows);
    } else {
      x = data_->test_x.narrow(0, s, len);
      y = data_->test_y.narrow(0, s, len);
    }
    auto out = model_->forward(EvalInputs(x));
    loss_sum += torch::cross_entropy_loss(out, y, {}, at::Reduction::Sum).to(torch::kDouble);
    wrong += out.argmax(1).ne(y).sum();
  }
  model_->train();
  return {{"loss", loss_sum.item<double>() / static_cast<double>(n)},
          {"error", 100.0 * static_cast<double>(wrong.item<int64_t>()) / static_cast<double>(n)}};
}

}  // namespace madam::worker
