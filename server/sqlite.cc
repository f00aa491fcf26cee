#include "server/sqlite.h"

#include <cmath>

namespace madam::server::sqlite {

Db::~Db() {
  if (db_ != nullptr) sqlite3_close_v2(db_);
}

Db& Db::operator=(Db&& other) noexcept {
  if (this != &other) {
    if (db_ != nullptr) sqlite3_close_v2(db_);
    db_ = other.db_;
    path_ = std::move(other.path_);
    other.db_ = nullptr;
  }
  return *this;
}

Result<Db> Db::Open(const std::string& path, Mode mode) {
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;
  if (mode == Mode::kReadWriteCreate) flags |= SQLITE_OPEN_CREATE;
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
  Db db;
  db.db_ = raw;  // owned even on failure, so it is closed
  db.path_ = path;
  if (rc != SQLITE_OK) {
    return Status::Unavailable("cannot open database '" + path + "': " +
                               (raw != nullptr ? sqlite3_errmsg(raw) : sqlite3_errstr(rc)));
  }
  sqlite3_extended_result_codes(raw, 1);
  return db;
}

Status Db::Error(std::string_view what, int rc) const {
  std::string msg = "sqlite error on '" + path_ + "': " + std::string(what) + ": " +
                    (db_ != nullptr ? sqlite3_errmsg(db_) : sqlite3_errstr(rc)) +
                    " (code " + std::to_string(rc) + ")";
  int primary = rc & 0xff;
  if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED) return Status::Unavailable(msg);
  if (primary == SQLITE_CORRUPT || primary == SQLITE_NOTADB) return Status::DataLoss(msg);
  if (primary == SQLITE_CONSTRAINT) return Status::AlreadyExists(msg);
  // Storage faults the operator can clear (disk full, a read-only or vanished
  // file, memory pressure): the caller may retry, so UNAVAILABLE, never a
  // refusal (ARCHITECTURE.md section 5: a worker drops a batch only on
  // INVALID_ARGUMENT).
  if (primary == SQLITE_FULL || primary == SQLITE_IOERR || primary == SQLITE_READONLY ||
      primary == SQLITE_CANTOPEN || primary == SQLITE_NOMEM || primary == SQLITE_PERM) {
    return Status::Unavailable(msg);
  }
  return Status::Internal(msg);
}

Status Db::Exec(std::string_view sql) {
  std::string s(sql);
  char* err = nullptr;
  int rc = sqlite3_exec(db_, s.c_str(), nullptr, nullptr, &err);
  if (err != nullptr) sqlite3_free(err);
  if (rc != SQLITE_OK) return Error("exec '" + s.substr(0, 120) + "'", rc);
  return Status::Ok();
}

Result<Statement> Db::Prepare(std::string_view sql) {
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()),
                              SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
  if (rc != SQLITE_OK) {
    if (stmt != nullptr) sqlite3_finalize(stmt);
    return Error("prepare '" + std::string(sql.substr(0, 120)) + "'", rc);
  }
  return Statement(this, stmt);
}

Result<int64_t> Db::QueryInt(std::string_view sql) {
  auto stmt = Prepare(sql);
  if (!stmt.ok()) return stmt.status();
  auto row = stmt->Step();
  if (!row.ok()) return row.status();
  if (!*row) return Status::Internal("query returned no row: " + std::string(sql));
  return stmt->ColumnInt(0);
}

Result<std::string> Db::QueryText(std::string_view sql) {
  auto stmt = Prepare(sql);
  if (!stmt.ok()) return stmt.status();
  auto row = stmt->Step();
  if (!row.ok()) return row.status();
  if (!*row) return Status::Internal("query returned no row: " + std::string(sql));
  return stmt->ColumnText(0);
}

Statement::~Statement() {
  if (stmt_ != nullptr) sqlite3_finalize(stmt_);
}

Statement& Statement::operator=(Statement&& other) noexcept {
  if (this != &other) {
    if (stmt_ != nullptr) sqlite3_finalize(stmt_);
    db_ = other.db_;
    stmt_ = other.stmt_;
    bind_error_ = other.bind_error_;
    other.stmt_ = nullptr;
  }
  return *this;
}

Statement& Statement::Bind(int index, int64_t value) {
  int rc = sqlite3_bind_int64(stmt_, index, value);
  if (rc != SQLITE_OK) bind_error_ = rc;
  return *this;
}

Statement& Statement::Bind(int index, double value) {
  int rc = std::isnan(value) ? sqlite3_bind_null(stmt_, index)
                             : sqlite3_bind_double(stmt_, index, value);
  if (rc != SQLITE_OK) bind_error_ = rc;
  return *this;
}

Statement& Statement::Bind(int index, std::string_view value) {
  int rc = sqlite3_bind_text64(stmt_, index, value.data(), value.size(), SQLITE_TRANSIENT,
                               SQLITE_UTF8);
  if (rc != SQLITE_OK) bind_error_ = rc;
  return *this;
}

Statement& Statement::BindNull(int index) {
  int rc = sqlite3_bind_null(stmt_, index);
  if (rc != SQLITE_OK) bind_error_ = rc;
  return *this;
}

Statement& Statement::BindTextOrNull(int index, std::string_view value) {
  return value.empty() ? BindNull(index) : Bind(index, value);
}

Result<bool> Statement::Step() {
  if (bind_error_ != SQLITE_OK) {
    int rc = bind_error_;
    return db_->Error(std::string("bind for '") + sqlite3_sql(stmt_) + "'", rc);
  }
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  std::string sql = sqlite3_sql(stmt_);
  Status error = db_->Error("step '" + sql.substr(0, 120) + "'", rc);
  sqlite3_reset(stmt_);
  return error;
}

Status Statement::Run() {
  auto row = Step();
  if (!row.ok()) {
    Reset();
    return row.status();
  }
  Reset();
  return Status::Ok();
}

void Statement::Reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
  bind_error_ = SQLITE_OK;
}

double Statement::ColumnDouble(int col) const {
  if (sqlite3_column_type(stmt_, col) == SQLITE_NULL) return std::nan("");
  return sqlite3_column_double(stmt_, col);
}

std::string Statement::ColumnText(int col) const {
  const unsigned char* text = sqlite3_column_text(stmt_, col);
  if (text == nullptr) return {};
  return std::string(reinterpret_cast<const char*>(text),
                     static_cast<size_t>(sqlite3_column_bytes(stmt_, col)));
}

Result<std::unique_ptr<Transaction>> Transaction::Begin(Db* db, Kind kind) {
  MADAM_RETURN_IF_ERROR(db->Exec(kind == Kind::kImmediate ? "BEGIN IMMEDIATE" : "BEGIN"));
  return std::unique_ptr<Transaction>(new Transaction(db));
}

Transaction::~Transaction() { Rollback(); }

Status Transaction::Commit() {
  if (!open_) return Status::Internal("transaction already finished");
  Status s = db_->Exec("COMMIT");
  if (s.ok()) {
    open_ = false;
  }
  return s;
}

void Transaction::Rollback() {
  if (!open_) return;
  open_ = false;
  if (!sqlite3_get_autocommit(db_->raw())) db_->Exec("ROLLBACK");
}

}  // namespace madam::server::sqlite
