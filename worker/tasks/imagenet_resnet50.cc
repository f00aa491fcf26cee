// imagenet-resnet50: ImageNet as JPEG folders in --data-dir
// (train/CLASS/*.JPEG, val/CLASS/*.JPEG; val/ is the test set, as in the
// paper) and torchvision's ResNet-50, trained as the authors'
// pytorch/imagenet does (recipe: common/recipes/imagenet.cc). The input
// pipeline (worker/data/) decodes with libjpeg-turbo and augments on
// loader threads: RandomResizedCrop with the authors' ranges and a flip for
// training, resize to image_size * 256/224 and a centre crop for the test.
// Metrics: test/error (top-1 %), test/error5 (top-5 %) and
// data/skipped_files (corrupt files left out, each warned about once).
#include <iostream>

#include "worker/data/image_folder.h"
#include "worker/data/image_loader.h"
#include "worker/optimizers.h"
#include "worker/tasks/factories.h"
#include "worker/tasks/resnet50.h"

namespace madam::worker {
namespace {

class ImageNetResNet50Task final : public Task {
 public:
  void Prepare(const RunConfig& config, const TaskContext& context) override {
    config_ = config;
    device_ = context.device;
    const std::string& dir = context.data_dir;
    if (dir.empty()) {
      throw RunError("imagenet-resnet50 needs --data-dir: a directory with train/CLASS/*.JPEG and "
                     "val/CLASS/*.JPEG");
    }
    // A scan of the 1.28M training files is worth keeping across runs.
    dataset_ = context.cache->GetOrLoad<data::ImageFolderDataset>("imagefolder|" + dir, [&] {
      auto scanned = data::ScanImageFolder(dir);
      if (!scanned.ok()) throw RunError(scanned.status().message());
      return std::move(*scanned);
    });
    const int size = static_cast<int>(config.image_size);
    auto make = [&](const data::ImageFolderSplit& split, data::ImageLoaderOptions options) {
      options.threads = context.loader_threads;
      options.training_threads = context.training_threads;
      options.pin_memory = device_.is_cuda();
      auto loader = data::ImageLoader::Create(&split, options, [](const std::string& warning) {
        std::cerr << "madam-worker: " << warning << "\n";
      });
      if (!loader.ok()) throw RunError(loader.status().message());
      return std::move(*loader);
    };
    world_ = context.world;
    data::ImageLoaderOptions train =
        data::ImageLoaderOptions::Train(size, config.batch_size, static_cast<uint64_t>(config.seed));
    train.shard_rank = context.rank;
    train.shard_count = context.world;
    train_ = make(dataset_->train, train);
    test_ = make(dataset_->val, data::ImageLoaderOptions::Validation(size, config.batch_size));
    if (train_->batches_per_epoch() == 0) {
      throw RunError(dataset_->train.root() + ": " + std::to_string(dataset_->train.size()) +
                     " training images make no whole batch of " + std::to_string(config.batch_size));
    }
  }

  std::vector<Network> BuildNetworks() override {
    model_ = MakeResNet50(dataset_->num_classes(), config_.bn_affine);
    model_->to(device_);
    return {{"model", model_}};
  }

  int64_t StepsPerEpoch() const override { return train_->batches_per_epoch(); }
  // The global batch: every rank's slice is as large as this one's.
  int64_t SamplesInStep(int64_t) const override { return last_batch_size_ * world_; }
  bool ShardsAcrossRanks() const override { return true; }

  void BeginEpoch(int64_t epoch, uint64_t) override { train_->StartEpoch(epoch); }

  StepLosses TrainStep(int64_t batch, const std::vector<RunOptimizer*>& optimizers) override {
    auto next = train_->Next();
    if (!next) {
      throw RunError("the ImageNet loader ended its epoch at batch " + std::to_string(batch) +
                     " of " + std::to_string(train_->batches_per_epoch()));
    }
    last_batch_size_ = next->images.size(0);
    auto x = next->images.to(device_, /*non_blocking=*/true);
    auto y = next->labels.to(device_, /*non_blocking=*/true);
    RunOptimizer& optimizer = *optimizers.front();
    optimizer.ClearGrads();
    // Data parallel: this rank's share of the global batch's mean (every
    // rank's slice has batch_size images unless files were skipped).
    auto loss = torch::cross_entropy_loss(model_->forward(x), y);
    if (world_ > 1) loss = loss / static_cast<double>(world_);
    loss.backward();
    optimizer.Step();
    return {{"train/loss", loss.detach()}};
  }

  std::map<std::string, double> Evaluate(Split split) override {
    if (split == Split::kValidation) throw RunError("imagenet-resnet50 has no validation split");
    torch::NoGradGuard no_grad;
    model_->eval();
    auto opts = torch::TensorOptions().device(device_);
    auto loss_sum = torch::zeros({}, opts.dtype(torch::kDouble));
    auto wrong1 = torch::zeros({}, opts.dtype(torch::kLong));
    auto wrong5 = torch::zeros({}, opts.dtype(torch::kLong));
    int64_t n = 0;
    test_->StartEpoch(0);
    while (auto batch = test_->Next()) {
      auto x = batch->images.to(device_, true);
      auto y = batch->labels.to(device_, true);
      auto out = model_->forward(x);
      loss_sum += torch::cross_entropy_loss(out, y, {}, at::Reduction::Sum).to(torch::kDouble);
      const int64_t k = std::min<int64_t>(5, out.size(1));
      auto top = std::get<1>(out.topk(k, 1));
      auto hit = top.eq(y.unsqueeze(1));
      wrong1 += hit.select(1, 0).logical_not().sum();
      wrong5 += hit.any(1).logical_not().sum();
      n += y.size(0);
    }
    model_->train();
    if (n == 0) throw RunError(dataset_->val.root() + ": no test image could be read");
    const double count = static_cast<double>(n);
    return {{"loss", loss_sum.item<double>() / count},
            {"error", 100.0 * static_cast<double>(wrong1.item<int64_t>()) / count},
            {"error5", 100.0 * static_cast<double>(wrong5.item<int64_t>()) / count}};
  }

  bool HasValidation() const override { return false; }

  std::map<std::string, double> EpochMetrics() const override {
    return {{"data/skipped_files",
             static_cast<double>(train_->skipped_files() + test_->skipped_files())}};
  }

 private:
  RunConfig config_;
  torch::Device device_{torch::kCPU};
  std::shared_ptr<const data::ImageFolderDataset> dataset_;
  std::unique_ptr<data::ImageLoader> train_, test_;
  std::shared_ptr<TaskModel> model_;
  int64_t last_batch_size_ = 0;
  int64_t world_ = 1;
};

}  // namespace

std::unique_ptr<Task> MakeImageNetResNet50Task() { return std::make_unique<ImageNetResNet50Task>(); }

}  // namespace madam::worker
