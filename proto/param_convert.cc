#include "proto/param_convert.h"

namespace madam {

void ParamsToProto(const RunParams& params, google::protobuf::Map<std::string, v1::ParamValue>* out) {
  for (const auto& [name, value] : params) {
    v1::ParamValue& v = (*out)[name];
    switch (value.kind) {
      case ParamValue::Kind::kNumber:
        v.set_number(value.number);
        break;
      case ParamValue::Kind::kString:
        v.set_text(value.text);
        break;
      case ParamValue::Kind::kList:
        v.mutable_numbers()->mutable_values()->Assign(value.list.begin(), value.list.end());
        break;
    }
  }
}

ParamValue ParamFromProto(const v1::ParamValue& value) {
  switch (value.kind_case()) {
    case v1::ParamValue::kText:
      return ParamValue::String(value.text());
    case v1::ParamValue::kNumbers:
      return ParamValue::List({value.numbers().values().begin(), value.numbers().values().end()});
    default:
      return ParamValue::Number(value.number());
  }
}

RunParams ParamsFromProto(const google::protobuf::Map<std::string, v1::ParamValue>& params) {
  RunParams out;
  for (const auto& [name, value] : params) {
    out.emplace(name, ParamFromProto(value));
  }
  return out;
}

}  // namespace madam
