#include "server/store.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <future>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "server/clock.h"

namespace madam::server {
namespace {

constexpr int64_t kLease = 30;  // seconds

NewSweep MakeSweep(int runs, const std::string& name = "grid") {
  NewSweep s;
  s.name = name;
  s.spec_text = "name: " + name + "\n";
  s.metric_name = "test/error";
  s.metric_goal = "minimize";
  for (int i = 0; i < runs; ++i) {
    NewRun run;
    run.params["task"] = ParamValue::String("synthetic-mlp");
    run.params["optimizer"] = ParamValue::String("madam");
    run.params["lr"] = ParamValue::Number(0.01 * (i + 1));
    run.params["seed"] = ParamValue::Number(i);
    run.labels["cell"] = std::to_string(i);
    s.runs.push_back(run);
  }
  return s;
}

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "madam-store-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/madam.db";
    Reopen();
  }

  void TearDown() override {
    if (store_) {
      Status s = store_->IntegrityCheck();
      EXPECT_TRUE(s.ok()) << s.ToString();
    }
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  // Simulates a coordinator restart: the old Store is destroyed first.
  void Reopen() {
    store_.reset();
    StoreOptions options;
    options.path = path_;
    options.clock = &clock_;
    // Most tests lease several runs to one worker; the default limit (one
    // per device) has its own test.
    options.max_leases_per_worker = 64;
    auto store = Store::Open(options);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(store).value();
  }

  // Reopens with StoreOptions' own max_leases_per_worker (0: the workers'
  // devices bound their leases), for the tests of that bound.
  void ReopenWithDefaultLeaseLimit() {
    store_.reset();
    StoreOptions options;
    options.path = path_;
    options.clock = &clock_;
    auto opened = Store::Open(options);
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    store_ = std::move(opened).value();
  }

  std::string Worker(const std::string& name = "w", const std::string& device = "cpu") {
    auto w = store_->RegisterWorker(name, device);
    EXPECT_TRUE(w.ok()) << w.status().ToString();
    return w.ok() ? w->id : "";
  }

  SweepRow Create(const NewSweep& s) {
    auto sweep = store_->CreateSweep(s);
    EXPECT_TRUE(sweep.ok()) << sweep.status().ToString();
    return sweep.ok() ? *sweep : SweepRow{};
  }

  // A grant whose holder started work: its first heartbeat charges the
  // attempt (ARCHITECTURE.md section 5). Tests of uncharged grants call
  // store_->AcquireRun directly.
  Lease Acquire(const std::string& worker, const std::string& device = "cpu") {
    auto lease = store_->AcquireRun(worker, device, kLease);
    EXPECT_TRUE(lease.ok()) << lease.status().ToString();
    EXPECT_TRUE(lease.ok() && lease->has_value()) << "no run granted";
    if (!(lease.ok() && lease->has_value())) return Lease{};
    const Lease& l = **lease;
    auto hb = store_->Heartbeat(l.run_id, l.lease_epoch, kLease, l.holder());
    EXPECT_TRUE(hb.ok()) << hb.status().ToString();
    return l;
  }

  bool NothingToAcquire(const std::string& worker, const std::string& device = "cpu") {
    auto lease = store_->AcquireRun(worker, device, kLease);
    EXPECT_TRUE(lease.ok()) << lease.status().ToString();
    return lease.ok() && !lease->has_value();
  }

  Status Complete(const Lease& l, RunOutcome outcome, const std::string& error = "") {
    CompleteRequest req;
    req.run_id = l.run_id;
    req.lease_epoch = l.lease_epoch;
    req.outcome = outcome;
    req.error = error;
    req.holder = l.holder();
    if (outcome == RunOutcome::kSucceeded) req.final["test/error"] = 12.5;
    return store_->CompleteRun(req);
  }

  RunRow Run(const std::string& id) {
    auto run = store_->GetRun(id);
    EXPECT_TRUE(run.ok()) << run.status().ToString();
    return run.ok() ? *run : RunRow{};
  }

  std::string dir_, path_;
  FakeClock clock_;
  std::unique_ptr<Store> store_;
};

// ---- Schema and migrations -------------------------------------------------

int64_t UserVersion(const std::string& path) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, nullptr);
  sqlite3_step(st);
  int64_t v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return v;
}

void ExecRaw(const std::string& path, const char* sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  char* err = nullptr;
  ASSERT_EQ(sqlite3_exec(db, sql, nullptr, nullptr, &err), SQLITE_OK) << (err ? err : "");
  sqlite3_close(db);
}

TEST_F(StoreTest, FreshDatabaseIsMigratedToLatestVersion) {
  EXPECT_EQ(UserVersion(path_), Store::LatestSchemaVersion());
  auto sweeps = store_->ListSweeps();
  ASSERT_TRUE(sweeps.ok());
  EXPECT_TRUE(sweeps->empty());
  EXPECT_EQ(*store_->CurrentLeaseEpoch(), 0);
}

TEST_F(StoreTest, ExistingDatabaseAtLatestVersionOpensUnchanged) {
  SweepRow sweep = Create(MakeSweep(3));
  Reopen();
  EXPECT_EQ(UserVersion(path_), Store::LatestSchemaVersion());
  auto again = store_->GetSweep(sweep.id);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->counts.pending, 3);
}

TEST_F(StoreTest, UnversionedDatabaseIsMigratedKeepingItsTables) {
  store_.reset();
  std::filesystem::remove(path_);
  std::filesystem::remove(path_ + "-wal");
  std::filesystem::remove(path_ + "-shm");
  ExecRaw(path_, "CREATE TABLE notes(x TEXT); INSERT INTO notes VALUES ('keep me');");
  Reopen();
  EXPECT_EQ(UserVersion(path_), Store::LatestSchemaVersion());
  store_.reset();
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db, "SELECT x FROM notes", -1, &st, nullptr);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)), "keep me");
  sqlite3_finalize(st);
  sqlite3_close(db);
  Reopen();
}

TEST_F(StoreTest, DatabaseFromNewerBuildIsRefused) {
  store_.reset();
  ExecRaw(path_, "PRAGMA user_version = 99");
  StoreOptions options;
  options.path = path_;
  options.clock = &clock_;
  auto store = Store::Open(options);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(store.status().message().find("99"), std::string::npos) << store.status().message();
  EXPECT_NE(store.status().message().find(path_), std::string::npos) << store.status().message();
  ExecRaw(path_, ("PRAGMA user_version = " + std::to_string(Store::LatestSchemaVersion())).c_str());
  Reopen();
}

TEST_F(StoreTest, VersionOneDatabaseGainsSweepLineageAndKeepsItsSweeps) {
  SweepRow old = Create(MakeSweep(2, "before-promote"));
  store_.reset();
  // What a build before promoted sweeps and bound leases left: schema 1,
  // no lineage table, no lease-secret columns.
  ExecRaw(path_,
          "DROP TABLE sweep_lineage; ALTER TABLE runs DROP COLUMN lease_secret_hash;"
          " ALTER TABLE runs DROP COLUMN lease_charged; PRAGMA user_version = 1;");
  Reopen();
  EXPECT_EQ(UserVersion(path_), Store::LatestSchemaVersion());
  auto again = store_->GetSweep(old.id);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->counts.pending, 2);
  EXPECT_EQ(again->parent_sweep_id, "");
  NewSweep child = MakeSweep(1, "after-promote");
  child.parent_sweep_id = old.id;
  child.promotion_reasons = {"madam lr 1e-2: fixed"};
  SweepRow made = Create(child);
  EXPECT_EQ(made.parent_sweep_id, old.id);
}

