#include "worker/gan_networks.h"

#include <cmath>
#include <string>
#include <vector>

namespace madam::worker {
namespace {

namespace F = torch::nn::functional;

constexpr double kSnEps = 1e-12;  // as torch.nn.utils.spectral_norm

torch::Tensor Normalise(const torch::Tensor& v) { return v / (v.norm() + kSnEps); }

// A fresh u: a random unit vector, as torch.nn.utils.spectral_norm starts.
torch::Tensor FreshU(int64_t rows) { return Normalise(torch::randn({rows})); }

// PyTorch's default initialisation for Linear and Conv2d (kaiming uniform
// with a = sqrt(5), bias uniform in +-1/sqrt(fan_in)).
void DefaultInit(torch::Tensor& weight, torch::Tensor& bias, int64_t fan_in) {
  torch::NoGradGuard no_grad;
  const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
  weight.uniform_(-bound, bound);
  if (bias.defined()) bias.uniform_(-bound, bound);
}

// BatchNorm without its own affine parameters, then a per-class gain
// (starting at 1) and shift (starting at 0): conditional BatchNorm.
class ConditionalBatchNormImpl : public torch::nn::Module {
 public:
  ConditionalBatchNormImpl(int64_t channels, int64_t classes) {
    bn_ = register_module("bn", torch::nn::BatchNorm2d(
                                    torch::nn::BatchNorm2dOptions(channels).affine(false)));
    gain_ = register_parameter("gain", torch::ones({classes, channels}));
    bias_ = register_parameter("bias", torch::zeros({classes, channels}));
  }
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& y) {
    const int64_t n = x.size(0), c = x.size(1);
    return bn_->forward(x) * gain_.index_select(0, y).view({n, c, 1, 1}) +
           bias_.index_select(0, y).view({n, c, 1, 1});
  }

 private:
  torch::nn::BatchNorm2d bn_{nullptr};
  torch::Tensor gain_, bias_;
};
TORCH_MODULE(ConditionalBatchNorm);

// Generator block: CBN, ReLU, 2x nearest upsampling, 3x3 conv, CBN, ReLU,
// 3x3 conv, plus an upsampled 1x1-conv shortcut.
class GBlockImpl : public torch::nn::Module {
 public:
  GBlockImpl(int64_t in, int64_t out, int64_t classes) {
    bn1_ = register_module("bn1", ConditionalBatchNorm(in, classes));
    conv1_ = register_module("conv1", SNConv2d(in, out, 3));
    bn2_ = register_module("bn2", ConditionalBatchNorm(out, classes));
    conv2_ = register_module("conv2", SNConv2d(out, out, 3));
    shortcut_ = register_module("shortcut", SNConv2d(in, out, 1));
  }
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& y) {
    auto up = [](const torch::Tensor& t) {
      return F::interpolate(t, F::InterpolateFuncOptions()
                                   .scale_factor(std::vector<double>{2.0, 2.0})
                                   .mode(torch::kNearest));
    };
    auto h = conv1_->forward(up(torch::relu(bn1_->forward(x, y))));
    h = conv2_->forward(torch::relu(bn2_->forward(h, y)));
    return h + shortcut_->forward(up(x));
  }

 private:
  ConditionalBatchNorm bn1_{nullptr}, bn2_{nullptr};
  SNConv2d conv1_{nullptr}, conv2_{nullptr}, shortcut_{nullptr};
};
TORCH_MODULE(GBlock);

// Discriminator block: (ReLU,) 3x3 conv, ReLU, 3x3 conv, optional 2x2
// average pooling, plus a 1x1-conv shortcut where the shape changes. The
// first block starts on the image itself (no ReLU before it) and pools its
// shortcut's input first, as the SN-GAN "optimised block" does.
class DBlockImpl : public torch::nn::Module {
 public:
  DBlockImpl(int64_t in, int64_t out, bool down, bool first) : down_(down), first_(first) {
    conv1_ = register_module("conv1", SNConv2d(in, out, 3));
    conv2_ = register_module("conv2", SNConv2d(out, out, 3));
    if (in != out || down) shortcut_ = register_module("shortcut", SNConv2d(in, out, 1));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    auto pool = [](const torch::Tensor& t) { return F::avg_pool2d(t, F::AvgPool2dFuncOptions(2)); };
    auto h = conv1_->forward(first_ ? x : torch::relu(x));
    h = conv2_->forward(torch::relu(h));
    if (down_) h = pool(h);
    torch::Tensor s = x;
    if (shortcut_) {
      s = first_ ? shortcut_->forward(pool(x)) : shortcut_->forward(x);
      if (down_ && !first_) s = pool(s);
    }
    return h + s;
  }

