// cifar10-cgan: the CIFAR-10 binary batches in --data-dir and a
// class-conditional SN-ResNet GAN (worker/gan_networks.h), trained as the
// authors' pytorch/cGAN does (recipe: common/recipes/cgan.cc): pixels
// scaled to [-1, 1] after a random horizontal flip, the hinge loss, one
// discriminator step then one generator step on every batch, both steps
// conditioned on the batch's labels. The generator is BuildNetworks()[0]
// and the discriminator [1]; each has its own optimiser.
//
// test/fid (ARCHITECTURE.md section 6): after every fid_every epochs and
// after the last, fid_samples images from the generator (in evaluation
// mode, from fixed noise, with the labels of the first fid_samples training
// images) against those training images, through the worker's --fid-model
// (worker/fid_model.h). Without a model the run reports its losses only,
// with one warning: there is no stand-in number. At the same epochs a 10 x
// 10 grid of samples (one row per class, fixed noise) is written as
// samples-epoch-<N>.png into the run's output directory, when it has one.
#include <png.h>

#include <filesystem>
#include <iostream>
#include <limits>

#include "worker/fid_model.h"
#include "worker/gan_networks.h"
#include "worker/optimizers.h"
#include "worker/tasks/datasets.h"
#include "worker/tasks/factories.h"

namespace madam::worker {
namespace {

namespace fs = std::filesystem;

// The fixed noise of FID samples and of the sample grid: the same images
// at every evaluation, whatever the run's seed.
constexpr uint64_t kFidNoiseSeed = 0xf1d5eedu;
constexpr uint64_t kGridNoiseSeed = 0x6e1d5eedu;
constexpr int64_t kGridSide = 10;  // classes per column, samples per row
constexpr int64_t kSampleChunk = 250;

struct FidModelHolder {
  std::shared_ptr<FidModel> model;
};

// A [3, h, w] uint8 image as an RGB PNG (libpng's simplified API).
void WritePng(const std::string& path, const torch::Tensor& chw) {
  auto hwc = chw.permute({1, 2, 0}).contiguous();
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  image.width = static_cast<png_uint_32>(hwc.size(1));
  image.height = static_cast<png_uint_32>(hwc.size(0));
  image.format = PNG_FORMAT_RGB;
  if (!png_image_write_to_file(&image, path.c_str(), 0, hwc.data_ptr<uint8_t>(), 0, nullptr)) {
    throw RunError(path + ": cannot write the sample grid: " + image.message);
  }
}

class CganTask final : public Task {
 public:
  void Prepare(const RunConfig& config, const TaskContext& context) override {
    config_ = config;
    device_ = context.device;
    output_dir_ = context.output_dir;
    const std::string& dir = context.data_dir;
    if (dir.empty()) {
      throw RunError("cifar10-cgan needs --data-dir: a directory with the CIFAR-10 binary files "
                     "(data_batch_1..5.bin, test_batch.bin)");
    }
    data_ = context.cache->GetOrLoad<ClassificationData>("cifar10|" + dir + "|" + device_.str(), [&] {
      auto r = LoadCifar(dir, 10);
      if (!r.ok()) throw RunError(r.status().message());
      ClassificationData d = std::move(*r);
      d.train_x = d.train_x.to(device_);
      d.train_y = d.train_y.to(device_);
      d.test_x = d.test_x.to(device_);
      d.test_y = d.test_y.to(device_);
      return d;
    });
    train_size_ = data_->train_x.size(0);
    if (config.fid_samples > train_size_) {
      throw RunError("parameter fid_samples " + std::to_string(config.fid_samples) +
                     " is more than the " + std::to_string(train_size_) +
                     " training images FID compares against");
    }
    auto cpu_long = torch::TensorOptions().dtype(torch::kLong);
    {
      auto gen = at::detail::createCPUGenerator(kFidNoiseSeed);
      fid_z_ = torch::randn({config.fid_samples, kGanLatentDim}, gen, torch::TensorOptions());
      fid_labels_ = data_->train_y.narrow(0, 0, config.fid_samples).to(torch::kCPU);
    }
    {
      auto gen = at::detail::createCPUGenerator(kGridNoiseSeed);
      grid_z_ = torch::randn({kGridSide * kGridSide, kGanLatentDim}, gen, torch::TensorOptions());
      grid_labels_ = torch::arange(kGridSide * kGridSide, cpu_long).div(kGridSide, "floor");
    }
    fid_.reset();
    real_stats_.reset();
    if (context.fid_model.empty()) {
      std::cerr << "madam-worker: warning: cifar10-cgan without --fid-model: test/fid is not "
                   "computed (the run reports its losses only; README: FID)\n";
      return;
    }
    fid_ = context.cache
               ->GetOrLoad<FidModelHolder>("fid-model|" + context.fid_model + "|" + device_.str(),
                                           [&] {
                                             auto m = FidModel::Load(context.fid_model, device_);
                                             if (!m.ok()) throw RunError(m.status().message());
                                             return FidModelHolder{std::move(*m)};
                                           })
               ->model;
    // The training images' statistics: once per process for each model,
    // data directory and sample count.
    const int64_t n = config.fid_samples;
    real_stats_ = context.cache->GetOrLoad<TensorStats>(
        "fid-real|" + context.fid_model + "|" + dir + "|" + std::to_string(n) + "|" + device_.str(),
        [&] {
          auto images = data_->train_x.narrow(0, 0, n);
          std::vector<torch::Tensor> parts;
          for (int64_t s = 0; s < n; s += kSampleChunk) {
            const int64_t len = std::min(kSampleChunk, n - s);
            parts.push_back(fid_->Features(images.narrow(0, s, len).to(torch::kFloat).div(255.0)));
          }
          return StatsOf(torch::cat(parts, 0));
        });
  }

