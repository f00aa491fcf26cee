// `madamctl theory --depth L [--cos C]` / `--model TASK`: the learning rate
// the paper's Theorem 1 guarantees descent below (common/theory.h), with the
// paper's own three examples as a check. Needs no coordinator.
#pragma once

#include <CLI/CLI.hpp>

#include <string>

#include "cli/client.h"

namespace madam::cli {

struct TheoryOptions {
  int depth = -1;            // -1: not given
  std::string model;         // a catalogue task: its depth
  double cos = 0.70710678118654752440;  // cos(gamma); the paper's pi/4
};

// Text (or with --json {"depth","cos","max_lr","model","examples":[{"depth",
// "max_lr","paper_lr"}]}). Exit 2 for a depth below 1, a cos outside
// (0, 1], an unknown model, or neither --depth nor --model.
int Theory(const CommandEnv& env, const TheoryOptions& options);

void AddTheoryCommands(CLI::App& app, const CommandEnv& env, CommandAction* action);

}  // namespace madam::cli
