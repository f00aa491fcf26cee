// The one mapping from madam::Status to grpc::Status at the gRPC boundary.
// Handlers never throw; they return ToGrpcStatus(status).
#pragma once

#include <grpcpp/support/status.h>

#include "common/status.h"

namespace madam::server {

grpc::Status ToGrpcStatus(const Status& status);

}  // namespace madam::server
