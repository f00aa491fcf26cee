// The one writer of a SQLite database and its pool of readers: the generic
// half of the store, with nothing in it about sweeps, runs or leases.
//
// Writes are queued as calls and run on one writer thread, many calls to a
// transaction ("group commit"), each call inside its own savepoint so a call
// that fails leaves no trace while the others of its group commit. Two lanes
// feed the writer: urgent calls (lease grants, heartbeats, completions, every
// state change) and bulk calls (metric batches). A group takes every urgent
// call waiting before any bulk call, and is bounded by calls, rows and bytes,
// so a lease call never waits behind more than one bounded group of metric
// batches (ARCHITECTURE.md section 9). Bulk calls are refused with
// RESOURCE_EXHAUSTED, before they are queued, while the bulk lane holds more
// bytes than its budget: the caller sends them again later, and memory stays
// bounded however fast workers report.
//
// A passive WAL checkpoint runs on its own connection and thread, never
// inside a writer commit.
//
// Thread-safety: Submit, Write, Read and the accessors may be called from any
// thread. writer() and writer_db() belong to the writer thread: use them only
// inside a call's function.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/status.h"
#include "server/sqlite.h"

namespace madam::server::sqlite {

// Prepared statements of one connection, keyed by their SQL text. Owned by
// whoever owns the connection.
class StatementCache {
 public:
  explicit StatementCache(Db* db) : db_(db) {}
  // The statement, reset and unbound, ready for use.
  Result<Statement*> Get(const char* sql);

