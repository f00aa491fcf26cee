#include "common/catalogue.h"

namespace madam {

std::string_view GoalName(MetricGoal goal) {
  return goal == MetricGoal::kMinimize ? "minimize" : "maximize";
}

const std::vector<TaskInfo>& KnownTasks() {
  static const std::vector<TaskInfo> tasks = {
      {"cifar10-resnet18", TaskKind::kClassifier, "test/error", "val/error",
       "CIFAR-10, ResNet-18 (CIFAR variant)", kHoldout | kBatchNorm | kCifarAugment, 1,
       "CIFAR-10", 18},
      {"cifar100-resnet18", TaskKind::kClassifier, "test/error", "val/error",
       "CIFAR-100, ResNet-18 (CIFAR variant)", kHoldout | kBatchNorm | kCifarAugment, 2,
       "CIFAR-100", 18},
      {"imagenet-resnet50", TaskKind::kClassifier, "test/error", "val/error",
       "ImageNet (JPEG folders), ResNet-50", kBatchNorm | kImageFolder, 3, "ImageNet", 50},
      {"cifar10-cgan", TaskKind::kGenerative, "test/fid", "val/fid",
       "CIFAR-10, class-conditional SN-ResNet GAN (generator and projection discriminator)",
       kGan, 4, "cGAN", 19},
      {"wikitext2-transformer", TaskKind::kLanguageModel, "test/perplexity", "val/perplexity",
       "WikiText-2, word-level Transformer LM", kTransformerLm, 5, "WikiText-2", 10},
      {"kjv-transformer", TaskKind::kLanguageModel, "test/perplexity", "val/perplexity",
       "King James Bible (Debian bible-kjv-text), word-level Transformer LM at CPU scale",
       kTransformerLm, 0, "KJV LM", 10},
      {"fmnist-mlp", TaskKind::kClassifier, "test/error", "val/error",
       "Fashion-MNIST, 784-256-256-10 MLP", kHoldout, 0, "Fashion-MNIST MLP", 3},
      {"fmnist-cnn", TaskKind::kClassifier, "test/error", "val/error",
       "Fashion-MNIST, small CNN", kHoldout, 0, "Fashion-MNIST CNN", 4},
      {"synthetic-mlp", TaskKind::kClassifier, "test/error", "val/error",
       "generated data, tiny MLP (tests and benchmarks)", kHoldout, 0, "synthetic", 3},
  };
  return tasks;
}

const TaskInfo* FindTask(std::string_view name) {
  for (const auto& t : KnownTasks()) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

const std::vector<OptimizerInfo>& KnownOptimizers() {
  static const std::vector<OptimizerInfo> optimizers = {
      {"sgd", "SGD", false, false, true},
      {"adam", "Adam", false, false, true},
      {"madam", "Madam", true, false, false},
      {"int_madam", "B-bit Madam", true, true, false},
  };
  return optimizers;
}

const OptimizerInfo* FindOptimizer(std::string_view name) {
  for (const auto& o : KnownOptimizers()) {
    if (o.name == name) return &o;
  }
  return nullptr;
}

bool IsKnownOptimizer(std::string_view name) { return FindOptimizer(name) != nullptr; }

const std::vector<MetricInfo>& KnownMetrics() {
  static const std::vector<MetricInfo> metrics = {
      {"train/loss", MetricGoal::kMinimize},
      {"test/loss", MetricGoal::kMinimize},
      {"test/error", MetricGoal::kMinimize},
      {"test/error5", MetricGoal::kMinimize},
      {"test/perplexity", MetricGoal::kMinimize},
      {"test/fid", MetricGoal::kMinimize},
      {"train/loss_d", MetricGoal::kMinimize},
      {"train/loss_g", MetricGoal::kMinimize},
      {"data/skipped_files", MetricGoal::kMinimize},
      {"val/loss", MetricGoal::kMinimize},
      {"val/error", MetricGoal::kMinimize},
      {"val/perplexity", MetricGoal::kMinimize},
      {"samples_per_second", MetricGoal::kMaximize},
  };
  return metrics;
}

std::optional<MetricGoal> GoalOfMetric(std::string_view name) {
  for (const auto& m : KnownMetrics()) {
    if (m.name == name) return m.goal;
  }
  const size_t slash = name.rfind('/');
  const std::string_view leaf = slash == std::string_view::npos ? name : name.substr(slash + 1);
  if (leaf == "loss" || leaf.rfind("error", 0) == 0 || leaf == "perplexity" || leaf == "fid") {
    return MetricGoal::kMinimize;
  }
  return std::nullopt;
}

}  // namespace madam
