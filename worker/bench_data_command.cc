#include "worker/bench_data_command.h"

#include <chrono>
#include <cstdio>
#include <iostream>

#include <nlohmann/json.hpp>

#include "worker/data/image_folder.h"
#include "worker/data/image_loader.h"

namespace madam::worker {

CLI::App* AddBenchDataCommand(CLI::App& app, BenchDataOptions& o) {
  CLI::App* cmd = app.add_subcommand(
      "bench-data", "Measure the training input pipeline alone (read, decode, augment, batch)");
  cmd->add_option("--task", o.task, "Task (imagenet-resnet50)")->required();
  cmd->add_option("--data-dir", o.data_dir, "Dataset directory (train/CLASS/*.JPEG, val/CLASS/*.JPEG)")
      ->required();
  cmd->add_option("--threads", o.threads, "Loader threads (0: every CPU)")->check(CLI::Range(0, 1024));
  cmd->add_option("--seconds", o.seconds, "Seconds to measure, after the warm-up")
      ->check(CLI::Range(0.0, 86400.0));
  cmd->add_option("--batch-size", o.batch_size, "Batch size")->check(CLI::Range(int64_t{1}, int64_t{65536}));
  cmd->add_option("--image-size", o.image_size, "Output image size")->check(CLI::Range(8, 4096));
  cmd->add_option("--warmup-batches", o.warmup_batches, "Batches before timing starts")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 30));
  cmd->add_option("--seed", o.seed, "Seed of the shuffle and the augmentation");
  cmd->add_flag("--json", o.json, "Print one JSON object");
  return cmd;
}

int RunBenchDataCommand(const BenchDataOptions& o) {
  if (o.task != "imagenet-resnet50") {
    std::cerr << "madam-worker bench-data: --task must be imagenet-resnet50 (the only task that "
                 "decodes files), got \""
              << o.task << "\"\n";
    return 2;
  }
  auto dataset = data::ScanImageFolder(o.data_dir);
  if (!dataset.ok()) {
    std::cerr << "madam-worker bench-data: " << dataset.status().message() << "\n";
    return 1;
  }
  auto options = data::ImageLoaderOptions::Train(o.image_size, o.batch_size, o.seed);
  options.threads = o.threads;
  auto loader = data::ImageLoader::Create(&dataset->train, options);
  if (!loader.ok()) {
    std::cerr << "madam-worker bench-data: " << loader.status().message() << "\n";
    return 1;
  }
  // Timing starts when the warm-up batches are in; it stops at the first
  // batch after `seconds` (so at least one batch is always measured).
  using Clock = std::chrono::steady_clock;
  int64_t seen_batches = 0, images = 0, epochs = 0;
  Clock::time_point start = Clock::now();
  double elapsed = 0;
  bool timing = o.warmup_batches == 0, done = false;
  for (int64_t epoch = 0; !done; ++epoch) {
    (*loader)->StartEpoch(epoch);
    ++epochs;
    int64_t epoch_batches = 0;
    while (auto batch = (*loader)->Next()) {
      ++epoch_batches;
      ++seen_batches;
      const int64_t n = batch->images.size(0);
      batch.reset();  // the memory goes back to the pool before the next batch
      if (!timing) {
        if (seen_batches == o.warmup_batches) {
          timing = true;
          start = Clock::now();
        }
        continue;
      }
      images += n;
      elapsed = std::chrono::duration<double>(Clock::now() - start).count();
      if (elapsed >= o.seconds) {
        done = true;
        break;
      }
    }
    if (epoch_batches == 0) {
      std::cerr << "madam-worker bench-data: " << dataset->train.root() << ": no file could be decoded ("
                << (*loader)->skipped_files() << " skipped)\n";
      return 1;
    }
  }
  const double rate = elapsed > 0 ? static_cast<double>(images) / elapsed : 0;
  const int64_t skipped = (*loader)->skipped_files();
  if (o.json) {
    nlohmann::json j = {{"task", o.task},         {"images_per_second", rate},
                        {"images", images},       {"seconds", elapsed},
                        {"threads", (*loader)->threads()}, {"batch_size", o.batch_size},
                        {"image_size", o.image_size},      {"epochs", epochs},
                        {"skipped_files", skipped}};
    std::cout << j.dump() << "\n";
  } else {
    std::printf("bench-data %s: %.1f images/s (%lld images in %.2f s; %d loader threads, batch %lld, "
                "image %d, %lld skipped files)\n",
                o.task.c_str(), rate, static_cast<long long>(images), elapsed, (*loader)->threads(),
                static_cast<long long>(o.batch_size), o.image_size, static_cast<long long>(skipped));
  }
  return 0;
}

}  // namespace madam::worker
