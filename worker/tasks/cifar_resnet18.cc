// cifar10-resnet18 and cifar100-resnet18: the CIFAR binary batches in
// --data-dir and the CIFAR ResNet-18, trained as the authors' pytorch/cifar
// does (recipe: common/recipes/cifar.cc): random crop after black padding,
// horizontal flip, a random rotation for CIFAR-100, then per-channel
// normalisation with the recipe's constants; BatchNorm without affine
// parameters where the recipe says so (Madam's modified_net).
#include <cmath>

#include "worker/tasks/classifier.h"
#include "worker/tasks/factories.h"

namespace madam::worker {
namespace {

constexpr double kPi = 3.14159265358979323846;

class CifarResNet18Task final : public ClassifierTask {
 public:
  explicit CifarResNet18Task(int classes) : classes_(classes) {}

  void Prepare(const RunConfig& config, const TaskContext& context) override {
    ClassifierTask::Prepare(config, context);
    auto opts = torch::TensorOptions().dtype(torch::kFloat).device(context.device);
    mean_ = torch::tensor(std::vector<float>(config.normalize_mean.begin(), config.normalize_mean.end()),
                          opts)
                .view({1, 3, 1, 1});
    std_ = torch::tensor(std::vector<float>(config.normalize_std.begin(), config.normalize_std.end()),
                         opts)
               .view({1, 3, 1, 1});
  }

 protected:
  std::shared_ptr<const ClassificationData> LoadData(const RunConfig&,
                                                     const TaskContext& context) override {
    const std::string& dir = context.data_dir;
    if (dir.empty()) {
      throw RunError(std::string(classes_ == 10 ? "cifar10-resnet18" : "cifar100-resnet18") +
                     " needs --data-dir: a directory with the CIFAR binary files (" +
                     (classes_ == 10 ? "data_batch_1..5.bin, test_batch.bin" : "train.bin, test.bin") +
                     ")");
    }
    const torch::Device device = context.device;
    return context.cache->GetOrLoad<ClassificationData>(
        "cifar" + std::to_string(classes_) + "|" + dir + "|" + device.str(), [&] {
          auto r = LoadCifar(dir, classes_);
          if (!r.ok()) throw RunError(r.status().message());
          ClassificationData d = std::move(*r);
          d.train_x = d.train_x.to(device);
          d.train_y = d.train_y.to(device);
          d.test_x = d.test_x.to(device);
          d.test_y = d.test_y.to(device);
          return d;
        });
  }

  std::shared_ptr<TaskModel> MakeModel(const RunConfig& config) override {
    return MakeCifarResNet18(classes_, config.bn_affine);
  }

  // The authors' torchvision order: RandomCrop(32, padding) and flip and
  // (CIFAR-100) RandomRotation on the image, then ToTensor and Normalize.
  // Batched, with per-sample offsets, flips and angles and no per-sample
  // loop; padding and rotation fill with black, before normalising.
  torch::Tensor TrainInputs(const torch::Tensor& bytes) override {
    auto x = bytes.to(torch::kFloat).div_(255.0);
    const int64_t n = x.size(0);
    const int64_t pad = config().crop_padding;
    if (pad > 0) {
      auto opts = torch::TensorOptions().dtype(torch::kLong).device(x.device());
      auto padded = torch::constant_pad_nd(x, {pad, pad, pad, pad}, 0);
      auto oy = torch::randint(0, 2 * pad + 1, {n, 1}, opts);
      auto ox = torch::randint(0, 2 * pad + 1, {n, 1}, opts);
      auto ar = torch::arange(32, opts).unsqueeze(0);
      auto rows = (oy + ar).view({n, 1, 32, 1});
      auto cols = (ox + ar).view({n, 1, 1, 32});
      auto bidx = torch::arange(n, opts).view({n, 1, 1, 1});
      auto cidx = torch::arange(3, opts).view({1, 3, 1, 1});
      x = padded.index({bidx, cidx, rows, cols});
    }
    if (config().hflip) {
      auto flip = torch::rand({n, 1, 1, 1}, x.options()).lt(0.5);
      x = torch::where(flip, x.flip(3), x);
    }
    if (config().rotation_degrees > 0) {
      // Angles uniform in [-d, d], nearest-pixel sampling about the centre,
      // black outside the image: RandomRotation(d)'s defaults.
      auto angle = (torch::rand({n}, x.options()) * 2 - 1) * (config().rotation_degrees * kPi / 180.0);
      auto c = angle.cos(), s = angle.sin(), z = torch::zeros_like(angle);
      auto theta = torch::stack({torch::stack({c, -s, z}, 1), torch::stack({s, c, z}, 1)}, 1);
      auto grid = torch::nn::functional::affine_grid(theta, {n, 3, 32, 32}, /*align_corners=*/false);
      x = torch::nn::functional::grid_sample(
          x, grid,
          torch::nn::functional::GridSampleFuncOptions().mode(torch::kNearest).padding_mode(torch::kZeros).align_corners(false));
    }
    return x.sub_(mean_).div_(std_);
  }

  torch::Tensor EvalInputs(const torch::Tensor& bytes) override {
    return bytes.to(torch::kFloat).div_(255.0).sub_(mean_).div_(std_);
  }

 private:
  const int classes_;
  torch::Tensor mean_, std_;  // [1, 3, 1, 1] on the run's device
};

}  // namespace

std::unique_ptr<Task> MakeCifar10ResNet18Task() { return std::make_unique<CifarResNet18Task>(10); }
std::unique_ptr<Task> MakeCifar100ResNet18Task() { return std::make_unique<CifarResNet18Task>(100); }

}  // namespace madam::worker
