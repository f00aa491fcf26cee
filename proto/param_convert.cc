#include "proto/param_convert.h"

namespace madam {

void ParamsToProto(const RunParams& params, google::protobuf::Map<std::string, v1::ParamValue>* out) {
  for (const auto& [name, value] : params) {
    v1::ParamValue& v = (*out)[name];
    if (value.is_number()) {
      v.set_number(value.number);
    } else {
      v.set_text(value.text);
    }
  }
}

RunParams ParamsFromProto(const google::protobuf::Map<std::string, v1::ParamValue>& params) {
  RunParams out;
  for (const auto& [name, value] : params) {
    out.emplace(name, value.kind_case() == v1::ParamValue::kText ? ParamValue::String(value.text())
                                                                 : ParamValue::Number(value.number()));
  }
  return out;
}

}  // namespace madam
