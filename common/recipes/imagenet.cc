// ImageNet ResNet-50: pytorch/imagenet/ of the authors' code (PyTorch's
// imagenet example with an NVIDIA DALI input pipeline), its README's
// command lines and main.py's defaults. The crop geometry (area 0.1..1,
// aspect 0.8..1.25, 100 attempts) and the normalisation are fixed in
// worker/data/ as DALI had them; they are not run parameters.
#include "common/recipes/recipes.h"

namespace madam::recipes {

std::vector<TaskRecipe> ImageNetRecipes() {
  const std::string main = "pytorch/imagenet/main.py";
  const std::string readme = "pytorch/imagenet/README.md";
  TaskRecipe r{
      "imagenet-resnet50",
      "jxbz/madam pytorch/imagenet: torchvision ResNet-50, 120 epochs, x0.1 every 40, 5-epoch warm-up",
      {
          {{},
           {
               Confirmed("epochs", Num(120), main + " (--epochs 120)"),
               Confirmed("batch_size", Num(100), main + " (-b 100, per GPU)"),
               Confirmed("image_size", Num(224), main + " (crop_size 224, val_size 256)"),
               Confirmed("lr_schedule", Str("step"), main + " (adjust_learning_rate: epoch // 40)"),
               Confirmed("lr_milestones", List({40, 80}), main + " (--decay_epochs 40)"),
               Confirmed("bn_affine", Str("true"), main + " (torchvision models.resnet50)"),
           }},
          {{"sgd", "adam", "madam"},
           {
               Confirmed("lr_decay_factor", Num(10), main + " (--decay_factor 0.1)"),
               Confirmed("warmup_epochs", Num(5), main + " (adjust_learning_rate: epoch < 5, per step)"),
           }},
          {{"sgd"},
           {
               Confirmed("lr", Num(0.1), readme + " (--SGD --lr=0.1)"),
               Confirmed("momentum", Num(0.9), main + " (--momentum 0.9)"),
               Confirmed("weight_decay", Num(1e-4), main + " (SGD(..., weight_decay=1e-4))"),
           }},
          {{"adam"}, {Confirmed("lr", Num(0.001), readme + " (--adam --lr=0.001)")}},
          {{"madam"},
           {
               Confirmed("lr", Num(0.01), readme + " (--ori_madam --lr=0.01)"),
               Confirmed("p_scale", Num(3), readme + " (--scale=3)"),
               Confirmed("zero_init", Str("normal"), main + " (--init_bias: all-zero tensors)"),
               Confirmed("zero_init_std", Num(0.2), main + " (--init_bias: normal_(std=0.2))"),
           }},
          {{"int_madam"},
           {
               Confirmed("base_lr", Num(0.001), readme + " (--int_madam --lr=0.001)"),
               Confirmed("lr", Num(0.016), readme + " (--lr_factor=16: eta = 16 x 0.001)"),
               Confirmed("bits", Num(11), readme + " (--num_levels=2048)"),
               Confirmed("lr_factor_decay", Num(4), readme + " (--decay_factor=0.25)"),
               Confirmed("p_scale", Num(3), readme + " (--scale=3)"),
               Confirmed("zero_init", Str("normal"), main + " (--init_bias: all-zero tensors)"),
               Confirmed("zero_init_std", Num(0.2), main + " (--init_bias: normal_(std=0.2))"),
           }},
      }};
  return {std::move(r)};
}

}  // namespace madam::recipes
