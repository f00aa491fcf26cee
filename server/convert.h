// Conversions between the store's rows (server/store.h) and the wire types
// (proto/madam/v1). Pure functions; thread-compatible.
#pragma once

#include <google/protobuf/map.h>

#include <map>
#include <optional>
#include <string>

#include "common/run_config.h"
#include "madam/v1/common.pb.h"
#include "madam/v1/coordinator.pb.h"
#include "proto/param_convert.h"
#include "server/store.h"

namespace madam::server {

v1::RunState ToProto(RunState state);
// nullopt for RUN_STATE_UNSPECIFIED or an unknown value.
std::optional<RunState> FromProto(v1::RunState state);

void ToProto(const RunCounts& counts, v1::RunCounts* out);
// spec_text is copied only when `with_spec` is set (GetSweep).
void ToProto(const SweepRow& sweep, v1::Sweep* out, bool with_spec = false);
void ToProto(const RunRow& run, v1::Run* out);

}  // namespace madam::server
