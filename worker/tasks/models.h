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
// The CIFAR ResNet-18: 3x3 stem, four stages of two BasicBlocks (64..512
// channels), global average pooling, one linear layer.
std::shared_ptr<TaskModel> MakeCifarResNet18(int64_t classes);
// A causal Transformer language model: embedding (scaled by sqrt(d_model)),
// sinusoidal positions, `layers` encoder layers, a linear decoder.
std::shared_ptr<TaskModel> MakeTransformerLm(int64_t vocab, int64_t d_model = 200,
                                             int64_t heads = 2, int64_t ff = 200,
                                             int64_t layers = 2, double dropout = 0.2);

// Sets every bias (a parameter whose name ends in "bias") to +-magnitude with
// a random sign per unit: multiplicative optimisers cannot move a zero
// (paper, section 5). Uses the default generator.
void InitBiasesAwayFromZero(torch::nn::Module& model, double magnitude);

}  // namespace madam::worker
