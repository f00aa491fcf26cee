// The gRPC side of madamctl: the channel to the coordinator, per-call
// contexts (deadline and `authorization: Bearer TOKEN` metadata), the
// translation of a failed call into a message that says what to do, and the
// CommandEnv every command runs in.
//
// Commands are written against madam::v1::Coordinator::StubInterface, never
// the concrete stub, so that tests drive them with a fake.
//
// Thread-safety: everything here is used from madamctl's one thread.
// CommandEnv does not own the stub or the streams it points to.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <ostream>
#include <string>

#include <grpcpp/grpcpp.h>

#include "common/tls_files.h"
#include "madam/v1/coordinator.grpc.pb.h"

namespace madam::cli {

// Process exit status (ARCHITECTURE.md section 3).
enum ExitCode : int {
  kExitOk = 0,
  kExitFailure = 1,  // the command failed; stderr names the cause
  kExitUsage = 2,    // bad flags, unknown command, bad flag value
};

constexpr char kDefaultCoordinator[] = "127.0.0.1:7070";
constexpr std::chrono::seconds kUnaryDeadline{10};
constexpr std::chrono::seconds kSubmitDeadline{60};
// Exports and metric dumps can be far larger than gRPC's 4 MiB default.
constexpr int kMaxReceiveMessageBytes = 256 << 20;

// Where and as whom to call.
struct ClientOptions {
  std::string address = kDefaultCoordinator;
  std::string token;  // empty: send no authorization metadata
  // TLS: PEM file paths from --tls-ca/--tls-cert/--tls-key (all empty:
  // plaintext), and their contents, read by LoadClientTls before the channel
  // is made.
  std::string tls_ca_file;
  std::string tls_cert_file;
  std::string tls_key_file;
  std::optional<TlsPem> tls;
};

// Reads the --tls-* files into options->tls when any is set; the error names
// the flag and the file.
Status LoadClientTls(ClientOptions* options);

// A channel to the coordinator at options.address, over TLS when options.tls
// is set (system roots when it has no CA). Connection happens lazily
// on the first call, so this never fails; an unreachable address surfaces as
// UNAVAILABLE from that call.
std::shared_ptr<grpc::Channel> MakeCoordinatorChannel(const ClientOptions& options);

// Readies `context` for one call: adds the bearer token when one is set and,
// when `deadline` is positive, a deadline that far from now (0: none, for
// WatchSweep).
void PrepareContext(grpc::ClientContext& context, const ClientOptions& options,
                    std::chrono::milliseconds deadline);

// A one-line explanation of a failed call for the user (without the
// "madamctl: " prefix). UNAVAILABLE names the address and says how to fix
// it; errors about the request itself (INVALID_ARGUMENT with the server's
// "file:line:col: message", NOT_FOUND, ...) pass the server's message
// through.
std::string DescribeRpcError(const grpc::Status& status, const std::string& address);

// True for the failures a retry may cure: the coordinator was unreachable
// or did not answer in time.
bool IsRetryable(const grpc::Status& status);

// Everything a command needs, injected so that tests can stand in for the
// network, the terminal and time.
struct CommandEnv {
  madam::v1::Coordinator::StubInterface* stub = nullptr;  // not owned
  ClientOptions client;
  bool json = false;             // global --json
  std::ostream* out = nullptr;   // results
  std::ostream* err = nullptr;   // diagnostics ("madamctl: ...")
  bool out_is_tty = false;       // redraw progress in place with ANSI codes
  int terminal_columns = 0;      // stdout's width when a terminal; 0: unknown
  // Waits between retries; tests record instead of sleeping.
  std::function<void(std::chrono::milliseconds)> sleep;
  // Unix milliseconds now; used for "5s ago" style ages.
  std::function<int64_t()> now_ms;

  // Prints "madamctl: MESSAGE" on err.
  void Error(const std::string& message) const;
  // Prints DescribeRpcError(status) on err and returns kExitFailure.
  int RpcFailure(const grpc::Status& status) const;
};

// What a parsed command line runs: set by a command group's CLI11 callback
// during parsing, invoked once the channel exists. Returns an ExitCode.
using CommandAction = std::function<int()>;

// An env wired to the real world: std::cout/std::cerr, isatty(stdout), real
// sleeps and the system clock. The stub is left for the caller to set.
CommandEnv MakeProcessEnv();

}  // namespace madam::cli
