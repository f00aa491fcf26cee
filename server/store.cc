#include "server/store.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <functional>
#include <future>
#include <mutex>
#include <random>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "server/lease_rules.h"
#include "server/sqlite.h"
#include "server/sqlite_executor.h"
#include "server/store_codecs.h"
#include "server/store_schema.h"

namespace madam::server {

namespace {

using json = nlohmann::json;
using sqlite::Db;
using sqlite::Statement;
using sqlite::StatementCache;


constexpr int kRunIndexDigits = 5;

std::string Quote(const std::string& s) { return "'" + s + "'"; }

// OK for a checkpoint name the store keeps (epoch-<N>.pt); the one refusal
// otherwise, for every call that carries one.
Status CheckCheckpointName(const std::string& name) {
  if (CheckpointNameValid(name)) return Status::Ok();
  return Status::InvalidArgument("checkpoint: " + Quote(name.substr(0, 200)) +
                                 " is not a checkpoint name of the form epoch-<N>.pt");
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

int64_t Store::LatestSchemaVersion() { return madam::server::LatestSchemaVersion(); }

// ---------------------------------------------------------------------------
// Impl: the writer thread with its connection, and the reader pool.

struct Store::Impl {
  using Reader = sqlite::Executor::Reader;

  StoreOptions options;
  Clock* clock = nullptr;
  // The writer, its lanes and the reader pool (server/sqlite_executor.h).
  std::unique_ptr<sqlite::Executor> exec;
  StatementCache* w = nullptr;  // exec's writer statements: writer thread only
  std::mt19937_64 rng{std::random_device{}() ^
                      static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count())};

  // Domain counters for Stats(); the executor keeps the transaction ones.
  std::atomic<int64_t> stat_points{0}, stat_leases_granted{0}, stat_leases_expired{0}, stat_retries{0};

  Status Write(std::function<Status()> fn, bool full_sync = true) {
    return exec->Write(std::move(fn), full_sync);
  }

  template <typename Fn>
  auto Read(Fn&& fn) -> decltype(fn(std::declval<Reader&>())) {
    return exec->Read(std::forward<Fn>(fn));
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
    const LeaseRow lease{st.ColumnText(0), st.ColumnInt(1), st.ColumnText(3), st.ColumnText(5)};
    LeaseCheck check{st.ColumnText(2), lease.worker, st.ColumnInt(4) != 0};
    st.Reset();
    MADAM_RETURN_IF_ERROR(CheckHolder(run_id, lease, epoch, holder));
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
      const RunState next = StateAfterFailedAttempt(o.cancel_requested, o.attempts, o.max_attempts);
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
  if (impl_ && impl_->exec) impl_->exec->Stop();
}

Result<std::unique_ptr<Store>> Store::Open(const StoreOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->clock = options.clock != nullptr ? options.clock : SystemClock::Default();
  sqlite::ExecutorOptions exec;
  exec.path = options.path;
  exec.read_connections = options.read_connections;
  exec.busy_timeout_ms = options.busy_timeout_ms;
  exec.max_calls_per_transaction = options.max_calls_per_transaction;
  exec.max_rows_per_transaction = options.max_rows_per_transaction;
  exec.max_bytes_per_transaction = options.max_bytes_per_transaction;
  exec.max_queued_bulk_bytes = options.max_queued_metric_bytes;
  exec.on_transaction = options.on_transaction;
  exec.fault_file = options.fault_file;
  auto opened = sqlite::Executor::Open(exec, [](Db* db) { return MigrateSchema(db); });
  if (!opened.ok()) return opened.status();
  impl->exec = std::move(opened).value();
  // The writer starts idle; its statement cache is handed out here once and
  // used only inside calls, on the writer thread.
  impl->w = &impl->exec->writer();
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
      // Its old points go in chunks, after this transaction (PurgeRerunMetrics).
      MADAM_ASSIGN_STMT(purge, w, "INSERT OR IGNORE INTO metric_purges(run_id) VALUES (?)");
      purge.Bind(1, id);
      MADAM_RETURN_IF_ERROR(purge.Run());
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
  // The runs are PENDING but not leased until their points are gone. A
  // failure here loses nothing: the reaper's next PurgeRerunMetrics finishes.
  if (auto purged = PurgeRerunMetrics(); !purged.ok()) {
    spdlog::warn("store: deleting the old metrics of rerun runs: {}", purged.status().ToString());
  }
  return count;
}

Result<int64_t> Store::PurgeRerunMetrics(int64_t chunk_rows) {
  Impl* impl = impl_.get();
  const int64_t chunk = std::max<int64_t>(chunk_rows, 1);
  int64_t total = 0;
  for (;;) {
    auto pending = impl->Read([&](Impl::Reader& r) -> Result<std::string> {
      MADAM_ASSIGN_STMT(st, r.stmts, "SELECT run_id FROM metric_purges LIMIT 1");
      MADAM_STEP(row, st);
      std::string id = row ? st.ColumnText(0) : std::string();
      st.Reset();
      return id;
    });
    if (!pending.ok()) return pending.status();
    if (pending->empty()) return total;
    // One chunk per transaction, so lease calls run between them.
    int64_t deleted = 0;
    Status s = impl->Write([&]() -> Status {
      MADAM_ASSIGN_STMT(del, *impl->w,
                        "DELETE FROM metrics WHERE (run_id, name, step) IN (SELECT run_id, name, step "
                        "FROM metrics WHERE run_id = ? LIMIT ?)");
      del.Bind(1, *pending).Bind(2, chunk);
      MADAM_RETURN_IF_ERROR(del.Run());
      deleted = impl->exec->writer_db().Changes();
      if (deleted < chunk) {
        MADAM_ASSIGN_STMT(done, *impl->w, "DELETE FROM metric_purges WHERE run_id = ?");
        done.Bind(1, *pending);
        MADAM_RETURN_IF_ERROR(done.Run());
      }
      return Status::Ok();
    }, /*full_sync=*/false);
    if (!s.ok()) return s;
    total += deleted;
  }
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
      static const std::string kAgain = std::string(kLeaseColumns) +
                                        "WHERE r.state = 'RUNNING' AND r.lease_worker = ? AND "
                                        "r.lease_request = ?";
      MADAM_ASSIGN_STMT(again, w, kAgain.c_str());
      again.Bind(1, worker_id).Bind(2, request_id);
      MADAM_STEP(found, again);
      if (found) {
        Lease l = ReadLease(again);
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
    // The worker's free devices: those it registered less those its
    // running runs hold (a run holds its `devices` parameter, 1 when unset).
    int64_t free_devices = 0;
    {
      // A worker holds at most max_leases_per_worker runs: one that asks for
      // more (a hoarder, or a bug) gets none until it finishes one.
      MADAM_ASSIGN_STMT(held, w,
                        "SELECT COUNT(*), COALESCE(SUM(COALESCE(json_extract(params_json, '$.devices'), 1)), 0) "
                        "FROM runs WHERE state = 'RUNNING' AND lease_worker = ?");
      held.Bind(1, worker_id);
      MADAM_STEP(row, held);
      const int64_t holding = row ? held.ColumnInt(0) : 0;
      const int64_t holding_devices = row ? held.ColumnInt(1) : 0;
      held.Reset();
      if (impl->options.max_leases_per_worker > 0) {
        // An explicit bound on runs replaces the device count: the worker
        // takes any run that fits in all of its devices.
        if (holding >= impl->options.max_leases_per_worker) return Status::Ok();
        free_devices = DeviceCount(registered_device);
      } else {
        free_devices = DeviceCount(registered_device) - holding_devices;
        if (free_devices <= 0) return Status::Ok();
      }
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
                        "SELECT id FROM runs WHERE sweep_id = ? AND state = 'PENDING' "
                        "AND COALESCE(json_extract(params_json, '$.devices'), 1) <= ? "
                        "AND id NOT IN (SELECT run_id FROM metric_purges) ORDER BY idx LIMIT 1");
      pick.Bind(1, sweep.id).Bind(2, free_devices);
      MADAM_STEP(row, pick);
      if (!row) continue;
      const std::string run_id = pick.ColumnText(0);
      pick.Reset();
      auto epoch = impl->NextLeaseEpoch();
      if (!epoch.ok()) return epoch.status();
      auto secret = NewLeaseSecret();
      if (!secret.ok()) return secret.status();
      // attempts is charged at the lease's first heartbeat, metric batch or
      // completion (ChargeAttempt), not here.
      MADAM_ASSIGN_STMT(grant, w,
                        "UPDATE runs SET state = 'RUNNING', lease_charged = 0, lease_epoch = ?, "
                        "lease_worker = ?, lease_expires_at = ?, started_at = ?, ended_at = 0, "
                        "lease_request = ?, lease_secret_hash = ? WHERE id = ?");
      grant.Bind(1, *epoch).Bind(2, worker_id).Bind(3, now + lease_seconds * 1000)
          .Bind(4, now).Bind(5, request_id).Bind(6, HashLeaseSecret(*secret)).Bind(7, run_id);
      MADAM_RETURN_IF_ERROR(grant.Run());
      static const std::string kGranted = std::string(kLeaseColumns) + "WHERE r.id = ?";
      MADAM_ASSIGN_STMT(granted, w, kGranted.c_str());
      granted.Bind(1, run_id);
      MADAM_STEP(found, granted);
      if (!found) return Status::Internal("run " + Quote(run_id) + " vanished while being leased");
      Lease l = ReadLease(granted);
      granted.Reset();
      l.worker_id = worker_id;
      l.lease_secret = std::move(secret).value();
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
  std::promise<Result<HeartbeatReply>> promise;
  auto done = promise.get_future();
  HeartbeatAsync(run_id, lease_epoch, lease_seconds, holder, "",
                 [&promise](Result<HeartbeatReply> reply) { promise.set_value(std::move(reply)); });
  return done.get();
}

void Store::HeartbeatAsync(std::string run_id, int64_t lease_epoch, int64_t lease_seconds, LeaseHolder holder,
                           std::string checkpoint, std::function<void(Result<HeartbeatReply>)> done) {
  if (lease_seconds <= 0) {
    done(Status::InvalidArgument("lease_seconds " + std::to_string(lease_seconds) + " must be positive"));
    return;
  }
  if (!checkpoint.empty()) {
    if (Status bad = CheckCheckpointName(checkpoint); !bad.ok()) {
      done(std::move(bad));
      return;
    }
  }
  Impl* impl = impl_.get();
  auto reply = std::make_shared<HeartbeatReply>();
  sqlite::WriteCall call;
  call.fn = [impl, reply, run_id = std::move(run_id), lease_epoch, lease_seconds, holder = std::move(holder),
             checkpoint = std::move(checkpoint)]() -> Status {
    auto check = impl->CheckLease(run_id, lease_epoch, holder);
    if (!check.ok()) return check.status();
    MADAM_RETURN_IF_ERROR(impl->ChargeAttempt(run_id));
    const int64_t now = impl->Now();
    reply->cancel_requested = check->cancel_requested;
    reply->lease_expires_at_ms = now + lease_seconds * 1000;
    MADAM_ASSIGN_STMT(st, *impl->w,
                      "UPDATE runs SET lease_expires_at = ?1, "
                      "resume_checkpoint = CASE WHEN ?2 = '' THEN resume_checkpoint ELSE ?2 END "
                      "WHERE id = ?3");
    st.Bind(1, reply->lease_expires_at_ms).Bind(2, checkpoint).Bind(3, run_id);
    MADAM_RETURN_IF_ERROR(st.Run());
    return impl->TouchWorkerRow(check->worker, now);
  };
  call.done = [reply, done = std::move(done)](Status s) {
    if (s.ok()) {
      done(*reply);
    } else {
      done(std::move(s));
    }
  };
  // A heartbeat lost to a power cut costs at most an earlier expiry (the
  // run is leased again, fenced as ever); so it commits without an fsync of
  // its own, in whatever group it joins. It stays in the urgent lane.
  call.full_sync = false;
  impl->exec->Submit(std::move(call));
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
  sqlite::WriteCall call;
  call.lane = sqlite::Lane::kBulk;
  call.rows = static_cast<int64_t>(points.size());
  // What the batch holds in memory while queued, near enough: its names and
  // the fixed fields of each point.
  call.bytes = static_cast<int64_t>(sizeof(MetricPoint) * points.size() + run_id.size());
  for (const MetricPoint& p : points) call.bytes += static_cast<int64_t>(p.name.size());
  auto shared = std::make_shared<std::pair<std::string, std::vector<MetricPoint>>>(std::move(run_id),
                                                                                    std::move(points));
  call.fn = [impl, shared, lease_epoch, holder = std::move(holder)]() -> Status {
    return impl->InsertPoints(shared->first, lease_epoch, shared->second, holder);
  };
  call.done = std::move(done);
  call.full_sync = impl->options.metrics_full_sync;
  impl->exec->Submit(std::move(call));
}

double Store::MetricQueueLoad() const { return impl_->exec->BulkLoad(); }

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
    if (!req.checkpoint.empty()) MADAM_RETURN_IF_ERROR(CheckCheckpointName(req.checkpoint));
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
    MADAM_RETURN_IF_ERROR(
        CheckHolder(req.run_id, LeaseRow{state, current, lease_worker, secret_hash}, req.lease_epoch, req.holder));
    // A completion is a sign of work too: it charges an uncharged lease.
    const int64_t attempts = attempts_before + (charged ? 0 : 1);
    RunState next = RunState::kSucceeded;
    switch (req.outcome) {
      case RunOutcome::kSucceeded: next = RunState::kSucceeded; break;
      case RunOutcome::kDiverged: next = RunState::kDiverged; break;
      case RunOutcome::kCancelled: next = RunState::kCancelled; break;
      case RunOutcome::kFailed:
        next = StateAfterFailedAttempt(cancel_requested, attempts, max_attempts);
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
  MADAM_RETURN_IF_ERROR(CheckCheckpointName(name));
  Impl* impl = impl_.get();
  return impl->Write([&]() -> Status {
    auto check = impl->CheckLease(run_id, lease_epoch, holder);
    if (!check.ok()) return check.status();
    MADAM_ASSIGN_STMT(st, *impl->w, "UPDATE runs SET resume_checkpoint = ? WHERE id = ?");
    st.Bind(1, name).Bind(2, run_id);
    return st.Run();
  });
}

Result<std::set<std::string>> Store::RunningRunIds() {
  return impl_->Read([&](Impl::Reader& r) -> Result<std::set<std::string>> {
    MADAM_ASSIGN_STMT(st, r.stmts, "SELECT id FROM runs WHERE state = 'RUNNING'");
    std::set<std::string> ids;
    for (;;) {
      MADAM_STEP(row, st);
      if (!row) break;
      ids.insert(st.ColumnText(0));
    }
    st.Reset();
    return ids;
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
    count = impl->exec->writer_db().Changes();
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
    // A rerun run whose old points are still being deleted has none yet.
    MADAM_ASSIGN_STMT(exists, r.stmts,
                      "SELECT EXISTS (SELECT 1 FROM metric_purges WHERE run_id = ?1) FROM runs "
                      "WHERE id = ?1");
    exists.Bind(1, run_id);
    MADAM_STEP(found, exists);
    const bool purging = found && exists.ColumnInt(0) != 0;
    exists.Reset();
    if (!found) return Status::NotFound("run " + Quote(run_id) + " not found");
    if (purging) return std::vector<MetricPoint>{};
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
    // A rerun run whose old points are still being deleted has none yet.
    MADAM_ASSIGN_STMT(exists, r.stmts,
                      "SELECT EXISTS (SELECT 1 FROM metric_purges WHERE run_id = ?1) FROM runs "
                      "WHERE id = ?1");
    exists.Bind(1, run_id);
    MADAM_STEP(found, exists);
    const bool purging = found && exists.ColumnInt(0) != 0;
    exists.Reset();
    if (!found) return Status::NotFound("run " + Quote(run_id) + " not found");
    if (purging) return std::vector<MetricPoint>{};
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
    if (impl->exec->writer_db().Changes() == 0) {
      return Status::NotFound("worker " + Quote(worker_id) + " is not registered");
    }
    return Status::Ok();
  });
}

Result<int64_t> Store::PruneIdleWorkers(int64_t idle_ms) {
  if (idle_ms <= 0) return Status::InvalidArgument("idle_ms " + std::to_string(idle_ms) + " must be positive");
  Impl* impl = impl_.get();
  int64_t count = 0;
  Status s = impl->Write([&]() -> Status {
    MADAM_ASSIGN_STMT(st, *impl->w,
                      "DELETE FROM workers WHERE last_seen < ? AND id NOT IN "
                      "(SELECT lease_worker FROM runs WHERE state = 'RUNNING')");
    st.Bind(1, impl->Now() - idle_ms);
    MADAM_RETURN_IF_ERROR(st.Run());
    count = impl->exec->writer_db().Changes();
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return count;
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
  const sqlite::ExecutorStats exec = impl_->exec->Stats();
  stats.transactions = exec.transactions;
  stats.calls = exec.calls;
  stats.metric_points = impl_->stat_points.load(std::memory_order_relaxed);
  stats.failed_commits = exec.failed_commits;
  stats.queue_depth = exec.queue_depth;
  stats.queued_metric_bytes = exec.queued_bulk_bytes;
  stats.refused_metric_batches = exec.rejected_bulk_calls;
  stats.commit_seconds_total = static_cast<double>(exec.commit_nanos) / 1e9;
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
