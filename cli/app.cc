#include "cli/app.h"

#include "cli/report_commands.h"
#include "cli/run_commands.h"
#include "cli/sweep_commands.h"
#include "cli/theory_commands.h"
#include "cli/worker_commands.h"

namespace madam::cli {

std::shared_ptr<madam::v1::Coordinator::StubInterface> MakeCoordinatorStub(
    const ClientOptions& options) {
  return madam::v1::Coordinator::NewStub(MakeCoordinatorChannel(options));
}

void BuildMadamctlApp(CLI::App& app, CommandEnv& env, CommandAction* action) {
  app.name("madamctl");
  app.description("Submit, follow and query madam sweeps on a madamd coordinator");
  app.add_option("--coordinator", env.client.address, "Coordinator address (host:port)")
      ->envname("MADAM_COORDINATOR")
      ->capture_default_str();
  app.add_option("--token", env.client.token, "Bearer token for the coordinator")
      ->envname("MADAM_TOKEN");
  app.add_option("--tls-ca", env.client.tls_ca_file,
                 "PEM CA bundle that signed madamd's certificate: connect over TLS")
      ->envname("MADAM_TLS_CA");
  app.add_option("--tls-cert", env.client.tls_cert_file,
                 "PEM client certificate for mutual TLS (needs --tls-key)")
      ->envname("MADAM_TLS_CERT");
  app.add_option("--tls-key", env.client.tls_key_file, "PEM private key for --tls-cert")
      ->envname("MADAM_TLS_KEY");
  app.add_flag("--json", env.json, "Machine-readable JSON output");
  app.failure_message([](const CLI::App*, const CLI::Error& e) {
    return "madamctl: " + std::string(e.what()) + "\nRun with --help for more information.\n";
  });
  AddSweepCommands(app, env, action);
  AddRunCommands(app, env, action);
  AddWorkerCommands(app, env, action);
  AddReportCommands(app, env, action);
  AddTheoryCommands(app, env, action);
}

int RunMadamctl(int argc, const char* const* argv, CommandEnv& env, const StubFactory& make_stub) {
  CLI::App app;
  CommandAction action;
  BuildMadamctlApp(app, env, &action);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e, *env.out, *env.err);  // prints help, or the error with a hint
    return code == 0 ? kExitOk : kExitUsage;
  }
  if (!action) {
    // A group without its command (`madamctl sweep`): show that group's
    // commands. Unknown words never get here: CLI11 rejects them as extras.
    const CLI::App* deepest = &app;
    std::string parents;  // "madamctl", for "Usage: madamctl sweep ..."
    while (!deepest->get_subcommands().empty()) {
      parents += (parents.empty() ? "" : " ") + deepest->get_name();
      deepest = deepest->get_subcommands().front();
    }
    env.Error(deepest == &app ? "name a command" : "name a " + deepest->get_name() + " command");
    *env.err << deepest->help(parents);
    return kExitUsage;
  }
  if (env.client.address.empty()) {
    env.Error("--coordinator: the address is empty; use host:port, e.g. 127.0.0.1:7070");
    return kExitUsage;
  }
  if (Status tls = LoadClientTls(&env.client); !tls.ok()) {
    env.Error(tls.message());
    return kExitFailure;
  }
  std::shared_ptr<madam::v1::Coordinator::StubInterface> stub = make_stub(env.client);
  env.stub = stub.get();
  int code = action();
  env.out->flush();
  env.stub = nullptr;
  return code;
}

}  // namespace madam::cli
