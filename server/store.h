// Store: the coordinator's durable state — sweeps, runs, leases, metrics and
// workers — in one SQLite file (ARCHITECTURE.md sections 2 and 5).
//
// Durability. The database runs in WAL mode. Every mutating call returns
// only after the transaction holding its change has committed. Transactions
// holding a state change (submission, lease grant, heartbeat, completion,
// cancel, rerun, expiry, worker registration) commit with synchronous=FULL:
// the WAL is fsynced before the call is acknowledged, so it survives kill -9
// and power loss. Transactions holding only metric batches commit with
// synchronous=NORMAL (ARCHITECTURE.md section 5 allows it): an acknowledged
// batch is in the WAL and survives kill -9 of the coordinator, and it becomes
// power-loss durable at the next FULL commit or checkpoint, whichever comes
// first. StoreOptions::metrics_full_sync = true makes metrics FULL too.
// The writer thread group-commits: everything queued while one commit runs
// (metric batches from many workers, lease grants, heartbeats) goes into the
// next transaction together, so the cost of a commit is shared. Lease calls
// go first into each group, a group is bounded by calls, rows and bytes, and
// metric batches past a byte budget are refused (server/sqlite_executor.h).
// Heartbeats commit with synchronous=NORMAL too: one lost to a power cut
// only brings its lease's expiry forward.
//
// Thread-safety and threads. Store is thread-safe; any thread may call any
// method. It owns:
//   - one writer thread and the only read-write connection. Mutations are
//     queued as closures and run on that thread in submission order within
//     their lane (lease calls, then metric batches), each in
//     its own SAVEPOINT inside a group transaction (a failing call rolls back
//     only its own changes). The calling thread waits on a future for the
//     commit; it never holds a SQLite lock itself.
//   - a small pool of read connections (query_only). Reads run on the
//     calling thread against the last committed snapshot (WAL readers do not
//     block the writer, nor it them). Because writes are acknowledged after
//     commit, a read issued after a write returns sees it.
// The Clock passed in must outlive the Store.
//
// Leases (section 5). AcquireRun grants a run under a lease stamped with a
// fencing token, lease_epoch, drawn from a counter stored in the database, so
// it increases across restarts. Heartbeat, AppendMetrics and CompleteRun must
// carry the run's current epoch; anything else is FAILED_PRECONDITION. A lease
// whose holder heartbeats after its expiry time but before anyone reclaimed
// it (ExpireLeases, or the reclaim AcquireRun does first) is still honoured:
// the epoch, not the clock, is the fence.
//
// A lease is bound to its holder (section 5): the grant carries a lease
// secret, 128 bits from the kernel's CSPRNG (getrandom), returned once and
// stored only as its SHA-256. Every later call for the run (Heartbeat,
// AppendMetrics, SetCheckpoint, CompleteRun) presents a LeaseHolder, the
// worker id and that secret; a wrong worker or secret is PERMISSION_DENIED,
// and no message ever names the run's current epoch or secret. A worker holds
// at most StoreOptions::max_leases_per_worker RUNNING leases. An attempt is
// charged (attempts + 1) only once the lease's first heartbeat, metric batch
// or completion arrives: a run leased and abandoned before any of them goes
// back to PENDING without using up an attempt.
//
// Checkpoints are stored by name only ("epoch-<N>.pt", CheckpointNameValid):
// the worker resolves the name under its own run directory.
//
// Errors: unknown ids -> NOT_FOUND; stale epoch or wrong state ->
// FAILED_PRECONDITION; bad arguments -> INVALID_ARGUMENT; an idempotency key
// reused with a different spec -> ALREADY_EXISTS; SQLite I/O or busy ->
// UNAVAILABLE; a database from a newer build -> FAILED_PRECONDITION. Every
// message names the id or field and the value.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/run_config.h"
#include "common/status.h"
#include "server/clock.h"

