// Run parameters as JSON (ARCHITECTURE.md section 3: "numbers as numbers"):
// one encoding for the store's params column, the dashboard's JSON API,
// exports and the worker's recipe command. Numbers that are whole print as
// integers ("3", not "3.0"), lists as arrays, names as strings. Pure
// functions; thread-safe.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

#include "common/run_config.h"

namespace madam {

nlohmann::json ParamToJson(const ParamValue& value);
nlohmann::json ParamsToJsonObject(const RunParams& params);
// The inverse. A value that is none of the three (a JSON object, say) comes
// back as its JSON text, which RunConfigFromParams then rejects by name.
ParamValue ParamFromJson(const nlohmann::json& value);
RunParams ParamsFromJsonObject(const nlohmann::json& object);

}  // namespace madam
