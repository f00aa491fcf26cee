// `madamctl worker list` (ARCHITECTURE.md section 3).
#pragma once

#include <CLI/CLI.hpp>

#include "cli/client.h"

namespace madam::cli {

// Table ID NAME DEVICE CONNECTED CURRENT_RUN LAST_SEEN, or with --json
// {"workers": [{"id","name","device","info","connected","current_run",
// "last_seen_ms"}]}.
int WorkerList(const CommandEnv& env);

// Adds `worker` and its subcommands to `app` (see AddSweepCommands).
void AddWorkerCommands(CLI::App& app, const CommandEnv& env, CommandAction* action);

}  // namespace madam::cli
