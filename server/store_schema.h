// The store's SQLite schema: its migrations, each upgrading the database from
// version i to i + 1 (the version lives in PRAGMA user_version).
#pragma once

#include <cstdint>

#include "common/status.h"
#include "server/sqlite.h"

namespace madam::server {

// The schema version this build writes.
int64_t LatestSchemaVersion();

// Brings `db` up to LatestSchemaVersion(). REQUIRES: inside a write
// transaction on `db`. FAILED_PRECONDITION for a database newer than this
// build.
Status MigrateSchema(sqlite::Db* db);

}  // namespace madam::server