namespace madam::server {

// Run states as stored (upper case) and as shown (RunStateName: lower case).
enum class RunState { kPending, kRunning, kSucceeded, kDiverged, kFailed, kCancelled };
const char* RunStateName(RunState state);                 // "pending", ...
std::optional<RunState> ParseRunState(std::string_view name);  // accepts either case
bool IsTerminal(RunState state);

// How a worker ends a run.
enum class RunOutcome { kSucceeded, kDiverged, kFailed, kCancelled };
const char* RunOutcomeName(RunOutcome outcome);  // "succeeded", ...

// Sweep states: "running" until every run is terminal, then "finished";
// "cancelled" after CancelSweep (until a rerun makes it "running" again).
inline constexpr const char* kSweepRunning = "running";
inline constexpr const char* kSweepFinished = "finished";
inline constexpr const char* kSweepCancelled = "cancelled";

struct StoreOptions {
  std::string path;                // the SQLite file; created if absent
  Clock* clock = nullptr;          // nullptr: SystemClock::Default()
  int read_connections = 4;        // size of the reader pool
  int busy_timeout_ms = 5000;
  // Bounds of one group transaction (server/sqlite_executor.h): calls, rows
  // written and bytes carried. Lease calls go first into every group.
  int max_calls_per_transaction = 4096;
  int64_t max_rows_per_transaction = 50000;
  int64_t max_bytes_per_transaction = int64_t{16} << 20;
  // Bytes of metric batches that may wait for the writer; past it,
  // AppendMetricsAsync answers RESOURCE_EXHAUSTED (section 9).
  int64_t max_queued_metric_bytes = int64_t{64} << 20;
  // RUNNING leases one worker may hold at once; 0: as many as its devices
  // allow, each run holding its `devices` of those the worker registered
  // (its device string is a comma-separated list, "cuda:0,cuda:1"). With a
  // bound here, devices are not counted: any run that fits in all of the
  // worker's devices may be granted, up to this many at once.
  int64_t max_leases_per_worker = 0;
  // Distinct metric names one run may have (section 9); a batch that would
  // pass it is INVALID_ARGUMENT. The worker emits ~20 run metrics plus 4 per
  // weight tensor for up to 56 tensors (224): 512 leaves room for both.
  int64_t max_metric_names_per_run = 512;
  // false: transactions holding only metric batches commit with
  // synchronous=NORMAL (kill -9 safe, power-loss safe at the next FULL commit
  // or checkpoint). true: every commit is FULL.
  bool metrics_full_sync = false;
  // Optional: called on the writer thread after every group transaction
  // (committed or not) with its BEGIN..COMMIT time in seconds, for the
  // write-batch latency histogram. Keep it short and non-blocking; it must
  // not call back into the Store.
  std::function<void(double seconds)> on_transaction;
  // Tests only (fault injection): while this file exists, every group
  // transaction fails as a read-only database does (UNAVAILABLE, counted in
  // failed_commits). Empty: off.
  std::string fault_file;
};

// One grid cell as the submitter expanded it, in order (index = position).
struct NewRun {
  RunParams params;
  std::map<std::string, std::string> labels;
};

struct NewSweep {
  std::string name;
  std::string spec_text;        // the sweep file as submitted
  std::string spec_json;        // optional: the parsed spec, for display
  std::string metric_name;      // e.g. "test/error"
  std::string metric_goal;      // "minimize" | "maximize"
  std::string device = "any";   // "any" | "cpu" | "cuda"
  std::string idempotency_key;  // empty: none
  int64_t max_concurrent = 0;   // 0: unlimited
  int64_t max_attempts = 3;     // >= 1
  std::vector<NewRun> runs;
  // A promoted (stage-2) sweep: the sweep it was built from and why each of
  // its cells is what it is (ARCHITECTURE.md section 4, "Two stages").
  std::string parent_sweep_id;  // empty: none
  std::vector<std::string> promotion_reasons;
};

struct RunCounts {
  int64_t pending = 0, running = 0, succeeded = 0, diverged = 0, failed = 0, cancelled = 0;
  int64_t total() const { return pending + running + succeeded + diverged + failed + cancelled; }
};

struct SweepRow {
  std::string id;  // "sw-" + 8 hex digits
  std::string name;
  std::string spec_text;
  std::string spec_json;
  std::string metric_name;
  std::string metric_goal;
  std::string device;
  std::string idempotency_key;
  int64_t max_concurrent = 0;
  int64_t max_attempts = 3;
  std::string state;  // kSweepRunning | kSweepFinished | kSweepCancelled
  int64_t created_at_ms = 0;
  RunCounts counts;
  std::string parent_sweep_id;                 // promoted from; empty: none
  std::vector<std::string> promotion_reasons;  // one per promoted cell
};

struct RunRow {
  std::string id;  // "<sweep id>-<index, zero-padded to 5 digits>"
  std::string sweep_id;
  int64_t index = 0;
  RunParams params;
  std::map<std::string, std::string> labels;
  RunState state = RunState::kPending;
  int64_t attempts = 0;       // lease grants since submit (or the last rerun)
  int64_t max_attempts = 3;   // the sweep's
  int64_t lease_epoch = 0;    // 0: never leased
  std::string lease_worker;   // worker id of the current/last lease holder
  int64_t lease_expires_at_ms = 0;
  bool cancel_requested = false;
  std::string last_error;
  std::map<std::string, double> final;  // NaN stands for a non-finite value
  std::string resume_checkpoint;        // last checkpoint a worker reported
  int64_t started_at_ms = 0;            // last grant; 0: never
  int64_t ended_at_ms = 0;              // 0: not terminal
};

// Who presents a lease: the worker it was granted to and the grant's secret.
struct LeaseHolder {
  std::string worker_id;
  std::string secret;
};

// True for a checkpoint name the coordinator stores: "epoch-<N>.pt", N one to
// twelve decimal digits; never a path.
bool CheckpointNameValid(std::string_view name);

struct Lease {
  std::string run_id;
  std::string sweep_id;
  int64_t index = 0;
  RunParams params;
  std::map<std::string, std::string> labels;
  std::string metric_name;  // the sweep's
  int64_t lease_epoch = 0;
  int64_t lease_expires_at_ms = 0;
  int64_t attempt = 0;            // 1 for the first grant
  std::string resume_checkpoint;  // a checkpoint name; empty: start from step 0
  std::string worker_id;          // the holder
  std::string lease_secret;       // 32 hex digits; only this reply ever carries it
  LeaseHolder holder() const { return {worker_id, lease_secret}; }
};

struct HeartbeatReply {
  bool cancel_requested = false;
  int64_t lease_expires_at_ms = 0;
};

struct MetricPoint {
  std::string name;
  int64_t step = 0;
  double value = 0;  // NaN is stored as NULL and read back as NaN
  double time = 0;   // seconds since the Unix epoch, as the worker reported
};

struct CompleteRequest {
  std::string run_id;
  int64_t lease_epoch = 0;
  RunOutcome outcome = RunOutcome::kSucceeded;
  std::map<std::string, double> final;
  std::string error;       // why, for kFailed (kept as last_error)
  std::string checkpoint;  // optional: last checkpoint name (epoch-<N>.pt)
  LeaseHolder holder;      // must match the grant
};

struct WorkerRow {
  std::string id;  // "wk-" + 8 hex digits
  std::string name;
  std::string device;  // as the worker reported it: "cpu", "cuda:0", ...
  std::string info;    // free text (host, version)
  int64_t registered_at_ms = 0;
  int64_t last_seen_ms = 0;
  std::string current_run;  // a RUNNING run it holds the lease of, or empty
};

struct StoreStats {
  int64_t transactions = 0;       // committed group transactions
  int64_t calls = 0;              // mutating calls run (accepted or refused)
  int64_t metric_points = 0;      // points written by AppendMetrics*
  int64_t failed_commits = 0;     // group transactions that failed to commit
  int64_t queue_depth = 0;        // calls waiting for the writer now
  int64_t queued_metric_bytes = 0;     // bytes of metric batches waiting now
  int64_t refused_metric_batches = 0;  // batches refused: the queue was over its budget
  double commit_seconds_total = 0;  // time spent in BEGIN..COMMIT
  int64_t leases_granted = 0;     // new leases granted by AcquireRun (not re-sent ones)
  int64_t leases_expired = 0;     // leases reclaimed after their expiry
  int64_t retries = 0;            // runs sent back to PENDING for another attempt
};

class Store {
 public:
  // Opens (creating if needed) and migrates the database, then starts the
  // writer thread. A database whose schema is newer than this build knows is
  // refused with FAILED_PRECONDITION, and so is a database another Store
  // (in this or another process) has open: Open takes an exclusive flock on
  // "<path>.lock" for the Store's lifetime.
  static Result<std::unique_ptr<Store>> Open(const StoreOptions& options);
  // Drains the queue, stops the writer and closes every connection.
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // The schema version this build writes (PRAGMA user_version).
  static int64_t LatestSchemaVersion();

