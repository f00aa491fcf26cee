#include "server/grpc_status.h"

namespace madam::server {

grpc::Status ToGrpcStatus(const Status& status) {
  if (status.ok()) return grpc::Status::OK;
  // StatusCode mirrors grpc::StatusCode value for value (common/status.h).
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), status.message());
}

}  // namespace madam::server
