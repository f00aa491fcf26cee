// The task registry: one implementation per catalogue name
// (common/catalogue.h); worker/tasks/registry_test checks that none is
// missing.
#include "worker/tasks/task.h"

#include "worker/tasks/factories.h"

namespace madam::worker {
namespace {

using Factory = std::unique_ptr<Task> (*)();

const std::vector<std::pair<std::string_view, Factory>>& Registry() {
  static const std::vector<std::pair<std::string_view, Factory>> registry = {
      {"cifar10-resnet18", &MakeCifar10ResNet18Task},
      {"cifar100-resnet18", &MakeCifar100ResNet18Task},
      {"imagenet-resnet50", &MakeImageNetResNet50Task},
      {"cifar10-cgan", &MakeCifar10CganTask},
      {"wikitext2-transformer", &MakeWikiTextTransformerTask},
      {"kjv-transformer", &MakeKjvTransformerTask},
      {"fmnist-mlp", &MakeFashionMnistMlpTask},
      {"fmnist-cnn", &MakeFashionMnistCnnTask},
      {"synthetic-mlp", &MakeSyntheticMlpTask},
  };
  return registry;
}

}  // namespace

std::unique_ptr<Task> MakeTask(std::string_view name) {
  for (const auto& [task, make] : Registry()) {
    if (task == name) return make();
  }
  return nullptr;
}

std::vector<std::string_view> ImplementedTasks() {
  std::vector<std::string_view> out;
  for (const auto& entry : Registry()) out.push_back(entry.first);
  return out;
}

uint64_t EpochSeed(int64_t seed, int64_t epoch) {
  uint64_t x = static_cast<uint64_t>(seed) * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(epoch);
  x ^= x >> 31;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 29;
  return x & ((uint64_t{1} << 62) - 1);
}

}  // namespace madam::worker