  // ---- Sweeps ----
  // Stores a sweep and its runs (all PENDING) in one transaction. With a
  // non-empty idempotency key already used by a sweep with the same spec_text,
  // returns that sweep instead of creating another; with a different spec_text,
  // ALREADY_EXISTS.
  Result<SweepRow> CreateSweep(const NewSweep& sweep);
  Result<SweepRow> GetSweep(const std::string& sweep_id);
  // Oldest first.
  Result<std::vector<SweepRow>> ListSweeps();
  // The sweep created with this idempotency key, or nullopt.
  Result<std::optional<SweepRow>> FindSweepByIdempotencyKey(const std::string& key);
  // Appends runs (PENDING, indexes after the last) to an existing sweep,
  // skipping every run whose parameters equal an existing run's, so a retry
  // adds nothing (`sweep extend`, ARCHITECTURE.md section 4). If any run was
  // added, the sweep is "running" again. A cancelled sweep is
  // FAILED_PRECONDITION unless `force`. Returns how many runs were added.
  Result<int64_t> AppendRuns(const std::string& sweep_id, const std::vector<NewRun>& runs, bool force);
  // PENDING runs -> CANCELLED; RUNNING runs get cancel_requested (their worker
  // sees it on its next heartbeat and completes with kCancelled); no more
  // grants. Cancelling a finished or cancelled sweep is a no-op (OK).
  Status CancelSweep(const std::string& sweep_id);
  // Runs in the given states (any of failed, diverged, cancelled; others are
  // INVALID_ARGUMENT) go back to PENDING with attempts 0, final, last_error,
  // checkpoint and metrics cleared. If any did, the sweep is "running" again.
  // Returns how many runs were reset.
  Result<int64_t> RerunSweep(const std::string& sweep_id, const std::vector<RunState>& states);
  // Deletes the old metric points of rerun runs, `chunk_rows` per
  // transaction so no call waits behind one large DELETE (section 9); such a
  // run is leased only once its points are gone. RerunSweep calls it; the
  // reaper calls it too, to finish what a restart interrupted. Returns the
  // points deleted.
  Result<int64_t> PurgeRerunMetrics(int64_t chunk_rows = 5000);

