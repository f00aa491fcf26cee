// Fault injection for tests: lose the response of the first N calls of a
// method. The call runs to completion on the server (its effects are
// committed), then the client is told UNAVAILABLE, exactly as when a response
// is lost on the network. Clients must retry safely: submit with its
// idempotency key, acquire with its request id, report and complete being
// idempotent under the lease epoch (ARCHITECTURE.md section 5).
//
// Enabled only by madamd's hidden --inject-lost-responses flag; a server
// interceptor, so no service code knows about it.
//
// Thread-safety: the factory is called concurrently by gRPC; its counters
// are atomics.
#pragma once

#include <grpcpp/support/server_interceptor.h>

#include <atomic>
#include <map>
#include <memory>
#include <string>

#include "common/status.h"

namespace madam::server {

class LostResponseInjector final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  // `spec` is "Method=N[,Method=N...]", methods by short name (e.g.
  // "SubmitSweep=1,AcquireRun=2"). Unknown syntax is an InvalidArgument.
  static Result<std::unique_ptr<LostResponseInjector>> Parse(const std::string& spec);

  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;

 private:
  // short method name -> responses still to lose
  std::map<std::string, std::unique_ptr<std::atomic<int>>> remaining_;
};

}  // namespace madam::server
