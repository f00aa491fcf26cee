// Trainer: runs one training run of a compiled-in task (ARCHITECTURE.md
// section 6) and reports metrics, progress, checkpoints and a summary.
//
// This header is torch-free on purpose: the coordinator client (serve mode)
// and the standalone `madam-worker train` command both drive runs through it
// without compiling LibTorch headers.
//
// Thread-safety: a Trainer runs one run at a time; Run() must not be called
// concurrently on one Trainer. Hooks (sink, should_stop, on_progress) are
// invoked on the thread that called Run().
//
// Data parallel (a run's `devices` N > 1, ARCHITECTURE.md section 6): the
// run's N ranks are threads of this process, rank 0 on the caller's thread,
// one device each, joined through c10d (worker/distributed.h). Every rank
// builds the task's networks and steps its optimiser on the summed
// gradients; only rank 0 calls the hooks (metrics, progress, checkpoints,
// stop), and it decides for all. Run() returns once every rank has ended. The Trainer owns a dataset cache:
// each dataset is loaded once per process (per Trainer) and reused across runs.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/run_config.h"

namespace madam::worker {

// One metric point (ARCHITECTURE.md section 6 names). `step` is the global
// training step (number of optimiser steps taken so far); `time` is unix seconds.
//
// What a run reports, and when:
//   every 10th step and the last step of each epoch: the step's losses
//     (train/loss; train/loss_d and train/loss_g for a GAN),
//     optim/relative_update (mean over tensors of ||dW||/||W|| for that
//     step), optim/sign_flips (weights whose sign changed in that step) and
//     optim/at_bound_fraction (share of weights with |w| >= bound *
//     (1 - 1e-6); the bound is sigma* for madam/int_madam and, as a
//     reference, p_scale * RMS(initial tensor) for sgd/adam);
//   after every epoch: val/loss and val/error or val/perplexity when the run
//     has a validation split; test/loss and test/error or test/perplexity,
//     or a GAN's test/fid at its FID epochs when the worker has --fid-model
//     (with model_selection best_val only at epochs whose validation metric
//     was the best so far, so a test metric's last point is the
//     best-validation model's, and val/best_epoch names that epoch); lr (the
//     rate the epoch trained with, before any decay the epoch's validation
//     brings) and samples_per_second (training loop only, evaluation
//     excluded).
// A run resumed from a checkpoint numbers its steps exactly as the
// uninterrupted run does.
struct MetricPoint {
  std::string name;
  int64_t step = 0;
  double value = 0;
  double time = 0;
};

// Receives metric points as they are produced, on the training thread.
class MetricSink {
 public:
  virtual ~MetricSink() = default;
  virtual void Write(const MetricPoint& point) = 0;
};

struct WorkerOptions {
  // auto (cuda:0 if available, else cpu) | cpu | cuda:N | a list
  // "cuda:0,cuda:1" | all (every CUDA device): common/devices.h.
  std::string device = "auto";
  // CPU ranks for data-parallel runs on CPU (tests, small machines); 0: the
  // devices `device` names. A run with `devices` N takes the first N.
  int cpu_ranks = 0;
  // A data-parallel run's collectives (and its ranks' rendezvous) fail
  // after this long without progress: a rank that hangs ends the attempt.
  double collective_timeout_seconds = 60;
  std::string data_dir;         // empty: the task's default location
  int threads = 0;              // intra-op threads; 0 leaves LibTorch's default
  int loader_threads = 0;       // input-pipeline threads (image tasks); 0: the cores left over
  // A TorchScript feature extractor for test/fid (worker/fid.h); empty: FID
  // is not computed (a GAN task warns once and reports its losses).
  std::string fid_model;
};

// Where the training loop is; for progress bars.
struct ProgressInfo {
  int64_t epoch = 0;        // 1-based
  int64_t epochs = 0;
  int64_t step = 0;         // global step
  int64_t total_steps = 0;  // over the whole run
  double loss = 0;          // last logged train loss
  double samples_per_second = 0;
  double eta_seconds = 0;   // estimated time left
  bool epoch_end = false;   // true once per epoch, after its evaluation
};

struct RunHooks {
  MetricSink* sink = nullptr;        // not owned; may be null
  std::function<bool()> should_stop;  // polled every step; true stops with status "stopped"
  // Empty: no checkpoints. Else <dir>/epoch-<N>.pt after every epoch, made
  // durable (written under a unique temporary name, fsync'd, renamed, the
  // directory fsync'd) before on_checkpoint hears of it. Only the newest
  // `keep_checkpoints` epoch-<N>.pt files stay in the directory (0 keeps
  // every one).
  std::string checkpoint_dir;
  int keep_checkpoints = 2;
  // Called on the training thread once a checkpoint of `epoch` is durable,
  // with its path. Only files this run wrote are ever passed here.
  std::function<void(int64_t epoch, const std::string& path)> on_checkpoint;
  // A checkpoint file to continue from; empty starts fresh. One that cannot
  // be read fails the run (it was asked for by name).
  std::string resume_from;
  // Checkpoints to continue from, newest first, when resume_from is empty:
  // the first one that reads back whole is used; each one that does not is
  // skipped with a warning (RunSummary::warnings), and when none does the
  // run starts from step 0. A torn or foreign checkpoint never fails a run.
  std::vector<std::string> resume_candidates;
  std::string export_model;  // int_madam only: write the B-bit model here at the end
  std::function<void(const ProgressInfo&)> on_progress;  // every logged step and epoch end
  int64_t attempt = 1;  // which attempt of the run this is (1 for a standalone run)
  // Data parallel: the collective timeout for this run; 0 takes
  // WorkerOptions::collective_timeout_seconds.
  double collective_timeout_seconds = 0;
  // Where the run writes its own files besides checkpoints (a GAN's sample
  // grids); empty: nowhere.
  std::string output_dir;
};

struct RunSummary {
  std::string status;  // succeeded | diverged | failed | stopped
  // The last value of every metric the run reported.
  std::map<std::string, double> final;
  double train_seconds = 0;
  int64_t steps = 0;
  std::string error;            // set when failed
  std::string last_checkpoint;  // newest checkpoint written (empty: none)
  std::string resumed_from;     // the checkpoint the run continued from (empty: step 0)
  // model_selection best_val: the epoch whose model the final test metrics
  // are from (0: none yet, or model_selection last).
  int64_t best_val_epoch = 0;
  std::vector<std::string> warnings;  // e.g. a resume candidate that could not be read
  int64_t export_bytes = 0;     // size of the --export-model file (0: none)
  int64_t fp32_bytes = 0;       // the same parameters as float32
};

class Trainer {
 public:
  explicit Trainer(WorkerOptions options);
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  // Trains `config` to completion (or divergence, failure, stop). Never
  // throws: every error becomes status "failed" with the message in `error`.
  RunSummary Run(const RunConfig& config, const RunHooks& hooks);

  // Loads a model exported with --export-model for `config.task` and
  // evaluates it on the test split: the test metrics (test/loss and
  // test/error or test/perplexity). Never throws.
  Result<std::map<std::string, double>> EvaluateExportedModel(const RunConfig& config,
                                                             const std::string& path);

  // The devices runs use, as text ("cpu", "cuda:0", "cuda:0,cuda:1",
  // "cpu,cpu"); resolves "auto" and "all". What serve mode registers.
  std::string DeviceName() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The epoch-<N>.pt files under `dir`, newest (highest N) first; empty when
// there are none or `dir` cannot be read. Never throws.
std::vector<std::string> ListCheckpoints(const std::string& dir);
// The newest of them, or "".
std::string FindLatestCheckpoint(const std::string& dir);
// N for a file named epoch-<N>.pt (any directory), else -1.
int64_t CheckpointEpoch(const std::string& path);


}  // namespace madam::worker
