// The networks of the paper's tasks (ARCHITECTURE.md section 6).
//
// Every model is a TaskModel: a torch module whose forward maps a batch of
// inputs to logits. Classification models take [n, features...] and return
// [n, classes]; the language model takes token ids [seq, batch] and returns
// [seq, batch, vocab]. Thread-compatible like any torch module.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>

namespace madam::worker {

class TaskModel : public torch::nn::Module {
 public:
  virtual torch::Tensor forward(torch::Tensor x) = 0;
};

// 784-256-256-10 for fmnist-mlp; 20-64-64-4 for synthetic-mlp. ReLU between.
std::shared_ptr<TaskModel> MakeMlp(int64_t in, int64_t hidden, int64_t out);
// Two 3x3 conv + max-pool stages (32, 64 channels) and a 128-unit hidden
// layer, on 28x28 grey images given flat as [n, 784].
std::shared_ptr<TaskModel> MakeSmallCnn(int64_t classes);
// The CIFAR ResNet-18 (kuangliu's, as the authors' pytorch/cifar): 3x3
// stem, four stages of two BasicBlocks (64..512 channels), global average
// pooling, one linear layer. `bn_affine` false gives the authors'
// modified_net for Madam: BatchNorm without scale and shift parameters.
std::shared_ptr<TaskModel> MakeCifarResNet18(int64_t classes, bool bn_affine = true);
// A causal Transformer language model: embedding (scaled by sqrt(d_model)),
// sinusoidal positions, `layers` encoder layers, a linear decoder.
std::shared_ptr<TaskModel> MakeTransformerLm(int64_t vocab, int64_t d_model = 200,
                                             int64_t heads = 2, int64_t ff = 200,
                                             int64_t layers = 2, double dropout = 0.2);

// The initialisation rules of ARCHITECTURE.md section 6 (multiplicative
// optimisers cannot move a zero): with bias_init "normal" every bias (a
// parameter whose name ends in "bias") is re-drawn from N(0, bias_init_std);
// with zero_init "normal" every parameter tensor that is all zeros is
// re-drawn from N(0, zero_init_std). Uses the default generator.
struct InitRules {
  bool biases_normal = false;
  double bias_std = 0.01;
  bool zeros_normal = false;
  double zero_std = 0.2;
};
void ApplyInitRules(torch::nn::Module& model, const InitRules& rules);

}  // namespace madam::worker