  std::vector<Network> BuildNetworks() override {
    generator_ = CganGenerator(config_.gan_channels, config_.attention_gain_init);
    discriminator_ = CganDiscriminator(config_.gan_channels);
    generator_->to(device_);
    discriminator_->to(device_);
    return {{"generator", generator_.ptr()}, {"discriminator", discriminator_.ptr()}};
  }

  int64_t StepsPerEpoch() const override {
    return (train_size_ + config_.batch_size - 1) / config_.batch_size;
  }
  int64_t SamplesInStep(int64_t batch) const override {
    return std::min(config_.batch_size, train_size_ - batch * config_.batch_size);
  }

  void BeginEpoch(int64_t epoch, uint64_t seed) override {
    epoch_ = epoch;
    auto gen = at::detail::createCPUGenerator(seed ^ 0x5bd1e995u);
    order_ = torch::randperm(train_size_, gen, torch::TensorOptions().dtype(torch::kLong)).to(device_);
  }

  StepLosses TrainStep(int64_t batch, const std::vector<RunOptimizer*>& optimizers) override {
    RunOptimizer& opt_g = *optimizers.at(0);
    RunOptimizer& opt_d = *optimizers.at(1);
    const int64_t start = batch * config_.batch_size;
    const int64_t len = std::min(config_.batch_size, train_size_ - start);
    auto rows = order_.narrow(0, start, len);
    auto y = data_->train_y.index_select(0, rows);
    // RandomHorizontalFlip, ToTensor, Normalize((0.5,)*3, (0.5,)*3).
    auto x = data_->train_x.index_select(0, rows).to(torch::kFloat).div_(127.5).sub_(1.0);
    auto flip = torch::rand({len, 1, 1, 1}, x.options()).lt(0.5);
    x = torch::where(flip, x.flip(3), x);
    auto noise = torch::TensorOptions().dtype(torch::kFloat).device(device_);

    // The discriminator's hinge loss on real and generated images.
    torch::Tensor fake;
    {
      torch::NoGradGuard no_grad;
      fake = generator_->forward(torch::randn({len, kGanLatentDim}, noise), y);
    }
    opt_d.ClearGrads();
    auto loss_d = torch::relu(1.0 - discriminator_->forward(x, y)).mean() +
                  torch::relu(1.0 + discriminator_->forward(fake, y)).mean();
    loss_d.backward();
    opt_d.Step();

    // The generator's: -D(G(z, y)), through the updated discriminator.
    opt_g.ClearGrads();
    auto loss_g = -discriminator_->forward(
                       generator_->forward(torch::randn({len, kGanLatentDim}, noise), y), y)
                       .mean();
    loss_g.backward();
    opt_g.Step();
    opt_d.ClearGrads();  // the generator's backward left gradients in D
    return {{"train/loss_d", loss_d.detach()}, {"train/loss_g", loss_g.detach()}};
  }

