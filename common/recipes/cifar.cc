// CIFAR-10 and CIFAR-100 ResNet-18: pytorch/cifar/ of the authors' code
// (forked from kuangliu/pytorch-cifar), its README's command lines and
// main.py's defaults.
#include "common/recipes/recipes.h"

namespace madam::recipes {
namespace {

const char* const kMain = "pytorch/cifar/main.py";
const char* const kReadme = "pytorch/cifar/README.md";

// What both CIFAR tasks share; `modified` is the network Madam and B-bit
// Madam train (BatchNorm without affine parameters).
std::vector<RecipeRule> SharedRules(const std::string& modified, double madam_p_scale) {
  const std::string main = kMain, readme = kReadme;
  return {
      {{},
       {
           Confirmed("epochs", Num(300), main + " (--epochs 300)"),
           Confirmed("batch_size", Num(1024), main + " (--bsz 1024)"),
           Confirmed("lr_schedule", Str("step"), main + " (lr_schedule every --lr_decay_steps)"),
           Confirmed("lr_milestones", List({100, 200}),
                     main + " (decay when epoch % 100 == 0; epoch 300 ends the run)"),
           Confirmed("val_split", Num(0), main + " (trains on all 50,000)"),
           Confirmed("crop_padding", Num(4), main + " (RandomCrop(32, padding=4), before "
                                                    "Normalize: the padding is black)"),
           Confirmed("hflip", Str("true"), main + " (RandomHorizontalFlip)"),
           Confirmed("bias_init", Str("keep"), main + " (the linear layer keeps PyTorch's init)"),
       }},
      {{"sgd", "adam", "madam"},
       {Confirmed("lr_decay_factor", Num(10), main + " (--decay_gamma 0.1)")}},
      {{"sgd"},
       {
           Confirmed("lr", Num(0.1), readme),
           Confirmed("momentum", Num(0.9), main + " (--momentum 0.9)"),
           Confirmed("weight_decay", Num(0), main + " (weight_decay=0)"),
           Confirmed("bn_affine", Str("true"), main + " (ResNet18 from models/resnet.py)"),
       }},
      {{"adam"},
       {
           Confirmed("lr", Num(0.001), readme),
           Confirmed("bn_affine", Str("true"), main + " (ResNet18 from models/resnet.py)"),
       }},
      {{"madam"},
       {
           Confirmed("lr", Num(0.01), readme),
           Confirmed("p_scale", Num(madam_p_scale), readme + " (--scale)"),
           Confirmed("bn_affine", Str("false"), modified + " (--modified_net: affine=False)"),
       }},
      {{"int_madam"},
       {
           Confirmed("base_lr", Num(0.001), readme + " (--lr=0.001)"),
           Confirmed("lr", Num(0.016), readme + " (--lr_factor=16: eta = 16 x 0.001)"),
           Confirmed("bits", Num(12), readme + " (--num_levels=4096)"),
           Confirmed("lr_factor_decay", Num(4), readme + " (--divider=4)"),
           Confirmed("p_scale", Num(madam_p_scale), readme + " (--scale)"),
           Confirmed("bn_affine", Str("false"), modified + " (--modified_net: affine=False)"),
       }},
  };
}

}  // namespace

std::vector<TaskRecipe> CifarRecipes() {
  TaskRecipe c10{"cifar10-resnet18",
                 "jxbz/madam pytorch/cifar: kuangliu ResNet-18, 300 epochs, x0.1 at 100 and 200",
                 SharedRules("pytorch/cifar/models/resnet_modified.py", 3)};
  c10.rules.front().values.push_back(
      Confirmed("normalize_mean", List({0.4914, 0.4822, 0.4465}), kMain));
  c10.rules.front().values.push_back(
      Confirmed("normalize_std", List({0.2023, 0.1994, 0.2010}), kMain));
  c10.rules.front().values.push_back(
      Confirmed("rotation_degrees", Num(0), std::string(kMain) + " (no rotation for CIFAR-10)"));

  TaskRecipe c100{"cifar100-resnet18",
                  "jxbz/madam pytorch/cifar --cifar100: as CIFAR-10 plus rotation and CIFAR-100 "
                  "statistics; Madam p_scale 1",
                  SharedRules("pytorch/cifar/models_c100/resnet_for_w_clipping.py", 1)};
  c100.rules.front().values.push_back(Confirmed(
      "normalize_mean", List({0.5070751592371323, 0.48654887331495095, 0.4409178433670343}),
      std::string(kMain) + " (TRAIN_SETTING_MEAN)"));
  c100.rules.front().values.push_back(Confirmed(
      "normalize_std", List({0.2673342858792401, 0.2564384629170883, 0.27615047132568404}),
      std::string(kMain) + " (TRAIN_SETTING_STD)"));
  c100.rules.front().values.push_back(
      Confirmed("rotation_degrees", Num(15), "pytorch/cifar/utils_cifar100.py (RandomRotation(15))"));
  return {std::move(c10), std::move(c100)};
}

}  // namespace madam::recipes
