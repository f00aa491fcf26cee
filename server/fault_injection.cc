#include "server/fault_injection.h"

#include <sstream>

namespace madam::server {
namespace {

class LoseResponse final : public grpc::experimental::Interceptor {
 public:
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    using grpc::experimental::InterceptionHookPoints;
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS) &&
        methods->GetSendStatus().ok()) {
      methods->ModifySendStatus(
          grpc::Status(grpc::StatusCode::UNAVAILABLE, "injected fault: response lost"));
    }
    methods->Proceed();
  }
};

}  // namespace

Result<std::unique_ptr<LostResponseInjector>> LostResponseInjector::Parse(const std::string& spec) {
  auto injector = std::unique_ptr<LostResponseInjector>(new LostResponseInjector());
  std::stringstream in(spec);
  std::string item;
  while (std::getline(in, item, ',')) {
    const auto eq = item.find('=');
    int count = 0;
    try {
      count = eq == std::string::npos ? -1 : std::stoi(item.substr(eq + 1));
    } catch (...) {
      count = -1;
    }
    if (eq == 0 || count < 0) {
      return Status::InvalidArgument("--inject-lost-responses: expected Method=N, got \"" + item + "\"");
    }
    injector->remaining_[item.substr(0, eq)] = std::make_unique<std::atomic<int>>(count);
  }
  return injector;
}

grpc::experimental::Interceptor* LostResponseInjector::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  const std::string full = info->method();  // "/madam.v1.WorkerApi/AcquireRun"
  const std::string method = full.substr(full.rfind('/') + 1);
  auto it = remaining_.find(method);
  if (it == remaining_.end()) return nullptr;
  // Claim one of the remaining losses, if any are left.
  int left = it->second->load();
  while (left > 0 && !it->second->compare_exchange_weak(left, left - 1)) {
  }
  return left > 0 ? new LoseResponse() : nullptr;
}

}  // namespace madam::server
