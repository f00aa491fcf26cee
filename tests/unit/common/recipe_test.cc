// The recipes (common/recipe.h) against PAPER_RECIPES.md: one test per paper
// task pins the values confirmed in the authors' code, and the tables
// themselves are checked for names a task or optimiser does not have.
#include "common/recipe.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>

namespace madam {
namespace {

ResolvedRun Resolve(const std::string& task, const std::string& optimizer, RunParams extra = {}) {
  extra["task"] = ParamValue::String(task);
  extra["optimizer"] = ParamValue::String(optimizer);
  auto r = ResolveRun(extra, {});
  EXPECT_TRUE(r.ok()) << task << "/" << optimizer << ": " << r.status().ToString();
  return r.ok() ? *r : ResolvedRun{};
}

// The value is the expected one and its source is confirmed in `file`.
void ExpectConfirmed(const ResolvedRun& run, const std::string& param, const ParamValue& value,
                     const std::string& file) {
  ASSERT_TRUE(run.params.count(param)) << run.config.task << "/" << run.config.optimizer
                                       << " has no " << param;
  EXPECT_EQ(run.params.at(param), value)
      << run.config.task << "/" << run.config.optimizer << " " << param << " = "
      << run.params.at(param).ToString() << ", expected " << value.ToString();
  const std::string& source = run.sources.at(param);
  EXPECT_EQ(source.rfind("confirmed: ", 0), 0u) << param << ": " << source;
  EXPECT_NE(source.find(file), std::string::npos) << param << ": " << source;
}

ParamValue N(double v) { return ParamValue::Number(v); }
ParamValue S(const std::string& v) { return ParamValue::String(v); }
ParamValue L(std::vector<double> v) { return ParamValue::List(std::move(v)); }

TEST(RecipeTablesTest, DefaultsCoverEveryParameterAndEqualRunConfig) {
  const RunParams struct_defaults = [] {
    RunConfig c;
    c.task = "cifar10-resnet18";  // has every task-feature group but the LM's
    c.optimizer = "sgd";
    return RunConfigToParams(c);
  }();
  for (auto name : KnownRunParams()) {
    if (name == "task" || name == "optimizer") continue;
    const auto& defaults = PaperDefaults();
    auto it = std::find_if(defaults.begin(), defaults.end(),
                           [&](const RecipeValue& v) { return v.param == name; });
    ASSERT_NE(it, defaults.end()) << "no paper default for " << name;
    EXPECT_FALSE(it->reference.empty()) << name;
    // The default must be a valid value of its parameter...
    RunConfig scratch;
    EXPECT_TRUE(ApplyRunParam(name, it->value, scratch).ok()) << name;
    // ...and the same as RunConfig's member default.
    RunConfig from_table, plain;
    ASSERT_TRUE(ApplyRunParam(name, it->value, from_table).ok());
    from_table.task = plain.task = "wikitext2-transformer";
    from_table.optimizer = plain.optimizer = "int_madam";
    EXPECT_EQ(RunConfigToParams(from_table), RunConfigToParams(plain)) << name;
  }
  (void)struct_defaults;
}

TEST(RecipeTablesTest, EveryTaskHasARecipeNamingOnlyItsOwnParameters) {
  for (const auto& task : KnownTasks()) {
    const TaskRecipe* recipe = FindRecipe(task.name);
    ASSERT_NE(recipe, nullptr) << task.name;
    for (const auto& rule : recipe->rules) {
      std::vector<std::string_view> optimizers = rule.optimizers;
      for (auto o : optimizers) EXPECT_NE(FindOptimizer(o), nullptr) << task.name << ": " << o;
      if (optimizers.empty()) {
        for (const auto& o : KnownOptimizers()) optimizers.push_back(o.name);
      }
      for (const auto& v : rule.values) {
        const RunParamInfo* info = FindRunParam(v.param);
        ASSERT_NE(info, nullptr) << task.name << " recipe names unknown parameter " << v.param;
        // A rule for every optimiser may hold a value some of them lack
        // (lr_decay_factor is not B-bit Madam's); never one no optimiser has.
        int applies = 0;
        for (auto o : optimizers) {
          if (ParamApplies(*info, task, *FindOptimizer(o))) ++applies;
        }
        if (rule.optimizers.empty()) {
          EXPECT_GT(applies, 0) << task.name << ": " << v.param;
        } else {
          EXPECT_EQ(applies, static_cast<int>(optimizers.size())) << task.name << ": " << v.param;
        }
        RunConfig scratch;
        EXPECT_TRUE(ApplyRunParam(v.param, v.value, scratch).ok()) << task.name << ": " << v.param;
        EXPECT_FALSE(v.reference.empty()) << task.name << ": " << v.param;
      }
    }
    // Every optimiser resolves under the recipe, and every value has a source.
    for (const auto& o : KnownOptimizers()) {
      ResolvedRun run = Resolve(std::string(task.name), std::string(o.name));
      for (const auto& [name, value] : run.params) {
        (void)value;
        EXPECT_FALSE(run.sources[name].empty()) << task.name << "/" << o.name << " " << name;
      }
    }
  }
}

TEST(RecipeTest, Cifar10IsTheAuthorsPytorchCifar) {
  const std::string main = "pytorch/cifar/main.py", readme = "pytorch/cifar/README.md";
  for (const auto& o : KnownOptimizers()) {
    ResolvedRun r = Resolve("cifar10-resnet18", std::string(o.name));
    ExpectConfirmed(r, "epochs", N(300), main);
    ExpectConfirmed(r, "batch_size", N(1024), main);
    ExpectConfirmed(r, "lr_schedule", S("step"), main);
    ExpectConfirmed(r, "lr_milestones", L({100, 200}), main);
    ExpectConfirmed(r, "crop_padding", N(4), main);
    ExpectConfirmed(r, "hflip", S("true"), main);
    ExpectConfirmed(r, "rotation_degrees", N(0), main);
    ExpectConfirmed(r, "normalize_mean", L({0.4914, 0.4822, 0.4465}), main);
    ExpectConfirmed(r, "normalize_std", L({0.2023, 0.1994, 0.2010}), main);
    ExpectConfirmed(r, "val_split", N(0), main);
  }
  ResolvedRun sgd = Resolve("cifar10-resnet18", "sgd");
  ExpectConfirmed(sgd, "lr", N(0.1), readme);
  ExpectConfirmed(sgd, "momentum", N(0.9), main);
  ExpectConfirmed(sgd, "weight_decay", N(0), main);
  ExpectConfirmed(sgd, "lr_decay_factor", N(10), main);
  ExpectConfirmed(sgd, "bn_affine", S("true"), main);
  ResolvedRun adam = Resolve("cifar10-resnet18", "adam");
  ExpectConfirmed(adam, "lr", N(0.001), readme);
  ResolvedRun madam = Resolve("cifar10-resnet18", "madam");
  ExpectConfirmed(madam, "lr", N(0.01), readme);
  ExpectConfirmed(madam, "p_scale", N(3), readme);
  ExpectConfirmed(madam, "bn_affine", S("false"), "resnet_modified.py");
  ExpectConfirmed(madam, "g_bound", N(10), "pytorch/optim/madam.py");
  ExpectConfirmed(madam, "beta", N(0.999), "pytorch/optim/madam.py");
  ResolvedRun bits = Resolve("cifar10-resnet18", "int_madam");
  ExpectConfirmed(bits, "base_lr", N(0.001), readme);
  ExpectConfirmed(bits, "lr", N(0.016), readme);
  ExpectConfirmed(bits, "bits", N(12), readme);
  ExpectConfirmed(bits, "lr_factor_decay", N(4), readme);
  ExpectConfirmed(bits, "bn_affine", S("false"), "resnet_modified.py");
  EXPECT_EQ(bits.params.count("lr_decay_factor"), 0u);  // B-bit Madam decays lr_factor
}

TEST(RecipeTest, Cifar100AddsRotationItsStatisticsAndMadamPScaleOne) {
  const std::string readme = "pytorch/cifar/README.md";
  ResolvedRun madam = Resolve("cifar100-resnet18", "madam");
  ExpectConfirmed(madam, "p_scale", N(1), readme);
  ExpectConfirmed(madam, "rotation_degrees", N(15), "utils_cifar100.py");
  ExpectConfirmed(madam, "normalize_mean",
                  L({0.5070751592371323, 0.48654887331495095, 0.4409178433670343}),
                  "pytorch/cifar/main.py");
  ExpectConfirmed(madam, "normalize_std",
                  L({0.2673342858792401, 0.2564384629170883, 0.27615047132568404}),
                  "pytorch/cifar/main.py");
  ExpectConfirmed(madam, "bn_affine", S("false"), "resnet_for_w_clipping.py");
  ExpectConfirmed(madam, "epochs", N(300), "pytorch/cifar/main.py");
  ExpectConfirmed(Resolve("cifar100-resnet18", "int_madam"), "p_scale", N(1), readme);
  ExpectConfirmed(Resolve("cifar100-resnet18", "sgd"), "lr", N(0.1), readme);
}

TEST(RecipeTest, ImageNetIsTheAuthorsPytorchImagenet) {
  const std::string main = "pytorch/imagenet/main.py", readme = "pytorch/imagenet/README.md";
  for (const auto& o : KnownOptimizers()) {
    ResolvedRun r = Resolve("imagenet-resnet50", std::string(o.name));
    ExpectConfirmed(r, "epochs", N(120), main);
    ExpectConfirmed(r, "batch_size", N(100), main);
    ExpectConfirmed(r, "image_size", N(224), main);
    ExpectConfirmed(r, "lr_schedule", S("step"), main);
    ExpectConfirmed(r, "lr_milestones", L({40, 80}), main);
    ExpectConfirmed(r, "bn_affine", S("true"), main);
  }
  ResolvedRun sgd = Resolve("imagenet-resnet50", "sgd");
  ExpectConfirmed(sgd, "lr", N(0.1), readme);
  ExpectConfirmed(sgd, "momentum", N(0.9), main);
  ExpectConfirmed(sgd, "weight_decay", N(1e-4), main);
  ExpectConfirmed(sgd, "warmup_epochs", N(5), main);
  ExpectConfirmed(sgd, "lr_decay_factor", N(10), main);
  ExpectConfirmed(Resolve("imagenet-resnet50", "adam"), "lr", N(0.001), readme);
  ResolvedRun madam = Resolve("imagenet-resnet50", "madam");
  ExpectConfirmed(madam, "lr", N(0.01), readme);
  ExpectConfirmed(madam, "p_scale", N(3), readme);
  ExpectConfirmed(madam, "zero_init", S("normal"), main);
  ExpectConfirmed(madam, "zero_init_std", N(0.2), main);
  ExpectConfirmed(madam, "warmup_epochs", N(5), main);
  ResolvedRun bits = Resolve("imagenet-resnet50", "int_madam");
  ExpectConfirmed(bits, "base_lr", N(0.001), readme);
  ExpectConfirmed(bits, "lr", N(0.016), readme);
  ExpectConfirmed(bits, "bits", N(11), readme);
  ExpectConfirmed(bits, "lr_factor_decay", N(4), readme);
  ExpectConfirmed(bits, "zero_init", S("normal"), main);
  EXPECT_EQ(bits.params.count("warmup_epochs"), 0u);  // the authors warm up no B-bit run
}

TEST(RecipeTest, WikiTextIsPlainClippedSgdAndTheBestValidationModel) {
  const std::string main = "pytorch/transformer-wikitext2/main.py";
  const std::string batch = "pytorch/transformer-wikitext2/batch.sh";
  for (const auto& o : KnownOptimizers()) {
    ResolvedRun r = Resolve("wikitext2-transformer", std::string(o.name));
    ExpectConfirmed(r, "epochs", N(20), batch);
    ExpectConfirmed(r, "batch_size", N(20), main);
    ExpectConfirmed(r, "eval_batch_size", N(10), main);
    ExpectConfirmed(r, "bptt", N(35), main);
    ExpectConfirmed(r, "emsize", N(200), main);
    ExpectConfirmed(r, "nhid", N(200), main);
    ExpectConfirmed(r, "nlayers", N(2), main);
    ExpectConfirmed(r, "nhead", N(2), main);
    ExpectConfirmed(r, "dropout", N(0.2), main);
    ExpectConfirmed(r, "lr_schedule", S("step"), main);
    ExpectConfirmed(r, "lr_milestones", L({10}), main);
    ExpectConfirmed(r, "model_selection", S("best_val"), main);
    ExpectConfirmed(r, "bias_init", S("keep"), "model.py");
  }
  ResolvedRun sgd = Resolve("wikitext2-transformer", "sgd");
  ExpectConfirmed(sgd, "momentum", N(0), main);
  ExpectConfirmed(sgd, "grad_clip", N(0.25), main);
  ExpectConfirmed(sgd, "lr", N(1.0), batch);
  ExpectConfirmed(sgd, "lr_decay_factor", N(10), main);
  // Clipping is SGD's alone.
  EXPECT_EQ(Resolve("wikitext2-transformer", "adam").params.at("grad_clip"), N(0));
  EXPECT_EQ(Resolve("wikitext2-transformer", "madam").params.at("grad_clip"), N(0));
  ResolvedRun madam = Resolve("wikitext2-transformer", "madam");
  ExpectConfirmed(madam, "p_scale", N(2), batch);
  ResolvedRun bits = Resolve("wikitext2-transformer", "int_madam");
  ExpectConfirmed(bits, "p_scale", N(2), batch);
  ExpectConfirmed(bits, "base_lr", N(0.001), batch);
  ExpectConfirmed(bits, "lr_factor_decay", N(2), batch);
  // The LM has no held-out split: its validation is wiki.valid.tokens.
  EXPECT_EQ(sgd.params.count("val_split"), 0u);
}

TEST(RecipeTest, FashionMnistIsAssumedAndHoldsOutFiveThousand) {
  ResolvedRun r = Resolve("fmnist-mlp", "madam");
  EXPECT_EQ(r.params.at("val_split"), N(5000));
  EXPECT_EQ(r.params.at("lr_schedule"), S("plateau"));
  EXPECT_EQ(r.sources.at("val_split").rfind("assumed: ", 0), 0u);
  EXPECT_EQ(r.sources.at("epochs").rfind("assumed: ", 0), 0u);
}

TEST(ResolveTest, RunParametersOverrideTheRecipeAndRecipeNoneSkipsIt) {
  ResolvedRun r = Resolve("cifar10-resnet18", "sgd", {{"epochs", N(250)}, {"momentum", N(0.5)}});
  EXPECT_EQ(r.config.epochs, 250);
  EXPECT_EQ(r.sources.at("epochs"), "set");
  EXPECT_EQ(r.config.momentum, 0.5);
  ResolvedRun plain = Resolve("cifar10-resnet18", "madam", {{"recipe", S("none")}});
  EXPECT_EQ(plain.config.epochs, 3);       // the paper-wide default
  EXPECT_TRUE(plain.config.bn_affine);     // not the recipe's affine-free BatchNorm
  EXPECT_EQ(plain.config.lr_schedule, "constant");
}

TEST(ResolveTest, ChoosingAnotherScheduleDropsTheRecipesScheduleValues) {
  // The recipe's milestones belong to its step schedule; a run that picks a
  // constant schedule does not inherit them.
  ResolvedRun r = Resolve("cifar10-resnet18", "sgd", {{"lr_schedule", S("constant")}});
  EXPECT_TRUE(r.config.lr_milestones.empty());
  EXPECT_EQ(r.sources.at("lr_milestones"), "default: not read by lr_schedule constant");
}

TEST(ResolveTest, FixedScheduleRuleWritesAConstantEta) {
  RunParams p{{"task", S("cifar10-resnet18")}, {"optimizer", S("madam")}};
  ResolveOptions fixed;
  fixed.schedule = ScheduleRule::kFixed;
  auto r = ResolveRun(p, fixed);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->config.lr_schedule, "constant");
  EXPECT_EQ(r->sources.at("lr_schedule"), "figure 1: fixed eta, no decay, no warm-up");
  p["warmup_epochs"] = N(2);
  std::string bad;
  auto refused = ResolveRun(p, fixed, &bad);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(bad, "warmup_epochs");
}

TEST(ResolveTest, AParameterTheRunDoesNotHaveIsAnErrorUnlessDropped) {
  RunParams p{{"task", S("cifar10-resnet18")}, {"optimizer", S("sgd")}, {"bptt", N(70)}};
  std::string bad;
  auto r = ResolveRun(p, {}, &bad);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(bad, "bptt");
  EXPECT_EQ(r.status().message(), "parameter bptt does not apply to task cifar10-resnet18");
  p.erase("bptt");
  p["bits"] = N(8);
  r = ResolveRun(p, {}, &bad);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "parameter bits does not apply to optimizer sgd");
  ResolveOptions lenient;
  lenient.drop_inapplicable = true;
  r = ResolveRun(p, lenient);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->params.count("bits"), 0u);
}

TEST(ResolveTest, BBitMadamBelowItsLadderIsRefusedNamingBoth) {
  RunParams p{{"task", S("fmnist-mlp")}, {"optimizer", S("int_madam")}, {"lr", N(0.01)},
              {"base_lr", N(0.016)}};
  std::string bad;
  auto r = ResolveRun(p, {}, &bad);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(),
            "int_madam needs lr >= base_lr (eta >= eta0, the paper's section 6), got lr 0.01 and "
            "base_lr 0.016");
  EXPECT_EQ(bad, "lr");
}

}  // namespace
}  // namespace madam
