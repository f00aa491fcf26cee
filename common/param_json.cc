#include "common/param_json.h"

#include <cmath>
#include <cstdint>

namespace madam {
namespace {

nlohmann::json NumberJson(double v) {
  if (std::isfinite(v) && v == std::floor(v) && std::fabs(v) < 9007199254740992.0) {
    return static_cast<int64_t>(v);
  }
  return v;
}

}  // namespace

nlohmann::json ParamToJson(const ParamValue& value) {
  switch (value.kind) {
    case ParamValue::Kind::kString:
      return value.text;
    case ParamValue::Kind::kList: {
      nlohmann::json out = nlohmann::json::array();
      for (double x : value.list) out.push_back(NumberJson(x));
      return out;
    }
    case ParamValue::Kind::kNumber:
      break;
  }
  return NumberJson(value.number);
}

nlohmann::json ParamsToJsonObject(const RunParams& params) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [name, value] : params) out[name] = ParamToJson(value);
  return out;
}

ParamValue ParamFromJson(const nlohmann::json& value) {
  if (value.is_number()) return ParamValue::Number(value.get<double>());
  if (value.is_string()) return ParamValue::String(value.get<std::string>());
  if (value.is_array()) {
    std::vector<double> list;
    for (const auto& x : value) {
      if (!x.is_number()) return ParamValue::String(value.dump());
      list.push_back(x.get<double>());
    }
    return ParamValue::List(std::move(list));
  }
  return ParamValue::String(value.dump());
}

RunParams ParamsFromJsonObject(const nlohmann::json& object) {
  RunParams out;
  if (!object.is_object()) return out;
  for (const auto& [key, value] : object.items()) out[key] = ParamFromJson(value);
  return out;
}

}  // namespace madam
