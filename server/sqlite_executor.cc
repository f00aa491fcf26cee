#include "server/sqlite_executor.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <exception>
#include <future>

#include <spdlog/spdlog.h>

namespace madam::server::sqlite {

namespace {

Status ConfigureConnection(Db* db, int busy_timeout_ms) {
  if (sqlite3_busy_timeout(db->raw(), busy_timeout_ms) != SQLITE_OK) {
    return db->Error("set busy_timeout", SQLITE_ERROR);
  }
  return Status::Ok();
}

}  // namespace

Result<Statement*> StatementCache::Get(const char* sql) {
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

Executor::LockFile::~LockFile() {
  if (fd >= 0) ::close(fd);
}

Result<std::unique_ptr<Executor>> Executor::Open(const ExecutorOptions& options,
                                                 const std::function<Status(Db*)>& setup) {
  if (options.path.empty()) return Status::InvalidArgument("store path is empty");
  if (options.read_connections < 1) {
    return Status::InvalidArgument("read_connections " + std::to_string(options.read_connections) +
                                   " must be at least 1");
  }
  std::unique_ptr<Executor> ex(new Executor(options));
  ExecutorOptions& o = ex->options_;
  o.max_calls_per_transaction = std::max(o.max_calls_per_transaction, 1);
  o.max_rows_per_transaction = std::max<int64_t>(o.max_rows_per_transaction, 1);
  o.max_bytes_per_transaction = std::max<int64_t>(o.max_bytes_per_transaction, 1);

  const std::string lock_path = o.path + ".lock";
  ex->lock_.fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (ex->lock_.fd < 0) {
    return Status::Unavailable("cannot open lock file '" + lock_path + "': " + std::strerror(errno));
  }
  if (::flock(ex->lock_.fd, LOCK_EX | LOCK_NB) != 0) {
    return Status::FailedPrecondition("database '" + o.path +
                                      "' is in use by another coordinator (lock file '" + lock_path +
                                      "' is held)");
  }

  auto db = Db::Open(o.path, Db::Mode::kReadWriteCreate);
  if (!db.ok()) return db.status();
  ex->writer_db_ = std::move(db).value();
  Db& wdb = ex->writer_db_;
  MADAM_RETURN_IF_ERROR(ConfigureConnection(&wdb, o.busy_timeout_ms));
  auto mode = wdb.QueryText("PRAGMA journal_mode=WAL");
  if (!mode.ok()) return mode.status();
  if (*mode != "wal") {
    return Status::FailedPrecondition("database '" + o.path + "' cannot use WAL journal mode (got '" +
                                      *mode + "')");
  }
  // FULL: a commit is durable when it returns, which is when calls are acked.
  // journal_size_limit: truncate the WAL after a checkpoint instead of
  // keeping a burst's worth of file around.
  // wal_autocheckpoint=0: the checkpoint thread does it.
  MADAM_RETURN_IF_ERROR(wdb.Exec(
      "PRAGMA synchronous=FULL; PRAGMA foreign_keys=OFF; PRAGMA journal_size_limit=67108864; "
      "PRAGMA wal_autocheckpoint=0;"));
  {
    auto txn = Transaction::Begin(&wdb, Transaction::Kind::kImmediate);
    if (!txn.ok()) return txn.status();
    MADAM_RETURN_IF_ERROR(setup(&wdb));
    MADAM_RETURN_IF_ERROR((*txn)->Commit());
  }
  ex->writer_stmts_ = std::make_unique<StatementCache>(&ex->writer_db_);

  for (int i = 0; i < o.read_connections; ++i) {
    auto rdb = Db::Open(o.path, Db::Mode::kReadWrite);
    if (!rdb.ok()) return rdb.status();
    auto reader = std::make_unique<Reader>();
    reader->db = std::move(rdb).value();
    MADAM_RETURN_IF_ERROR(ConfigureConnection(&reader->db, o.busy_timeout_ms));
    MADAM_RETURN_IF_ERROR(reader->db.Exec("PRAGMA query_only=1"));
    ex->idle_readers_.push_back(std::move(reader));
  }

  auto cdb = Db::Open(o.path, Db::Mode::kReadWrite);
  if (!cdb.ok()) return cdb.status();
  ex->checkpoint_db_ = std::move(cdb).value();
  MADAM_RETURN_IF_ERROR(ConfigureConnection(&ex->checkpoint_db_, o.busy_timeout_ms));

  ex->writer_thread_ = std::thread([raw = ex.get()] { raw->WriterLoop(); });
  ex->checkpoint_thread_ = std::thread([raw = ex.get()] { raw->CheckpointLoop(); });
  return ex;
}

Executor::~Executor() { Stop(); }

void Executor::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  checkpoint_cv_.notify_all();
  if (checkpoint_thread_.joinable()) checkpoint_thread_.join();
  if (writer_thread_.joinable()) writer_thread_.join();
}

void Executor::CheckpointLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!checkpoint_cv_.wait_for(lock, std::chrono::milliseconds(500), [this] { return stopping_; })) {
    lock.unlock();
    Status s = checkpoint_db_.Exec("PRAGMA wal_checkpoint(PASSIVE)");
    if (!s.ok()) spdlog::warn("store: WAL checkpoint: {}", s.ToString());
    lock.lock();
  }
}

