// The task implementations' factories, one per catalogue name; defined in
// each task's file and listed once in worker/tasks/task.cc. Private to
// worker/tasks/.
#pragma once

#include <memory>

#include "worker/tasks/task.h"

namespace madam::worker {

std::unique_ptr<Task> MakeCifar10ResNet18Task();
std::unique_ptr<Task> MakeCifar100ResNet18Task();
std::unique_ptr<Task> MakeImageNetResNet50Task();
std::unique_ptr<Task> MakeCifar10CganTask();
std::unique_ptr<Task> MakeWikiTextTransformerTask();
std::unique_ptr<Task> MakeKjvTransformerTask();

// Where deploy/install-deps.sh writes the King James corpus.
inline constexpr const char* kKjvCorpusDir = "/usr/local/share/madam/kjv-lm";
std::unique_ptr<Task> MakeFashionMnistMlpTask();
std::unique_ptr<Task> MakeFashionMnistCnnTask();
std::unique_ptr<Task> MakeSyntheticMlpTask();

}  // namespace madam::worker
