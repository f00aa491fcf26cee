// `madam-worker bench-data --task T --data-dir D [--threads N] [--seconds S]`
// (ARCHITECTURE.md section 3): the training input pipeline alone (read,
// decode, augment, batch) for S seconds after a warm-up, printing images/s.
// Only imagenet-resnet50 has a file-decoding pipeline; the other tasks hold
// their data in memory. Exit status: 0 measured, 1 failed (bad data), 2
// usage. Torch-free header.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <string>

namespace madam::worker {

struct BenchDataOptions {
  std::string task, data_dir;
  int threads = 0;             // loader threads; 0: every CPU this process may use
  double seconds = 10;         // measured time, after the warm-up
  int64_t batch_size = 100;    // the recipe's batch per GPU
  int image_size = 224;
  int64_t warmup_batches = 2;  // batches not timed (thread start, first reads)
  uint64_t seed = 0;
  bool json = false;           // one JSON object instead of the sentence
};

CLI::App* AddBenchDataCommand(CLI::App& app, BenchDataOptions& options);

int RunBenchDataCommand(const BenchDataOptions& options);

}  // namespace madam::worker