  std::map<std::string, double> Evaluate(Split split) override {
    if (split == Split::kValidation) throw RunError("cifar10-cgan has no validation split");
    const bool due = epoch_ % config_.fid_every == 0 || epoch_ == config_.epochs;
    if (!due) return {};
    torch::NoGradGuard no_grad;
    generator_->eval();
    std::map<std::string, double> out;
    if (!output_dir_.empty()) WriteGrid();
    if (fid_) {
      const int64_t n = fid_z_.size(0);
      std::vector<torch::Tensor> parts;
      bool finite = true;
      for (int64_t s = 0; s < n; s += kSampleChunk) {
        const int64_t len = std::min(kSampleChunk, n - s);
        auto images = generator_->forward(fid_z_.narrow(0, s, len).to(device_),
                                          fid_labels_.narrow(0, s, len).to(device_));
        finite = finite && torch::isfinite(images).all().item<bool>();
        parts.push_back(fid_->Features(images.add(1.0).div_(2.0).clamp_(0.0, 1.0)));
      }
      // A generator that produces NaN has diverged; its FID is not a number either.
      out["fid"] = finite ? FrechetDistance(StatsOf(torch::cat(parts, 0)), *real_stats_)
                          : std::numeric_limits<double>::quiet_NaN();
    }
    generator_->train();
    return out;
  }

  bool HasValidation() const override { return false; }

 private:
  void WriteGrid() {
    auto images = generator_->forward(grid_z_.to(device_), grid_labels_.to(device_));
    auto bytes = images.add(1.0).mul_(127.5).round_().clamp_(0, 255).to(torch::kCPU, torch::kUInt8);
    // [row, col, 3, 32, 32] -> [3, row, 32, col, 32] -> [3, 320, 320]
    auto grid = bytes.view({kGridSide, kGridSide, 3, 32, 32})
                    .permute({2, 0, 3, 1, 4})
                    .reshape({3, kGridSide * 32, kGridSide * 32});
    std::error_code ec;
    fs::create_directories(output_dir_, ec);
    if (ec) throw RunError(output_dir_ + ": cannot create the output directory: " + ec.message());
    WritePng((fs::path(output_dir_) / ("samples-epoch-" + std::to_string(epoch_) + ".png")).string(),
             grid);
  }

  RunConfig config_;
  torch::Device device_{torch::kCPU};
  std::string output_dir_;
  std::shared_ptr<const ClassificationData> data_;
  int64_t train_size_ = 0;
  int64_t epoch_ = 0;
  torch::Tensor order_;
  torch::Tensor fid_z_, fid_labels_, grid_z_, grid_labels_;  // on the CPU
  std::shared_ptr<FidModel> fid_;                 // null: no --fid-model
  std::shared_ptr<const TensorStats> real_stats_;  // with fid_
  CganGenerator generator_{nullptr};
  CganDiscriminator discriminator_{nullptr};
};

}  // namespace

std::unique_ptr<Task> MakeCifar10CganTask() { return std::make_unique<CganTask>(); }

}  // namespace madam::worker
