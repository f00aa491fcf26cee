// CIFAR-10 class-conditional GAN: pytorch/cGAN/ of the authors' code,
// main.py's defaults and the command lines of batch.sh (facts only: that
// code is CC BY-NC-SA). Hinge loss, one discriminator step per generator
// step, random horizontal flips and pixels scaled to [-1, 1] are fixed in
// worker/tasks/cifar10_cgan.cc; they are not run parameters.
#include "common/recipes/recipes.h"

namespace madam::recipes {

std::vector<TaskRecipe> CganRecipes() {
  const std::string main = "pytorch/cGAN/main.py";
  const std::string batch = "pytorch/cGAN/batch.sh";
  const std::string arch = "pytorch/cGAN/architecture/ (PAPER_RECIPES.md; main.py builds one "
                           "Generator() for every optimiser)";
  TaskRecipe r{
      "cifar10-cgan",
      "jxbz/madam pytorch/cGAN: SN-ResNet generator and projection discriminator, hinge loss, "
      "121 epochs, /10 at epoch 100, FID every 10 epochs",
      {
          {{},
           {
               Confirmed("epochs", Num(121), main + " (--epochs 121)"),
               Confirmed("batch_size", Num(256), main + " (--bsz 256)"),
               Confirmed("lr_schedule", Str("step"), main + " (if epoch == 100: decay)"),
               Confirmed("lr_milestones", List({100}),
                         main + " (decays before the 0-based epoch 100: after 100 epochs)"),
               Confirmed("bias_init", Str("normal"), arch + " (biases N(0, 0.01))"),
               Confirmed("bias_init_std", Num(0.01), arch + " (biases N(0, 0.01))"),
               Confirmed("attention_gain_init", Num(1), arch + " (self-attention gamma starts at 1)"),
               Confirmed("fid_samples", Num(10000), main + " (Subset(trainset, range(0, 10000)))"),
               Confirmed("fid_every", Num(10), main + " (--fid 10)"),
           }},
          {{"sgd", "adam", "madam"},
           {Confirmed("lr_decay_factor", Num(10), main + " (group['lr'] /= 10)")}},
          {{"sgd"},
           {
               Confirmed("lr", Num(0.01), batch + " (seeds of the best SGD: --initial_lr 0.01)"),
               Confirmed("momentum", Num(0), main + " (torch.optim.SGD(params, lr))"),
           }},
          {{"adam"},
           {
               Confirmed("lr", Num(0.0001), batch + " (seeds of the best Adam: --initial_lr 0.0001)"),
               Confirmed("adam_beta1", Num(0), main + " (betas=(0.0, 0.999))"),
               Confirmed("adam_beta2", Num(0.999), main + " (betas=(0.0, 0.999))"),
               Confirmed("adam_eps", Num(1e-8), main + " (eps=1e-08)"),
           }},
          {{"madam"}, {Confirmed("lr", Num(0.01), batch + " (--initial_lr 0.01)")}},
          {{"int_madam"},
           {
               Confirmed("lr", Num(0.01), batch + " (--initial_lr 0.01)"),
               Confirmed("base_lr", Num(0.001),
                         batch + " (12-bit: base_lr = initial_lr / --decayfactor 10)"),
               Confirmed("bits", Num(12), batch + " (--levels 4096)"),
               // The decay sets lr_factor to 1 (main.py); with lr_factor
               // lr / base_lr that is a division by lr / base_lr.
               Confirmed("lr_factor_decay", Num(10),
                         main + " (at epoch 100 group['lr_factor'] = 1: 10 / 10)"),
           }},
      }};
  return {std::move(r)};
}

}  // namespace madam::recipes