 private:
  Db* db_;
  std::unordered_map<std::string, Statement> cache_;
};

// Declares `var` as the cached statement for `sql`, or returns the error from
// the enclosing function.
#define MADAM_ASSIGN_STMT(var, cache, sql)      \
  auto var##_or = (cache).Get(sql);             \
  if (!var##_or.ok()) return var##_or.status(); \
  ::madam::server::sqlite::Statement& var = **var##_or

// Steps a statement; evaluates to true with a row, returns the error from
// the enclosing function otherwise.
#define MADAM_STEP(var, stmt)                   \
  auto var##_or = (stmt).Step();                \
  if (!var##_or.ok()) return var##_or.status(); \
  bool var = *var##_or

struct ExecutorOptions {
  std::string path;          // the SQLite file; created if absent
  int read_connections = 4;  // size of the reader pool
  int busy_timeout_ms = 5000;
  // Bounds of one group transaction. A call is always taken when the group
  // is empty, so one call larger than a bound still runs (alone).
  int max_calls_per_transaction = 4096;
  int64_t max_rows_per_transaction = 50000;
  int64_t max_bytes_per_transaction = int64_t{16} << 20;
  // Bytes the bulk lane may hold; a bulk call past it is RESOURCE_EXHAUSTED.
  int64_t max_queued_bulk_bytes = int64_t{64} << 20;
  // Optional: called on the writer thread after every group transaction
  // (committed or not) with its BEGIN..COMMIT time in seconds. Keep it short;
  // it must not call back into the executor.
  std::function<void(double seconds)> on_transaction;
  // Tests only (fault injection): while this file exists, every group
  // transaction fails as a read-only database does (UNAVAILABLE). Empty: off.
  std::string fault_file;
};

enum class Lane { kUrgent, kBulk };

// One queued mutation.
struct WriteCall {
  std::function<Status()> fn;        // runs on the writer thread inside a savepoint
  std::function<void(Status)> done;  // runs on the writer thread after the commit (or failure)
  bool full_sync = true;             // needs synchronous=FULL at its commit
  Lane lane = Lane::kUrgent;
  int64_t rows = 1;   // rows it writes, for the group's row bound
  int64_t bytes = 0;  // payload it carries, for the byte bounds
};

struct ExecutorStats {
  int64_t transactions = 0;         // committed group transactions
  int64_t calls = 0;                // calls run (accepted or refused)
  int64_t failed_commits = 0;       // group transactions that failed as a whole
  int64_t queue_depth = 0;          // calls waiting now, both lanes
  int64_t queued_bulk_bytes = 0;    // bytes waiting in the bulk lane now
  int64_t rejected_bulk_calls = 0;  // bulk calls refused for the byte budget
  int64_t commit_nanos = 0;         // time spent in BEGIN..COMMIT
};

class Executor {
 public:
  // A read connection with its statement cache.
  struct Reader {
    Db db;
    StatementCache stmts{&db};
  };

  // Opens (creating) the database in WAL mode and runs `setup` on the writer
  // connection inside one immediate transaction (the schema migrations), then
  // starts the writer and checkpoint threads. FAILED_PRECONDITION when
  // another process holds the database's lock file ("<path>.lock").
  static Result<std::unique_ptr<Executor>> Open(const ExecutorOptions& options,
                                                const std::function<Status(Db*)>& setup);
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // Queues `call`; its `done` gets the call's final status once its group has
  // committed (or failed). Refused at once, with `done` run on the calling
  // thread: RESOURCE_EXHAUSTED for a bulk call past the byte budget,
  // UNAVAILABLE when the executor is stopping.
  void Submit(WriteCall call);

  // Queues `fn` as an urgent call and waits for its status.
  Status Write(std::function<Status()> fn, bool full_sync = true);

  // Runs `fn(reader)` on a pooled read connection inside one read
  // transaction, so multi-statement reads see one snapshot.
  template <typename Fn>
  auto Read(Fn&& fn) -> decltype(fn(std::declval<Reader&>()));

  // REQUIRES: on the writer thread (inside a call's function).
  StatementCache& writer() { return *writer_stmts_; }
  Db& writer_db() { return writer_db_; }

  const std::string& path() const { return options_.path; }
  ExecutorStats Stats() const;
  // Share of the bulk budget in use now, 0..1 (above 1 never happens: such
  // calls are refused), for back-pressure advice to callers.
  double BulkLoad() const;

  // Drains the queue, then stops the threads. Idempotent.
  void Stop();

 private:
  explicit Executor(ExecutorOptions options) : options_(std::move(options)) {}

  void WriterLoop();
  void CheckpointLoop();
  // Moves the next group into `group`: urgent calls first, then bulk ones,
  // within the bounds. REQUIRES: mu_ held, some call queued.
  void TakeGroup(std::vector<WriteCall>* group);
  Status RunGroup(std::vector<WriteCall>& group, std::vector<Status>* results);
  Status RunInSavepoint(const std::function<Status()>& fn);

  // An exclusive flock on "<db>.lock", held for the executor's life: one
  // writer per database. Declared first, released last.
  struct LockFile {
    int fd = -1;
    ~LockFile();
  } lock_;

  ExecutorOptions options_;

  // Writer state: touched only by the writer thread once it runs.
  Db writer_db_;
  std::unique_ptr<StatementCache> writer_stmts_;
  bool writer_full_sync_ = true;  // the connection's synchronous setting

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<WriteCall> urgent_;  // guarded by mu_
  std::deque<WriteCall> bulk_;    // guarded by mu_
  int64_t bulk_bytes_ = 0;        // guarded by mu_: bytes of the calls in bulk_
  bool stopping_ = false;         // guarded by mu_
  std::thread writer_thread_;

  Db checkpoint_db_;
  std::thread checkpoint_thread_;
  // Its own condition variable, so a wake-up never goes to the wrong thread.
  std::condition_variable checkpoint_cv_;

  std::atomic<int64_t> stat_transactions_{0}, stat_calls_{0}, stat_failed_commits_{0},
      stat_commit_nanos_{0}, stat_queue_depth_{0}, stat_bulk_bytes_{0}, stat_rejected_{0};

  std::mutex read_mu_;
  std::condition_variable read_cv_;
  std::vector<std::unique_ptr<Reader>> idle_readers_;  // guarded by read_mu_
};

template <typename Fn>
auto Executor::Read(Fn&& fn) -> decltype(fn(std::declval<Reader&>())) {
  std::unique_ptr<Reader> reader;
  {
    std::unique_lock<std::mutex> lock(read_mu_);
    read_cv_.wait(lock, [&] { return !idle_readers_.empty(); });
    reader = std::move(idle_readers_.back());
    idle_readers_.pop_back();
  }
  struct GiveBack {
    Executor* self;
    std::unique_ptr<Reader>* reader;
    ~GiveBack() {
      if (!sqlite3_get_autocommit((*reader)->db.raw())) (void)(*reader)->db.Exec("ROLLBACK");
      {
        std::lock_guard<std::mutex> lock(self->read_mu_);
        self->idle_readers_.push_back(std::move(*reader));
      }
      self->read_cv_.notify_one();
    }
  } give_back{this, &reader};
  Status begin = reader->db.Exec("BEGIN");
  if (!begin.ok()) return begin;
  return fn(*reader);
}

}  // namespace madam::server::sqlite
