#include "worker/tasks/models.h"

#include <cmath>

namespace madam::worker {
namespace {

namespace nn = torch::nn;

class Mlp : public TaskModel {
 public:
  Mlp(int64_t in, int64_t hidden, int64_t out)
      : fc1_(register_module("fc1", nn::Linear(in, hidden))),
        fc2_(register_module("fc2", nn::Linear(hidden, hidden))),
        fc3_(register_module("fc3", nn::Linear(hidden, out))) {}
  torch::Tensor forward(torch::Tensor x) override {
    // In place: addmm's backward does not need its output, so relu_ may
    // overwrite it, saving an allocation per layer and step.
    x = fc1_->forward(x).relu_();
    x = fc2_->forward(x).relu_();
    return fc3_->forward(x);
  }

 private:
  nn::Linear fc1_, fc2_, fc3_;
};

class SmallCnn : public TaskModel {
 public:
  explicit SmallCnn(int64_t classes)
      : conv1_(register_module("conv1", nn::Conv2d(nn::Conv2dOptions(1, 32, 3).padding(1)))),
        conv2_(register_module("conv2", nn::Conv2d(nn::Conv2dOptions(32, 64, 3).padding(1)))),
        fc1_(register_module("fc1", nn::Linear(64 * 7 * 7, 128))),
        fc2_(register_module("fc2", nn::Linear(128, classes))) {}
  torch::Tensor forward(torch::Tensor x) override {
    x = x.reshape({-1, 1, 28, 28});
    x = torch::max_pool2d(torch::relu(conv1_->forward(x)), 2);
    x = torch::max_pool2d(torch::relu(conv2_->forward(x)), 2);
    x = torch::relu(fc1_->forward(x.flatten(1)));
    return fc2_->forward(x);
  }

 private:
  nn::Conv2d conv1_, conv2_;
  nn::Linear fc1_, fc2_;
};

nn::Conv2d Conv3x3(int64_t in, int64_t out, int64_t stride) {
  return nn::Conv2d(nn::Conv2dOptions(in, out, 3).stride(stride).padding(1).bias(false));
}

nn::BatchNorm2d Bn(int64_t channels, bool affine) {
  return nn::BatchNorm2d(nn::BatchNorm2dOptions(channels).affine(affine));
}

class BasicBlock : public nn::Module {
 public:
  BasicBlock(int64_t in, int64_t out, int64_t stride, bool affine)
      : conv1_(register_module("conv1", Conv3x3(in, out, stride))),
        bn1_(register_module("bn1", Bn(out, affine))),
        conv2_(register_module("conv2", Conv3x3(out, out, 1))),
        bn2_(register_module("bn2", Bn(out, affine))) {
    if (stride != 1 || in != out) {
      shortcut_ = register_module(
          "shortcut",
          nn::Sequential(nn::Conv2d(nn::Conv2dOptions(in, out, 1).stride(stride).bias(false)),
                         Bn(out, affine)));
    }
  }
  torch::Tensor forward(torch::Tensor x) {
    auto y = torch::relu(bn1_->forward(conv1_->forward(x)));
    y = bn2_->forward(conv2_->forward(y));
    y = y + (shortcut_.is_empty() ? x : shortcut_->forward(x));
    return torch::relu(y);
  }

 private:
  nn::Conv2d conv1_, conv2_;
  nn::BatchNorm2d bn1_, bn2_;
  nn::Sequential shortcut_{nullptr};
};

class CifarResNet18 : public TaskModel {
 public:
  CifarResNet18(int64_t classes, bool affine)
      : stem_(register_module("conv1", Conv3x3(3, 64, 1))),
        bn_(register_module("bn1", Bn(64, affine))),
        fc_(register_module("fc", nn::Linear(512, classes))) {
    const int64_t widths[4] = {64, 128, 256, 512};
    int64_t in = 64;
    for (int stage = 0; stage < 4; ++stage) {
      for (int b = 0; b < 2; ++b) {
        int64_t stride = (stage > 0 && b == 0) ? 2 : 1;
        blocks_.push_back(register_module(
            "layer" + std::to_string(stage + 1) + "_" + std::to_string(b),
            std::make_shared<BasicBlock>(in, widths[stage], stride, affine)));
        in = widths[stage];
      }
    }
  }
  torch::Tensor forward(torch::Tensor x) override {
    x = torch::relu(bn_->forward(stem_->forward(x)));
    for (auto& b : blocks_) x = b->forward(x);
    x = torch::adaptive_avg_pool2d(x, {1, 1}).flatten(1);
    return fc_->forward(x);
  }

