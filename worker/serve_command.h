// Serve mode: `madam-worker [--coordinator ADDR] ...` pulls runs from madamd
// under leases, trains them with the Trainer, streams metrics and completes
// them, until SIGINT/SIGTERM (ARCHITECTURE.md sections 3 and 5).
// Torch-free: training goes through worker/trainer.h.
#pragma once

#include <CLI/CLI.hpp>

#include <string>

namespace madam::worker {

struct ServeOptions {
  std::string coordinator = "127.0.0.1:7070";
  std::string device = "auto";
  int cpu_ranks = 0;                     // CPU ranks for data-parallel runs (0: none)
  double collective_timeout_seconds = 60;  // data-parallel collectives give up after this
  std::string data_dir;
  int threads = 0;
  int loader_threads = 0;  // input-pipeline threads (image tasks); 0: the cores left over
  std::string name;   // default: host name and device
  std::string token;  // sent as "authorization: Bearer TOKEN"; never logged
  // TLS to the coordinator: PEM files (all empty: plaintext). tls_ca verifies
  // madamd's certificate; tls_cert/tls_key are this worker's for mutual TLS.
  std::string tls_ca;
  std::string tls_cert;
  std::string tls_key;
  // Where run checkpoints go when the coordinator names no directory.
  std::string checkpoint_dir = "madam-checkpoints";
  // TorchScript feature extractor for test/fid (worker/fid.h); empty: none.
  std::string fid_model;
  // Exit after this many runs (0: serve until stopped). For tests and batch
  // jobs that should end.
  int max_runs = 0;
  // Exit when no run has been available for this many seconds (0: never).
  double idle_exit_seconds = 0;
  // Keep a finished run's checkpoint directory (default: delete it once the
  // coordinator has recorded the run's end; ARCHITECTURE.md section 5).
  bool keep_checkpoints = false;
  // While the coordinator is unreachable (UNAVAILABLE, deadline exceeded: not
  // a refusal), keep training and buffering metrics for this long before
  // giving the lease up.
  double coordinator_grace_seconds = 300;
};

// Registers serve-mode flags on the top-level app (they apply when no
// subcommand is given).
void AddServeFlags(CLI::App& app, ServeOptions& options);

// Serves until stopped; returns the process exit status.
int RunServe(const ServeOptions& options);

}  // namespace madam::worker
