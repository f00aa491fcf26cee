// `madamctl run ...`: list, show, metrics (ARCHITECTURE.md section 3).
//
// Plain functions of a CommandEnv and options, returning an ExitCode;
// AddRunCommands wires them into CLI11.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

#include "cli/client.h"

namespace madam::cli {

struct RunListOptions {
  std::string sweep_id;
  std::string state;  // empty: every state
};

struct RunMetricsOptions {
  std::string run_id;
  std::string name;    // empty: every metric
  std::string format;  // "csv" | "json"; empty: json with --json, else csv
};

int RunList(const CommandEnv& env, const RunListOptions& options);
int RunShow(const CommandEnv& env, const std::string& run_id);
int RunMetrics(const CommandEnv& env, const RunMetricsOptions& options);

// Adds `run` and its subcommands to `app` (see AddSweepCommands).
void AddRunCommands(CLI::App& app, const CommandEnv& env, CommandAction* action);

}  // namespace madam::cli