TEST_F(StoreTest, PromotedSweepKeepsItsParentAndReasonsAcrossRestarts) {
  SweepRow parent = Create(MakeSweep(2, "fig1"));
  NewSweep child = MakeSweep(3, "table1");
  child.parent_sweep_id = parent.id;
  child.promotion_reasons = {"sgd lr 1e-1: best mean test/error 9.5 over 1 seed of 9 lrs 1e-4..1",
                             "madam lr 1e-2: fixed at the paper's 0.01, never tuned"};
  child.idempotency_key = "promote|" + parent.id + "|seeds=0,1,2|name=table1";
  SweepRow made = Create(child);
  Reopen();
  auto got = store_->GetSweep(made.id);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->parent_sweep_id, parent.id);
  EXPECT_EQ(got->promotion_reasons, child.promotion_reasons);
  auto list = store_->ListSweeps();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].parent_sweep_id, "");
  EXPECT_EQ((*list)[1].parent_sweep_id, parent.id);
  EXPECT_EQ((*list)[1].promotion_reasons, child.promotion_reasons);
  auto found = store_->FindSweepByIdempotencyKey(child.idempotency_key);
  ASSERT_TRUE(found.ok());
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ((*found)->id, made.id);
  auto none = store_->FindSweepByIdempotencyKey("no such key");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
}

TEST_F(StoreTest, AppendRunsAddsOnlyNewRunsAndRestartsAFinishedSweep) {
  SweepRow sweep = Create(MakeSweep(2));
  const std::string w = Worker();
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(Complete(Acquire(w), RunOutcome::kSucceeded).ok());
  ASSERT_EQ(store_->GetSweep(sweep.id)->state, kSweepFinished);
  // The same two cells again plus one new one: only the new one is added.
  NewSweep more = MakeSweep(3);
  auto added = store_->AppendRuns(sweep.id, more.runs, /*force=*/false);
  ASSERT_TRUE(added.ok()) << added.status().ToString();
  EXPECT_EQ(*added, 1);
  auto after = store_->GetSweep(sweep.id);
  EXPECT_EQ(after->state, kSweepRunning);
  EXPECT_EQ(after->counts.pending, 1);
  EXPECT_EQ(after->counts.succeeded, 2);
  auto runs = store_->ListRuns(sweep.id);
  ASSERT_EQ(runs->size(), 3u);
  EXPECT_EQ((*runs)[2].index, 2);
  EXPECT_EQ((*runs)[2].id, sweep.id + "-00002");
  EXPECT_EQ((*runs)[2].params.at("lr").number, 0.03);
  // A retry adds nothing.
  auto again = store_->AppendRuns(sweep.id, more.runs, false);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, 0);
  EXPECT_EQ(store_->ListRuns(sweep.id)->size(), 3u);
}

TEST_F(StoreTest, AppendRunsToACancelledSweepNeedsForce) {
  SweepRow sweep = Create(MakeSweep(1));
  ASSERT_TRUE(store_->CancelSweep(sweep.id).ok());
  NewSweep more = MakeSweep(2);
  auto refused = store_->AppendRuns(sweep.id, more.runs, false);
  EXPECT_EQ(refused.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(refused.status().message().find("--force"), std::string::npos) << refused.status().message();
  auto forced = store_->AppendRuns(sweep.id, more.runs, true);
  ASSERT_TRUE(forced.ok());
  EXPECT_EQ(*forced, 1);
  auto after = store_->GetSweep(sweep.id);
  EXPECT_EQ(after->state, kSweepRunning);
  EXPECT_EQ(after->counts.cancelled, 1);
  EXPECT_EQ(after->counts.pending, 1);
  EXPECT_EQ(store_->AppendRuns("sw-00000000", more.runs, false).status().code(), StatusCode::kNotFound);
}

TEST_F(StoreTest, DatabaseUsesWalJournal) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, nullptr);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)), "wal");
  sqlite3_finalize(st);
  sqlite3_close(db);
}

// ---- Sweeps ----------------------------------------------------------------

TEST_F(StoreTest, CreateSweepStoresRunsInOrderAsPending) {
  SweepRow sweep = Create(MakeSweep(12));
  EXPECT_EQ(sweep.id.rfind("sw-", 0), 0u) << sweep.id;
  EXPECT_EQ(sweep.id.size(), 11u);
  EXPECT_EQ(sweep.state, kSweepRunning);
  EXPECT_EQ(sweep.counts.pending, 12);
  EXPECT_EQ(sweep.counts.total(), 12);
  EXPECT_EQ(sweep.metric_name, "test/error");
  EXPECT_EQ(sweep.device, "any");
  EXPECT_EQ(sweep.max_attempts, 3);
  auto runs = store_->ListRuns(sweep.id);
  ASSERT_TRUE(runs.ok());
  ASSERT_EQ(runs->size(), 12u);
  for (int i = 0; i < 12; ++i) {
    const RunRow& r = (*runs)[i];
    EXPECT_EQ(r.index, i);
    EXPECT_EQ(r.id, sweep.id + (i < 10 ? "-0000" : "-000") + std::to_string(i));
    EXPECT_EQ(r.state, RunState::kPending);
    EXPECT_EQ(r.attempts, 0);
    ASSERT_TRUE(r.params.at("lr").is_number());
    EXPECT_DOUBLE_EQ(r.params.at("lr").number, 0.01 * (i + 1));
    EXPECT_EQ(r.params.at("seed"), ParamValue::Number(i));
    EXPECT_EQ(r.params.at("optimizer"), ParamValue::String("madam"));
    EXPECT_EQ(r.labels.at("cell"), std::to_string(i));
  }
}

TEST_F(StoreTest, TenThousandRunSweepIsStored) {
  SweepRow sweep = Create(MakeSweep(10000));
  EXPECT_EQ(sweep.counts.pending, 10000);
  auto last = store_->GetRun(sweep.id + "-09999");
  ASSERT_TRUE(last.ok()) << last.status().ToString();
  EXPECT_EQ(last->index, 9999);
}

TEST_F(StoreTest, SameIdempotencyKeyReturnsTheExistingSweep) {
  NewSweep s = MakeSweep(4);
  s.idempotency_key = "submit-123";
  SweepRow first = Create(s);
  SweepRow second = Create(s);
  EXPECT_EQ(first.id, second.id);
  auto all = store_->ListSweeps();
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 1u);
  EXPECT_EQ(all->front().counts.total(), 4);
  EXPECT_EQ(all->front().idempotency_key, "submit-123");

  s.spec_text = "name: something else\n";
  auto conflict = store_->CreateSweep(s);
  ASSERT_FALSE(conflict.ok());
  EXPECT_EQ(conflict.status().code(), StatusCode::kAlreadyExists);
  EXPECT_NE(conflict.status().message().find("submit-123"), std::string::npos);

  NewSweep other = MakeSweep(2);  // no key: always a new sweep
  Create(other);
  Create(other);
  EXPECT_EQ(store_->ListSweeps()->size(), 3u);
}

TEST_F(StoreTest, CreateSweepRejectsBadArguments) {
  NewSweep s = MakeSweep(0);
  EXPECT_EQ(store_->CreateSweep(s).status().code(), StatusCode::kInvalidArgument);
  s = MakeSweep(1);
  s.max_attempts = 0;
  auto r = store_->CreateSweep(s);
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("max_attempts 0"), std::string::npos);
  s = MakeSweep(1);
  s.device = "tpu";
  r = store_->CreateSweep(s);
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("'tpu'"), std::string::npos);
}

