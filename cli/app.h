// The madamctl command line: global flags, the command groups, and the
// mapping of parse errors and command results to exit codes.
//
// madamctl_main.cc wires this to the real process (streams, environment, a
// gRPC channel); tests wire it to string streams and a fake stub. A new
// command group (e.g. `report`) is one more Add*Commands call in
// BuildMadamctlApp.
//
// Single-threaded: RunMadamctl runs the whole command on the caller's thread.
#pragma once

#include <functional>
#include <memory>

#include <CLI/CLI.hpp>

#include "cli/client.h"

namespace madam::cli {

// Makes the stub once the command line has named the coordinator.
using StubFactory = std::function<std::shared_ptr<madam::v1::Coordinator::StubInterface>(
    const ClientOptions&)>;

// A stub on a real channel (MakeCoordinatorChannel).
std::shared_ptr<madam::v1::Coordinator::StubInterface> MakeCoordinatorStub(
    const ClientOptions& options);

// Adds the global flags (--coordinator, --token, --json, with their
// MADAM_COORDINATOR and MADAM_TOKEN environment fallbacks, bound into `env`)
// and every command group. The parsed command stores its action in *action.
void BuildMadamctlApp(CLI::App& app, CommandEnv& env, CommandAction* action);

// Parses argv, makes the stub and runs the command. Returns the exit status:
// 0 success, 1 failure, 2 usage (a parse error, an unknown command).
// `env` supplies the streams, terminal and clock; its client options and
// json flag are filled from the command line.
int RunMadamctl(int argc, const char* const* argv, CommandEnv& env, const StubFactory& make_stub);

}  // namespace madam::cli