 private:
  nn::Conv2d stem_;
  nn::BatchNorm2d bn_;
  nn::Linear fc_;
  std::vector<std::shared_ptr<BasicBlock>> blocks_;
};

class TransformerLm : public TaskModel {
 public:
  TransformerLm(int64_t vocab, int64_t d_model, int64_t heads, int64_t ff, int64_t layers,
                double dropout)
      : d_model_(d_model),
        embed_(register_module("embed", nn::Embedding(vocab, d_model))),
        dropout_(register_module("dropout", nn::Dropout(dropout))),
        decoder_(register_module("decoder", nn::Linear(d_model, vocab))) {
    for (int64_t i = 0; i < layers; ++i) {
      layers_.push_back(register_module(
          "layer" + std::to_string(i),
          nn::TransformerEncoderLayer(
              nn::TransformerEncoderLayerOptions(d_model, heads).dim_feedforward(ff).dropout(dropout))));
    }
    torch::NoGradGuard no_grad;
    embed_->weight.uniform_(-0.1, 0.1);
    decoder_->weight.uniform_(-0.1, 0.1);
    decoder_->bias.zero_();
  }
  torch::Tensor forward(torch::Tensor tokens) override {
    const int64_t seq = tokens.size(0);
    auto x = embed_->forward(tokens) * std::sqrt(static_cast<double>(d_model_));
    x = dropout_->forward(x + PositionalEncoding(seq, x.device()).unsqueeze(1));
    auto mask = CausalMask(seq, x.device());
    for (auto& layer : layers_) x = layer->forward(x, mask);
    return decoder_->forward(x);
  }

 private:
  torch::Tensor PositionalEncoding(int64_t seq, torch::Device device) {
    if (!pe_.defined() || pe_.size(0) < seq || pe_.device() != device) {
      auto pos = torch::arange(seq, torch::kFloat).unsqueeze(1);
      auto div = torch::exp(torch::arange(0, d_model_, 2, torch::kFloat) *
                            (-std::log(10000.0) / static_cast<double>(d_model_)));
      auto pe = torch::zeros({seq, d_model_});
      pe.slice(1, 0, d_model_, 2) = torch::sin(pos * div);
      pe.slice(1, 1, d_model_, 2) = torch::cos(pos * div).narrow(1, 0, d_model_ / 2);
      pe_ = pe.to(device);
    }
    return pe_.narrow(0, 0, seq);
  }
  static torch::Tensor CausalMask(int64_t seq, torch::Device device) {
    // Additive mask: -inf above the diagonal so position i sees only 0..i.
    return torch::full({seq, seq}, -std::numeric_limits<float>::infinity(),
                       torch::TensorOptions().device(device))
        .triu(1);
  }

  int64_t d_model_;
  nn::Embedding embed_;
  nn::Dropout dropout_;
  nn::Linear decoder_;
  std::vector<nn::TransformerEncoderLayer> layers_;
  torch::Tensor pe_;  // cache, not a parameter or buffer (not checkpointed)
};

}  // namespace

std::shared_ptr<TaskModel> MakeMlp(int64_t in, int64_t hidden, int64_t out) {
  return std::make_shared<Mlp>(in, hidden, out);
}
std::shared_ptr<TaskModel> MakeSmallCnn(int64_t classes) { return std::make_shared<SmallCnn>(classes); }
std::shared_ptr<TaskModel> MakeCifarResNet18(int64_t classes, bool bn_affine) {
  return std::make_shared<CifarResNet18>(classes, bn_affine);
}
std::shared_ptr<TaskModel> MakeTransformerLm(int64_t vocab, int64_t d_model, int64_t heads,
                                             int64_t ff, int64_t layers, double dropout) {
  return std::make_shared<TransformerLm>(vocab, d_model, heads, ff, layers, dropout);
}

void ApplyInitRules(torch::nn::Module& model, const InitRules& rules) {
  torch::NoGradGuard no_grad;
  for (auto& item : model.named_parameters()) {
    const std::string& name = item.key();
    auto& p = item.value();
    const bool is_bias = name.size() >= 4 && name.compare(name.size() - 4, 4, "bias") == 0;
    if (rules.biases_normal && is_bias) p.normal_(0.0, rules.bias_std);
    if (rules.zeros_normal && p.numel() > 0 && p.eq(0).all().item<bool>()) {
      p.normal_(0.0, rules.zero_std);
    }
  }
}

}  // namespace madam::worker