  // ---- Runs ----
  Result<RunRow> GetRun(const std::string& run_id);
  // By index. NOT_FOUND for an unknown sweep.
  Result<std::vector<RunRow>> ListRuns(const std::string& sweep_id,
                                       std::optional<RunState> state = std::nullopt);

  // ---- Leases ----
  // First reclaims overdue leases (as ExpireLeases), then grants the
  // lowest-index PENDING run of the oldest "running" sweep whose device
  // matches (sweep "any" matches every worker; "cpu"/"cuda" match the device
  // kind, the part of `device` before ':') and whose RUNNING count is below
  // max_concurrent. nullopt when nothing is grantable. The worker must be
  // registered (NOT_FOUND otherwise); its last_seen is updated.
  // `request_id` (optional, unique per worker request) makes a retry safe: if
  // this worker already holds a RUNNING lease granted for the same request id
  // (the first response was lost), that same lease is returned again, with a
  // fresh secret (only the hash of the lost one was kept).
  // A worker already holding max_leases_per_worker RUNNING leases gets none.
  // Devices: a run holds its `devices` parameter (1 when unset) of its
  // worker's registered devices (common/devices.h); only a run that fits in
  // the worker's free devices is granted, so a run needing more devices than
  // the worker has waits, PENDING, for one that has them.
  Result<std::optional<Lease>> AcquireRun(const std::string& worker_id, const std::string& device,
                                          int64_t lease_seconds, const std::string& request_id = "");
  // Extends the lease to now + lease_seconds. The run must be RUNNING under
  // this epoch.
  Result<HeartbeatReply> Heartbeat(const std::string& run_id, int64_t lease_epoch,
                                   int64_t lease_seconds, const LeaseHolder& holder);
  // Heartbeat, answered through `done` on the writer thread (or at once on
  // the calling thread for bad arguments), also recording `checkpoint` (an
  // epoch-<N>.pt name; empty: none) as SetCheckpoint would. For callback
  // gRPC handlers: no thread waits on SQLite.
  void HeartbeatAsync(std::string run_id, int64_t lease_epoch, int64_t lease_seconds, LeaseHolder holder,
                      std::string checkpoint, std::function<void(Result<HeartbeatReply>)> done);
  // Writes points keyed (run, name, step); a point for an existing key
  // replaces it, so a resumed attempt rewrites its steps. The run must be
  // RUNNING under this epoch. All or nothing.
  Status AppendMetrics(const std::string& run_id, int64_t lease_epoch,
                       const std::vector<MetricPoint>& points, const LeaseHolder& holder);
  // The same, without waiting: `done` receives the status once the batch is
  // durable (or refused). It runs on the writer thread — keep it short, and
  // never call a Store method that waits from it (that would deadlock) — or
  // on the calling thread when the batch is invalid, when the metric queue
  // is over max_queued_metric_bytes (RESOURCE_EXHAUSTED: nothing stored) or
  // the store is closing. Lease calls never wait behind these batches.
  // For asynchronous (callback) gRPC handlers.
  void AppendMetricsAsync(std::string run_id, int64_t lease_epoch, std::vector<MetricPoint> points,
                          LeaseHolder holder, std::function<void(Status)> done);
  // How full the metric queue is now, 0..1 of max_queued_metric_bytes: what
  // the coordinator's upload advice to workers follows.
  double MetricQueueLoad() const;
  // Ends the attempt. succeeded/diverged/cancelled are terminal. failed goes
  // back to PENDING (a retry) while attempts < max_attempts, else FAILED; the
  // error text is kept as last_error either way. A run whose cancel was
  // requested never retries: failed -> CANCELLED.
  // A duplicate (the same epoch and outcome as the completion already
  // recorded) is OK and changes nothing; any other call with a stale epoch or
  // on a run that is not RUNNING is FAILED_PRECONDITION.
  Status CompleteRun(const CompleteRequest& request);
  // Records the latest checkpoint name of a RUNNING run (fenced like
  // Heartbeat); the next grant hands it out as resume_checkpoint. A name
  // that is not CheckpointNameValid is INVALID_ARGUMENT.
  Status SetCheckpoint(const std::string& run_id, int64_t lease_epoch, const std::string& name,
                       const LeaseHolder& holder);
  // RUNNING runs whose lease ran out before now go back to PENDING (the grant
  // already counted the attempt), or to FAILED with last_error "lease expired
  // ..." once attempts >= max_attempts (CANCELLED if cancel was requested).
  // Returns how many leases were reclaimed. The server calls this
  // periodically.
  Result<int64_t> ExpireLeases();
  // Ids of every RUNNING run, in one read (for the reaper's live view).
  Result<std::set<std::string>> RunningRunIds();

