#include "server/store.h"

#include "common/param_json.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <sys/file.h>
#include <sys/random.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <cctype>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <random>
#include <set>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "server/sqlite.h"

namespace madam::server {

namespace {

using json = nlohmann::json;
using sqlite::Db;
using sqlite::Statement;

// ---------------------------------------------------------------------------
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
};
constexpr int64_t kLatestSchemaVersion = sizeof(kMigrations) / sizeof(kMigrations[0]);

constexpr int kRunIndexDigits = 5;

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

std::string Quote(const std::string& s) { return "'" + s + "'"; }

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

std::string DeviceKind(const std::string& device) {
  auto colon = device.find(':');
  return colon == std::string::npos ? device : device.substr(0, colon);
}

// Devices a worker registered: its device string is one device or a
// comma-separated list of them.
int64_t DeviceCount(const std::string& device) {
  return 1 + static_cast<int64_t>(std::count(device.begin(), device.end(), ','));
}

// 128 bits from the kernel's CSPRNG, as 32 hex digits.
Result<std::string> NewLeaseSecret() {
  unsigned char bytes[16];
  size_t got = 0;
  while (got < sizeof bytes) {
    ssize_t n = ::getrandom(bytes + got, sizeof bytes - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::Unavailable(std::string("cannot draw a lease secret: getrandom: ") +
                                 std::strerror(errno));
    }
    got += static_cast<size_t>(n);
  }
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (unsigned char b : bytes) {
    out += kHex[b >> 4];
    out += kHex[b & 15];
  }
  return out;
}

// SHA-256 of a lease secret, as 64 hex digits: what the database keeps. The
// secret has 128 bits of entropy, so an unkeyed hash is enough: a reader of
// the database cannot invert it to present the secret.
std::string HashLeaseSecret(const std::string& secret) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(secret.data(), secret.size(), digest, &len, EVP_sha256(), nullptr) != 1) {
    return std::string();  // never matches a stored hash (see SecretMatches)
  }
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out += kHex[digest[i] >> 4];
    out += kHex[digest[i] & 15];
  }
  return out;
}

bool SecretMatches(const std::string& stored_hash, const std::string& secret) {
  if (stored_hash.empty() || secret.empty()) return false;
  const std::string hash = HashLeaseSecret(secret);
  return hash.size() == stored_hash.size() &&
         CRYPTO_memcmp(hash.data(), stored_hash.data(), hash.size()) == 0;
}

// The one refusal for a call that does not hold the lease: it names the run,
// never the epoch or secret that would have been right.
Status NotTheHolder(const std::string& run_id) {
  return Status::PermissionDenied("run '" + run_id +
                                  "': the caller does not hold this lease (wrong worker or lease "
                                  "secret)");
}

// Prepared statements of one connection, keyed by their SQL text. Owned by
// whoever owns the connection.
class StatementCache {
 public:
  explicit StatementCache(Db* db) : db_(db) {}
  // The statement, reset and unbound, ready for use.
  Result<Statement*> Get(const char* sql) {
    auto it = cache_.find(sql);
    if (it == cache_.end()) {
      auto stmt = db_->Prepare(sql);
      if (!stmt.ok()) return stmt.status();
      it = cache_.emplace(sql, std::move(stmt).value()).first;
    } else {
      it->second.Reset();
    }
    return &it->second;
  }

 private:
  Db* db_;
  std::unordered_map<std::string, Statement> cache_;
};

