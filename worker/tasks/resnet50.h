// ResNet-50 for the imagenet-resnet50 task (ARCHITECTURE.md section 6;
// PAPER_RECIPES.md: the authors trained torchvision's resnet50).
//
// The torchvision layout: a 7x7/2 stem with 3x3/2 max pooling, four stages
// of bottleneck blocks (3, 4, 6, 3; widths 64, 128, 256, 512, expansion 4),
// the stride on each stage's first 3x3 convolution, a 1x1 projection with
// BatchNorm on each stage's first block, global average pooling, one linear
// layer. Parameter names follow torchvision (`conv1.weight`,
// `layer2.0.downsample.1.bias`, `fc.weight`) and so does initialisation:
// He-normal (fan-out) convolutions, BatchNorm weight 1 and bias 0, the
// linear layer LibTorch's default; no zero-initialised residual branches.
// 25,557,032 parameters for 1000 classes with affine BatchNorm.
//
// forward maps float [n, 3, H, W] (any H, W >= 32) to logits [n, classes].
// Thread-compatible like any torch module.
#pragma once

#include <cstdint>
#include <memory>

#include "worker/tasks/models.h"

namespace madam::worker {

// `bn_affine` false: BatchNorm without learnt scale and shift (the recipe
// decides per optimiser).
std::shared_ptr<TaskModel> MakeResNet50(int64_t classes, bool bn_affine = true);

}  // namespace madam::worker
