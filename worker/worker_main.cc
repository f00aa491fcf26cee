// madam-worker: `train` runs one run standalone, `recipe` prints a task's
// resolved parameters, `bench-data` measures the input pipeline, `fid`
// compares two saved feature sets (worker/fid.h); with no
// subcommand the worker serves a coordinator (serve mode). Parses flags and
// dispatches only.
#include <CLI/CLI.hpp>
#include <malloc.h>

#include <cstdio>

#include "worker/bench_data_command.h"
#include "worker/fid.h"
#include "worker/serve_command.h"
#include "worker/train_command.h"

namespace {

// Training allocates and frees the same large tensors every step (logits,
// activations, gradients). glibc's defaults hand each one over
// DEFAULT_MMAP_THRESHOLD to mmap and give freed heap back to the kernel, so
// every step page-faults its buffers in again: a third of a small
// Transformer's step time went to the kernel here. Keep blocks up to the
// largest mmap threshold glibc allows on the heap, and the freed heap in the
// process (a worker's memory stays at its peak, which a training process
// reaches in its first steps anyway).
void KeepTrainingMemory() {
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  mallopt(M_TOP_PAD, 64 << 20);
}

}  // namespace

int main(int argc, char** argv) {
  KeepTrainingMemory();
  CLI::App app{"madam-worker: trains runs of the Madam experiments; with no subcommand, serves "
               "runs from a madamd coordinator"};
  madam::worker::ServeOptions serve_options;
  madam::worker::AddServeFlags(app, serve_options);
  madam::worker::TrainCommandOptions train_options;
  CLI::App* train = madam::worker::AddTrainCommand(app, train_options);
  madam::worker::RecipeCommandOptions recipe_options;
  CLI::App* recipe = madam::worker::AddRecipeCommand(app, recipe_options);
  madam::worker::BenchDataOptions bench_data_options;
  CLI::App* bench_data = madam::worker::AddBenchDataCommand(app, bench_data_options);
  std::string fid_a, fid_b;
  CLI::App* fid = app.add_subcommand(
      "fid", "The Frechet distance between two saved feature tensors (rows = samples)");
  fid->add_option("--a", fid_a, "Features A (a 2-D tensor saved with torch.save)")->required();
  fid->add_option("--b", fid_b, "Features B")->required();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  if (train->parsed()) return madam::worker::RunTrainCommand(train_options);
  if (recipe->parsed()) return madam::worker::RunRecipeCommand(recipe_options);
  if (bench_data->parsed()) return madam::worker::RunBenchDataCommand(bench_data_options);
  if (fid->parsed()) {
    auto d = madam::worker::FidOfFeatureFiles(fid_a, fid_b);
    if (!d.ok()) {
      std::fprintf(stderr, "madam-worker fid: %s\n", d.status().message().c_str());
      return 1;
    }
    std::printf("%.10g\n", *d);
    return 0;
  }
  return madam::worker::RunServe(serve_options);
}