#define MADAM_ASSIGN_STMT(var, cache, sql)    \
  auto var##_or = (cache).Get(sql);           \
  if (!var##_or.ok()) return var##_or.status(); \
  Statement& var = **var##_or

// Steps a statement; evaluates to true with a row, returns the error from
// the enclosing function otherwise.
#define MADAM_STEP(var, stmt)                 \
  auto var##_or = (stmt).Step();              \
  if (!var##_or.ok()) return var##_or.status(); \
  bool var = *var##_or

constexpr const char* kRunColumns =
    "SELECT r.id, r.sweep_id, r.idx, r.params_json, r.labels_json, r.state, r.attempts, "
    "s.max_attempts, r.lease_epoch, r.lease_worker, r.lease_expires_at, r.cancel_requested, "
    "r.last_error, r.final_json, r.resume_checkpoint, r.started_at, r.ended_at "
    "FROM runs r JOIN sweeps s ON s.id = r.sweep_id ";

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

constexpr const char* kSweepColumns =
    "SELECT id, name, spec_text, spec_json, metric_name, metric_goal, device, "
    "COALESCE(idempotency_key, ''), max_concurrent, max_attempts, state, created_at FROM sweeps ";

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

constexpr const char* kWorkerColumns =
    "SELECT w.id, w.name, w.device, w.info, w.registered_at, w.last_seen, "
    "COALESCE((SELECT r.id FROM runs r WHERE r.state = 'RUNNING' AND r.lease_worker = w.id "
    "ORDER BY r.started_at DESC LIMIT 1), '') FROM workers w ";

Status ConfigureConnection(Db* db, int busy_timeout_ms) {
  if (sqlite3_busy_timeout(db->raw(), busy_timeout_ms) != SQLITE_OK) {
    return db->Error("set busy_timeout", SQLITE_ERROR);
  }
  return Status::Ok();
}

}  // namespace

// ---------------------------------------------------------------------------

const char* RunStateName(RunState state) {
  switch (state) {
    case RunState::kPending: return "pending";
    case RunState::kRunning: return "running";
    case RunState::kSucceeded: return "succeeded";
    case RunState::kDiverged: return "diverged";
    case RunState::kFailed: return "failed";
    case RunState::kCancelled: return "cancelled";
  }
  return "unknown";
}

std::optional<RunState> ParseRunState(std::string_view name) {
  std::string lower(name);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (RunState s : {RunState::kPending, RunState::kRunning, RunState::kSucceeded,
                     RunState::kDiverged, RunState::kFailed, RunState::kCancelled}) {
    if (lower == RunStateName(s)) return s;
  }
  return std::nullopt;
}

bool IsTerminal(RunState state) {
  return state != RunState::kPending && state != RunState::kRunning;
}

const char* RunOutcomeName(RunOutcome outcome) {
  switch (outcome) {
    case RunOutcome::kSucceeded: return "succeeded";
    case RunOutcome::kDiverged: return "diverged";
    case RunOutcome::kFailed: return "failed";
    case RunOutcome::kCancelled: return "cancelled";
  }
  return "unknown";
}

bool CheckpointNameValid(std::string_view name) {
  constexpr std::string_view kPrefix = "epoch-", kSuffix = ".pt";
  if (name.size() <= kPrefix.size() + kSuffix.size() || name.substr(0, kPrefix.size()) != kPrefix ||
      name.substr(name.size() - kSuffix.size()) != kSuffix) {
    return false;
  }
  const std::string_view digits =
      name.substr(kPrefix.size(), name.size() - kPrefix.size() - kSuffix.size());
  if (digits.size() > 12) return false;
  for (char c : digits) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

int64_t Store::LatestSchemaVersion() { return kLatestSchemaVersion; }

// ---------------------------------------------------------------------------
// Impl: the writer thread with its connection, and the reader pool.

struct Store::Impl {
  // An exclusive flock on "<db>.lock", held for the Store's life: the
  // coordinator must be the only writer. Declared first, released last.
  struct LockFile {
    int fd = -1;
    ~LockFile() {
      if (fd >= 0) ::close(fd);
    }
  } lock;

  // One queued mutation. `fn` runs on the writer thread inside a savepoint.
  struct Call {
    std::function<Status()> fn;
    std::function<void(Status)> done;  // runs on the writer thread after commit
    bool full_sync = true;             // needs synchronous=FULL at its commit
  };

  // A read connection with its statement cache.
  struct Reader {
    Db db;
    StatementCache stmts{&db};
  };

  StoreOptions options;
  Clock* clock = nullptr;

  // Writer state: touched only by the writer thread once it runs (and by
  // Open before it starts).
  Db writer_db;
  std::unique_ptr<StatementCache> w;  // statements on writer_db
  bool writer_full_sync = true;       // the connection's synchronous setting
  std::mt19937_64 rng{std::random_device{}() ^
                      static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count())};

  std::mutex mu;
  std::condition_variable cv;
  std::deque<Call> queue;  // guarded by mu
  bool stopping = false;   // guarded by mu
  std::thread writer_thread;

  // WAL checkpoints run here, on their own connection, never inside a
  // writer commit: an automatic checkpoint would stall whichever commit
  // crossed the threshold (and every call grouped into it) for the time it
  // takes to copy and fsync the WAL. Passive checkpoints do not block the
  // writer.
  Db checkpoint_db;
  std::thread checkpoint_thread;
  // Its own condition variable: the writer's cv is notified one waiter at a
  // time, and a wake-up must never go to the wrong thread.
  std::condition_variable checkpoint_cv;

  // Counters for Stats(); written by the writer thread.
  std::atomic<int64_t> stat_transactions{0}, stat_calls{0}, stat_points{0}, stat_failed_commits{0},
      stat_commit_nanos{0}, stat_queue_depth{0}, stat_leases_granted{0}, stat_leases_expired{0},
      stat_retries{0};

  std::mutex read_mu;
  std::condition_variable read_cv;
  std::vector<std::unique_ptr<Reader>> idle_readers;  // guarded by read_mu

  ~Impl() { Stop(); }

  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mu);
      stopping = true;
    }
    cv.notify_all();
    checkpoint_cv.notify_all();
    if (checkpoint_thread.joinable()) checkpoint_thread.join();
    if (writer_thread.joinable()) writer_thread.join();
  }

  void CheckpointLoop() {
    std::unique_lock<std::mutex> lock(mu);
    while (!checkpoint_cv.wait_for(lock, std::chrono::milliseconds(500), [this] { return stopping; })) {
      lock.unlock();
      Status s = checkpoint_db.Exec("PRAGMA wal_checkpoint(PASSIVE)");
      if (!s.ok()) spdlog::warn("store: WAL checkpoint: {}", s.ToString());
      lock.lock();
    }
  }

  // Queues `fn` for the writer and waits until its transaction committed
  // (or failed).
  Status Write(std::function<Status()> fn, bool full_sync = true) {
    auto promise = std::make_shared<std::promise<Status>>();
    std::future<Status> done = promise->get_future();
    WriteAsync(std::move(fn), [promise](Status s) { promise->set_value(std::move(s)); }, full_sync);
    return done.get();
  }

  // Queues `fn`; `done` gets its final status on the writer thread once the
  // transaction has committed (or failed). When the store is stopping, `done`
  // runs at once on the calling thread with UNAVAILABLE.
  void WriteAsync(std::function<Status()> fn, std::function<void(Status)> done, bool full_sync = true) {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (!stopping) {
        queue.push_back(Call{std::move(fn), std::move(done), full_sync});
        stat_queue_depth.store(static_cast<int64_t>(queue.size()), std::memory_order_relaxed);
        done = nullptr;
      }
    }
    if (done) {
      done(Status::Unavailable("store at '" + options.path + "' is shutting down"));
      return;
    }
    // notify_all: the checkpoint thread waits on the same cv, and a single
    // wake-up could go to it and leave the writer asleep with work queued.
    cv.notify_all();
  }

  void WriterLoop() {
    std::vector<Call> group;
    std::vector<Status> results;
    for (;;) {
      group.clear();
      {
        std::unique_lock<std::mutex> lock(mu);
        cv.wait(lock, [&] { return stopping || !queue.empty(); });
        if (queue.empty()) return;  // stopping, queue drained
        while (!queue.empty() && static_cast<int>(group.size()) < options.max_calls_per_transaction) {
          group.push_back(std::move(queue.front()));
          queue.pop_front();
        }
        stat_queue_depth.store(static_cast<int64_t>(queue.size()), std::memory_order_relaxed);
      }
      results.assign(group.size(), Status::Ok());
      const auto started = std::chrono::steady_clock::now();
      Status txn = RunGroup(group, &results);
      const int64_t txn_nanos = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                    std::chrono::steady_clock::now() - started).count();
      stat_commit_nanos.fetch_add(txn_nanos, std::memory_order_relaxed);
      if (options.on_transaction) options.on_transaction(txn_nanos / 1e9);
      stat_calls.fetch_add(static_cast<int64_t>(group.size()), std::memory_order_relaxed);
      (txn.ok() ? stat_transactions : stat_failed_commits).fetch_add(1, std::memory_order_relaxed);
      for (size_t i = 0; i < group.size(); ++i) {
        Status final = txn.ok() || !results[i].ok() ? results[i] : txn;
        try {
          group[i].done(std::move(final));
        } catch (const std::exception& e) {
          spdlog::error("store: completion callback threw: {}", e.what());
        }
      }
    }
  }

  // Runs every call of the group in one transaction, each in a savepoint.
  // Returns the BEGIN/COMMIT status; per-call results go to `results`.
  Status RunGroup(std::vector<Call>& group, std::vector<Status>* results) {
    // synchronous is a connection setting read at COMMIT; it can only change
    // between transactions. A FULL commit fsyncs the whole WAL, so it also
    // makes any earlier NORMAL commits durable.
    if (!options.fault_file.empty() && ::access(options.fault_file.c_str(), F_OK) == 0) {
      return Status::Unavailable("sqlite error on '" + options.path +
                                 "': attempt to write a readonly database (injected: fault file '" +
                                 options.fault_file + "' exists)");
    }
    bool full = false;
    for (const Call& call : group) full = full || call.full_sync;
    if (full != writer_full_sync) {
      auto pragma = w->Get(full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
      if (!pragma.ok()) return pragma.status();
      MADAM_RETURN_IF_ERROR((*pragma)->Run());
      writer_full_sync = full;
    }
    auto begin = w->Get("BEGIN IMMEDIATE");
    if (!begin.ok()) return begin.status();
    MADAM_RETURN_IF_ERROR((*begin)->Run());
    for (size_t i = 0; i < group.size(); ++i) {
      Status s = RunInSavepoint(group[i].fn);
      (*results)[i] = s;
    }
    auto commit = w->Get("COMMIT");
    Status c = commit.ok() ? (*commit)->Run() : commit.status();
    if (!c.ok()) {
      spdlog::error("store: commit of {} calls failed: {}", group.size(), c.ToString());
      if (!sqlite3_get_autocommit(writer_db.raw())) (void)writer_db.Exec("ROLLBACK");
      return c;
    }
    return Status::Ok();
  }

  Status RunInSavepoint(const std::function<Status()>& fn) {
    auto sp = w->Get("SAVEPOINT call");
    if (!sp.ok()) return sp.status();
    MADAM_RETURN_IF_ERROR((*sp)->Run());
    Status s;
    try {
      s = fn();
    } catch (const std::exception& e) {
      s = Status::Internal(std::string("store: unexpected exception: ") + e.what());
    }
    if (!s.ok()) {
      auto rb = w->Get("ROLLBACK TO call");
      if (rb.ok()) (void)(*rb)->Run();
    }
    auto release = w->Get("RELEASE call");
    if (!release.ok()) return release.status();
    Status r = (*release)->Run();
    return s.ok() ? r : s;
  }

  // Runs `fn(reader)` on a pooled read connection inside one read
  // transaction, so multi-statement reads see one snapshot.
  template <typename Fn>
  auto Read(Fn&& fn) -> decltype(fn(std::declval<Reader&>())) {
    std::unique_ptr<Reader> reader;
    {
      std::unique_lock<std::mutex> lock(read_mu);
      read_cv.wait(lock, [&] { return !idle_readers.empty(); });
      reader = std::move(idle_readers.back());
      idle_readers.pop_back();
    }
    struct Return {
      Impl* impl;
      std::unique_ptr<Reader>* reader;
      ~Return() {
        if (!sqlite3_get_autocommit((*reader)->db.raw())) (void)(*reader)->db.Exec("ROLLBACK");
        {
          std::lock_guard<std::mutex> lock(impl->read_mu);
          impl->idle_readers.push_back(std::move(*reader));
        }
        impl->read_cv.notify_one();
      }
    } give_back{this, &reader};
    Status begin = reader->db.Exec("BEGIN");
    if (!begin.ok()) return begin;
    return fn(*reader);
  }

  // A random "<prefix><8 hex digits>" that `exists_sql` (one ? for the id)
  // finds no row for. REQUIRES: on the writer thread, inside its transaction.
  Result<std::string> UnusedId(const char* prefix, const char* exists_sql) {
    for (int tries = 0; tries <= 100; ++tries) {
      std::string id = RandomId(prefix);
      MADAM_ASSIGN_STMT(st, *w, exists_sql);
      st.Bind(1, id);
      MADAM_STEP(taken, st);
      st.Reset();
      if (!taken) return id;
    }
    return Status::Internal(std::string("could not draw an unused ") + prefix + " id");
  }

  std::string RandomId(const char* prefix) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "%08x", static_cast<unsigned>(rng() & 0xffffffffu));
    return std::string(prefix) + buf;
  }

  // ---- writer-thread helpers (REQUIRES: on the writer thread, in a txn) ----

  int64_t Now() const { return clock->NowMillis(); }

  Result<int64_t> NextLeaseEpoch() {
    MADAM_ASSIGN_STMT(st, *w, "UPDATE meta SET value = value + 1 WHERE key = 'lease_epoch' RETURNING value");
    MADAM_STEP(row, st);
    if (!row) return Status::Internal("lease epoch counter missing from table meta");
    int64_t epoch = st.ColumnInt(0);
    st.Reset();
    return epoch;
  }

  Status MaybeFinishSweep(const std::string& sweep_id) {
    MADAM_ASSIGN_STMT(st, *w,
                      "UPDATE sweeps SET state = 'finished' WHERE id = ?1 AND state = 'running' "
                      "AND NOT EXISTS (SELECT 1 FROM runs WHERE sweep_id = ?1 "
                      "AND state IN ('PENDING', 'RUNNING'))");
    st.Bind(1, sweep_id);
    return st.Run();
  }

  // The fenced part of every worker call: the run exists, the epoch is its
  // current one and it is RUNNING.
  struct LeaseCheck {
    std::string sweep_id;
    std::string worker;
    bool cancel_requested = false;
  };
  Result<LeaseCheck> CheckLease(const std::string& run_id, int64_t epoch, const LeaseHolder& holder) {
    MADAM_ASSIGN_STMT(st, *w,
                      "SELECT state, lease_epoch, sweep_id, lease_worker, cancel_requested, "
                      "lease_secret_hash FROM runs WHERE id = ?");
    st.Bind(1, run_id);
    MADAM_STEP(row, st);
    if (!row) return Status::NotFound("run " + Quote(run_id) + " not found");
    std::string state = st.ColumnText(0);
    int64_t current = st.ColumnInt(1);
    LeaseCheck check{st.ColumnText(2), st.ColumnText(3), st.ColumnInt(4) != 0};
    const std::string secret_hash = st.ColumnText(5);
    st.Reset();
    // Never name the current epoch: a caller that does not hold the lease
    // must learn nothing that helps it pose as the holder.
    if (epoch != current) {
      return Status::FailedPrecondition("stale lease epoch " + std::to_string(epoch) + " for run " +
                                        Quote(run_id) + ": the run was leased again since");
    }
    if (holder.worker_id != check.worker || !SecretMatches(secret_hash, holder.secret)) {
      return NotTheHolder(run_id);
    }
    if (state != "RUNNING") {
      auto parsed = ParseRunState(state);
      return Status::FailedPrecondition(
          "lease epoch " + std::to_string(epoch) + " for run " + Quote(run_id) +
          " is no longer held (run is " + (parsed ? RunStateName(*parsed) : state.c_str()) + ")");
    }
    return check;
  }

  // Charges the lease's attempt at its first sign of work (section 5).
  // REQUIRES: on the writer thread, in a txn, after CheckLease.
  Status ChargeAttempt(const std::string& run_id) {
    MADAM_ASSIGN_STMT(st, *w,
                      "UPDATE runs SET attempts = attempts + 1, lease_charged = 1 "
                      "WHERE id = ? AND lease_charged = 0");
    st.Bind(1, run_id);
    return st.Run();
  }

  // Metric names of each run the writer stored points for, for the
  // distinct-name bound. Writer thread only. A rerun clears it (its metrics
  // are deleted), a completion forgets its run.
  std::unordered_map<std::string, std::unordered_set<std::string>> metric_names;

  // REQUIRES: on the writer thread, in a txn.
  Status InsertPoints(const std::string& run_id, int64_t lease_epoch, const std::vector<MetricPoint>& points,
                      const LeaseHolder& holder);

  Status TouchWorkerRow(const std::string& worker_id, int64_t now) {
    if (worker_id.empty()) return Status::Ok();
    MADAM_ASSIGN_STMT(st, *w, "UPDATE workers SET last_seen = ? WHERE id = ?");
    st.Bind(1, now).Bind(2, worker_id);
    return st.Run();
  }

  // Counts what ExpireOverdue did, for Stats(); callers add it to the
  // counters only once their transaction succeeded.
  struct ExpiryCounts {
    int64_t expired = 0;
    int64_t requeued = 0;  // back to PENDING for another attempt
  };

  void CountExpiry(const ExpiryCounts& counts) {
    stat_leases_expired.fetch_add(counts.expired, std::memory_order_relaxed);
    stat_retries.fetch_add(counts.requeued, std::memory_order_relaxed);
  }

  Result<int64_t> ExpireOverdue(int64_t now, ExpiryCounts* counts = nullptr) {
    struct Overdue {
      std::string id, sweep_id, worker;
      int64_t attempts, max_attempts, epoch, expires_at;
      bool cancel_requested;
    };
    std::vector<Overdue> overdue;
    {
      MADAM_ASSIGN_STMT(st, *w,
                        "SELECT r.id, r.sweep_id, r.lease_worker, r.attempts, s.max_attempts, "
                        "r.lease_epoch, r.lease_expires_at, r.cancel_requested "
                        "FROM runs r JOIN sweeps s ON s.id = r.sweep_id "
                        "WHERE r.state = 'RUNNING' AND r.lease_expires_at < ?");
      st.Bind(1, now);
      for (;;) {
        MADAM_STEP(row, st);
        if (!row) break;
        overdue.push_back({st.ColumnText(0), st.ColumnText(1), st.ColumnText(2), st.ColumnInt(3),
                           st.ColumnInt(4), st.ColumnInt(5), st.ColumnInt(6), st.ColumnInt(7) != 0});
      }
      st.Reset();
    }
    for (const Overdue& o : overdue) {
      RunState next = o.cancel_requested              ? RunState::kCancelled
                      : o.attempts >= o.max_attempts ? RunState::kFailed
                                                     : RunState::kPending;
      // No epoch in the text: last_error is shown to every reader.
      std::string error = "lease expired: worker " + Quote(o.worker) + " did not renew its lease of run " +
                          Quote(o.id) + " (expired at " +
                          std::to_string(o.expires_at) + " ms, attempt " + std::to_string(o.attempts) +
                          " of " + std::to_string(o.max_attempts) + ")";
      MADAM_ASSIGN_STMT(up, *w,
                        "UPDATE runs SET state = ?, last_error = ?, lease_expires_at = 0, "
                        "ended_at = ? WHERE id = ?");
      up.Bind(1, StoredState(next)).Bind(2, error).Bind(3, IsTerminal(next) ? now : int64_t{0}).Bind(4, o.id);
      MADAM_RETURN_IF_ERROR(up.Run());
      spdlog::info("store: {} -> {}", error, RunStateName(next));
      if (counts != nullptr) {
        ++counts->expired;
        if (next == RunState::kPending) ++counts->requeued;
      }
      if (IsTerminal(next)) MADAM_RETURN_IF_ERROR(MaybeFinishSweep(o.sweep_id));
    }
    return static_cast<int64_t>(overdue.size());
  }
};

