// Run parameters between their wire form (map<string, madam.v1.ParamValue>)
// and common/run_config.h's RunParams. One conversion for madamd and
// madam-worker; pure functions.
#pragma once

#include <google/protobuf/map.h>

#include <string>

#include "common/run_config.h"
#include "madam/v1/common.pb.h"

namespace madam {

void ParamsToProto(const RunParams& params, google::protobuf::Map<std::string, v1::ParamValue>* out);
ParamValue ParamFromProto(const v1::ParamValue& value);
RunParams ParamsFromProto(const google::protobuf::Map<std::string, v1::ParamValue>& params);

}  // namespace madam
