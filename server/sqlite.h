// Thin RAII wrappers over the SQLite C API: Db (a connection), Statement (a
// prepared statement) and Transaction (BEGIN ... COMMIT, rolled back unless
// committed). Errors come back as madam::Status naming the SQL and SQLite's
// message; nothing here throws.
//
// Thread-safety: a Db and its Statements belong to one thread at a time (the
// library is built in serialized mode, but the store never shares a
// connection between threads concurrently; each owner guards its own).
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"

namespace madam::server::sqlite {

class Statement;

// One SQLite connection. Move-only; closes on destruction.
class Db {
 public:
  enum class Mode { kReadWriteCreate, kReadWrite };

  Db() = default;
  ~Db();
  Db(Db&& other) noexcept : db_(other.db_), path_(std::move(other.path_)) { other.db_ = nullptr; }
  Db& operator=(Db&& other) noexcept;
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  static Result<Db> Open(const std::string& path, Mode mode);

  // Runs one or more statements that return no rows (DDL, PRAGMA setters).
  Status Exec(std::string_view sql);
  Result<Statement> Prepare(std::string_view sql);
  // Runs a query expected to return one row with one integer column.
  Result<int64_t> QueryInt(std::string_view sql);
  Result<std::string> QueryText(std::string_view sql);

  int64_t Changes() const { return sqlite3_changes64(db_); }
  sqlite3* raw() const { return db_; }
  const std::string& path() const { return path_; }
  // "sqlite error on <path>: <what>: <sqlite message> (code N)"
  Status Error(std::string_view what, int rc) const;

 private:
  sqlite3* db_ = nullptr;
  std::string path_;
};

// A prepared statement. Bind indices are 1-based (SQLite's convention),
// column indices 0-based. Reset() clears bindings too, so each use starts
// clean.
class Statement {
 public:
  Statement() = default;
  ~Statement();
  Statement(Statement&& other) noexcept : db_(other.db_), stmt_(other.stmt_) { other.stmt_ = nullptr; }
  Statement& operator=(Statement&& other) noexcept;
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  Statement& Bind(int index, int64_t value);
  Statement& Bind(int index, int value) { return Bind(index, static_cast<int64_t>(value)); }
  // NaN is stored as NULL (SQLite has no NaN); Column*Double maps it back.
  Statement& Bind(int index, double value);
  Statement& Bind(int index, std::string_view value);
  Statement& Bind(int index, const std::string& value) { return Bind(index, std::string_view(value)); }
  Statement& Bind(int index, const char* value) { return Bind(index, std::string_view(value)); }
  Statement& BindNull(int index);
  // Binds NULL when the string is empty.
  Statement& BindTextOrNull(int index, std::string_view value);

  // Advances: true with a row, false when done; a failure is returned as a
  // Status through Result.
  Result<bool> Step();
  // Steps a statement that returns no rows to completion.
  Status Run();
  void Reset();

  int64_t ColumnInt(int col) const { return sqlite3_column_int64(stmt_, col); }
  // NULL reads as NaN.
  double ColumnDouble(int col) const;
  std::string ColumnText(int col) const;
  bool ColumnIsNull(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }

  sqlite3_stmt* raw() const { return stmt_; }

 private:
  friend class Db;
  Statement(const Db* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  const Db* db_ = nullptr;
  sqlite3_stmt* stmt_ = nullptr;
  int bind_error_ = SQLITE_OK;
};

// BEGIN IMMEDIATE (or DEFERRED for readers) on construction through Begin();
// rolls back in the destructor unless Commit() succeeded.
class Transaction {
 public:
  enum class Kind { kDeferred, kImmediate };
  static Result<std::unique_ptr<Transaction>> Begin(Db* db, Kind kind);
  ~Transaction();
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;

  Status Commit();
  void Rollback();

 private:
  explicit Transaction(Db* db) : db_(db) {}
  Db* db_;
  bool open_ = true;
};

}  // namespace madam::server::sqlite
