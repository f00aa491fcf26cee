#include "server/server_credentials.h"

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpcpp/version_info.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <string_view>

namespace madam::server {

namespace {

std::string_view View(const grpc_slice& slice) {
  return {reinterpret_cast<const char*>(GRPC_SLICE_START_PTR(slice)), GRPC_SLICE_LENGTH(slice)};
}

// The client chooses :path, so it is printed with control bytes escaped and
// cut to a sane length before it reaches the log.
std::string LoggableMethod(std::string_view method) {
  constexpr size_t kMaxLogged = 120;
  std::string out;
  for (char c : method.substr(0, kMaxLogged)) {
    if (c >= 0x20 && c < 0x7f) {
      out += c;
    } else {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02x", static_cast<unsigned char>(c));
      out += hex;
    }
  }
  if (method.size() > kMaxLogged) out += "...";
  return out.empty() ? "(no method)" : out;
}

grpc_status_code ToCoreCode(StatusCode code) { return static_cast<grpc_status_code>(code); }

// The core processor: state is a heap-held shared_ptr<const TokenTable>.
void ProcessAuthMetadata(void* state, grpc_auth_context* /*context*/, const grpc_metadata* md,
                         size_t num_md, grpc_process_auth_metadata_done_cb done, void* user_data) {
  const auto& tokens = *static_cast<std::shared_ptr<const TokenTable>*>(state);
  std::string_view method;
  std::string_view authorization;
  const grpc_metadata* authorization_md = nullptr;
  int authorization_count = 0;
  for (size_t i = 0; i < num_md; ++i) {
    const std::string_view key = View(md[i].key);
    if (key == ":path") {
      method = View(md[i].value);
    } else if (key == "authorization") {
      authorization = View(md[i].value);
      authorization_md = &md[i];
      ++authorization_count;
    }
  }
  Status decision = authorization_count > 1
                        ? Status::Unauthenticated("more than one authorization header")
                        : Authorize(*tokens, method, authorization);
  if (decision.ok()) {
    // Consume the header: nothing after this point can log or leak it.
    done(user_data, authorization_md, authorization_md != nullptr ? 1 : 0, nullptr, 0,
         GRPC_STATUS_OK, nullptr);
    return;
  }
  // The message names the method and the roles, never the token.
  spdlog::warn("denied {}: {}", LoggableMethod(method), decision.ToString());
  done(user_data, nullptr, 0, nullptr, 0, ToCoreCode(decision.code()), decision.message().c_str());
}

void DestroyProcessorState(void* state) {
  delete static_cast<std::shared_ptr<const TokenTable>*>(state);
}

// grpc::ServerCredentials over core credentials we build ourselves. Relies on
// gRPC 1.51's ServerCredentials interface (AddPortToServer is the virtual
// ServerBuilder calls); a gRPC with another interface fails to compile here.
class CoreServerCredentials final : public grpc::ServerCredentials {
 public:
  // The base class initialises gRPC, so core credentials are made after it.
  CoreServerCredentials() = default;
  ~CoreServerCredentials() override {
    if (creds_ != nullptr) grpc_server_credentials_release(creds_);
  }
  void Adopt(grpc_server_credentials* creds) { creds_ = creds; }

  void SetAuthMetadataProcessor(const std::shared_ptr<grpc::AuthMetadataProcessor>&) override {
    // The token check is installed at construction; a second processor would
    // silently replace it, so this is refused loudly.
    spdlog::critical("SetAuthMetadataProcessor on madam's server credentials is not supported");
    std::abort();
  }

 private:
  int AddPortToServer(const std::string& addr, grpc_server* server) override {
    return grpc_server_add_http2_port(server, addr.c_str(), creds_);
  }

  grpc_server_credentials* creds_ = nullptr;  // owned
};

static_assert(GRPC_CPP_VERSION_MAJOR == 1 && GRPC_CPP_VERSION_MINOR <= 51,
              "CoreServerCredentials relies on gRPC <= 1.51's ServerCredentials interface");

}  // namespace

Result<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const ServerSecurityOptions& options) {
  const bool tls = !options.tls.cert.empty();
  if (!tls && !options.tls.ca.empty()) {
    return Status::InvalidArgument("--tls-client-ca needs --tls-cert and --tls-key");
  }
  if (!tls && options.tokens == nullptr) return grpc::InsecureServerCredentials();

  auto result = std::make_shared<CoreServerCredentials>();
  grpc_server_credentials* creds = nullptr;
  if (tls) {
    grpc_ssl_pem_key_cert_pair pair{options.tls.key.c_str(), options.tls.cert.c_str()};
    const bool verify_clients = !options.tls.ca.empty();
    creds = grpc_ssl_server_credentials_create_ex(
        verify_clients ? options.tls.ca.c_str() : nullptr, &pair, 1,
        verify_clients ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                       : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE,
        nullptr);
    if (creds == nullptr) {
      return Status::InvalidArgument("--tls-cert/--tls-key: gRPC refused the certificate or key");
    }
  } else {
    creds = grpc_insecure_server_credentials_create();
  }
  if (options.tokens != nullptr) {
    grpc_auth_metadata_processor processor{};
    processor.process = ProcessAuthMetadata;
    processor.destroy = DestroyProcessorState;
    processor.state = new std::shared_ptr<const TokenTable>(options.tokens);
    grpc_server_credentials_set_auth_metadata_processor(creds, processor);
  }
  result->Adopt(creds);
  return std::shared_ptr<grpc::ServerCredentials>(std::move(result));
}

}  // namespace madam::server
