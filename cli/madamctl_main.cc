// madamctl: the command-line client of madamd (ARCHITECTURE.md section 3).
// Wires the real process (stdout/stderr, the terminal, a gRPC channel) to
// the command line in cli/app.h.
#include "cli/app.h"
#include "cli/client.h"

int main(int argc, char** argv) {
  madam::cli::CommandEnv env = madam::cli::MakeProcessEnv();
  return madam::cli::RunMadamctl(argc, argv, env, &madam::cli::MakeCoordinatorStub);
}
