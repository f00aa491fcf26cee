#include "worker/tasks/resnet50.h"

#include <string>

namespace madam::worker {
namespace {

namespace nn = torch::nn;

nn::Conv2d Conv(int64_t in, int64_t out, int64_t kernel, int64_t stride) {
  return nn::Conv2d(
      nn::Conv2dOptions(in, out, kernel).stride(stride).padding(kernel / 2).bias(false));
}

nn::BatchNorm2d Bn(int64_t channels, bool affine) {
  return nn::BatchNorm2d(nn::BatchNorm2dOptions(channels).affine(affine));
}

// 1x1 reduce, 3x3 (carrying the stride), 1x1 expand (x4), plus the shortcut.
class Bottleneck : public nn::Module {
 public:
  static constexpr int64_t kExpansion = 4;

  Bottleneck(int64_t in, int64_t width, int64_t stride, bool affine)
      : conv1_(register_module("conv1", Conv(in, width, 1, 1))),
        bn1_(register_module("bn1", Bn(width, affine))),
        conv2_(register_module("conv2", Conv(width, width, 3, stride))),
        bn2_(register_module("bn2", Bn(width, affine))),
        conv3_(register_module("conv3", Conv(width, width * kExpansion, 1, 1))),
        bn3_(register_module("bn3", Bn(width * kExpansion, affine))) {
    if (stride != 1 || in != width * kExpansion) {
      downsample_ = register_module(
          "downsample", nn::Sequential(Conv(in, width * kExpansion, 1, stride), Bn(width * kExpansion, affine)));
    }
  }

  torch::Tensor forward(torch::Tensor x) {
    auto y = bn1_->forward(conv1_->forward(x)).relu_();
    y = bn2_->forward(conv2_->forward(y)).relu_();
    y = bn3_->forward(conv3_->forward(y));
    y = y + (downsample_.is_empty() ? x : downsample_->forward(x));
    return y.relu_();
  }

 private:
  nn::Conv2d conv1_, conv2_, conv3_;
  nn::BatchNorm2d bn1_, bn2_, bn3_;
  nn::Sequential downsample_{nullptr};
};

class ResNet50 : public TaskModel {
 public:
  ResNet50(int64_t classes, bool affine)
      : conv1_(register_module("conv1", nn::Conv2d(nn::Conv2dOptions(3, 64, 7).stride(2).padding(3).bias(false)))),
        bn1_(register_module("bn1", Bn(64, affine))),
        fc_(register_module("fc", nn::Linear(512 * Bottleneck::kExpansion, classes))) {
    const int64_t blocks[4] = {3, 4, 6, 3};
    const int64_t widths[4] = {64, 128, 256, 512};
    int64_t in = 64;
    for (int stage = 0; stage < 4; ++stage) {
      nn::Sequential layer;
      for (int64_t b = 0; b < blocks[stage]; ++b) {
        const int64_t stride = (stage > 0 && b == 0) ? 2 : 1;
        layer->push_back(std::make_shared<Bottleneck>(in, widths[stage], stride, affine));
        in = widths[stage] * Bottleneck::kExpansion;
      }
      layers_[stage] = register_module("layer" + std::to_string(stage + 1), layer);
    }
    torch::NoGradGuard no_grad;
    for (auto& m : modules(/*include_self=*/false)) {
      if (auto* conv = m->as<nn::Conv2d>()) {
        nn::init::kaiming_normal_(conv->weight, 0.0, torch::kFanOut, torch::kReLU);
      }
    }
  }

  torch::Tensor forward(torch::Tensor x) override {
    x = bn1_->forward(conv1_->forward(x)).relu_();
    x = torch::max_pool2d(x, /*kernel_size=*/3, /*stride=*/2, /*padding=*/1);
    for (auto& layer : layers_) x = layer->forward(x);
    x = torch::adaptive_avg_pool2d(x, {1, 1}).flatten(1);
    return fc_->forward(x);
  }

 private:
  nn::Conv2d conv1_;
  nn::BatchNorm2d bn1_;
  nn::Linear fc_;
  nn::Sequential layers_[4] = {nullptr, nullptr, nullptr, nullptr};
};

}  // namespace

std::shared_ptr<TaskModel> MakeResNet50(int64_t classes, bool bn_affine) {
  return std::make_shared<ResNet50>(classes, bn_affine);
}

}  // namespace madam::worker
