#include "server/sqlite.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <string>

namespace madam::server::sqlite {
namespace {

class SqliteTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "madam-sqlite-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    auto db = Db::Open(dir_ + "/t.db", Db::Mode::kReadWriteCreate);
    ASSERT_TRUE(db.ok()) << db.status().ToString();
    db_ = std::move(db).value();
    ASSERT_TRUE(db_.Exec("CREATE TABLE t(k INTEGER PRIMARY KEY, v REAL, s TEXT)").ok());
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string dir_;
  Db db_;
};

TEST_F(SqliteTest, TransactionRollsBackUnlessCommitted) {
  {
    auto txn = Transaction::Begin(&db_, Transaction::Kind::kImmediate);
    ASSERT_TRUE(txn.ok());
    ASSERT_TRUE(db_.Exec("INSERT INTO t VALUES (1, 1.0, 'a')").ok());
  }
  EXPECT_EQ(*db_.QueryInt("SELECT COUNT(*) FROM t"), 0);
  {
    auto txn = Transaction::Begin(&db_, Transaction::Kind::kImmediate);
    ASSERT_TRUE(db_.Exec("INSERT INTO t VALUES (1, 1.0, 'a')").ok());
    ASSERT_TRUE((*txn)->Commit().ok());
  }
  EXPECT_EQ(*db_.QueryInt("SELECT COUNT(*) FROM t"), 1);
}

TEST_F(SqliteTest, NanIsStoredAsNullAndReadBackAsNan) {
  auto ins = db_.Prepare("INSERT INTO t(k, v, s) VALUES (?, ?, ?)");
  ASSERT_TRUE(ins.ok());
  ins->Bind(1, int64_t{7}).Bind(2, std::nan("")).BindTextOrNull(3, "");
  ASSERT_TRUE(ins->Run().ok());
  auto sel = db_.Prepare("SELECT v, s FROM t WHERE k = 7");
  ASSERT_TRUE(*sel->Step());
  EXPECT_TRUE(sel->ColumnIsNull(0));
  EXPECT_TRUE(std::isnan(sel->ColumnDouble(0)));
  EXPECT_TRUE(sel->ColumnIsNull(1));
}

TEST_F(SqliteTest, ErrorsNameTheStatementAndMapToCodes) {
  Status s = db_.Exec("INSERT INTO no_such_table VALUES (1)");
  EXPECT_EQ(s.code(), StatusCode::kInternal);
  EXPECT_NE(s.message().find("no_such_table"), std::string::npos) << s.message();
  ASSERT_TRUE(db_.Exec("INSERT INTO t VALUES (1, 1.0, 'a')").ok());
  Status dup = db_.Exec("INSERT INTO t VALUES (1, 2.0, 'b')");
  EXPECT_EQ(dup.code(), StatusCode::kAlreadyExists) << dup.ToString();
}

TEST_F(SqliteTest, OpenWithoutCreateFailsForMissingFile) {
  auto db = Db::Open(dir_ + "/missing.db", Db::Mode::kReadWrite);
  ASSERT_FALSE(db.ok());
  EXPECT_EQ(db.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(db.status().message().find("missing.db"), std::string::npos);
}

}  // namespace
}  // namespace madam::server::sqlite
