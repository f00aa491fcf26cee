#include "cli/client.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <iostream>
#include <thread>

namespace madam::cli {

Status LoadClientTls(ClientOptions* options) {
  if (options->tls_ca_file.empty() && options->tls_cert_file.empty() && options->tls_key_file.empty()) {
    return Status::Ok();
  }
  auto pem = LoadTlsPem("--tls-ca", options->tls_ca_file, options->tls_cert_file, options->tls_key_file);
  if (!pem.ok()) return pem.status();
  options->tls = std::move(*pem);
  return Status::Ok();
}

std::shared_ptr<grpc::Channel> MakeCoordinatorChannel(const ClientOptions& options) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxReceiveMessageBytes);
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  if (options.tls) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = options.tls->ca;
    ssl.pem_cert_chain = options.tls->cert;
    ssl.pem_private_key = options.tls->key;
    credentials = grpc::SslCredentials(ssl);
  }
  return grpc::CreateCustomChannel(options.address, credentials, args);
}

void PrepareContext(grpc::ClientContext& context, const ClientOptions& options,
                    std::chrono::milliseconds deadline) {
  if (!options.token.empty()) {
    // Plain metadata rather than call credentials: gRPC only attaches call
    // credentials on secure channels, and loopback needs none.
    context.AddMetadata("authorization", "Bearer " + options.token);
  }
  if (deadline.count() > 0) {
    context.set_deadline(std::chrono::system_clock::now() + deadline);
  }
}

namespace {

const char* CodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK: return "OK";
    case grpc::StatusCode::CANCELLED: return "CANCELLED";
    case grpc::StatusCode::UNKNOWN: return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND: return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS: return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED: return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION: return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED: return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE: return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED: return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL: return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE: return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS: return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED: return "UNAUTHENTICATED";
    default: return "UNKNOWN";
  }
}

std::string CodeAndMessage(const grpc::Status& status) {
  std::string s = CodeName(status.error_code());
  if (!status.error_message().empty()) s += ": " + status.error_message();
  return s;
}

}  // namespace

std::string DescribeRpcError(const grpc::Status& status, const std::string& address) {
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
      return "cannot reach the coordinator at " + address + " (" + CodeAndMessage(status) +
             "): is madamd running? set --coordinator or MADAM_COORDINATOR";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "the coordinator at " + address + " did not answer in time (" +
             CodeAndMessage(status) + ")";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "the coordinator at " + address + " wants a valid token (" +
             CodeAndMessage(status) + "): set --token or MADAM_TOKEN";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "the token's role may not do this (" + CodeAndMessage(status) +
             "): submit, cancel and rerun need an admin token; list, show, watch and reports a "
             "reader (or admin) token";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "the coordinator at " + address + " does not support this call (" +
             CodeAndMessage(status) + "): is it an older madamd?";
    // The request itself was wrong: the server's message already names the
    // file position, the id or the limit, and is the most useful thing to show.
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::NOT_FOUND:
    case grpc::StatusCode::ALREADY_EXISTS:
    case grpc::StatusCode::FAILED_PRECONDITION:
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
    case grpc::StatusCode::OUT_OF_RANGE:
      if (!status.error_message().empty()) return status.error_message();
      return CodeAndMessage(status);
    default:
      return CodeAndMessage(status);
  }
}

bool IsRetryable(const grpc::Status& status) {
  return status.error_code() == grpc::StatusCode::UNAVAILABLE ||
         status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
}

void CommandEnv::Error(const std::string& message) const {
  *err << "madamctl: " << message << '\n' << std::flush;
}

int CommandEnv::RpcFailure(const grpc::Status& status) const {
  Error(DescribeRpcError(status, client.address));
  return kExitFailure;
}

CommandEnv MakeProcessEnv() {
  CommandEnv env;
  env.out = &std::cout;
  env.err = &std::cerr;
  env.out_is_tty = ::isatty(STDOUT_FILENO) == 1;
  struct winsize size {};
  if (env.out_is_tty && ::ioctl(STDOUT_FILENO, TIOCGWINSZ, &size) == 0) env.terminal_columns = size.ws_col;
  env.sleep = [](std::chrono::milliseconds d) { std::this_thread::sleep_for(d); };
  env.now_ms = [] {
    return static_cast<int64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                    std::chrono::system_clock::now().time_since_epoch())
                                    .count());
  };
  return env;
}

}  // namespace madam::cli