TEST_F(StoreTest, UnknownIdsAreNotFound) {
  std::string w = Worker();
  EXPECT_EQ(store_->GetSweep("sw-nope").status().code(), StatusCode::kNotFound);
  EXPECT_NE(store_->GetSweep("sw-nope").status().message().find("sw-nope"), std::string::npos);
  EXPECT_EQ(store_->ListRuns("sw-nope").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store_->GetRun("r-nope").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store_->CancelSweep("sw-nope").code(), StatusCode::kNotFound);
  EXPECT_EQ(store_->RerunSweep("sw-nope", {RunState::kFailed}).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store_->Heartbeat("r-nope", 1, kLease, {}).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store_->AppendMetrics("r-nope", 1, {{"loss", 0, 1.0, 0}}, {}).code(), StatusCode::kNotFound);
  CompleteRequest req;
  req.run_id = "r-nope";
  EXPECT_EQ(store_->CompleteRun(req).code(), StatusCode::kNotFound);
  EXPECT_EQ(store_->GetMetrics("r-nope").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store_->TouchWorker("wk-nope").code(), StatusCode::kNotFound);
  auto lease = store_->AcquireRun("wk-nope", "cpu", kLease);
  EXPECT_EQ(lease.status().code(), StatusCode::kNotFound);
  EXPECT_NE(lease.status().message().find("wk-nope"), std::string::npos);
}

// ---- Leases ----------------------------------------------------------------

TEST_F(StoreTest, AcquireGrantsLowestPendingIndexOfOldestSweep) {
  std::string w = Worker();
  SweepRow a = Create(MakeSweep(2, "a"));
  SweepRow b = Create(MakeSweep(2, "b"));
  Lease l1 = Acquire(w);
  EXPECT_EQ(l1.run_id, a.id + "-00000");
  EXPECT_EQ(l1.sweep_id, a.id);
  EXPECT_EQ(l1.index, 0);
  EXPECT_EQ(l1.attempt, 1);
  EXPECT_EQ(l1.lease_epoch, 1);
  EXPECT_EQ(l1.metric_name, "test/error");
  EXPECT_EQ(l1.lease_expires_at_ms, clock_.NowMillis() + kLease * 1000);
  EXPECT_DOUBLE_EQ(l1.params.at("lr").number, 0.01);
  Lease l2 = Acquire(w);
  EXPECT_EQ(l2.run_id, a.id + "-00001");
  EXPECT_EQ(l2.lease_epoch, 2);
  Lease l3 = Acquire(w);
  EXPECT_EQ(l3.run_id, b.id + "-00000");
  RunRow r = Run(l1.run_id);
  EXPECT_EQ(r.state, RunState::kRunning);
  EXPECT_EQ(r.attempts, 1);
  EXPECT_EQ(r.lease_epoch, 1);
  EXPECT_EQ(r.lease_worker, w);
  EXPECT_EQ(r.started_at_ms, clock_.NowMillis());
  auto sweep = store_->GetSweep(a.id);
  EXPECT_EQ(sweep->counts.running, 2);
  EXPECT_EQ(sweep->counts.pending, 0);
}

