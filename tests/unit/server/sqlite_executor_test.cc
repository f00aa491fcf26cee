#include "server/sqlite_executor.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <future>
#include <mutex>
#include <string>
#include <vector>

namespace madam::server::sqlite {
namespace {

// An executor on a scratch database with one table, whose writer can be held
// inside a call (Hold/Release) so the tests decide what is queued when the
// next group is formed: nothing here depends on timing.
class ExecutorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "madam-exec-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    exec_.reset();
    std::filesystem::remove_all(dir_);
  }

  void Open(ExecutorOptions options) {
    options.path = dir_ + "/t.db";
    auto ex = Executor::Open(options, [](Db* db) { return db->Exec("CREATE TABLE t(v INTEGER)"); });
    ASSERT_TRUE(ex.ok()) << ex.status().ToString();
    exec_ = std::move(ex).value();
  }

  // Queues an urgent call that blocks the writer until Release().
  void Hold() {
    entered_ = std::promise<void>();
    release_ = std::promise<void>();
    auto released = release_.get_future().share();
    WriteCall call;
    call.fn = [this, released] {
      entered_.set_value();
      released.wait();
      return Status::Ok();
    };
    call.done = [](Status) {};
    exec_->Submit(std::move(call));
    entered_.get_future().wait();  // the writer is inside the call now
  }
  void Release() { release_.set_value(); }

  // A call that records `name` when it runs and `status` when it is done.
  WriteCall Recording(const std::string& name, Lane lane, int64_t rows = 1, int64_t bytes = 0) {
    WriteCall call;
    call.lane = lane;
    call.rows = rows;
    call.bytes = bytes;
    call.fn = [this, name] {
      std::lock_guard<std::mutex> lock(mu_);
      ran_.push_back(name);
      return Status::Ok();
    };
    auto done = std::make_shared<std::promise<Status>>();
    results_.push_back(done->get_future());
    call.done = [done](Status s) { done->set_value(std::move(s)); };
    return call;
  }

  std::vector<Status> WaitAll() {
    std::vector<Status> out;
    for (auto& f : results_) out.push_back(f.get());
    results_.clear();
    return out;
  }

  std::string dir_;
  std::unique_ptr<Executor> exec_;
  std::promise<void> entered_, release_;
  std::mutex mu_;
  std::vector<std::string> ran_;  // guarded by mu_
  std::vector<std::future<Status>> results_;
};

TEST_F(ExecutorTest, UrgentCallsRunBeforeBulkCallsQueuedEarlier) {
  Open(ExecutorOptions{});
  Hold();
  for (int i = 0; i < 5; ++i) exec_->Submit(Recording("bulk" + std::to_string(i), Lane::kBulk));
  exec_->Submit(Recording("heartbeat", Lane::kUrgent));
  Release();
  for (const Status& s : WaitAll()) EXPECT_TRUE(s.ok()) << s.ToString();
  ASSERT_EQ(ran_.size(), 6u);
  EXPECT_EQ(ran_.front(), "heartbeat");
  EXPECT_EQ(ran_[1], "bulk0");  // bulk calls keep their own order
  EXPECT_EQ(ran_.back(), "bulk4");
}

TEST_F(ExecutorTest, GroupsAreBoundedByRowsAndBytes) {
  ExecutorOptions options;
  options.max_rows_per_transaction = 10;
  options.max_bytes_per_transaction = 1000;
  Open(options);
  Hold();
  const int64_t before = exec_->Stats().transactions;
  // 6 + 6 rows exceed 10; 600 + 600 bytes exceed 1000.
  exec_->Submit(Recording("a", Lane::kBulk, 6, 0));
  exec_->Submit(Recording("b", Lane::kBulk, 6, 0));
  exec_->Submit(Recording("c", Lane::kBulk, 1, 600));
  exec_->Submit(Recording("d", Lane::kBulk, 1, 600));
  // Small calls share one group.
  exec_->Submit(Recording("e", Lane::kBulk, 1, 1));
  exec_->Submit(Recording("f", Lane::kBulk, 1, 1));
  Release();
  for (const Status& s : WaitAll()) EXPECT_TRUE(s.ok()) << s.ToString();
  // The held group, then {a} (b's 6 rows would make 12), {b, c} (7 rows,
  // 600 bytes; d's 600 more would pass 1000), {d, e, f}.
  EXPECT_EQ(exec_->Stats().transactions - before, 4);
}

TEST_F(ExecutorTest, BulkCallsPastTheByteBudgetAreRefusedNotQueued) {
  ExecutorOptions options;
  options.max_queued_bulk_bytes = 100;
  Open(options);
  Hold();
  exec_->Submit(Recording("first", Lane::kBulk, 1, 60));
  exec_->Submit(Recording("over", Lane::kBulk, 1, 60));
  // Urgent calls are never refused for the budget.
  exec_->Submit(Recording("lease", Lane::kUrgent, 1, 1000));
  EXPECT_NEAR(exec_->BulkLoad(), 0.6, 1e-9);
  Release();
  std::vector<Status> results = WaitAll();
  ASSERT_EQ(results.size(), 3u);
  EXPECT_TRUE(results[0].ok());
  EXPECT_EQ(results[1].code(), StatusCode::kResourceExhausted);
  EXPECT_NE(results[1].message().find("budget of 100"), std::string::npos) << results[1].message();
  EXPECT_TRUE(results[2].ok());
  EXPECT_EQ(ran_, (std::vector<std::string>{"lease", "first"}));
  EXPECT_EQ(exec_->Stats().rejected_bulk_calls, 1);
  EXPECT_EQ(exec_->Stats().queued_bulk_bytes, 0);
  // With the lane drained, one batch larger than the whole budget is taken.
  exec_->Submit(Recording("huge", Lane::kBulk, 1, 500));
  EXPECT_TRUE(WaitAll().front().ok());
}

TEST_F(ExecutorTest, ACallThatFailsLeavesItsGroupCommitted) {
  Open(ExecutorOptions{});
  Hold();
  auto insert = [this](int v) {
    WriteCall call;
    call.fn = [this, v] {
      MADAM_ASSIGN_STMT(st, exec_->writer(), "INSERT INTO t(v) VALUES (?)");
      st.Bind(1, v);
      MADAM_RETURN_IF_ERROR(st.Run());
      if (v == 2) return Status::InvalidArgument("refused after writing");
      return Status::Ok();
    };
    auto done = std::make_shared<std::promise<Status>>();
    results_.push_back(done->get_future());
    call.done = [done](Status s) { done->set_value(std::move(s)); };
    exec_->Submit(std::move(call));
  };
  insert(1);
  insert(2);
  insert(3);
  Release();
  std::vector<Status> results = WaitAll();
  EXPECT_TRUE(results[0].ok());
  EXPECT_EQ(results[1].code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(results[2].ok());
  auto sum = exec_->Read([](Executor::Reader& r) { return r.db.QueryInt("SELECT SUM(v) FROM t"); });
  ASSERT_TRUE(sum.ok()) << sum.status().ToString();
  EXPECT_EQ(*sum, 4);  // 1 + 3: the refused call's row was rolled back
}

TEST_F(ExecutorTest, StoppedExecutorAnswersUnavailable) {
  Open(ExecutorOptions{});
  exec_->Stop();
  exec_->Submit(Recording("late", Lane::kBulk));
  EXPECT_EQ(WaitAll().front().code(), StatusCode::kUnavailable);
}

}  // namespace
}  // namespace madam::server::sqlite
