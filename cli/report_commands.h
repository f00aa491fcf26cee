// `madamctl report lr-sensitivity|table1|table2 --sweep ID [--sweep ID ...]
// [--format md|csv|json|latex|svg] [-o FILE]` (ARCHITECTURE.md sections 3
// and 7). madamd computes and renders the report (GetReport); this command
// only asks for it and writes it to stdout or FILE.
#pragma once

#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "cli/client.h"

namespace madam::cli {

struct ReportOptions {
  std::string kind;                    // lr-sensitivity | table1 | table2
  std::vector<std::string> sweep_ids;  // one or more; or
  std::vector<std::string> exports;    // `sweep export --format json` files (offline)
  std::string format;                  // empty: md (json with the global --json)
  std::string output;                  // empty: stdout
  bool paper = false;                  // --paper: the paper's numbers beside ours
};

// Fetches the report and writes its content to options.output (created or
// truncated; an error naming the path if it cannot be written) or stdout.
// With options.exports, computes the report here from the exported runs,
// without a coordinator (the same code madamd runs: server/report.h).
int Report(const CommandEnv& env, const ReportOptions& options);

// Adds `report` and its subcommands to `app` (see AddSweepCommands).
void AddReportCommands(CLI::App& app, const CommandEnv& env, CommandAction* action);

}  // namespace madam::cli
