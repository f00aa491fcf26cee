// The networks of the cifar10-cgan task (ARCHITECTURE.md section 6;
// PAPER_RECIPES.md "CIFAR-10 cGAN"): a class-conditional SN-ResNet
// generator (conditional BatchNorm from per-class gains and shifts, one
// self-attention block) and a projection discriminator (Miyato & Koyama
// 2018), every weight spectrally normalised.
//
// Spectral normalisation divides a weight by an estimate of its largest
// singular value, kept as a power-iteration vector `u` (a buffer, so
// checkpoints hold it and a resumed run continues the same iteration):
// each forward pass in training mode takes one power-iteration step and
// updates u; in evaluation mode u stays as it is. Gradients flow through
// sigma = u^T W v with u and v held constant, as in torch.nn.utils.
// spectral_norm.
//
// Parameter names follow torch's conventions ("weight", "bias"), so the
// loop's initialisation rules (bias_init) find the biases; the conditional
// BatchNorm's per-class shifts are named "bias" too and its gains "gain";
// the self-attention output gain is "gamma".
//
// Thread-compatible like any torch module.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <memory>

namespace madam::worker {

// The latent size: pytorch/cGAN/main.py draws z as randn(n, 20 * 4).
inline constexpr int64_t kGanLatentDim = 80;
inline constexpr int64_t kGanClasses = 10;

// W / sigma(W) for `weight` seen as a matrix [rows, rest], with the power
// iteration's `u` (size rows). When `update` is true, one power-iteration
// step first replaces u's contents (without gradient).
torch::Tensor SpectrallyNormalised(const torch::Tensor& weight, torch::Tensor& u, bool update);
// sigma(W) = u^T W v, v = normalise(W^T u): the current estimate of the
// largest singular value (no update, no gradient).
double SpectralNormEstimate(const torch::Tensor& weight, const torch::Tensor& u);

// A spectrally normalised linear layer (weight [out, in], optional bias).
class SNLinearImpl : public torch::nn::Module {
 public:
  SNLinearImpl(int64_t in, int64_t out, bool bias = true);
  torch::Tensor forward(const torch::Tensor& x);
  double sigma() const { return SpectralNormEstimate(weight, u); }
  torch::Tensor weight, bias, u;
};
TORCH_MODULE(SNLinear);

// A spectrally normalised 2-D convolution, stride 1, "same" padding.
class SNConv2dImpl : public torch::nn::Module {
 public:
  SNConv2dImpl(int64_t in, int64_t out, int64_t kernel, bool bias = true);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight, bias, u;

 private:
  int64_t padding_;
};
TORCH_MODULE(SNConv2d);

// The class-conditional generator: z [n, 80] and labels [n] (int64) to
// images [n, 3, 32, 32] in [-1, 1]. `channels` is every block's width;
// `attention_gain` the self-attention output gain's initial value.
class CganGeneratorImpl : public torch::nn::Module {
 public:
  CganGeneratorImpl(int64_t channels, double attention_gain);
  torch::Tensor forward(const torch::Tensor& z, const torch::Tensor& labels);

 private:
  struct Parts;
  std::shared_ptr<Parts> parts_;
};
TORCH_MODULE(CganGenerator);

// The projection discriminator: images [n, 3, 32, 32] and labels [n] to
// one score per image [n]: linear(h) + <embed(y), h>, h the globally
// sum-pooled features.
class CganDiscriminatorImpl : public torch::nn::Module {
 public:
  explicit CganDiscriminatorImpl(int64_t channels);
  torch::Tensor forward(const torch::Tensor& images, const torch::Tensor& labels);

 private:
  struct Parts;
  std::shared_ptr<Parts> parts_;
};
TORCH_MODULE(CganDiscriminator);

}  // namespace madam::worker
