// `madamctl sweep ...`: submit, list, show, watch, cancel, rerun, export,
// promote, extend
// (ARCHITECTURE.md section 3).
//
// Each command is a plain function of a CommandEnv and its options, returning
// an ExitCode, so tests call it directly against a fake stub;
// AddSweepCommands wires the same functions into CLI11.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

#include "cli/client.h"

namespace madam::cli {

struct SweepSubmitOptions {
  std::string file;
  bool dry_run = false;
  bool wait = false;  // watch until the sweep ends; exit 1 if a run failed
};

struct SweepRerunOptions {
  std::string sweep_id;
  // Comma-separated run states to requeue.
  std::string states = "failed,diverged,cancelled";
};

struct SweepExportOptions {
  std::string sweep_id;
  std::string format;  // "csv" | "json"; empty: json with --json, else csv
};

struct SweepPromoteOptions {
  std::string sweep_id;
  std::string seeds = "0,1,2";  // comma-separated
  std::string name;             // empty: from the parent's name
  bool dry_run = false;
  int64_t epochs = 0;           // 0: the parent's
};

struct SweepExtendOptions {
  std::string sweep_id;
  std::string seeds;  // comma-separated
  bool force = false; // extend a cancelled sweep too
};

// Retries of a submit that met UNAVAILABLE or DEADLINE_EXCEEDED, with the
// same idempotency key so the coordinator stores the sweep at most once.
constexpr int kSubmitRetries = 3;
// Consecutive broken watch streams tolerated before `sweep watch` gives up.
constexpr int kWatchReconnects = 5;

int SweepSubmit(const CommandEnv& env, const SweepSubmitOptions& options);
int SweepList(const CommandEnv& env);
int SweepShow(const CommandEnv& env, const std::string& sweep_id);
// Follows the sweep until it ends. kExitOk when no run failed.
int SweepWatch(const CommandEnv& env, const std::string& sweep_id);
int SweepCancel(const CommandEnv& env, const std::string& sweep_id);
int SweepRerun(const CommandEnv& env, const SweepRerunOptions& options);
int SweepExport(const CommandEnv& env, const SweepExportOptions& options);
// The two stages (ARCHITECTURE.md section 4). Both retry UNAVAILABLE and
// DEADLINE_EXCEEDED like submit: a retried promote returns the sweep the
// first call made, a retried extend adds nothing.
int SweepPromote(const CommandEnv& env, const SweepPromoteOptions& options);
int SweepExtend(const CommandEnv& env, const SweepExtendOptions& options);

// A random hex key, one per `sweep submit` invocation.
std::string NewIdempotencyKey();

// Adds `sweep` and its subcommands to `app`. The subcommand the command line
// names stores its action in *action; `env` is read when the action runs.
void AddSweepCommands(CLI::App& app, const CommandEnv& env, CommandAction* action);

}  // namespace madam::cli
