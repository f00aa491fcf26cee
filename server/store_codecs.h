// Row codecs of the store: how runs, sweeps, workers and leases are read
// from their SQLite rows and how their JSON columns are written, each once.
// Internal to the store (server/store.cc); no SQL here but the column lists
// the readers expect.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "common/run_config.h"
#include "server/sqlite.h"
#include "server/store.h"

namespace madam::server {

// A run state as stored in runs.state ("PENDING", ...).
const char* StoredState(RunState s);

// Run parameters in the one JSON encoding of common/param_json.h.
std::string ParamsToJson(const RunParams& params);
RunParams ParamsFromJson(const std::string& text);
std::string LabelsToJson(const std::map<std::string, std::string>& labels);
std::map<std::string, std::string> LabelsFromJson(const std::string& text);
// JSON has no non-finite numbers: they are written as the strings "nan",
// "inf" and "-inf" and read back as such.
std::string FinalToJson(const std::map<std::string, double>& final);
std::map<std::string, double> FinalFromJson(const std::string& text);

// "cpu" of "cpu" and "cpu,cpu", "cuda" of "cuda:3" and "cuda:0,cuda:1"
// (common/devices.h).
std::string DeviceKind(const std::string& device);
// Devices a worker registered: its device string is one device or a
// comma-separated list of them.
int64_t DeviceCount(const std::string& device);

// Each reader takes a row of the SELECT above it, with the caller's WHERE
// (and ORDER BY) appended.
inline constexpr const char* kRunColumns =
    "SELECT r.id, r.sweep_id, r.idx, r.params_json, r.labels_json, r.state, r.attempts, "
    "s.max_attempts, r.lease_epoch, r.lease_worker, r.lease_expires_at, r.cancel_requested, "
    "r.last_error, r.final_json, r.resume_checkpoint, r.started_at, r.ended_at "
    "FROM runs r JOIN sweeps s ON s.id = r.sweep_id ";
inline constexpr const char* kSweepColumns =
    "SELECT id, name, spec_text, spec_json, metric_name, metric_goal, device, "
    "COALESCE(idempotency_key, ''), max_concurrent, max_attempts, state, created_at FROM sweeps ";
inline constexpr const char* kWorkerColumns =
    "SELECT w.id, w.name, w.device, w.info, w.registered_at, w.last_seen, "
    "COALESCE((SELECT r.id FROM runs r WHERE r.state = 'RUNNING' AND r.lease_worker = w.id "
    "ORDER BY r.started_at DESC LIMIT 1), '') FROM workers w ";
// A lease's columns: the same for a new grant and for one re-sent to a
// retried request.
inline constexpr const char* kLeaseColumns =
    "SELECT r.id, r.sweep_id, r.idx, r.params_json, r.labels_json, r.attempts, "
    "r.resume_checkpoint, r.lease_epoch, r.lease_expires_at, s.metric_name, r.lease_charged "
    "FROM runs r JOIN sweeps s ON s.id = r.sweep_id ";

RunRow ReadRun(const sqlite::Statement& st);          // kRunColumns
SweepRow ReadSweep(const sqlite::Statement& st);      // kSweepColumns
WorkerRow ReadWorker(const sqlite::Statement& st);    // kWorkerColumns
Lease ReadLease(const sqlite::Statement& st);         // kLeaseColumns; no worker or secret
// A sweep_lineage row (parent_id, reasons) into its sweep.
void ReadLineage(const sqlite::Statement& st, SweepRow* sweep);
// Adds `n` runs in `stored_state` to the counts.
void AddCount(RunCounts* c, const std::string& stored_state, int64_t n);

}  // namespace madam::server