 private:
  bool down_, first_;
  SNConv2d conv1_{nullptr}, conv2_{nullptr}, shortcut_{nullptr};
};
TORCH_MODULE(DBlock);

// SAGAN self-attention: x + gamma * o(attention(theta(x), phi(x)) g(x)),
// with phi and g max-pooled 2x2; gamma's initial value is the recipe's
// attention_gain_init.
class SelfAttentionImpl : public torch::nn::Module {
 public:
  SelfAttentionImpl(int64_t channels, double gain) {
    const int64_t k = std::max<int64_t>(1, channels / 8), v = std::max<int64_t>(1, channels / 2);
    theta_ = register_module("theta", SNConv2d(channels, k, 1, false));
    phi_ = register_module("phi", SNConv2d(channels, k, 1, false));
    g_ = register_module("g", SNConv2d(channels, v, 1, false));
    o_ = register_module("o", SNConv2d(v, channels, 1, false));
    gamma_ = register_parameter("gamma", torch::full({1}, gain));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    const int64_t n = x.size(0);
    auto pool = [](const torch::Tensor& t) { return F::max_pool2d(t, F::MaxPool2dFuncOptions(2)); };
    auto theta = theta_->forward(x).flatten(2);        // [n, k, hw]
    auto phi = pool(phi_->forward(x)).flatten(2);      // [n, k, hw/4]
    auto g = pool(g_->forward(x)).flatten(2);          // [n, v, hw/4]
    auto beta = torch::softmax(torch::bmm(theta.transpose(1, 2), phi), -1);  // [n, hw, hw/4]
    auto attended = torch::bmm(g, beta.transpose(1, 2)).view({n, g.size(1), x.size(2), x.size(3)});
    return x + gamma_ * o_->forward(attended);
  }

 private:
  SNConv2d theta_{nullptr}, phi_{nullptr}, g_{nullptr}, o_{nullptr};
  torch::Tensor gamma_;
};
TORCH_MODULE(SelfAttention);

}  // namespace

torch::Tensor SpectrallyNormalised(const torch::Tensor& weight, torch::Tensor& u, bool update) {
  auto w = weight.view({weight.size(0), -1});
  if (update) {
    torch::NoGradGuard no_grad;
    auto v = Normalise(torch::mv(w.t(), u));
    u.copy_(Normalise(torch::mv(w, v)));
  }
  torch::Tensor u0, v;
  {
    torch::NoGradGuard no_grad;
    u0 = u.clone();
    v = Normalise(torch::mv(w.t(), u0));
  }
  auto sigma = torch::dot(u0, torch::mv(w, v));
  return weight / sigma;
}

double SpectralNormEstimate(const torch::Tensor& weight, const torch::Tensor& u) {
  torch::NoGradGuard no_grad;
  auto w = weight.view({weight.size(0), -1});
  auto v = Normalise(torch::mv(w.t(), u));
  return torch::dot(u, torch::mv(w, v)).item<double>();
}

SNLinearImpl::SNLinearImpl(int64_t in, int64_t out, bool with_bias) {
  weight = register_parameter("weight", torch::empty({out, in}));
  if (with_bias) bias = register_parameter("bias", torch::empty({out}));
  DefaultInit(weight, bias, in);
  u = register_buffer("u", FreshU(out));
}

torch::Tensor SNLinearImpl::forward(const torch::Tensor& x) {
  auto w = SpectrallyNormalised(weight, u, is_training());
  return bias.defined() ? torch::addmm(bias, x, w.t()) : torch::mm(x, w.t());
}

