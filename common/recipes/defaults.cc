// The paper's defaults: what every run gets where neither its task's recipe
// nor its sweep says otherwise. RunConfig's member defaults
// (common/run_config.h) must equal these; a unit test checks it.
#include "common/recipes/recipes.h"

namespace madam::recipes {

std::vector<RecipeValue> Defaults() {
  const std::string kMadam = "pytorch/optim/madam.py";
  const std::string kIntMadam = "pytorch/optim/int_madam.py";
  const std::string kPyTorch = "PyTorch's default (PAPER_RECIPES.md: SGD and Adam run PyTorch "
                               "defaults unless a task says otherwise)";
  const std::string kCifar = "pytorch/cifar/main.py";
  const std::string kLm = "pytorch/transformer-wikitext2/main.py";
  const std::string kByTask = "no paper-wide value: each task's recipe sets it";
  const std::string kTestHook = "a test hook, not a paper parameter";
  return {
      Assumed("recipe", Str("paper"), "runs follow their task's recipe unless told otherwise"),
      Confirmed("lr", Num(0.01), kMadam + " (Madam's lr; sweeps tune the baselines')"),
      Assumed("epochs", Num(3), kByTask),
      Assumed("batch_size", Num(128), kByTask),
      Assumed("seed", Num(0), "each run's seed is set by its sweep"),
      Confirmed("momentum", Num(0), kPyTorch),
      Confirmed("weight_decay", Num(0), kPyTorch),
      Confirmed("adam_beta1", Num(0.9), kPyTorch),
      Confirmed("adam_beta2", Num(0.999), kPyTorch),
      Confirmed("adam_eps", Num(1e-8), kPyTorch),
      Confirmed("beta", Num(0.999), kMadam),
      Confirmed("g_bound", Num(10), kMadam),
      Confirmed("p_scale", Num(3), kMadam),
      Confirmed("bits", Num(12), kIntMadam + " (levels 4096)"),
      Confirmed("base_lr", Num(0.001), kIntMadam),
      Confirmed("init", Str("uniform"), kIntMadam + " (levels drawn with randint_like)"),
      Assumed("lr_factor_decay", Num(10), "the divisor of lr_factor at a decay is per task in "
                                          "the authors' scripts; 10 matches the others' x0.1"),
      Confirmed("grad_clip", Num(0), "only WikiText-2's SGD clips (" + kLm + ")"),
      Assumed("lr_schedule", Str("constant"), kByTask),
      Assumed("lr_milestones", List({}), kByTask),
      Confirmed("lr_decay_factor", Num(10), "every task's scripts decay by x0.1"),
      Confirmed("warmup_epochs", Num(0), "only ImageNet warms up (pytorch/imagenet/main.py)"),
      Assumed("lr_decay_patience", Num(2), "plateau decay is not in the authors' scripts"),
      Assumed("lr_min", Num(0), "plateau decay is not in the authors' scripts"),
      Confirmed("val_split", Num(0), "the authors train on all of train (" + kCifar +
                                         ", pytorch/imagenet/main.py, pytorch/cGAN/main.py)"),
      Assumed("model_selection", Str("last"), "the classifiers' scripts report the end of "
                                              "training"),
      Confirmed("bias_init", Str("keep"), "the authors' models keep their own initialisation "
                                          "unless a task's script re-draws it"),
      Assumed("bias_init_std", Num(0.01), "used only with bias_init normal"),
      Confirmed("zero_init", Str("keep"), "only ImageNet's --init_bias re-draws zero tensors"),
      Confirmed("zero_init_std", Num(0.2), "pytorch/imagenet/main.py (--init_bias: N(0, 0.2))"),
      Confirmed("bn_affine", Str("true"), "torch.nn.BatchNorm2d's default"),
      Confirmed("crop_padding", Num(4), kCifar + " (RandomCrop(32, padding=4))"),
      Confirmed("hflip", Str("true"), kCifar + " (RandomHorizontalFlip)"),
      Confirmed("rotation_degrees", Num(0), kCifar + " (no rotation for CIFAR-10)"),
      Confirmed("normalize_mean", List({0.4914, 0.4822, 0.4465}), kCifar),
      Confirmed("normalize_std", List({0.2023, 0.1994, 0.2010}), kCifar),
      Confirmed("emsize", Num(200), kLm),
      Confirmed("nhid", Num(200), kLm),
      Confirmed("nlayers", Num(2), kLm),
      Confirmed("nhead", Num(2), kLm),
      Confirmed("dropout", Num(0.2), kLm),
      Confirmed("bptt", Num(35), kLm),
      Confirmed("eval_batch_size", Num(10), kLm + " (eval_batch_size = 10)"),
      Confirmed("image_size", Num(224), "pytorch/imagenet/main.py (crop_size 224)"),
      Assumed("gan_channels", Num(256), "pytorch/cGAN/architecture/ is not quoted in "
                                        "PAPER_RECIPES.md: the SN-ResNet CIFAR generator's width"),
      Assumed("attention_gain_init", Num(0), "SAGAN's own initialisation; the cGAN recipe sets "
                                             "the authors' 1"),
      Confirmed("fid_samples", Num(10000), "pytorch/cGAN/main.py (Subset(trainset, range(0, "
                                           "10000)) and as many generated images)"),
      Confirmed("fid_every", Num(10), "pytorch/cGAN/main.py (--fid 10)"),
      Assumed("layer_stats_per_epoch", Num(4), "telemetry, not a paper parameter: a few points "
                                               "an epoch keep a 120-epoch run's series small"),
      Assumed("fail_at_step", Num(-1), kTestHook),
      Assumed("pause_at_step", Num(-1), kTestHook),
      Assumed("pause_attempt", Num(1), kTestHook),
      Assumed("devices", Num(1), "one device per run unless a sweep's resources ask for more; "
                                 "batch_size is per device, as the authors' 100 per GPU"),
      Assumed("fault_rank", Num(0), kTestHook),
      Assumed("fail_attempt", Num(0), kTestHook),
  };
}

}  // namespace madam::recipes
