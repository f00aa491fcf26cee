// The credentials madamd listens with: plaintext or TLS (optionally mutual
// TLS), and, when a token table is given, the token check of server/auth.h
// run on every call before any handler sees it (sync and callback methods
// alike). Missing/bad token: UNAUTHENTICATED; wrong role: PERMISSION_DENIED.
//
// Why not a ServerInterceptor: gRPC C++ server interceptors cannot end a call
// before its handler runs. Why not grpc::InsecureServerCredentials plus
// SetAuthMetadataProcessor: gRPC 1.51 ignores processors on insecure
// credentials. So this builds gRPC core credentials (insecure or SSL) and
// attaches a core auth-metadata processor to them; the `authorization` header
// is consumed by it, so handlers and interceptors never see the token.
//
// Thread-safety: MakeServerCredentials is called once at start-up; the
// processor it installs runs on gRPC threads and only reads the TokenTable.
#pragma once

#include <memory>
#include <string>

#include <grpcpp/security/server_credentials.h>

#include "common/status.h"
#include "common/tls_files.h"
#include "server/auth.h"

namespace madam::server {

struct ServerSecurityOptions {
  // Empty: plaintext. Otherwise cert and key (PEM text) serve TLS, and a
  // non-empty ca requires and verifies client certificates against it.
  TlsPem tls;
  // Null: no token check (loopback or --insecure).
  std::shared_ptr<const TokenTable> tokens;
};

Result<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const ServerSecurityOptions& options);

}  // namespace madam::server
