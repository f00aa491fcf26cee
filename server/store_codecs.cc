#include "server/store_codecs.h"

#include "common/devices.h"

#include <algorithm>
#include <cmath>

#include <nlohmann/json.hpp>

#include "common/param_json.h"

namespace madam::server {

using json = nlohmann::json;
using sqlite::Statement;

const char* StoredState(RunState s) {
  switch (s) {
    case RunState::kPending: return "PENDING";
    case RunState::kRunning: return "RUNNING";
    case RunState::kSucceeded: return "SUCCEEDED";
    case RunState::kDiverged: return "DIVERGED";
    case RunState::kFailed: return "FAILED";
    case RunState::kCancelled: return "CANCELLED";
  }
  return "UNKNOWN";
}

// ---- JSON encodings of the run columns ----

// Run parameters in the one JSON encoding of common/param_json.h.
std::string ParamsToJson(const RunParams& params) { return ParamsToJsonObject(params).dump(); }

RunParams ParamsFromJson(const std::string& text) {
  return ParamsFromJsonObject(json::parse(text, nullptr, /*allow_exceptions=*/false));
}

std::string LabelsToJson(const std::map<std::string, std::string>& labels) {
  json j = json::object();
  for (const auto& [k, v] : labels) j[k] = v;
  return j.dump();
}

std::map<std::string, std::string> LabelsFromJson(const std::string& text) {
  std::map<std::string, std::string> labels;
  json j = json::parse(text, nullptr, false);
  if (!j.is_object()) return labels;
  for (const auto& [k, v] : j.items()) labels[k] = v.is_string() ? v.get<std::string>() : v.dump();
  return labels;
}

// JSON has no non-finite numbers: they are written as the strings "nan",
// "inf" and "-inf" and read back as such.
std::string FinalToJson(const std::map<std::string, double>& final) {
  json j = json::object();
  for (const auto& [k, v] : final) {
    if (std::isnan(v)) {
      j[k] = "nan";
    } else if (std::isinf(v)) {
      j[k] = v > 0 ? "inf" : "-inf";
    } else {
      j[k] = v;
    }
  }
  return j.dump();
}

std::map<std::string, double> FinalFromJson(const std::string& text) {
  std::map<std::string, double> final;
  json j = json::parse(text, nullptr, false);
  if (!j.is_object()) return final;
  for (const auto& [k, v] : j.items()) {
    if (v.is_number()) {
      final[k] = v.get<double>();
    } else if (v.is_string()) {
      const std::string s = v.get<std::string>();
      final[k] = s == "inf" ? HUGE_VAL : s == "-inf" ? -HUGE_VAL : std::nan("");
    } else {
      final[k] = std::nan("");
    }
  }
  return final;
}

std::string DeviceKind(const std::string& device) { return DeviceListKind(device); }

int64_t DeviceCount(const std::string& device) { return DeviceListSize(device); }

RunRow ReadRun(const Statement& st) {
  RunRow r;
  r.id = st.ColumnText(0);
  r.sweep_id = st.ColumnText(1);
  r.index = st.ColumnInt(2);
  r.params = ParamsFromJson(st.ColumnText(3));
  r.labels = LabelsFromJson(st.ColumnText(4));
  r.state = ParseRunState(st.ColumnText(5)).value_or(RunState::kFailed);
  r.attempts = st.ColumnInt(6);
  r.max_attempts = st.ColumnInt(7);
  r.lease_epoch = st.ColumnInt(8);
  r.lease_worker = st.ColumnText(9);
  r.lease_expires_at_ms = st.ColumnInt(10);
  r.cancel_requested = st.ColumnInt(11) != 0;
  r.last_error = st.ColumnText(12);
  r.final = FinalFromJson(st.ColumnText(13));
  r.resume_checkpoint = st.ColumnText(14);
  r.started_at_ms = st.ColumnInt(15);
  r.ended_at_ms = st.ColumnInt(16);
  return r;
}

SweepRow ReadSweep(const Statement& st) {
  SweepRow s;
  s.id = st.ColumnText(0);
  s.name = st.ColumnText(1);
  s.spec_text = st.ColumnText(2);
  s.spec_json = st.ColumnText(3);
  s.metric_name = st.ColumnText(4);
  s.metric_goal = st.ColumnText(5);
  s.device = st.ColumnText(6);
  s.idempotency_key = st.ColumnText(7);
  s.max_concurrent = st.ColumnInt(8);
  s.max_attempts = st.ColumnInt(9);
  s.state = st.ColumnText(10);
  s.created_at_ms = st.ColumnInt(11);
  return s;
}

// A sweep_lineage row (parent_id, reasons) into its sweep.
void ReadLineage(const Statement& st, SweepRow* sweep) {
  sweep->parent_sweep_id = st.ColumnText(0);
  sweep->promotion_reasons.clear();
  json reasons = json::parse(st.ColumnText(1), nullptr, false);
  if (!reasons.is_array()) return;
  for (const auto& r : reasons) {
    if (r.is_string()) sweep->promotion_reasons.push_back(r.get<std::string>());
  }
}

void AddCount(RunCounts* c, const std::string& stored_state, int64_t n) {
  auto state = ParseRunState(stored_state);
  if (!state) return;
  switch (*state) {
    case RunState::kPending: c->pending += n; break;
    case RunState::kRunning: c->running += n; break;
    case RunState::kSucceeded: c->succeeded += n; break;
    case RunState::kDiverged: c->diverged += n; break;
    case RunState::kFailed: c->failed += n; break;
    case RunState::kCancelled: c->cancelled += n; break;
  }
}

WorkerRow ReadWorker(const Statement& st) {
  WorkerRow w;
  w.id = st.ColumnText(0);
  w.name = st.ColumnText(1);
  w.device = st.ColumnText(2);
  w.info = st.ColumnText(3);
  w.registered_at_ms = st.ColumnInt(4);
  w.last_seen_ms = st.ColumnInt(5);
  w.current_run = st.ColumnText(6);
  return w;
}

Lease ReadLease(const sqlite::Statement& st) {
  Lease l;
  l.run_id = st.ColumnText(0);
  l.sweep_id = st.ColumnText(1);
  l.index = st.ColumnInt(2);
  l.params = ParamsFromJson(st.ColumnText(3));
  l.labels = LabelsFromJson(st.ColumnText(4));
  // The attempt this lease is: attempts counts charged ones, and a lease
  // charges its own at its first sign of work (lease_charged).
  l.attempt = st.ColumnInt(5) + (st.ColumnInt(10) == 0 ? 1 : 0);
  l.resume_checkpoint = st.ColumnText(6);
  l.lease_epoch = st.ColumnInt(7);
  l.lease_expires_at_ms = st.ColumnInt(8);
  l.metric_name = st.ColumnText(9);
  return l;
}

}  // namespace madam::server
