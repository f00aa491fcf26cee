#include "server/store_schema.h"

#include <spdlog/spdlog.h>

namespace madam::server {

namespace {

// Schema. Each entry upgrades the database from version i to i + 1; the
// version lives in PRAGMA user_version. Append, never edit a shipped entry.
// Times are integer milliseconds since the Unix epoch, except metrics.time
// (the worker's seconds, as reported).
constexpr const char* kMigrations[] = {
    // 1: initial schema.
    R"sql(
CREATE TABLE meta(
  key   TEXT PRIMARY KEY,
  value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO meta(key, value) VALUES ('lease_epoch', 0);

CREATE TABLE sweeps(
  seq             INTEGER PRIMARY KEY AUTOINCREMENT,  -- submission order
  id              TEXT NOT NULL UNIQUE,
  name            TEXT NOT NULL,
  spec_text       TEXT NOT NULL,
  spec_json       TEXT NOT NULL DEFAULT '',
  metric_name     TEXT NOT NULL,
  metric_goal     TEXT NOT NULL,
  device          TEXT NOT NULL,
  max_concurrent  INTEGER NOT NULL,
  max_attempts    INTEGER NOT NULL,
  state           TEXT NOT NULL,
  created_at      INTEGER NOT NULL,
  idempotency_key TEXT UNIQUE
);
CREATE INDEX sweeps_by_state ON sweeps(state, seq);

CREATE TABLE runs(
  id                TEXT PRIMARY KEY,
  sweep_id          TEXT NOT NULL,
  idx               INTEGER NOT NULL,
  params_json       TEXT NOT NULL,
  labels_json       TEXT NOT NULL,
  state             TEXT NOT NULL,
  attempts          INTEGER NOT NULL DEFAULT 0,
  lease_epoch       INTEGER NOT NULL DEFAULT 0,
  lease_worker      TEXT NOT NULL DEFAULT '',
  lease_request     TEXT NOT NULL DEFAULT '',     -- the AcquireRun request id of the grant
  lease_expires_at  INTEGER NOT NULL DEFAULT 0,
  cancel_requested  INTEGER NOT NULL DEFAULT 0,
  last_error        TEXT NOT NULL DEFAULT '',
  final_json        TEXT NOT NULL DEFAULT '{}',
  resume_checkpoint TEXT NOT NULL DEFAULT '',
  completed_epoch   INTEGER NOT NULL DEFAULT 0,   -- epoch of the last CompleteRun
  completed_outcome TEXT NOT NULL DEFAULT '',     -- its outcome, for duplicates
  started_at        INTEGER NOT NULL DEFAULT 0,
  ended_at          INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX runs_by_sweep_state ON runs(sweep_id, state, idx);
CREATE INDEX runs_running_by_expiry ON runs(lease_expires_at) WHERE state = 'RUNNING';
CREATE INDEX runs_running_by_worker ON runs(lease_worker) WHERE state = 'RUNNING';

CREATE TABLE metrics(
  run_id TEXT NOT NULL,
  name   TEXT NOT NULL,
  step   INTEGER NOT NULL,
  value  REAL,             -- NULL stands for NaN
  time   REAL NOT NULL,
  PRIMARY KEY (run_id, name, step)
) WITHOUT ROWID;

CREATE TABLE workers(
  id            TEXT PRIMARY KEY,
  name          TEXT NOT NULL,
  device        TEXT NOT NULL,
  info          TEXT NOT NULL DEFAULT '',
  registered_at INTEGER NOT NULL,
  last_seen     INTEGER NOT NULL
);
)sql",
    // 2: promoted sweeps (ARCHITECTURE.md section 4, "Two stages"): the
    // parent of a stage-2 sweep and why each of its cells is what it is.
    // A table of its own, so sweeps' columns (and their readers) stay as
    // they were; IF NOT EXISTS so that it commutes with other migrations.
    R"sql(
CREATE TABLE IF NOT EXISTS sweep_lineage(
  sweep_id  TEXT PRIMARY KEY,
  parent_id TEXT NOT NULL,
  reasons   TEXT NOT NULL DEFAULT '[]'   -- JSON array of strings
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sweep_lineage_by_parent ON sweep_lineage(parent_id);
)sql",
    // 3: leases bound to their holder (ARCHITECTURE.md section 5): the
    // SHA-256 of the grant's secret, and whether the lease has charged its
    // attempt yet (rows from version 1 were charged at grant).
    R"sql(
ALTER TABLE runs ADD COLUMN lease_secret_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN lease_charged INTEGER NOT NULL DEFAULT 1;
)sql",
    // 4: metrics of rerun runs deleted in chunks (ARCHITECTURE.md section 9):
    // a run listed here is not leased until its old points are gone, so a
    // rerun of a large sweep never holds the writer for one huge DELETE.
    R"sql(
CREATE TABLE IF NOT EXISTS metric_purges(
  run_id TEXT PRIMARY KEY
) WITHOUT ROWID;
)sql",
};

constexpr int64_t kLatest = sizeof(kMigrations) / sizeof(kMigrations[0]);

}  // namespace

int64_t LatestSchemaVersion() { return kLatest; }

Status MigrateSchema(sqlite::Db* db) {
  const std::string& path = db->path();
  auto version = db->QueryInt("PRAGMA user_version");
  if (!version.ok()) return version.status();
  if (*version > kLatest) {
    return Status::FailedPrecondition("database '" + path + "' has schema version " +
                                      std::to_string(*version) + ", newer than this build supports (" +
                                      std::to_string(kLatest) + "); use a newer madamd");
  }
  if (*version < 0) {
    return Status::FailedPrecondition("database '" + path + "' has invalid schema version " +
                                      std::to_string(*version));
  }
  for (int64_t v = *version; v < kLatest; ++v) {
    Status s = db->Exec(kMigrations[v]);
    if (!s.ok()) {
      return Status(s.code(), "migrating database '" + path + "' to schema version " +
                                  std::to_string(v + 1) + ": " + s.message());
    }
    MADAM_RETURN_IF_ERROR(db->Exec("PRAGMA user_version=" + std::to_string(v + 1)));
  }
  if (*version < kLatest) {
    spdlog::info("store: database '{}' migrated from schema version {} to {}", path, *version, kLatest);
  }
  return Status::Ok();
}

}  // namespace madam::server