TEST_F(StoreTest, RetriedAcquireWithSameRequestIdGetsTheSameLease) {
  std::string w = Worker();
  SweepRow sweep = Create(MakeSweep(3));
  auto first = store_->AcquireRun(w, "cpu", kLease, "req-1");
  ASSERT_TRUE(first.ok() && first->has_value());
  auto retry = store_->AcquireRun(w, "cpu", kLease, "req-1");  // the response was lost
  ASSERT_TRUE(retry.ok() && retry->has_value());
  EXPECT_EQ((*retry)->run_id, (*first)->run_id);
  EXPECT_EQ((*retry)->lease_epoch, (*first)->lease_epoch);
  EXPECT_EQ((*retry)->attempt, 1);
  auto next = store_->AcquireRun(w, "cpu", kLease, "req-2");
  ASSERT_TRUE(next.ok() && next->has_value());
  EXPECT_NE((*next)->run_id, (*first)->run_id);
  EXPECT_EQ(store_->GetSweep(sweep.id)->counts.running, 2);
  // The retry re-keys the lease: only the hash of the first secret was kept.
  EXPECT_NE((*retry)->lease_secret, (*first)->lease_secret);
  EXPECT_EQ(store_->Heartbeat((*first)->run_id, (*first)->lease_epoch, kLease, (*first)->holder())
                .status().code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(Run((*first)->run_id).attempts, 0);  // no work seen yet
  ASSERT_TRUE(store_->Heartbeat((*retry)->run_id, (*retry)->lease_epoch, kLease, (*retry)->holder()).ok());
  EXPECT_EQ(Run((*first)->run_id).attempts, 1);
}

TEST_F(StoreTest, SecondStoreOnTheSameDatabaseIsRefused) {
  StoreOptions options;
  options.path = path_;
  options.clock = &clock_;
  auto second = Store::Open(options);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(second.status().message().find("another coordinator"), std::string::npos)
      << second.status().message();
}

TEST_F(StoreTest, ConcurrentAcquirersNeverGetTheSameRun) {
  constexpr int kRuns = 400;
  constexpr int kThreads = 8;
  SweepRow sweep = Create(MakeSweep(kRuns));
  std::vector<std::string> workers;
  for (int t = 0; t < kThreads; ++t) workers.push_back(Worker("w" + std::to_string(t)));
  std::mutex mu;
  std::vector<std::string> granted;
  std::set<int64_t> epochs;
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (;;) {
        auto lease = store_->AcquireRun(workers[t], "cpu", kLease);
        if (!lease.ok()) {
          ++errors;
          return;
        }
        if (!lease->has_value()) return;
        std::lock_guard<std::mutex> lock(mu);
        granted.push_back((*lease)->run_id);
        epochs.insert((*lease)->lease_epoch);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(granted.size(), static_cast<size_t>(kRuns));
  EXPECT_EQ(std::set<std::string>(granted.begin(), granted.end()).size(), static_cast<size_t>(kRuns));
  EXPECT_EQ(epochs.size(), static_cast<size_t>(kRuns));
  EXPECT_EQ(store_->GetSweep(sweep.id)->counts.running, kRuns);
}

TEST_F(StoreTest, MaxConcurrentLimitsRunningRunsPerSweep) {
  std::string w = Worker();
  NewSweep limited = MakeSweep(5, "limited");
  limited.max_concurrent = 2;
  SweepRow a = Create(limited);
  SweepRow b = Create(MakeSweep(1, "other"));
  Lease l1 = Acquire(w);
  Lease l2 = Acquire(w);
  EXPECT_EQ(l1.sweep_id, a.id);
  EXPECT_EQ(l2.sweep_id, a.id);
  Lease l3 = Acquire(w);  // a is at its limit: the next sweep gets the worker
  EXPECT_EQ(l3.sweep_id, b.id);
  EXPECT_TRUE(NothingToAcquire(w));
  ASSERT_TRUE(Complete(l1, RunOutcome::kSucceeded).ok());
  Lease l4 = Acquire(w);
  EXPECT_EQ(l4.run_id, a.id + "-00002");
  EXPECT_TRUE(NothingToAcquire(w));
}

TEST_F(StoreTest, DeviceOfSweepMustMatchWorkerKind) {
  std::string cpu = Worker("c", "cpu");
  std::string gpu = Worker("g", "cuda:1");
  NewSweep cuda_only = MakeSweep(1, "cuda-only");
  cuda_only.device = "cuda";
  NewSweep cpu_only = MakeSweep(1, "cpu-only");
  cpu_only.device = "cpu";
  SweepRow c = Create(cuda_only);
  SweepRow p = Create(cpu_only);
  Lease l1 = Acquire(cpu, "cpu");
  EXPECT_EQ(l1.sweep_id, p.id);
  EXPECT_TRUE(NothingToAcquire(cpu, "cpu"));
  Lease l2 = Acquire(gpu, "cuda:1");
  EXPECT_EQ(l2.sweep_id, c.id);
  SweepRow any = Create(MakeSweep(2, "any"));
  EXPECT_EQ(Acquire(gpu, "cuda:1").sweep_id, any.id);
  EXPECT_EQ(Acquire(cpu, "cpu").sweep_id, any.id);
  EXPECT_EQ(store_->AcquireRun(cpu, "tpu", kLease).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(StoreTest, HeartbeatExtendsTheLease) {
  std::string w = Worker();
  Create(MakeSweep(1));
  Lease l = Acquire(w);
  clock_.AdvanceSeconds(20);
  auto hb = store_->Heartbeat(l.run_id, l.lease_epoch, kLease, l.holder());
  ASSERT_TRUE(hb.ok()) << hb.status().ToString();
  EXPECT_FALSE(hb->cancel_requested);
  EXPECT_EQ(hb->lease_expires_at_ms, clock_.NowMillis() + kLease * 1000);
  EXPECT_EQ(Run(l.run_id).lease_expires_at_ms, hb->lease_expires_at_ms);
  clock_.AdvanceSeconds(20);  // 40 s after the grant, 20 s after the heartbeat
  EXPECT_EQ(*store_->ExpireLeases(), 0);
  EXPECT_EQ(Run(l.run_id).state, RunState::kRunning);
  clock_.AdvanceSeconds(11);
  EXPECT_EQ(*store_->ExpireLeases(), 1);
  EXPECT_EQ(Run(l.run_id).state, RunState::kPending);
}

TEST_F(StoreTest, StaleEpochIsRefusedForEveryWorkerCall) {
  std::string w1 = Worker("w1");
  std::string w2 = Worker("w2");
  Create(MakeSweep(1));
  Lease old_lease = Acquire(w1);
  clock_.AdvanceSeconds(kLease + 1);
  Lease new_lease = Acquire(w2);  // reclaims the expired lease, then re-grants
  ASSERT_EQ(new_lease.run_id, old_lease.run_id);
  EXPECT_GT(new_lease.lease_epoch, old_lease.lease_epoch);
  EXPECT_EQ(new_lease.attempt, 2);

  auto hb = store_->Heartbeat(old_lease.run_id, old_lease.lease_epoch, kLease, old_lease.holder());
  EXPECT_EQ(hb.status().code(), StatusCode::kFailedPrecondition);
  // The refusal never names the current epoch (section 5).
  const std::string expected = "stale lease epoch " + std::to_string(old_lease.lease_epoch) + " for run '" +
                               old_lease.run_id + "': the run was leased again since";
  EXPECT_EQ(hb.status().message(), expected);
  Status append = store_->AppendMetrics(old_lease.run_id, old_lease.lease_epoch, {{"train/loss", 5, 1.0, 0}}, old_lease.holder());
  EXPECT_EQ(append.code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(append.message(), expected);
  Status complete = Complete(old_lease, RunOutcome::kSucceeded);
  EXPECT_EQ(complete.code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->SetCheckpoint(old_lease.run_id, old_lease.lease_epoch, "epoch-1.pt", old_lease.holder()).code(),
            StatusCode::kFailedPrecondition);
  // None of the stale worker's points were written; the new holder is fine.
  EXPECT_TRUE(store_->GetMetrics(old_lease.run_id)->empty());
  EXPECT_TRUE(store_->Heartbeat(new_lease.run_id, new_lease.lease_epoch, kLease, new_lease.holder()).ok());
  EXPECT_TRUE(Complete(new_lease, RunOutcome::kSucceeded).ok());
}

// Section 5: a lease is bound to its holder. Another worker presenting the
// right epoch, or the holder with a wrong secret, is PERMISSION_DENIED, and
// the refusal names neither the epoch nor the secret.
TEST_F(StoreTest, LeaseIsBoundToItsWorkerAndSecret) {
  std::string w1 = Worker("w1");
  std::string w2 = Worker("w2");
  Create(MakeSweep(1));
  Lease l = Acquire(w1);
  ASSERT_EQ(l.lease_secret.size(), 32u);
  ASSERT_EQ(l.worker_id, w1);
  const std::vector<LeaseHolder> impostors = {
      {w2, l.lease_secret}, {w1, "00000000000000000000000000000000"}, {w1, ""}, {"", ""}};
  for (const LeaseHolder& h : impostors) {
    auto hb = store_->Heartbeat(l.run_id, l.lease_epoch, kLease, h);
    EXPECT_EQ(hb.status().code(), StatusCode::kPermissionDenied) << hb.status().ToString();
    const std::string msg = hb.status().message();
    EXPECT_EQ(msg.find("epoch"), std::string::npos) << msg;
    EXPECT_EQ(msg.find(l.lease_secret), std::string::npos) << msg;
    EXPECT_EQ(store_->AppendMetrics(l.run_id, l.lease_epoch, {{"train/loss", 1, 1.0, 0}}, h).code(),
              StatusCode::kPermissionDenied);
    EXPECT_EQ(store_->SetCheckpoint(l.run_id, l.lease_epoch, "epoch-1.pt", h).code(),
              StatusCode::kPermissionDenied);
    CompleteRequest req;
    req.run_id = l.run_id;
    req.lease_epoch = l.lease_epoch;
    req.outcome = RunOutcome::kSucceeded;
    req.holder = h;
    Status c = store_->CompleteRun(req);
    EXPECT_EQ(c.code(), StatusCode::kPermissionDenied) << c.ToString();
    EXPECT_EQ(c.message().find("epoch"), std::string::npos) << c.message();
  }
  EXPECT_TRUE(store_->GetMetrics(l.run_id)->empty());
  EXPECT_EQ(Run(l.run_id).state, RunState::kRunning);
  // The holder still holds it, and a duplicate completion needs the secret.
  ASSERT_TRUE(Complete(l, RunOutcome::kSucceeded).ok());
  CompleteRequest dup;
  dup.run_id = l.run_id;
  dup.lease_epoch = l.lease_epoch;
  dup.outcome = RunOutcome::kSucceeded;
  dup.holder = {w2, l.lease_secret};
  EXPECT_EQ(store_->CompleteRun(dup).code(), StatusCode::kPermissionDenied);
  EXPECT_TRUE(Complete(l, RunOutcome::kSucceeded).ok());
}

TEST_F(StoreTest, ByDefaultAWorkerHoldsOneLeasePerDevice) {
  ReopenWithDefaultLeaseLimit();
  std::string hoarder = Worker("hoarder");
  std::string two = Worker("two", "cuda:0,cuda:1");
  std::string other = Worker("other");
  Create(MakeSweep(6));
  Lease first = Acquire(hoarder);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(NothingToAcquire(hoarder)) << "grant " << i + 2;
  Acquire(two, "cuda:0");
  Acquire(two, "cuda:1");
  EXPECT_TRUE(NothingToAcquire(two, "cuda:0"));
  Acquire(other);
  // Once it finishes its run, the hoarder may take the next.
  ASSERT_TRUE(Complete(first, RunOutcome::kSucceeded).ok());
  Acquire(hoarder);
  EXPECT_TRUE(NothingToAcquire(hoarder));
}

// Data parallel: a run holds its `devices` of its worker's registered
// devices; a run wider than the worker's free devices is left for another
// worker (and the narrower runs after it are still granted).
TEST_F(StoreTest, ARunHoldsItsDevicesOfTheWorker) {
  ReopenWithDefaultLeaseLimit();
  std::string four = Worker("four", "cuda:0,cuda:1,cuda:2,cuda:3");
  std::string one = Worker("one", "cpu");
  std::string ranks = Worker("ranks", "cpu,cpu");
  NewSweep s = MakeSweep(4);
  s.runs[0].params["devices"] = ParamValue::Number(4);
  s.runs[1].params["devices"] = ParamValue::Number(2);
  s.runs[2].params["devices"] = ParamValue::Number(3);
  SweepRow sweep = Create(s);
  // "one" has a single device: only the 1-device run fits.
  Lease narrow = Acquire(one);
  EXPECT_EQ(narrow.run_id, sweep.id + "-00003");
  // "ranks" registered two CPU devices: the 2-device run.
  Lease pair = Acquire(ranks);
  EXPECT_EQ(pair.run_id, sweep.id + "-00001");
  EXPECT_TRUE(NothingToAcquire(ranks));
  // "four" takes the 4-device run, then has nothing free for the 3-device one.
  Lease wide = Acquire(four, "cuda:0");
  EXPECT_EQ(wide.run_id, sweep.id + "-00000");
  EXPECT_TRUE(NothingToAcquire(four, "cuda:0"));
  ASSERT_TRUE(Complete(wide, RunOutcome::kSucceeded).ok());
  Lease three = Acquire(four, "cuda:0");
  EXPECT_EQ(three.run_id, sweep.id + "-00002");
  EXPECT_TRUE(NothingToAcquire(four, "cuda:0"));
}

// Section 5: an attempt is charged at the lease's first heartbeat, metric
// batch or completion; a lease granted and abandoned burns none.
TEST_F(StoreTest, AbandonedLeaseDoesNotBurnAnAttempt) {
  std::string w = Worker();
  NewSweep s = MakeSweep(1);
  s.max_attempts = 1;
  Create(s);
  for (int i = 0; i < 3; ++i) {
    auto lease = store_->AcquireRun(w, "cpu", kLease);
    ASSERT_TRUE(lease.ok() && lease->has_value());
    EXPECT_EQ((*lease)->attempt, 1);
    clock_.AdvanceSeconds(kLease + 1);
    ASSERT_EQ(*store_->ExpireLeases(), 1);
    RunRow r = Run((*lease)->run_id);
    EXPECT_EQ(r.state, RunState::kPending) << "abandoned grant " << i + 1;
    EXPECT_EQ(r.attempts, 0);
  }
  auto lease = store_->AcquireRun(w, "cpu", kLease);
  ASSERT_TRUE(lease.ok() && lease->has_value());
  const Lease l = **lease;
  ASSERT_TRUE(store_->AppendMetrics(l.run_id, l.lease_epoch, {{"train/loss", 1, 1.0, 0}}, l.holder()).ok());
  EXPECT_EQ(Run(l.run_id).attempts, 1);
  clock_.AdvanceSeconds(kLease + 1);
  ASSERT_EQ(*store_->ExpireLeases(), 1);
  EXPECT_EQ(Run(l.run_id).state, RunState::kFailed);  // its one attempt is spent
}

TEST_F(StoreTest, CheckpointMustBeABareName) {
  std::string w = Worker();
  Create(MakeSweep(1));
  Lease l = Acquire(w);
  for (const std::string bad : {"/tmp/epoch-1.pt", "../epoch-1.pt", "a/epoch-1.pt", "epoch-x.pt",
                                "epoch-1.pt/..", "epoch-.pt", "", "model.pt"}) {
    Status st = store_->SetCheckpoint(l.run_id, l.lease_epoch, bad, l.holder());
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(st.message().find("checkpoint"), std::string::npos) << st.message();
  }
  EXPECT_TRUE(store_->SetCheckpoint(l.run_id, l.lease_epoch, "epoch-12.pt", l.holder()).ok());
  EXPECT_EQ(Run(l.run_id).resume_checkpoint, "epoch-12.pt");
  CompleteRequest req;
  req.run_id = l.run_id;
  req.lease_epoch = l.lease_epoch;
  req.outcome = RunOutcome::kSucceeded;
  req.holder = l.holder();
  req.checkpoint = "/etc/passwd";
  EXPECT_EQ(store_->CompleteRun(req).code(), StatusCode::kInvalidArgument);
}

TEST_F(StoreTest, CallsOnAPendingRunAreRefusedEvenWithItsLastEpoch) {
  std::string w = Worker();
  NewSweep s = MakeSweep(1);
  SweepRow sweep = Create(s);
  Lease l = Acquire(w);
  clock_.AdvanceSeconds(kLease + 1);
  ASSERT_EQ(*store_->ExpireLeases(), 1);
  auto hb = store_->Heartbeat(l.run_id, l.lease_epoch, kLease, l.holder());
  EXPECT_EQ(hb.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(hb.status().message().find("no longer held (run is pending)"), std::string::npos)
      << hb.status().message();
}

TEST_F(StoreTest, ExpiredLeaseReturnsRunToPendingThenFailsAtMaxAttempts) {
  std::string w = Worker();
  NewSweep s = MakeSweep(1);
  s.max_attempts = 2;
  SweepRow sweep = Create(s);
  Lease l1 = Acquire(w);
  clock_.AdvanceSeconds(kLease + 1);
  EXPECT_EQ(*store_->ExpireLeases(), 1);
  RunRow r = Run(l1.run_id);
  EXPECT_EQ(r.state, RunState::kPending);
  EXPECT_EQ(r.attempts, 1);
  EXPECT_NE(r.last_error.find("lease expired"), std::string::npos) << r.last_error;

  Lease l2 = Acquire(w);
  EXPECT_EQ(l2.attempt, 2);
  clock_.AdvanceSeconds(kLease + 1);
  EXPECT_EQ(*store_->ExpireLeases(), 1);
  r = Run(l1.run_id);
  EXPECT_EQ(r.state, RunState::kFailed);
  EXPECT_EQ(r.attempts, 2);
  EXPECT_NE(r.last_error.find("lease expired"), std::string::npos);
  EXPECT_NE(r.last_error.find("attempt 2 of 2"), std::string::npos) << r.last_error;
  EXPECT_NE(r.last_error.find(w), std::string::npos) << r.last_error;
  EXPECT_EQ(r.ended_at_ms, clock_.NowMillis());
  EXPECT_TRUE(NothingToAcquire(w));
  EXPECT_EQ(store_->GetSweep(sweep.id)->state, kSweepFinished);
}

TEST_F(StoreTest, FailedOutcomeRetriesUntilMaxAttempts) {
  std::string w = Worker();
  SweepRow sweep = Create(MakeSweep(1));  // max_attempts 3
  for (int attempt = 1; attempt <= 3; ++attempt) {
    Lease l = Acquire(w);
    EXPECT_EQ(l.attempt, attempt);
    ASSERT_TRUE(Complete(l, RunOutcome::kFailed, "injected failure at step 7").ok());
    RunRow r = Run(l.run_id);
    EXPECT_EQ(r.state, attempt < 3 ? RunState::kPending : RunState::kFailed);
    EXPECT_EQ(r.last_error, "injected failure at step 7");
  }
  EXPECT_TRUE(NothingToAcquire(w));
  auto s = store_->GetSweep(sweep.id);
  EXPECT_EQ(s->counts.failed, 1);
  EXPECT_EQ(s->state, kSweepFinished);
}

TEST_F(StoreTest, DuplicateCompletionIsIdempotentOnlyForTheSameOutcome) {
  std::string w = Worker();
  SweepRow sweep = Create(MakeSweep(2));
  Lease l = Acquire(w);
  ASSERT_TRUE(Complete(l, RunOutcome::kSucceeded).ok());
  EXPECT_TRUE(Complete(l, RunOutcome::kSucceeded).ok());  // a retried RPC
  Status other = Complete(l, RunOutcome::kDiverged);
  EXPECT_EQ(other.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(other.message().find("already completed"), std::string::npos) << other.message();
  RunRow r = Run(l.run_id);
  EXPECT_EQ(r.state, RunState::kSucceeded);
  EXPECT_DOUBLE_EQ(r.final.at("test/error"), 12.5);

  // A duplicated failure report must not burn a second attempt.
  Lease f = Acquire(w);
  ASSERT_TRUE(Complete(f, RunOutcome::kFailed, "boom").ok());
  ASSERT_TRUE(Complete(f, RunOutcome::kFailed, "boom").ok());
  RunRow fr = Run(f.run_id);
  EXPECT_EQ(fr.state, RunState::kPending);
  EXPECT_EQ(fr.attempts, 1);
}

TEST_F(StoreTest, DivergedIsAResultWithNonFiniteFinalsKept) {
  std::string w = Worker();
  SweepRow sweep = Create(MakeSweep(1));
  Lease l = Acquire(w);
  CompleteRequest req;
  req.run_id = l.run_id;
  req.lease_epoch = l.lease_epoch;
  req.outcome = RunOutcome::kDiverged;
  req.holder = l.holder();
  req.final["train/loss"] = std::nan("");
  req.final["test/loss"] = HUGE_VAL;
  req.final["test/error"] = 90.0;
  ASSERT_TRUE(store_->CompleteRun(req).ok());
  RunRow r = Run(l.run_id);
  EXPECT_EQ(r.state, RunState::kDiverged);
  EXPECT_TRUE(std::isnan(r.final.at("train/loss")));
  EXPECT_TRUE(std::isinf(r.final.at("test/loss")));
  EXPECT_DOUBLE_EQ(r.final.at("test/error"), 90.0);
  EXPECT_EQ(store_->GetSweep(sweep.id)->counts.diverged, 1);
}

TEST_F(StoreTest, CancelStopsGrantsAndTellsRunningWorkers) {
  std::string w = Worker();
  SweepRow sweep = Create(MakeSweep(3));
  Lease l = Acquire(w);
  ASSERT_TRUE(store_->CancelSweep(sweep.id).ok());
  auto s = store_->GetSweep(sweep.id);
  EXPECT_EQ(s->state, kSweepCancelled);
  EXPECT_EQ(s->counts.cancelled, 2);
  EXPECT_EQ(s->counts.running, 1);
  EXPECT_TRUE(NothingToAcquire(w));
  auto hb = store_->Heartbeat(l.run_id, l.lease_epoch, kLease, l.holder());
  ASSERT_TRUE(hb.ok());
  EXPECT_TRUE(hb->cancel_requested);
  ASSERT_TRUE(Complete(l, RunOutcome::kCancelled).ok());
  s = store_->GetSweep(sweep.id);
  EXPECT_EQ(s->counts.cancelled, 3);
  EXPECT_EQ(s->state, kSweepCancelled);
  EXPECT_TRUE(store_->CancelSweep(sweep.id).ok());  // again: no-op
}

TEST_F(StoreTest, CancelledRunThatFailsOrExpiresIsNotRetried) {
  std::string w = Worker();
  SweepRow sweep = Create(MakeSweep(2));
  Lease a = Acquire(w);
  Lease b = Acquire(w);
  ASSERT_TRUE(store_->CancelSweep(sweep.id).ok());
  ASSERT_TRUE(Complete(a, RunOutcome::kFailed, "interrupted").ok());
  EXPECT_EQ(Run(a.run_id).state, RunState::kCancelled);
  clock_.AdvanceSeconds(kLease + 1);
  EXPECT_EQ(*store_->ExpireLeases(), 1);
  EXPECT_EQ(Run(b.run_id).state, RunState::kCancelled);
}

TEST_F(StoreTest, RerunResetsChosenRunsAndDeletesTheirMetrics) {
  std::string w = Worker();
  NewSweep spec = MakeSweep(3);
  spec.max_attempts = 1;
  SweepRow sweep = Create(spec);
  Lease a = Acquire(w);
  Lease b = Acquire(w);
  Lease c = Acquire(w);
  ASSERT_TRUE(store_->AppendMetrics(a.run_id, a.lease_epoch, {{"train/loss", 0, 2.0, 1.0}}, a.holder()).ok());
  ASSERT_TRUE(Complete(a, RunOutcome::kFailed, "crash").ok());
  ASSERT_TRUE(Complete(b, RunOutcome::kDiverged).ok());
  ASSERT_TRUE(Complete(c, RunOutcome::kSucceeded).ok());
  EXPECT_EQ(store_->GetSweep(sweep.id)->state, kSweepFinished);

  auto bad = store_->RerunSweep(sweep.id, {RunState::kSucceeded});
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);

  auto n = store_->RerunSweep(sweep.id, {RunState::kFailed});
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(*n, 1);
  RunRow r = Run(a.run_id);
  EXPECT_EQ(r.state, RunState::kPending);
  EXPECT_EQ(r.attempts, 0);
  EXPECT_TRUE(r.last_error.empty());
  EXPECT_TRUE(r.final.empty());
  EXPECT_TRUE(store_->GetMetrics(a.run_id)->empty());
  EXPECT_EQ(Run(b.run_id).state, RunState::kDiverged);
  EXPECT_EQ(store_->GetSweep(sweep.id)->state, kSweepRunning);
  Lease again = Acquire(w);
  EXPECT_EQ(again.run_id, a.run_id);
  EXPECT_EQ(again.attempt, 1);
  EXPECT_EQ(*store_->RerunSweep(sweep.id, {RunState::kCancelled}), 0);
}

TEST_F(StoreTest, RerunDeletesOldPointsInChunksBeforeTheRunIsLeasedAgain) {
  std::string w = Worker();
  NewSweep spec = MakeSweep(1);
  spec.max_attempts = 1;
  SweepRow sweep = Create(spec);
  Lease a = Acquire(w);
  std::vector<MetricPoint> points;
  for (int step = 0; step < 2500; ++step) points.push_back({"train/loss", step, 1.0, 1.0});
  ASSERT_TRUE(store_->AppendMetrics(a.run_id, a.lease_epoch, points, a.holder()).ok());
  ASSERT_TRUE(Complete(a, RunOutcome::kFailed, "crash").ok());
  ASSERT_TRUE(store_->RerunSweep(sweep.id, {RunState::kFailed}).ok());
  // RerunSweep has purged already (in chunks of its default size).
  EXPECT_TRUE(store_->GetMetrics(a.run_id)->empty());
  EXPECT_EQ(*store_->PurgeRerunMetrics(1000), 0);

  // An interrupted purge: the run stays unleased, its points hidden, until
  // a later purge (the reaper's) finishes, 1000 rows per transaction.
  Lease b = Acquire(w);
  ASSERT_TRUE(store_->AppendMetrics(b.run_id, b.lease_epoch, points, b.holder()).ok());
  ASSERT_TRUE(Complete(b, RunOutcome::kFailed, "crash").ok());
  store_.reset();
  ExecRaw(path_, ("INSERT INTO metric_purges(run_id) VALUES ('" + b.run_id + "')").c_str());
  ExecRaw(path_, ("UPDATE runs SET state = 'PENDING' WHERE id = '" + b.run_id + "'").c_str());
  ExecRaw(path_, ("UPDATE sweeps SET state = 'running' WHERE id = '" + sweep.id + "'").c_str());
  Reopen();
  EXPECT_TRUE(store_->GetMetrics(b.run_id)->empty());
  EXPECT_TRUE(NothingToAcquire(w));
  const int64_t transactions = store_->Stats().transactions;
  EXPECT_EQ(*store_->PurgeRerunMetrics(1000), 2500);
  EXPECT_EQ(store_->Stats().transactions - transactions, 3);
  Lease again = Acquire(w);
  EXPECT_EQ(again.run_id, b.run_id);
  EXPECT_TRUE(store_->GetMetrics(b.run_id)->empty());
}

TEST_F(StoreTest, WorkersIdleForADayAreForgottenUnlessTheyHoldALease) {
  Create(MakeSweep(1));
  std::string holder = Worker("holder");
  std::string idle = Worker("idle");
  Acquire(holder);
  clock_.AdvanceSeconds(25 * 3600);
  std::string fresh = Worker("fresh");
  auto pruned = store_->PruneIdleWorkers(int64_t{24} * 3600 * 1000);
  ASSERT_TRUE(pruned.ok()) << pruned.status().ToString();
  EXPECT_EQ(*pruned, 1);
  EXPECT_EQ(store_->GetWorker(idle).status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(store_->GetWorker(holder).ok());
  EXPECT_TRUE(store_->GetWorker(fresh).ok());
  // A forgotten worker that comes back is told so, and registers again.
  EXPECT_EQ(store_->AcquireRun(idle, "cpu", kLease).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store_->PruneIdleWorkers(0).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(StoreTest, RerunAfterCancelMakesTheSweepRunnableAgain) {
  std::string w = Worker();
  SweepRow sweep = Create(MakeSweep(2));
  ASSERT_TRUE(store_->CancelSweep(sweep.id).ok());
  EXPECT_TRUE(NothingToAcquire(w));
  EXPECT_EQ(*store_->RerunSweep(sweep.id, {RunState::kCancelled}), 2);
  EXPECT_EQ(store_->GetSweep(sweep.id)->state, kSweepRunning);
  EXPECT_EQ(Acquire(w).sweep_id, sweep.id);
}

// ---- Metrics ---------------------------------------------------------------

TEST_F(StoreTest, ResumedAttemptRewritesItsStepsWithoutDuplicates) {
  std::string w = Worker();
  Create(MakeSweep(1));
  Lease l1 = Acquire(w);
  std::vector<MetricPoint> first;
  for (int step = 0; step < 10; ++step) first.push_back({"train/loss", step, 1.0, 100.0 + step});
  ASSERT_TRUE(store_->AppendMetrics(l1.run_id, l1.lease_epoch, first, l1.holder()).ok());
  ASSERT_TRUE(store_->SetCheckpoint(l1.run_id, l1.lease_epoch, "epoch-0.pt", l1.holder()).ok());
  clock_.AdvanceSeconds(kLease + 1);
  Lease l2 = Acquire(w);
  EXPECT_EQ(l2.resume_checkpoint, "epoch-0.pt");
  std::vector<MetricPoint> second;
  for (int step = 5; step < 15; ++step) second.push_back({"train/loss", step, 2.0, 200.0 + step});
  second.push_back({"test/error", 14, 11.0, 214.0});
  ASSERT_TRUE(store_->AppendMetrics(l2.run_id, l2.lease_epoch, second, l2.holder()).ok());
  ASSERT_TRUE(Complete(l2, RunOutcome::kSucceeded).ok());

  auto loss = store_->GetMetrics(l1.run_id, std::string("train/loss"));
  ASSERT_TRUE(loss.ok());
  ASSERT_EQ(loss->size(), 15u);
  for (int step = 0; step < 15; ++step) {
    EXPECT_EQ((*loss)[step].step, step);
    EXPECT_DOUBLE_EQ((*loss)[step].value, step < 5 ? 1.0 : 2.0);
  }
  auto all = store_->GetMetrics(l1.run_id);
  ASSERT_EQ(all->size(), 16u);
  EXPECT_EQ(all->front().name, "test/error");  // ordered by name, then step
}

TEST_F(StoreTest, LatestAndIncrementalMetricQueries) {
  std::string w = Worker();
  Create(MakeSweep(1));
  Lease l = Acquire(w);
  std::vector<MetricPoint> points;
  for (int step = 0; step < 10; ++step) {
    points.push_back({"train/loss", step, 10.0 - step, 1.0 * step});
    if (step % 5 == 4) points.push_back({"test/error", step, 50.0 - step, 1.0 * step});
  }
  ASSERT_TRUE(store_->AppendMetrics(l.run_id, l.lease_epoch, points, l.holder()).ok());
  auto latest = store_->GetLatestMetrics(l.run_id);
  ASSERT_TRUE(latest.ok());
  ASSERT_EQ(latest->size(), 2u);
  EXPECT_EQ((*latest)[0].name, "test/error");
  EXPECT_EQ((*latest)[0].step, 9);
  EXPECT_DOUBLE_EQ((*latest)[0].value, 41.0);
  EXPECT_EQ((*latest)[1].name, "train/loss");
  EXPECT_EQ((*latest)[1].step, 9);
  EXPECT_DOUBLE_EQ((*latest)[1].value, 1.0);
  auto tail = store_->GetMetrics(l.run_id, std::string("train/loss"), 6);
  ASSERT_EQ(tail->size(), 3u);
  EXPECT_EQ(tail->front().step, 7);
  EXPECT_EQ(store_->GetLatestMetrics("r-nope").status().code(), StatusCode::kNotFound);
  StoreStats stats = store_->Stats();
  EXPECT_EQ(stats.metric_points, static_cast<int64_t>(points.size()));
  EXPECT_GE(stats.transactions, 1);
  EXPECT_EQ(stats.failed_commits, 0);
}

TEST_F(StoreTest, MetricValuesRoundTripIncludingNan) {
  std::string w = Worker();
  Create(MakeSweep(1));
  Lease l = Acquire(w);
  ASSERT_TRUE(store_->AppendMetrics(l.run_id, l.lease_epoch,
                                    {{"train/loss", 1, std::nan(""), 1.5},
                                     {"train/loss", 2, HUGE_VAL, 2.5},
                                     {"lr", 1, 0.01, 1.5}}, l.holder())
                  .ok());
  auto loss = store_->GetMetrics(l.run_id, std::string("train/loss"));
  ASSERT_EQ(loss->size(), 2u);
  EXPECT_TRUE(std::isnan((*loss)[0].value));
  EXPECT_TRUE(std::isinf((*loss)[1].value));
  EXPECT_DOUBLE_EQ((*loss)[1].time, 2.5);
}

TEST_F(StoreTest, BadMetricPointsAreRejectedWholeBatch) {
  std::string w = Worker();
  Create(MakeSweep(1));
  Lease l = Acquire(w);
  Status s = store_->AppendMetrics(l.run_id, l.lease_epoch, {{"a", 0, 1, 0}, {"a", -3, 1, 0}}, l.holder());
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("-3"), std::string::npos) << s.message();
  EXPECT_TRUE(store_->GetMetrics(l.run_id)->empty());
}

TEST_F(StoreTest, ConcurrentMetricBatchesAreAllStored) {
  constexpr int kThreads = 6;
  constexpr int kBatches = 50;
  constexpr int kPerBatch = 100;
  std::string w = Worker();
  Create(MakeSweep(kThreads));
  std::vector<Lease> leases;
  for (int t = 0; t < kThreads; ++t) leases.push_back(Acquire(w));
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int b = 0; b < kBatches; ++b) {
        std::vector<MetricPoint> batch;
        for (int i = 0; i < kPerBatch; ++i) batch.push_back({"train/loss", b * kPerBatch + i, 0.5, 1.0});
        if (!store_->AppendMetrics(leases[t].run_id, leases[t].lease_epoch, batch, leases[t].holder()).ok()) ++errors;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(errors.load(), 0);
  for (const Lease& l : leases) {
    EXPECT_EQ(store_->GetMetrics(l.run_id)->size(), static_cast<size_t>(kBatches * kPerBatch));
  }
}

TEST_F(StoreTest, AsyncAppendReportsDurableCompletion) {
  std::string w = Worker();
  Create(MakeSweep(1));
  Lease l = Acquire(w);
  std::promise<Status> ok_done, stale_done, invalid_done;
  store_->AppendMetricsAsync(l.run_id, l.lease_epoch, {{"train/loss", 0, 1.0, 0}, {"train/loss", 1, 0.9, 1}}, l.holder(),
                             [&](Status s) { ok_done.set_value(s); });
  store_->AppendMetricsAsync(l.run_id, l.lease_epoch + 7, {{"train/loss", 2, 0.8, 2}}, l.holder(),
                             [&](Status s) { stale_done.set_value(s); });
  store_->AppendMetricsAsync(l.run_id, l.lease_epoch, {{"", 2, 0.8, 2}}, l.holder(),
                             [&](Status s) { invalid_done.set_value(s); });
  EXPECT_TRUE(ok_done.get_future().get().ok());
  EXPECT_EQ(stale_done.get_future().get().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(invalid_done.get_future().get().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->GetMetrics(l.run_id)->size(), 2u);
}

TEST_F(StoreTest, RefusedCallInAGroupCommitLeavesTheOthersIntact) {
  // Many concurrent callers share transactions; a refused call rolls back
  // only its own savepoint.
  constexpr int kThreads = 8;
  std::string w = Worker();
  Create(MakeSweep(kThreads));
  std::vector<Lease> leases;
  for (int t = 0; t < kThreads; ++t) leases.push_back(Acquire(w));
  std::atomic<int> refused{0}, failed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int b = 0; b < 40; ++b) {
        const bool stale = t % 2 == 1;
        Status s = store_->AppendMetrics(leases[t].run_id, leases[t].lease_epoch + (stale ? 1000 : 0),
                                         {{"train/loss", b, 1.0, 0}, {"lr", b, 0.01, 0}}, leases[t].holder());
        if (stale && s.code() == StatusCode::kFailedPrecondition) ++refused;
        if (!stale && !s.ok()) ++failed;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(refused.load(), 4 * 40);
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(store_->GetMetrics(leases[t].run_id)->size(), t % 2 == 1 ? 0u : 80u);
  }
}

// ---- Restart safety --------------------------------------------------------

TEST_F(StoreTest, ReopenKeepsStateLeasesAndEpochCounter) {
  std::string w = Worker();
  NewSweep s = MakeSweep(3);
  s.idempotency_key = "k1";
  SweepRow sweep = Create(s);
  Lease l = Acquire(w);
  ASSERT_TRUE(store_->AppendMetrics(l.run_id, l.lease_epoch, {{"train/loss", 0, 3.0, 1.0}}, l.holder()).ok());

  Reopen();  // coordinator restart

  auto after = store_->GetSweep(sweep.id);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->counts.pending, 2);
  EXPECT_EQ(after->counts.running, 1);
  EXPECT_EQ(Create(s).id, sweep.id);  // idempotency survives too
  // The running worker carries on under its lease.
  auto hb = store_->Heartbeat(l.run_id, l.lease_epoch, kLease, l.holder());
  ASSERT_TRUE(hb.ok()) << hb.status().ToString();
  ASSERT_TRUE(store_->AppendMetrics(l.run_id, l.lease_epoch, {{"train/loss", 1, 2.0, 2.0}}, l.holder()).ok());
  EXPECT_EQ(store_->GetMetrics(l.run_id)->size(), 2u);
  // Epochs keep increasing across the restart.
  Lease next = Acquire(w);
  EXPECT_GT(next.lease_epoch, l.lease_epoch);
  EXPECT_EQ(next.run_id, sweep.id + "-00001");
  ASSERT_TRUE(Complete(l, RunOutcome::kSucceeded).ok());
  auto workers = store_->ListWorkers();
  ASSERT_EQ(workers->size(), 1u);
  EXPECT_EQ(workers->front().id, w);
}

// ---- Workers ---------------------------------------------------------------

TEST_F(StoreTest, WorkersListShowsCurrentRunAndLastSeen) {
  std::string w = Worker("gpu-box", "cuda:0");
  auto row = store_->GetWorker(w);
  ASSERT_TRUE(row.ok());
  EXPECT_EQ(row->name, "gpu-box");
  EXPECT_EQ(row->device, "cuda:0");
  EXPECT_TRUE(row->current_run.empty());
  Create(MakeSweep(1));
  clock_.AdvanceSeconds(5);
  Lease l = Acquire(w, "cuda:0");
  auto list = store_->ListWorkers();
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ(list->front().current_run, l.run_id);
  EXPECT_EQ(list->front().last_seen_ms, clock_.NowMillis());
  clock_.AdvanceSeconds(5);
  ASSERT_TRUE(store_->Heartbeat(l.run_id, l.lease_epoch, kLease, l.holder()).ok());
  EXPECT_EQ(store_->GetWorker(w)->last_seen_ms, clock_.NowMillis());
  ASSERT_TRUE(Complete(l, RunOutcome::kSucceeded).ok());
  EXPECT_TRUE(store_->GetWorker(w)->current_run.empty());
  EXPECT_EQ(store_->RegisterWorker("x", "abacus").status().code(), StatusCode::kInvalidArgument);
}

// Every acknowledged write survives kill -9 of the process that made it: a
// child process streams metric batches and reports each acknowledgement
// through a pipe; the parent kills it mid-stream and reopens the database.
TEST(StoreDurabilityTest, AcknowledgedWritesSurviveKill9) {
  std::string tmpl = (std::filesystem::temp_directory_path() / "madam-kill-XXXXXX").string();
  ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
  const std::string path = tmpl + "/madam.db";
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(fds[0]);
    StoreOptions options;
    options.path = path;
    auto store = Store::Open(options);
    if (!store.ok()) _exit(3);
    auto sweep = (*store)->CreateSweep(MakeSweep(2));
    auto worker = (*store)->RegisterWorker("w", "cpu");
    if (!sweep.ok() || !worker.ok()) _exit(4);
    auto lease = (*store)->AcquireRun(worker->id, "cpu", 600);
    if (!lease.ok() || !lease->has_value()) _exit(5);
    int64_t acked = 0;
    for (int64_t step = 0;; step += 100) {
      std::vector<MetricPoint> batch;
      for (int i = 0; i < 100; ++i) batch.push_back({"train/loss", step + i, 1.0, 0});
      if (!(*store)->AppendMetrics((**lease).run_id, (**lease).lease_epoch, batch, (**lease).holder()).ok()) _exit(6);
      acked += 100;
      if (write(fds[1], &acked, sizeof acked) != sizeof acked) _exit(7);
    }
  }
  close(fds[1]);
  int64_t acked = 0, value = 0;
  while (acked < 20000 && read(fds[0], &value, sizeof value) == sizeof value) acked = value;
  ASSERT_EQ(kill(child, SIGKILL), 0);
  int status = 0;
  waitpid(child, &status, 0);
  EXPECT_TRUE(WIFSIGNALED(status)) << "child exited with " << WEXITSTATUS(status);
  while (read(fds[0], &value, sizeof value) == sizeof value) acked = value;  // acks sent before the kill
  close(fds[0]);
  ASSERT_GE(acked, 20000);

  StoreOptions options;
  options.path = path;
  auto store = Store::Open(options);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  auto sweeps = (*store)->ListSweeps();
  ASSERT_EQ(sweeps->size(), 1u);
  EXPECT_EQ(sweeps->front().counts.running, 1);
  auto points = (*store)->GetMetrics(sweeps->front().id + "-00000");
  ASSERT_TRUE(points.ok());
  EXPECT_GE(static_cast<int64_t>(points->size()), acked);
  EXPECT_TRUE((*store)->IntegrityCheck().ok());
  store->reset();
  std::filesystem::remove_all(tmpl);
}

}  // namespace
}  // namespace madam::server
