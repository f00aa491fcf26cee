// `madam-worker train`: one run without a coordinator (ARCHITECTURE.md
// section 3). Flags are registered on a CLI11 subcommand by AddTrainCommand;
// RunTrainCommand runs the parsed command and returns the process exit
// status: 0 succeeded or diverged, 1 failed, 2 usage error (bad parameter).
// Torch-free.
#pragma once

#include <CLI/CLI.hpp>

#include <string>
#include <vector>

namespace madam::worker {

struct TrainCommandOptions {
  std::string task, optimizer;
  std::vector<std::string> params;  // k=v, applied after the dedicated flags
  // Dedicated run-parameter flags; empty string: not given.
  std::string lr, epochs, batch_size, seed, bits, base_lr;
  std::string device = "auto";
  int cpu_ranks = 0;                     // CPU ranks for data-parallel runs (0: none)
  double collective_timeout_seconds = 60;  // data-parallel collectives give up after this
  std::string data_dir;
  int threads = 0;
  int loader_threads = 0;
  std::string metrics_out, summary_json;
  std::string checkpoint_dir, resume_from, export_model;
  std::string fid_model;   // TorchScript feature extractor for test/fid (worker/fid.h)
  std::string output_dir;  // the run's own files (a GAN's sample grids)
  bool progress = true;  // false: never draw a progress bar (--no-progress)
};

// Registers the `train` subcommand on `app`, storing flags into `options`
// (which must outlive parsing). Returns the subcommand.
CLI::App* AddTrainCommand(CLI::App& app, TrainCommandOptions& options);

int RunTrainCommand(const TrainCommandOptions& options);

// `madam-worker recipe TASK --optimizer O [--param k=v ...] [--json]`: the
// run parameters TASK's recipe resolves to (common/recipe.h), every one,
// with where each value comes from (ARCHITECTURE.md section 3).
struct RecipeCommandOptions {
  std::string task, optimizer;
  std::vector<std::string> params;
  bool json = false;
};
CLI::App* AddRecipeCommand(CLI::App& app, RecipeCommandOptions& options);
int RunRecipeCommand(const RecipeCommandOptions& options);

}  // namespace madam::worker