// ---------------------------------------------------------------------------

Store::Store(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Store::~Store() {
  if (impl_) impl_->Stop();
}

Result<std::unique_ptr<Store>> Store::Open(const StoreOptions& options) {
  if (options.path.empty()) return Status::InvalidArgument("store path is empty");
  if (options.read_connections < 1) {
    return Status::InvalidArgument("read_connections " + std::to_string(options.read_connections) +
                                   " must be at least 1");
  }
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  if (impl->options.max_calls_per_transaction < 1) impl->options.max_calls_per_transaction = 1;
  impl->clock = options.clock != nullptr ? options.clock : SystemClock::Default();

  const std::string lock_path = options.path + ".lock";
  impl->lock.fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (impl->lock.fd < 0) {
    return Status::Unavailable("cannot open lock file '" + lock_path + "': " + std::strerror(errno));
  }
  if (::flock(impl->lock.fd, LOCK_EX | LOCK_NB) != 0) {
    return Status::FailedPrecondition("database '" + options.path +
                                      "' is in use by another coordinator (lock file '" + lock_path +
                                      "' is held)");
  }

  auto db = Db::Open(options.path, Db::Mode::kReadWriteCreate);
  if (!db.ok()) return db.status();
  impl->writer_db = std::move(db).value();
  Db& wdb = impl->writer_db;
  MADAM_RETURN_IF_ERROR(ConfigureConnection(&wdb, options.busy_timeout_ms));
  auto mode = wdb.QueryText("PRAGMA journal_mode=WAL");
  if (!mode.ok()) return mode.status();
  if (*mode != "wal") {
    return Status::FailedPrecondition("database '" + options.path +
                                      "' cannot use WAL journal mode (got '" + *mode + "')");
  }
  // FULL: a commit is durable when it returns, which is when calls are acked.
  // journal_size_limit: truncate the WAL after a checkpoint instead of
  // keeping a burst's worth of file around.
  // wal_autocheckpoint=0: the checkpoint thread does it (see Impl).
  MADAM_RETURN_IF_ERROR(wdb.Exec(
      "PRAGMA synchronous=FULL; PRAGMA foreign_keys=OFF; PRAGMA journal_size_limit=67108864; "
      "PRAGMA wal_autocheckpoint=0;"));

  // Migrations, all in one transaction.
  {
    auto txn = sqlite::Transaction::Begin(&wdb, sqlite::Transaction::Kind::kImmediate);
    if (!txn.ok()) return txn.status();
    auto version = wdb.QueryInt("PRAGMA user_version");
    if (!version.ok()) return version.status();
    if (*version > kLatestSchemaVersion) {
      return Status::FailedPrecondition(
          "database '" + options.path + "' has schema version " + std::to_string(*version) +
          ", newer than this build supports (" + std::to_string(kLatestSchemaVersion) +
          "); use a newer madamd");
    }
    if (*version < 0) {
      return Status::FailedPrecondition("database '" + options.path + "' has invalid schema version " +
                                        std::to_string(*version));
    }
    for (int64_t v = *version; v < kLatestSchemaVersion; ++v) {
      Status s = wdb.Exec(kMigrations[v]);
      if (!s.ok()) {
        return Status(s.code(), "migrating database '" + options.path + "' to schema version " +
                                    std::to_string(v + 1) + ": " + s.message());
      }
      MADAM_RETURN_IF_ERROR(wdb.Exec("PRAGMA user_version=" + std::to_string(v + 1)));
      if (v + 1 == kLatestSchemaVersion) {
        spdlog::info("store: database '{}' migrated from schema version {} to {}", options.path,
                     *version, kLatestSchemaVersion);
      }
    }
    MADAM_RETURN_IF_ERROR((*txn)->Commit());
  }
  impl->w = std::make_unique<StatementCache>(&impl->writer_db);

  for (int i = 0; i < options.read_connections; ++i) {
    auto rdb = Db::Open(options.path, Db::Mode::kReadWrite);
    if (!rdb.ok()) return rdb.status();
    auto reader = std::make_unique<Impl::Reader>();
    reader->db = std::move(rdb).value();
    MADAM_RETURN_IF_ERROR(ConfigureConnection(&reader->db, options.busy_timeout_ms));
    MADAM_RETURN_IF_ERROR(reader->db.Exec("PRAGMA query_only=1"));
    impl->idle_readers.push_back(std::move(reader));
  }

  auto cdb = Db::Open(options.path, Db::Mode::kReadWrite);
  if (!cdb.ok()) return cdb.status();
  impl->checkpoint_db = std::move(cdb).value();
  MADAM_RETURN_IF_ERROR(ConfigureConnection(&impl->checkpoint_db, options.busy_timeout_ms));

  impl->writer_thread = std::thread([raw = impl.get()] { raw->WriterLoop(); });
  impl->checkpoint_thread = std::thread([raw = impl.get()] { raw->CheckpointLoop(); });
  return std::unique_ptr<Store>(new Store(std::move(impl)));
}

// ---- Sweeps ----------------------------------------------------------------

Result<SweepRow> Store::CreateSweep(const NewSweep& sweep) {
  if (sweep.name.empty()) return Status::InvalidArgument("sweep name is empty");
  if (sweep.runs.empty()) return Status::InvalidArgument("sweep " + Quote(sweep.name) + " has no runs");
  if (sweep.max_attempts < 1) {
    return Status::InvalidArgument("max_attempts " + std::to_string(sweep.max_attempts) +
                                   " of sweep " + Quote(sweep.name) + " must be at least 1");
  }
  if (sweep.max_concurrent < 0) {
    return Status::InvalidArgument("max_concurrent " + std::to_string(sweep.max_concurrent) +
                                   " of sweep " + Quote(sweep.name) + " must be 0 (unlimited) or more");
  }
  const std::string device = sweep.device.empty() ? "any" : sweep.device;
  if (device != "any" && device != "cpu" && device != "cuda") {
    return Status::InvalidArgument("device " + Quote(sweep.device) + " of sweep " + Quote(sweep.name) +
                                   " must be any, cpu or cuda");
  }
  const std::string goal = sweep.metric_goal.empty() ? "minimize" : sweep.metric_goal;
  if (goal != "minimize" && goal != "maximize") {
    return Status::InvalidArgument("metric goal " + Quote(sweep.metric_goal) + " of sweep " +
                                   Quote(sweep.name) + " must be minimize or maximize");
  }
  // Encode outside the writer thread: it is the slow part of a big sweep.
  std::vector<std::pair<std::string, std::string>> encoded;
  encoded.reserve(sweep.runs.size());
  for (const NewRun& run : sweep.runs) {
    encoded.emplace_back(ParamsToJson(run.params), LabelsToJson(run.labels));
  }

  std::string id;
  Impl* impl = impl_.get();
  Status s = impl->Write([&]() -> Status {
    StatementCache& w = *impl->w;
    if (!sweep.idempotency_key.empty()) {
      MADAM_ASSIGN_STMT(st, w, "SELECT id, spec_text FROM sweeps WHERE idempotency_key = ?");
      st.Bind(1, sweep.idempotency_key);
      MADAM_STEP(row, st);
      if (row) {
        id = st.ColumnText(0);
        std::string spec = st.ColumnText(1);
        st.Reset();
        if (spec != sweep.spec_text) {
          return Status::AlreadyExists("idempotency key " + Quote(sweep.idempotency_key) +
                                       " was already used by sweep " + Quote(id) +
                                       " with a different spec");
        }
        return Status::Ok();
      }
      st.Reset();
    }
    {
      auto fresh = impl->UnusedId("sw-", "SELECT 1 FROM sweeps WHERE id = ?");
      if (!fresh.ok()) return fresh.status();
      id = std::move(fresh).value();
    }
    const int64_t now = impl->Now();
    {
      MADAM_ASSIGN_STMT(st, w,
                        "INSERT INTO sweeps(id, name, spec_text, spec_json, metric_name, metric_goal, "
                        "device, max_concurrent, max_attempts, state, created_at, idempotency_key) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'running', ?, ?)");
      st.Bind(1, id).Bind(2, sweep.name).Bind(3, sweep.spec_text).Bind(4, sweep.spec_json)
          .Bind(5, sweep.metric_name).Bind(6, goal).Bind(7, device).Bind(8, sweep.max_concurrent)
          .Bind(9, sweep.max_attempts).Bind(10, now).BindTextOrNull(11, sweep.idempotency_key);
      MADAM_RETURN_IF_ERROR(st.Run());
    }
    if (!sweep.parent_sweep_id.empty()) {
      MADAM_ASSIGN_STMT(lin, w, "INSERT INTO sweep_lineage(sweep_id, parent_id, reasons) VALUES (?, ?, ?)");
      lin.Bind(1, id).Bind(2, sweep.parent_sweep_id).Bind(3, json(sweep.promotion_reasons).dump());
      MADAM_RETURN_IF_ERROR(lin.Run());
    }
    MADAM_ASSIGN_STMT(ins, w,
                      "INSERT INTO runs(id, sweep_id, idx, params_json, labels_json, state) "
                      "VALUES (?, ?, ?, ?, ?, 'PENDING')");
    char suffix[32];
    for (size_t i = 0; i < encoded.size(); ++i) {
      std::snprintf(suffix, sizeof suffix, "-%0*zu", kRunIndexDigits, i);
      ins.Bind(1, id + suffix).Bind(2, id).Bind(3, static_cast<int64_t>(i))
          .Bind(4, encoded[i].first).Bind(5, encoded[i].second);
      MADAM_RETURN_IF_ERROR(ins.Run());
    }
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return GetSweep(id);
}

Result<SweepRow> Store::GetSweep(const std::string& sweep_id) {
  return impl_->Read([&](Impl::Reader& r) -> Result<SweepRow> {
    static const std::string sql = std::string(kSweepColumns) + "WHERE id = ?";
    MADAM_ASSIGN_STMT(st, r.stmts, sql.c_str());
    st.Bind(1, sweep_id);
    MADAM_STEP(row, st);
    if (!row) return Status::NotFound("sweep " + Quote(sweep_id) + " not found");
    SweepRow sweep = ReadSweep(st);
    st.Reset();
    MADAM_ASSIGN_STMT(counts, r.stmts, "SELECT state, COUNT(*) FROM runs WHERE sweep_id = ? GROUP BY state");
    counts.Bind(1, sweep_id);
    for (;;) {
      MADAM_STEP(more, counts);
      if (!more) break;
      AddCount(&sweep.counts, counts.ColumnText(0), counts.ColumnInt(1));
    }
    counts.Reset();
    MADAM_ASSIGN_STMT(lin, r.stmts, "SELECT parent_id, reasons FROM sweep_lineage WHERE sweep_id = ?");
    lin.Bind(1, sweep_id);
    MADAM_STEP(has_parent, lin);
    if (has_parent) ReadLineage(lin, &sweep);
    lin.Reset();
    return sweep;
  });
}

Result<std::vector<SweepRow>> Store::ListSweeps() {
  return impl_->Read([&](Impl::Reader& r) -> Result<std::vector<SweepRow>> {
    std::vector<SweepRow> sweeps;
    std::unordered_map<std::string, size_t> by_id;
    static const std::string sql = std::string(kSweepColumns) + "ORDER BY seq";
    MADAM_ASSIGN_STMT(st, r.stmts, sql.c_str());
    for (;;) {
      MADAM_STEP(row, st);
      if (!row) break;
      sweeps.push_back(ReadSweep(st));
      by_id[sweeps.back().id] = sweeps.size() - 1;
    }
    st.Reset();
    MADAM_ASSIGN_STMT(counts, r.stmts,
                      "SELECT sweep_id, state, COUNT(*) FROM runs GROUP BY sweep_id, state");
    for (;;) {
      MADAM_STEP(more, counts);
      if (!more) break;
      auto it = by_id.find(counts.ColumnText(0));
      if (it != by_id.end()) AddCount(&sweeps[it->second].counts, counts.ColumnText(1), counts.ColumnInt(2));
    }
    counts.Reset();
    MADAM_ASSIGN_STMT(lin, r.stmts, "SELECT parent_id, reasons, sweep_id FROM sweep_lineage");
    for (;;) {
      MADAM_STEP(more, lin);
      if (!more) break;
      auto it = by_id.find(lin.ColumnText(2));
      if (it != by_id.end()) ReadLineage(lin, &sweeps[it->second]);
    }
    lin.Reset();
    return sweeps;
  });
}

Result<std::optional<SweepRow>> Store::FindSweepByIdempotencyKey(const std::string& key) {
  if (key.empty()) return std::optional<SweepRow>();
  auto id = impl_->Read([&](Impl::Reader& r) -> Result<std::string> {
    MADAM_ASSIGN_STMT(st, r.stmts, "SELECT id FROM sweeps WHERE idempotency_key = ?");
    st.Bind(1, key);
    MADAM_STEP(row, st);
    std::string found = row ? st.ColumnText(0) : "";
    st.Reset();
    return found;
  });
  if (!id.ok()) return id.status();
  if (id->empty()) return std::optional<SweepRow>();
  auto sweep = GetSweep(*id);
  if (!sweep.ok()) return sweep.status();
  return std::optional<SweepRow>(std::move(sweep).value());
}

Result<int64_t> Store::AppendRuns(const std::string& sweep_id, const std::vector<NewRun>& runs, bool force) {
  std::vector<std::pair<std::string, std::string>> encoded;
  encoded.reserve(runs.size());
  for (const NewRun& run : runs) encoded.emplace_back(ParamsToJson(run.params), LabelsToJson(run.labels));
  Impl* impl = impl_.get();
  int64_t added = 0;
  Status s = impl->Write([&]() -> Status {
    StatementCache& w = *impl->w;
    added = 0;
    MADAM_ASSIGN_STMT(st, w, "SELECT state FROM sweeps WHERE id = ?");
    st.Bind(1, sweep_id);
    MADAM_STEP(row, st);
    if (!row) return Status::NotFound("sweep " + Quote(sweep_id) + " not found");
    const std::string state = st.ColumnText(0);
    st.Reset();
    if (state == kSweepCancelled && !force) {
      return Status::FailedPrecondition("sweep " + Quote(sweep_id) +
                                        " is cancelled; extend it anyway with --force (its cancelled "
                                        "runs stay cancelled)");
    }
    std::set<std::string> existing;
    int64_t next_index = 0;
    MADAM_ASSIGN_STMT(sel, w, "SELECT params_json, idx FROM runs WHERE sweep_id = ?");
    sel.Bind(1, sweep_id);
    for (;;) {
      MADAM_STEP(more, sel);
      if (!more) break;
      existing.insert(sel.ColumnText(0));
      next_index = std::max(next_index, sel.ColumnInt(1) + 1);
    }
    sel.Reset();
    MADAM_ASSIGN_STMT(ins, w,
                      "INSERT INTO runs(id, sweep_id, idx, params_json, labels_json, state) "
                      "VALUES (?, ?, ?, ?, ?, 'PENDING')");
    char suffix[32];
    for (const auto& [params, labels] : encoded) {
      if (!existing.insert(params).second) continue;
      std::snprintf(suffix, sizeof suffix, "-%0*lld", kRunIndexDigits, static_cast<long long>(next_index));
      ins.Reset();
      ins.Bind(1, sweep_id + suffix).Bind(2, sweep_id).Bind(3, next_index).Bind(4, params).Bind(5, labels);
      MADAM_RETURN_IF_ERROR(ins.Run());
      ++next_index;
      ++added;
    }
    if (added > 0) {
      MADAM_ASSIGN_STMT(sw, w, "UPDATE sweeps SET state = 'running' WHERE id = ?");
      sw.Bind(1, sweep_id);
      MADAM_RETURN_IF_ERROR(sw.Run());
    }
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return added;
}

Status Store::CancelSweep(const std::string& sweep_id) {
  Impl* impl = impl_.get();
  return impl->Write([&]() -> Status {
    StatementCache& w = *impl->w;
    MADAM_ASSIGN_STMT(st, w, "SELECT state FROM sweeps WHERE id = ?");
    st.Bind(1, sweep_id);
    MADAM_STEP(row, st);
    if (!row) return Status::NotFound("sweep " + Quote(sweep_id) + " not found");
    std::string state = st.ColumnText(0);
    st.Reset();
    if (state != kSweepRunning) return Status::Ok();
    const int64_t now = impl->Now();
    MADAM_ASSIGN_STMT(pending, w,
                      "UPDATE runs SET state = 'CANCELLED', cancel_requested = 1, ended_at = ?1 "
                      "WHERE sweep_id = ?2 AND state = 'PENDING'");
    pending.Bind(1, now).Bind(2, sweep_id);
    MADAM_RETURN_IF_ERROR(pending.Run());
    MADAM_ASSIGN_STMT(running, w,
                      "UPDATE runs SET cancel_requested = 1 WHERE sweep_id = ? AND state = 'RUNNING'");
    running.Bind(1, sweep_id);
    MADAM_RETURN_IF_ERROR(running.Run());
    MADAM_ASSIGN_STMT(sw, w, "UPDATE sweeps SET state = 'cancelled' WHERE id = ?");
    sw.Bind(1, sweep_id);
    return sw.Run();
  });
}

Result<int64_t> Store::RerunSweep(const std::string& sweep_id, const std::vector<RunState>& states) {
  if (states.empty()) return Status::InvalidArgument("rerun of sweep " + Quote(sweep_id) + " names no states");
  for (RunState s : states) {
    if (s != RunState::kFailed && s != RunState::kDiverged && s != RunState::kCancelled) {
      return Status::InvalidArgument(std::string("cannot rerun runs in state ") + RunStateName(s) +
                                     " (only failed, diverged, cancelled)");
    }
  }
  Impl* impl = impl_.get();
  int64_t count = 0;
  Status s = impl->Write([&]() -> Status {
    StatementCache& w = *impl->w;
    count = 0;
    MADAM_ASSIGN_STMT(st, w, "SELECT state FROM sweeps WHERE id = ?");
    st.Bind(1, sweep_id);
    MADAM_STEP(row, st);
    if (!row) return Status::NotFound("sweep " + Quote(sweep_id) + " not found");
    st.Reset();
    std::vector<std::string> ids;
    MADAM_ASSIGN_STMT(sel, w, "SELECT id FROM runs WHERE sweep_id = ? AND state = ? ORDER BY idx");
    for (RunState state : states) {
      sel.Reset();
      sel.Bind(1, sweep_id).Bind(2, StoredState(state));
      for (;;) {
        MADAM_STEP(more, sel);
        if (!more) break;
        ids.push_back(sel.ColumnText(0));
      }
    }
    sel.Reset();
    MADAM_ASSIGN_STMT(reset, w,
                      "UPDATE runs SET state = 'PENDING', attempts = 0, cancel_requested = 0, "
                      "last_error = '', final_json = '{}', resume_checkpoint = '', "
                      "completed_epoch = 0, completed_outcome = '', lease_expires_at = 0, "
                      "started_at = 0, ended_at = 0 WHERE id = ?");
    for (const std::string& id : ids) {
      reset.Reset();
      reset.Bind(1, id);
      MADAM_RETURN_IF_ERROR(reset.Run());
      MADAM_ASSIGN_STMT(del, w, "DELETE FROM metrics WHERE run_id = ?");
      del.Bind(1, id);
      MADAM_RETURN_IF_ERROR(del.Run());
    }
    if (!ids.empty()) {
      MADAM_ASSIGN_STMT(sw, w, "UPDATE sweeps SET state = 'running' WHERE id = ?");
      sw.Bind(1, sweep_id);
      MADAM_RETURN_IF_ERROR(sw.Run());
    }
    count = static_cast<int64_t>(ids.size());
    for (const std::string& id : ids) impl->metric_names.erase(id);
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return count;
}

// ---- Runs ------------------------------------------------------------------

Result<RunRow> Store::GetRun(const std::string& run_id) {
  return impl_->Read([&](Impl::Reader& r) -> Result<RunRow> {
    static const std::string sql = std::string(kRunColumns) + "WHERE r.id = ?";
    MADAM_ASSIGN_STMT(st, r.stmts, sql.c_str());
    st.Bind(1, run_id);
    MADAM_STEP(row, st);
    if (!row) return Status::NotFound("run " + Quote(run_id) + " not found");
    RunRow run = ReadRun(st);
    st.Reset();
    return run;
  });
}

Result<std::vector<RunRow>> Store::ListRuns(const std::string& sweep_id, std::optional<RunState> state) {
  return impl_->Read([&](Impl::Reader& r) -> Result<std::vector<RunRow>> {
    MADAM_ASSIGN_STMT(exists, r.stmts, "SELECT 1 FROM sweeps WHERE id = ?");
    exists.Bind(1, sweep_id);
    MADAM_STEP(found, exists);
    exists.Reset();
    if (!found) return Status::NotFound("sweep " + Quote(sweep_id) + " not found");
    static const std::string all = std::string(kRunColumns) + "WHERE r.sweep_id = ?1 ORDER BY r.idx";
    static const std::string one =
        std::string(kRunColumns) + "WHERE r.sweep_id = ?1 AND r.state = ?2 ORDER BY r.idx";
    MADAM_ASSIGN_STMT(st, r.stmts, state ? one.c_str() : all.c_str());
    st.Bind(1, sweep_id);
    if (state) st.Bind(2, StoredState(*state));
    std::vector<RunRow> runs;
    for (;;) {
      MADAM_STEP(row, st);
      if (!row) break;
      runs.push_back(ReadRun(st));
    }
    st.Reset();
    return runs;
  });
}

// ---- Leases ----------------------------------------------------------------

Result<std::optional<Lease>> Store::AcquireRun(const std::string& worker_id, const std::string& device,
                                               int64_t lease_seconds, const std::string& request_id) {
  if (lease_seconds <= 0) {
    return Status::InvalidArgument("lease_seconds " + std::to_string(lease_seconds) + " must be positive");
  }
  const std::string kind = DeviceKind(device);
  if (kind != "cpu" && kind != "cuda") {
    return Status::InvalidArgument("device " + Quote(device) + " of worker " + Quote(worker_id) +
                                   " must be cpu or cuda[:N]");
  }
  Impl* impl = impl_.get();
  std::optional<Lease> lease;
  Impl::ExpiryCounts expiry;
  bool new_grant = false;
  Status s = impl->Write([&]() -> Status {
    StatementCache& w = *impl->w;
    lease.reset();
    expiry = {};
    new_grant = false;
    const int64_t now = impl->Now();
    auto expired = impl->ExpireOverdue(now, &expiry);
    if (!expired.ok()) return expired.status();
    std::string registered_device;
    {
      MADAM_ASSIGN_STMT(touch, w, "UPDATE workers SET last_seen = ? WHERE id = ? RETURNING device");
      touch.Bind(1, now).Bind(2, worker_id);
      MADAM_STEP(found, touch);
      if (!found) return Status::NotFound("worker " + Quote(worker_id) + " is not registered");
      registered_device = touch.ColumnText(0);
      touch.Reset();
    }
    if (!request_id.empty()) {
      // A retried request (its response was lost) gets the lease it was granted.
      MADAM_ASSIGN_STMT(again, w,
                        "SELECT r.id, r.sweep_id, r.idx, r.params_json, r.labels_json, r.attempts, "
                        "r.resume_checkpoint, r.lease_epoch, r.lease_expires_at, s.metric_name, "
                        "r.lease_charged "
                        "FROM runs r JOIN sweeps s ON s.id = r.sweep_id "
                        "WHERE r.state = 'RUNNING' AND r.lease_worker = ? AND r.lease_request = ?");
      again.Bind(1, worker_id).Bind(2, request_id);
      MADAM_STEP(found, again);
      if (found) {
        Lease l;
        l.run_id = again.ColumnText(0);
        l.sweep_id = again.ColumnText(1);
        l.index = again.ColumnInt(2);
        l.params = ParamsFromJson(again.ColumnText(3));
        l.labels = LabelsFromJson(again.ColumnText(4));
        l.attempt = again.ColumnInt(5);
        l.resume_checkpoint = again.ColumnText(6);
        l.lease_epoch = again.ColumnInt(7);
        l.lease_expires_at_ms = again.ColumnInt(8);
        l.metric_name = again.ColumnText(9);
        if (again.ColumnInt(10) == 0) ++l.attempt;  // not charged yet: attempts is the one before
        again.Reset();
        // Only the hash of the first reply's secret was kept: re-key.
        auto secret = NewLeaseSecret();
        if (!secret.ok()) return secret.status();
        MADAM_ASSIGN_STMT(rekey, w, "UPDATE runs SET lease_secret_hash = ? WHERE id = ?");
        rekey.Bind(1, HashLeaseSecret(*secret)).Bind(2, l.run_id);
        MADAM_RETURN_IF_ERROR(rekey.Run());
        l.worker_id = worker_id;
        l.lease_secret = std::move(secret).value();
        lease = std::move(l);
        return Status::Ok();
      }
      again.Reset();
    }
    {
      // A worker holds at most max_leases_per_worker runs: one that asks for
      // more (a hoarder, or a bug) gets none until it finishes one.
      const int64_t limit = impl->options.max_leases_per_worker > 0
                                ? impl->options.max_leases_per_worker
                                : DeviceCount(registered_device);
      MADAM_ASSIGN_STMT(held, w,
                        "SELECT COUNT(*) FROM runs WHERE state = 'RUNNING' AND lease_worker = ?");
      held.Bind(1, worker_id);
      MADAM_STEP(row, held);
      const int64_t holding = row ? held.ColumnInt(0) : 0;
      held.Reset();
      if (holding >= limit) return Status::Ok();
    }
    struct Candidate {
      std::string id, metric_name;
      int64_t max_concurrent;
    };
    std::vector<Candidate> sweeps;
    {
      MADAM_ASSIGN_STMT(st, w,
                        "SELECT id, metric_name, max_concurrent FROM sweeps "
                        "WHERE state = 'running' AND device IN ('any', ?) ORDER BY seq");
      st.Bind(1, kind);
      for (;;) {
        MADAM_STEP(row, st);
        if (!row) break;
        sweeps.push_back({st.ColumnText(0), st.ColumnText(1), st.ColumnInt(2)});
      }
      st.Reset();
    }
    for (const Candidate& sweep : sweeps) {
      if (sweep.max_concurrent > 0) {
        MADAM_ASSIGN_STMT(count, w, "SELECT COUNT(*) FROM runs WHERE sweep_id = ? AND state = 'RUNNING'");
        count.Bind(1, sweep.id);
        MADAM_STEP(row, count);
        int64_t running = row ? count.ColumnInt(0) : 0;
        count.Reset();
        if (running >= sweep.max_concurrent) continue;
      }
      MADAM_ASSIGN_STMT(pick, w,
                        "SELECT id, idx, params_json, labels_json, attempts, resume_checkpoint "
                        "FROM runs WHERE sweep_id = ? AND state = 'PENDING' ORDER BY idx LIMIT 1");
      pick.Bind(1, sweep.id);
      MADAM_STEP(row, pick);
      if (!row) continue;
      Lease l;
      l.run_id = pick.ColumnText(0);
      l.sweep_id = sweep.id;
      l.index = pick.ColumnInt(1);
      l.params = ParamsFromJson(pick.ColumnText(2));
      l.labels = LabelsFromJson(pick.ColumnText(3));
      l.attempt = pick.ColumnInt(4) + 1;
      l.resume_checkpoint = pick.ColumnText(5);
      l.metric_name = sweep.metric_name;
      pick.Reset();
      auto epoch = impl->NextLeaseEpoch();
      if (!epoch.ok()) return epoch.status();
      auto secret = NewLeaseSecret();
      if (!secret.ok()) return secret.status();
      l.lease_epoch = *epoch;
      l.lease_expires_at_ms = now + lease_seconds * 1000;
      l.worker_id = worker_id;
      l.lease_secret = std::move(secret).value();
      // attempts is charged at the lease's first heartbeat, metric batch or
      // completion (ChargeAttempt), not here.
      MADAM_ASSIGN_STMT(grant, w,
                        "UPDATE runs SET state = 'RUNNING', lease_charged = 0, lease_epoch = ?, "
                        "lease_worker = ?, lease_expires_at = ?, started_at = ?, ended_at = 0, "
                        "lease_request = ?, lease_secret_hash = ? WHERE id = ?");
      grant.Bind(1, l.lease_epoch).Bind(2, worker_id).Bind(3, l.lease_expires_at_ms)
          .Bind(4, now).Bind(5, request_id).Bind(6, HashLeaseSecret(l.lease_secret)).Bind(7, l.run_id);
      MADAM_RETURN_IF_ERROR(grant.Run());
      lease = std::move(l);
      new_grant = true;
      return Status::Ok();
    }
    return Status::Ok();
  });
  if (!s.ok()) return s;
  impl->CountExpiry(expiry);
  if (new_grant) impl->stat_leases_granted.fetch_add(1, std::memory_order_relaxed);
  return lease;
}

Result<HeartbeatReply> Store::Heartbeat(const std::string& run_id, int64_t lease_epoch,
                                        int64_t lease_seconds, const LeaseHolder& holder) {
  if (lease_seconds <= 0) {
    return Status::InvalidArgument("lease_seconds " + std::to_string(lease_seconds) + " must be positive");
  }
  Impl* impl = impl_.get();
  HeartbeatReply reply;
  Status s = impl->Write([&]() -> Status {
    auto check = impl->CheckLease(run_id, lease_epoch, holder);
    if (!check.ok()) return check.status();
    MADAM_RETURN_IF_ERROR(impl->ChargeAttempt(run_id));
    const int64_t now = impl->Now();
    reply.cancel_requested = check->cancel_requested;
    reply.lease_expires_at_ms = now + lease_seconds * 1000;
    MADAM_ASSIGN_STMT(st, *impl->w, "UPDATE runs SET lease_expires_at = ? WHERE id = ?");
    st.Bind(1, reply.lease_expires_at_ms).Bind(2, run_id);
    MADAM_RETURN_IF_ERROR(st.Run());
    return impl->TouchWorkerRow(check->worker, now);
  });
  if (!s.ok()) return s;
  return reply;
}

namespace {

Status ValidatePoints(const std::string& run_id, const std::vector<MetricPoint>& points) {
  for (size_t i = 0; i < points.size(); ++i) {
    if (points[i].name.empty()) {
      return Status::InvalidArgument("metric point " + std::to_string(i) + " for run " + Quote(run_id) +
                                     " has an empty name");
    }
    if (points[i].step < 0) {
      return Status::InvalidArgument("metric point " + std::to_string(i) + " (" + points[i].name +
                                     ") for run " + Quote(run_id) + " has negative step " +
                                     std::to_string(points[i].step));
    }
  }
  return Status::Ok();
}

}  // namespace

Status Store::Impl::InsertPoints(const std::string& run_id, int64_t lease_epoch,
                                 const std::vector<MetricPoint>& points, const LeaseHolder& holder) {
  auto check = CheckLease(run_id, lease_epoch, holder);
  if (!check.ok()) return check.status();
  auto known = metric_names.find(run_id);
  if (known == metric_names.end()) {
    std::unordered_set<std::string> names;
    MADAM_ASSIGN_STMT(sel, *w, "SELECT DISTINCT name FROM metrics WHERE run_id = ?");
    sel.Bind(1, run_id);
    for (;;) {
      MADAM_STEP(row, sel);
      if (!row) break;
      names.insert(sel.ColumnText(0));
    }
    sel.Reset();
    known = metric_names.emplace(run_id, std::move(names)).first;
  }
  std::unordered_set<std::string> fresh;
  for (const MetricPoint& p : points) {
    if (known->second.count(p.name) == 0) fresh.insert(p.name);
  }
  const int64_t total = static_cast<int64_t>(known->second.size() + fresh.size());
  if (total > options.max_metric_names_per_run) {
    return Status::InvalidArgument("points.name: run " + Quote(run_id) + " would have " +
                                   std::to_string(total) + " distinct metric names, over the limit of " +
                                   std::to_string(options.max_metric_names_per_run));
  }
  MADAM_RETURN_IF_ERROR(ChargeAttempt(run_id));
  MADAM_ASSIGN_STMT(st, *w,
                    "INSERT OR REPLACE INTO metrics(run_id, name, step, value, time) "
                    "VALUES (?, ?, ?, ?, ?)");
  for (const MetricPoint& p : points) {
    st.Bind(1, run_id).Bind(2, p.name).Bind(3, p.step).Bind(4, p.value).Bind(5, p.time);
    MADAM_STEP(unused, st);
    (void)unused;
    sqlite3_reset(st.raw());
  }
  st.Reset();
  known->second.insert(fresh.begin(), fresh.end());
  // Counted before commit; a failed commit is visible in failed_commits.
  stat_points.fetch_add(static_cast<int64_t>(points.size()), std::memory_order_relaxed);
  return Status::Ok();
}

Status Store::AppendMetrics(const std::string& run_id, int64_t lease_epoch,
                            const std::vector<MetricPoint>& points, const LeaseHolder& holder) {
  MADAM_RETURN_IF_ERROR(ValidatePoints(run_id, points));
  Impl* impl = impl_.get();
  return impl->Write([&]() -> Status { return impl->InsertPoints(run_id, lease_epoch, points, holder); },
                     impl->options.metrics_full_sync);
}

void Store::AppendMetricsAsync(std::string run_id, int64_t lease_epoch, std::vector<MetricPoint> points,
                               LeaseHolder holder, std::function<void(Status)> done) {
  Status valid = ValidatePoints(run_id, points);
  if (!valid.ok()) {
    done(std::move(valid));
    return;
  }
  Impl* impl = impl_.get();
  auto shared = std::make_shared<std::pair<std::string, std::vector<MetricPoint>>>(std::move(run_id),
                                                                                    std::move(points));
  impl->WriteAsync(
      [impl, shared, lease_epoch, holder = std::move(holder)]() -> Status {
        return impl->InsertPoints(shared->first, lease_epoch, shared->second, holder);
      },
      std::move(done), impl->options.metrics_full_sync);
}

Status Store::CompleteRun(const CompleteRequest& req) {
  Impl* impl = impl_.get();
  bool requeued = false;
  Status result = impl->Write([&]() -> Status {
    requeued = false;
    StatementCache& w = *impl->w;
    MADAM_ASSIGN_STMT(st, w,
                      "SELECT r.state, r.lease_epoch, r.attempts, s.max_attempts, r.cancel_requested, "
                      "r.completed_epoch, r.completed_outcome, r.sweep_id, r.lease_worker, "
                      "r.lease_secret_hash, r.lease_charged "
                      "FROM runs r JOIN sweeps s ON s.id = r.sweep_id WHERE r.id = ?");
    st.Bind(1, req.run_id);
    MADAM_STEP(row, st);
    if (!row) return Status::NotFound("run " + Quote(req.run_id) + " not found");
    const std::string state = st.ColumnText(0);
    const int64_t current = st.ColumnInt(1);
    const int64_t attempts_before = st.ColumnInt(2);
    const int64_t max_attempts = st.ColumnInt(3);
    const bool cancel_requested = st.ColumnInt(4) != 0;
    const int64_t completed_epoch = st.ColumnInt(5);
    const std::string completed_outcome = st.ColumnText(6);
    const std::string sweep_id = st.ColumnText(7);
    const std::string lease_worker = st.ColumnText(8);
    const std::string secret_hash = st.ColumnText(9);
    const bool charged = st.ColumnInt(10) != 0;
    st.Reset();
    if (!req.checkpoint.empty() && !CheckpointNameValid(req.checkpoint)) {
      return Status::InvalidArgument("checkpoint: " + Quote(req.checkpoint.substr(0, 200)) +
                                     " is not a checkpoint name of the form epoch-<N>.pt");
    }
    const std::string outcome = RunOutcomeName(req.outcome);
    const bool holder_ok =
        req.holder.worker_id == lease_worker && SecretMatches(secret_hash, req.holder.secret);
    if (completed_epoch != 0 && completed_epoch == req.lease_epoch) {
      if (!holder_ok) return NotTheHolder(req.run_id);
      if (completed_outcome == outcome) return Status::Ok();  // a retried completion
      return Status::FailedPrecondition("run " + Quote(req.run_id) + " was already completed at lease epoch " +
                                        std::to_string(req.lease_epoch) + " as " + completed_outcome +
                                        " (this completion says " + outcome + ")");
    }
    if (req.lease_epoch != current) {
      return Status::FailedPrecondition("stale lease epoch " + std::to_string(req.lease_epoch) + " for run " +
                                        Quote(req.run_id) + ": the run was leased again since");
    }
    if (!holder_ok) return NotTheHolder(req.run_id);
    if (state != "RUNNING") {
      auto parsed = ParseRunState(state);
      return Status::FailedPrecondition("lease epoch " + std::to_string(req.lease_epoch) + " for run " +
                                        Quote(req.run_id) + " is no longer held (run is " +
                                        (parsed ? RunStateName(*parsed) : state.c_str()) + ")");
    }
    // A completion is a sign of work too: it charges an uncharged lease.
    const int64_t attempts = attempts_before + (charged ? 0 : 1);
    RunState next = RunState::kSucceeded;
    switch (req.outcome) {
      case RunOutcome::kSucceeded: next = RunState::kSucceeded; break;
      case RunOutcome::kDiverged: next = RunState::kDiverged; break;
      case RunOutcome::kCancelled: next = RunState::kCancelled; break;
      case RunOutcome::kFailed:
        next = cancel_requested          ? RunState::kCancelled
               : attempts < max_attempts ? RunState::kPending
                                         : RunState::kFailed;
        break;
    }
    const int64_t now = impl->Now();
    std::string error = req.error;
    if (req.outcome == RunOutcome::kFailed && error.empty()) {
      error = "attempt " + std::to_string(attempts) + " failed without an error message";
    }
    MADAM_ASSIGN_STMT(up, w,
                      "UPDATE runs SET state = ?1, final_json = CASE WHEN ?2 = '{}' THEN final_json ELSE ?2 END, "
                      "last_error = CASE WHEN ?3 = '' THEN last_error ELSE ?3 END, "
                      "resume_checkpoint = CASE WHEN ?4 = '' THEN resume_checkpoint ELSE ?4 END, "
                      "completed_epoch = ?5, completed_outcome = ?6, lease_expires_at = 0, ended_at = ?7, "
                      "attempts = ?9, lease_charged = 1 WHERE id = ?8");
    up.Bind(1, StoredState(next)).Bind(2, FinalToJson(req.final)).Bind(3, error).Bind(4, req.checkpoint)
        .Bind(5, req.lease_epoch).Bind(6, outcome).Bind(7, IsTerminal(next) ? now : int64_t{0})
        .Bind(8, req.run_id).Bind(9, attempts);
    MADAM_RETURN_IF_ERROR(up.Run());
    if (IsTerminal(next)) MADAM_RETURN_IF_ERROR(impl->MaybeFinishSweep(sweep_id));
    requeued = next == RunState::kPending;
    impl->metric_names.erase(req.run_id);
    return Status::Ok();
  });
  if (result.ok() && requeued) impl->stat_retries.fetch_add(1, std::memory_order_relaxed);
  return result;
}

Status Store::SetCheckpoint(const std::string& run_id, int64_t lease_epoch, const std::string& name,
                            const LeaseHolder& holder) {
  if (!CheckpointNameValid(name)) {
    return Status::InvalidArgument("checkpoint: " + Quote(name.substr(0, 200)) +
                                   " is not a checkpoint name of the form epoch-<N>.pt");
  }
  Impl* impl = impl_.get();
  return impl->Write([&]() -> Status {
    auto check = impl->CheckLease(run_id, lease_epoch, holder);
    if (!check.ok()) return check.status();
    MADAM_ASSIGN_STMT(st, *impl->w, "UPDATE runs SET resume_checkpoint = ? WHERE id = ?");
    st.Bind(1, name).Bind(2, run_id);
    return st.Run();
  });
}

Result<int64_t> Store::ExpireLeases() {
  Impl* impl = impl_.get();
  int64_t count = 0;
  Impl::ExpiryCounts expiry;
  Status s = impl->Write([&]() -> Status {
    expiry = {};
    auto n = impl->ExpireOverdue(impl->Now(), &expiry);
    if (!n.ok()) return n.status();
    count = *n;
    return Status::Ok();
  });
  if (!s.ok()) return s;
  impl->CountExpiry(expiry);
  return count;
}

Result<int64_t> Store::ExtendRunningLeases(int64_t lease_seconds) {
  if (lease_seconds <= 0) {
    return Status::InvalidArgument("lease_seconds " + std::to_string(lease_seconds) + " must be positive");
  }
  Impl* impl = impl_.get();
  int64_t count = 0;
  Status s = impl->Write([&]() -> Status {
    MADAM_ASSIGN_STMT(st, *impl->w,
                      "UPDATE runs SET lease_expires_at = MAX(lease_expires_at, ?) WHERE state = 'RUNNING'");
    st.Bind(1, impl->Now() + lease_seconds * 1000);
    MADAM_RETURN_IF_ERROR(st.Run());
    count = impl->writer_db.Changes();
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return count;
}

Status Store::ProbeWrite() {
  Impl* impl = impl_.get();
  return impl->Write([&]() -> Status {
    MADAM_ASSIGN_STMT(st, *impl->w, "UPDATE meta SET value = value WHERE key = 'lease_epoch'");
    return st.Run();
  });
}

// ---- Metrics ---------------------------------------------------------------

Result<std::vector<MetricPoint>> Store::GetMetrics(const std::string& run_id,
                                                   const std::optional<std::string>& name,
                                                   int64_t after_step, int64_t limit) {
  return impl_->Read([&](Impl::Reader& r) -> Result<std::vector<MetricPoint>> {
    MADAM_ASSIGN_STMT(exists, r.stmts, "SELECT 1 FROM runs WHERE id = ?");
    exists.Bind(1, run_id);
    MADAM_STEP(found, exists);
    exists.Reset();
    if (!found) return Status::NotFound("run " + Quote(run_id) + " not found");
    MADAM_ASSIGN_STMT(st, r.stmts,
                      name ? "SELECT name, step, value, time FROM metrics WHERE run_id = ?1 AND name = ?2 "
                             "AND step > ?3 ORDER BY name, step LIMIT ?4"
                           : "SELECT name, step, value, time FROM metrics WHERE run_id = ?1 "
                             "AND step > ?3 ORDER BY name, step LIMIT ?4");
    st.Bind(1, run_id);
    if (name) st.Bind(2, *name);
    st.Bind(3, after_step < 0 ? int64_t{-1} : after_step);
    st.Bind(4, limit < 0 ? int64_t{-1} : limit);  // LIMIT -1: no limit
    std::vector<MetricPoint> points;
    for (;;) {
      MADAM_STEP(row, st);
      if (!row) break;
      points.push_back({st.ColumnText(0), st.ColumnInt(1), st.ColumnDouble(2), st.ColumnDouble(3)});
    }
    st.Reset();
    return points;
  });
}

Result<std::vector<MetricPoint>> Store::GetLatestMetrics(const std::string& run_id) {
  return impl_->Read([&](Impl::Reader& r) -> Result<std::vector<MetricPoint>> {
    MADAM_ASSIGN_STMT(exists, r.stmts, "SELECT 1 FROM runs WHERE id = ?");
    exists.Bind(1, run_id);
    MADAM_STEP(found, exists);
    exists.Reset();
    if (!found) return Status::NotFound("run " + Quote(run_id) + " not found");
    // SQLite takes the bare columns of a MAX() aggregate from the max row.
    MADAM_ASSIGN_STMT(st, r.stmts,
                      "SELECT name, MAX(step), value, time FROM metrics WHERE run_id = ? "
                      "GROUP BY name ORDER BY name");
    st.Bind(1, run_id);
    std::vector<MetricPoint> points;
    for (;;) {
      MADAM_STEP(row, st);
      if (!row) break;
      points.push_back({st.ColumnText(0), st.ColumnInt(1), st.ColumnDouble(2), st.ColumnDouble(3)});
    }
    st.Reset();
    return points;
  });
}

// ---- Workers ---------------------------------------------------------------

Result<WorkerRow> Store::RegisterWorker(const std::string& name, const std::string& device,
                                        const std::string& info) {
  const std::string kind = DeviceKind(device);
  if (kind != "cpu" && kind != "cuda") {
    return Status::InvalidArgument("device " + Quote(device) + " of worker " + Quote(name) +
                                   " must be cpu or cuda[:N]");
  }
  Impl* impl = impl_.get();
  std::string id;
  Status s = impl->Write([&]() -> Status {
    StatementCache& w = *impl->w;
    {
      auto fresh = impl->UnusedId("wk-", "SELECT 1 FROM workers WHERE id = ?");
      if (!fresh.ok()) return fresh.status();
      id = std::move(fresh).value();
    }
    const int64_t now = impl->Now();
    MADAM_ASSIGN_STMT(st, w,
                      "INSERT INTO workers(id, name, device, info, registered_at, last_seen) "
                      "VALUES (?, ?, ?, ?, ?, ?)");
    st.Bind(1, id).Bind(2, name).Bind(3, device).Bind(4, info).Bind(5, now).Bind(6, now);
    return st.Run();
  });
  if (!s.ok()) return s;
  return GetWorker(id);
}

Status Store::TouchWorker(const std::string& worker_id) {
  Impl* impl = impl_.get();
  return impl->Write([&]() -> Status {
    MADAM_RETURN_IF_ERROR(impl->TouchWorkerRow(worker_id, impl->Now()));
    if (impl->writer_db.Changes() == 0) {
      return Status::NotFound("worker " + Quote(worker_id) + " is not registered");
    }
    return Status::Ok();
  });
}

Result<WorkerRow> Store::GetWorker(const std::string& worker_id) {
  return impl_->Read([&](Impl::Reader& r) -> Result<WorkerRow> {
    static const std::string sql = std::string(kWorkerColumns) + "WHERE w.id = ?";
    MADAM_ASSIGN_STMT(st, r.stmts, sql.c_str());
    st.Bind(1, worker_id);
    MADAM_STEP(row, st);
    if (!row) return Status::NotFound("worker " + Quote(worker_id) + " is not registered");
    WorkerRow worker = ReadWorker(st);
    st.Reset();
    return worker;
  });
}

Result<std::vector<WorkerRow>> Store::ListWorkers() {
  return impl_->Read([&](Impl::Reader& r) -> Result<std::vector<WorkerRow>> {
    static const std::string sql = std::string(kWorkerColumns) + "ORDER BY w.registered_at, w.id";
    MADAM_ASSIGN_STMT(st, r.stmts, sql.c_str());
    std::vector<WorkerRow> workers;
    for (;;) {
      MADAM_STEP(row, st);
      if (!row) break;
      workers.push_back(ReadWorker(st));
    }
    st.Reset();
    return workers;
  });
}

// ---- Maintenance -----------------------------------------------------------

Status Store::IntegrityCheck() {
  return impl_->Read([&](Impl::Reader& r) -> Status {
    auto result = r.db.QueryText("PRAGMA integrity_check");
    if (!result.ok()) return result.status();
    if (*result != "ok") {
      return Status::DataLoss("integrity_check of '" + impl_->options.path + "' failed: " + *result);
    }
    return Status::Ok();
  });
}

StoreStats Store::Stats() const {
  StoreStats stats;
  stats.transactions = impl_->stat_transactions.load(std::memory_order_relaxed);
  stats.calls = impl_->stat_calls.load(std::memory_order_relaxed);
  stats.metric_points = impl_->stat_points.load(std::memory_order_relaxed);
  stats.failed_commits = impl_->stat_failed_commits.load(std::memory_order_relaxed);
  stats.queue_depth = impl_->stat_queue_depth.load(std::memory_order_relaxed);
  stats.commit_seconds_total = impl_->stat_commit_nanos.load(std::memory_order_relaxed) / 1e9;
  stats.leases_granted = impl_->stat_leases_granted.load(std::memory_order_relaxed);
  stats.leases_expired = impl_->stat_leases_expired.load(std::memory_order_relaxed);
  stats.retries = impl_->stat_retries.load(std::memory_order_relaxed);
  return stats;
}

Result<int64_t> Store::CurrentLeaseEpoch() {
  return impl_->Read([&](Impl::Reader& r) -> Result<int64_t> {
    return r.db.QueryInt("SELECT value FROM meta WHERE key = 'lease_epoch'");
  });
}

}  // namespace madam::server