void Executor::Submit(WriteCall call) {
  Status refused;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) {
      refused = Status::Unavailable("store at '" + options_.path + "' is shutting down");
    } else if (call.lane == Lane::kBulk && bulk_bytes_ > 0 &&
               bulk_bytes_ + call.bytes > options_.max_queued_bulk_bytes) {
      // An empty lane takes any call, however large: a batch over the whole
      // budget must still be storable, once.
      stat_rejected_.fetch_add(1, std::memory_order_relaxed);
      refused = Status::ResourceExhausted(
          "the coordinator's write queue holds " + std::to_string(bulk_bytes_) +
          " bytes of metric batches, over its budget of " +
          std::to_string(options_.max_queued_bulk_bytes) + "; nothing was stored, send it again later");
    } else {
      if (call.lane == Lane::kBulk) {
        bulk_bytes_ += call.bytes;
        stat_bulk_bytes_.store(bulk_bytes_, std::memory_order_relaxed);
        bulk_.push_back(std::move(call));
      } else {
        urgent_.push_back(std::move(call));
      }
      stat_queue_depth_.store(static_cast<int64_t>(urgent_.size() + bulk_.size()),
                              std::memory_order_relaxed);
    }
  }
  if (!refused.ok()) {
    call.done(std::move(refused));
    return;
  }
  // notify_all: the checkpoint thread waits on the same mutex with its own
  // cv; cv_ has the writer alone, but stays safe if that ever changes.
  cv_.notify_all();
}

Status Executor::Write(std::function<Status()> fn, bool full_sync) {
  auto promise = std::make_shared<std::promise<Status>>();
  std::future<Status> done = promise->get_future();
  WriteCall call;
  call.fn = std::move(fn);
  call.done = [promise](Status s) { promise->set_value(std::move(s)); };
  call.full_sync = full_sync;
  Submit(std::move(call));
  return done.get();
}

void Executor::TakeGroup(std::vector<WriteCall>* group) {
  int64_t rows = 0, bytes = 0;
  auto fits = [&](const WriteCall& c) {
    if (group->empty()) return true;
    return static_cast<int>(group->size()) < options_.max_calls_per_transaction &&
           rows + c.rows <= options_.max_rows_per_transaction &&
           bytes + c.bytes <= options_.max_bytes_per_transaction;
  };
  for (std::deque<WriteCall>* lane : {&urgent_, &bulk_}) {
    while (!lane->empty() && fits(lane->front())) {
      rows += lane->front().rows;
      bytes += lane->front().bytes;
      if (lane == &bulk_) bulk_bytes_ -= lane->front().bytes;
      group->push_back(std::move(lane->front()));
      lane->pop_front();
    }
  }
  stat_bulk_bytes_.store(bulk_bytes_, std::memory_order_relaxed);
  stat_queue_depth_.store(static_cast<int64_t>(urgent_.size() + bulk_.size()), std::memory_order_relaxed);
}

void Executor::WriterLoop() {
  std::vector<WriteCall> group;
  std::vector<Status> results;
  for (;;) {
    group.clear();
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !urgent_.empty() || !bulk_.empty(); });
      if (urgent_.empty() && bulk_.empty()) return;  // stopping, queue drained
      TakeGroup(&group);
    }
    results.assign(group.size(), Status::Ok());
    const auto started = std::chrono::steady_clock::now();
    Status txn = RunGroup(group, &results);
    const int64_t txn_nanos =
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - started)
            .count();
    stat_commit_nanos_.fetch_add(txn_nanos, std::memory_order_relaxed);
    if (options_.on_transaction) options_.on_transaction(txn_nanos / 1e9);
    stat_calls_.fetch_add(static_cast<int64_t>(group.size()), std::memory_order_relaxed);
    (txn.ok() ? stat_transactions_ : stat_failed_commits_).fetch_add(1, std::memory_order_relaxed);
    for (size_t i = 0; i < group.size(); ++i) {
      // A failed group fails every call that went well in its savepoint:
      // nothing of the group was committed. A call refused on its own keeps
      // its refusal.
      Status final = txn.ok() || !results[i].ok() ? results[i] : txn;
      try {
        group[i].done(std::move(final));
      } catch (const std::exception& e) {
        spdlog::error("store: completion callback threw: {}", e.what());
      }
    }
  }
}