SNConv2dImpl::SNConv2dImpl(int64_t in, int64_t out, int64_t kernel, bool with_bias)
    : padding_(kernel / 2) {
  weight = register_parameter("weight", torch::empty({out, in, kernel, kernel}));
  if (with_bias) bias = register_parameter("bias", torch::empty({out}));
  DefaultInit(weight, bias, in * kernel * kernel);
  u = register_buffer("u", FreshU(out));
}

torch::Tensor SNConv2dImpl::forward(const torch::Tensor& x) {
  auto w = SpectrallyNormalised(weight, u, is_training());
  return torch::conv2d(x, w, bias, /*stride=*/1, /*padding=*/padding_);
}

struct CganGeneratorImpl::Parts {
  int64_t channels;
  SNLinear input{nullptr};
  GBlock block1{nullptr}, block2{nullptr}, block3{nullptr};
  SelfAttention attention{nullptr};
  torch::nn::BatchNorm2d bn{nullptr};
  SNConv2d output{nullptr};
};

CganGeneratorImpl::CganGeneratorImpl(int64_t channels, double attention_gain)
    : parts_(std::make_shared<Parts>()) {
  Parts& p = *parts_;
  p.channels = channels;
  p.input = register_module("input", SNLinear(kGanLatentDim, 4 * 4 * channels));
  p.block1 = register_module("block1", GBlock(channels, channels, kGanClasses));    // 4 -> 8
  p.block2 = register_module("block2", GBlock(channels, channels, kGanClasses));    // 8 -> 16
  p.attention = register_module("attention", SelfAttention(channels, attention_gain));  // at 16
  p.block3 = register_module("block3", GBlock(channels, channels, kGanClasses));    // 16 -> 32
  p.bn = register_module("bn", torch::nn::BatchNorm2d(channels));
  p.output = register_module("output", SNConv2d(channels, 3, 3));
}

torch::Tensor CganGeneratorImpl::forward(const torch::Tensor& z, const torch::Tensor& labels) {
  Parts& p = *parts_;
  auto h = p.input->forward(z).view({z.size(0), p.channels, 4, 4});
  h = p.block1->forward(h, labels);
  h = p.block2->forward(h, labels);
  h = p.attention->forward(h);
  h = p.block3->forward(h, labels);
  return torch::tanh(p.output->forward(torch::relu(p.bn->forward(h))));
}

struct CganDiscriminatorImpl::Parts {
  DBlock block1{nullptr}, block2{nullptr}, block3{nullptr}, block4{nullptr};
  SNLinear linear{nullptr};
  torch::Tensor embed, embed_u;  // the projection: [classes, channels] and its u
};

CganDiscriminatorImpl::CganDiscriminatorImpl(int64_t channels) : parts_(std::make_shared<Parts>()) {
  Parts& p = *parts_;
  p.block1 = register_module("block1", DBlock(3, channels, true, true));               // 32 -> 16
  p.block2 = register_module("block2", DBlock(channels, channels, true, false));       // 16 -> 8
  p.block3 = register_module("block3", DBlock(channels, channels, false, false));
  p.block4 = register_module("block4", DBlock(channels, channels, false, false));
  p.linear = register_module("linear", SNLinear(channels, 1));
  {
    torch::NoGradGuard no_grad;
    p.embed = register_parameter("embed", torch::empty({kGanClasses, channels}).normal_(0.0, 1.0));
  }
  p.embed_u = register_buffer("embed_u", FreshU(kGanClasses));
}

torch::Tensor CganDiscriminatorImpl::forward(const torch::Tensor& images,
                                             const torch::Tensor& labels) {
  Parts& p = *parts_;
  auto h = p.block1->forward(images);
  h = p.block2->forward(h);
  h = p.block3->forward(h);
  h = p.block4->forward(h);
  h = torch::relu(h).sum({2, 3});  // [n, channels]
  auto embed = SpectrallyNormalised(p.embed, p.embed_u, is_training());
  return p.linear->forward(h).squeeze(1) + (embed.index_select(0, labels) * h).sum(1);
}

}  // namespace madam::worker