  // ---- Metrics ----
  // Ordered by name, then step. NOT_FOUND for an unknown run.
  // With after_step >= 0, only points with step > after_step (incremental
  // polling for live curves).
  // With limit >= 0, at most that many points (the first in that order).
  Result<std::vector<MetricPoint>> GetMetrics(const std::string& run_id,
                                              const std::optional<std::string>& name = std::nullopt,
                                              int64_t after_step = -1, int64_t limit = -1);

  // The last point (highest step) of each metric of the run, by name: what
  // progress bars and live tables show. NOT_FOUND for an unknown run.
  Result<std::vector<MetricPoint>> GetLatestMetrics(const std::string& run_id);

  // ---- Workers ----
  Result<WorkerRow> RegisterWorker(const std::string& name, const std::string& device,
                                   const std::string& info = "");
  Status TouchWorker(const std::string& worker_id);
  Result<WorkerRow> GetWorker(const std::string& worker_id);
  // Forgets workers not seen for `idle_ms` that hold no RUNNING lease
  // (section 9: the table stays bounded as workers come and go). One that
  // returns is NOT_FOUND and registers again. Returns how many went.
  Result<int64_t> PruneIdleWorkers(int64_t idle_ms);
  Result<std::vector<WorkerRow>> ListWorkers();

  // Restart grace (section 5): every RUNNING lease is extended to at least
  // now + lease_seconds, so workers that lost the coordinator while it was
  // down keep their runs when they reach it again. Returns how many.
  Result<int64_t> ExtendRunningLeases(int64_t lease_seconds);

  // ---- Maintenance ----
  // A write that changes nothing, committed like a state change: OK when the
  // database takes writes now (for /readyz).
  Status ProbeWrite();
  // PRAGMA integrity_check; OK when it reports "ok", DATA_LOSS otherwise.
  Status IntegrityCheck();
  // The lease epoch counter's current value (the last epoch granted).
  Result<int64_t> CurrentLeaseEpoch();
  // Writer counters since Open, for the Prometheus registry. Lock-free.
  StoreStats Stats() const;

  struct Impl;

 private:
  explicit Store(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace madam::server