Status Executor::RunGroup(std::vector<WriteCall>& group, std::vector<Status>* results) {
  if (!options_.fault_file.empty() && ::access(options_.fault_file.c_str(), F_OK) == 0) {
    return Status::Unavailable("sqlite error on '" + options_.path +
                               "': attempt to write a readonly database (injected: fault file '" +
                               options_.fault_file + "' exists)");
  }
  // synchronous is a connection setting read at COMMIT; it can only change
  // between transactions. A FULL commit fsyncs the whole WAL, so it also
  // makes any earlier NORMAL commits durable.
  bool full = false;
  for (const WriteCall& call : group) full = full || call.full_sync;
  if (full != writer_full_sync_) {
    auto pragma = writer_stmts_->Get(full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
    if (!pragma.ok()) return pragma.status();
    MADAM_RETURN_IF_ERROR((*pragma)->Run());
    writer_full_sync_ = full;
  }
  auto begin = writer_stmts_->Get("BEGIN IMMEDIATE");
  if (!begin.ok()) return begin.status();
  MADAM_RETURN_IF_ERROR((*begin)->Run());
  for (size_t i = 0; i < group.size(); ++i) {
    (*results)[i] = RunInSavepoint(group[i].fn);
    // SQLite rolls the whole transaction back by itself on some errors
    // (SQLITE_FULL, SQLITE_IOERR, SQLITE_NOMEM): what ran before is gone,
    // and what would run next would commit on its own. The whole group
    // fails, none of it half-committed.
    if (sqlite3_get_autocommit(writer_db_.raw())) {
      const Status& why = (*results)[i];
      return Status::Unavailable("sqlite error on '" + options_.path +
                                 "': the transaction was rolled back" +
                                 (why.ok() ? std::string() : " (" + why.message() + ")"));
    }
  }
  auto commit = writer_stmts_->Get("COMMIT");
  Status c = commit.ok() ? (*commit)->Run() : commit.status();
  if (!c.ok()) {
    spdlog::error("store: commit of {} calls failed: {}", group.size(), c.ToString());
    if (!sqlite3_get_autocommit(writer_db_.raw())) (void)writer_db_.Exec("ROLLBACK");
    return c;
  }
  return Status::Ok();
}

Status Executor::RunInSavepoint(const std::function<Status()>& fn) {
  auto sp = writer_stmts_->Get("SAVEPOINT call");
  if (!sp.ok()) return sp.status();
  MADAM_RETURN_IF_ERROR((*sp)->Run());
  Status s;
  try {
    s = fn();
  } catch (const std::exception& e) {
    s = Status::Internal(std::string("store: unexpected exception: ") + e.what());
  }
  if (sqlite3_get_autocommit(writer_db_.raw())) return s;  // rolled back by SQLite: no savepoint left
  if (!s.ok()) {
    auto rb = writer_stmts_->Get("ROLLBACK TO call");
    if (rb.ok()) (void)(*rb)->Run();
  }
  auto release = writer_stmts_->Get("RELEASE call");
  if (!release.ok()) return release.status();
  Status r = (*release)->Run();
  return s.ok() ? r : s;
}

ExecutorStats Executor::Stats() const {
  ExecutorStats s;
  s.transactions = stat_transactions_.load(std::memory_order_relaxed);
  s.calls = stat_calls_.load(std::memory_order_relaxed);
  s.failed_commits = stat_failed_commits_.load(std::memory_order_relaxed);
  s.queue_depth = stat_queue_depth_.load(std::memory_order_relaxed);
  s.queued_bulk_bytes = stat_bulk_bytes_.load(std::memory_order_relaxed);
  s.rejected_bulk_calls = stat_rejected_.load(std::memory_order_relaxed);
  s.commit_nanos = stat_commit_nanos_.load(std::memory_order_relaxed);
  return s;
}

double Executor::BulkLoad() const {
  return static_cast<double>(stat_bulk_bytes_.load(std::memory_order_relaxed)) /
         static_cast<double>(std::max<int64_t>(options_.max_queued_bulk_bytes, 1));
}

}  // namespace madam::server::sqlite
