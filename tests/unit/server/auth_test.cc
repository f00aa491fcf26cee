// server/auth: the token file, the role table and the per-call decision
// (ARCHITECTURE.md section 9). The wire behaviour is in
// tests/integration/security_test.cc.
#include "server/auth.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace madam::server {
namespace {

class TokenFile {
 public:
  TokenFile(const std::string& text, mode_t mode = 0600) {
    path_ = (std::filesystem::temp_directory_path() / "madam-auth-test-XXXXXX").string();
    const int fd = mkstemp(path_.data());
    EXPECT_GE(fd, 0);
    ::close(fd);
    std::ofstream(path_) << text;
    EXPECT_EQ(chmod(path_.c_str(), mode), 0);
  }
  ~TokenFile() { std::filesystem::remove(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(TokenTableTest, LoadsPairsSkippingCommentsAndBlankLines) {
  TokenFile file("# tokens\n\nA1 admin\n  R1\treader   # trailing comment\nW1 worker\n");
  auto table = TokenTable::Load(file.path());
  ASSERT_TRUE(table.ok()) << table.status().ToString();
  EXPECT_EQ(table->size(), 3u);
  EXPECT_EQ(table->Find("A1"), Role::kAdmin);
  EXPECT_EQ(table->Find("R1"), Role::kReader);
  EXPECT_EQ(table->Find("W1"), Role::kWorker);
  EXPECT_FALSE(table->Find("A").has_value());
  EXPECT_FALSE(table->Find("A12").has_value());
  EXPECT_FALSE(table->Find("").has_value());
}

TEST(TokenTableTest, RefusesFilesOthersMayRead) {
  for (mode_t mode : {0644, 0640, 0604, 0660}) {
    TokenFile file("A1 admin\n", mode);
    auto table = TokenTable::Load(file.path());
    ASSERT_FALSE(table.ok()) << std::oct << mode;
    EXPECT_NE(table.status().message().find(file.path()), std::string::npos);
  }
  TokenFile owner_only("A1 admin\n", 0400);
  EXPECT_TRUE(TokenTable::Load(owner_only.path()).ok());
}

TEST(TokenTableTest, MalformedLinesNameTheLineButNeverTheToken) {
  struct Case {
    std::string text;
    std::string expect;
  };
  for (const Case& c : {Case{"A1 admin\nsecret-token\n", ":2: expected `TOKEN ROLE`"},
                        Case{"secret-token admin extra\n", ":1: expected `TOKEN ROLE`"},
                        Case{"secret-token root\n", ":1: unknown role \"root\""},
                        Case{"secret-token admin\nsecret-token reader\n", ":2: duplicate token"},
                        Case{"# nothing\n", "no `TOKEN ROLE` lines"}}) {
    TokenFile file(c.text);
    auto table = TokenTable::Load(file.path());
    ASSERT_FALSE(table.ok()) << c.text;
    EXPECT_NE(table.status().message().find(c.expect), std::string::npos) << table.status().message();
    EXPECT_EQ(table.status().message().find("secret-token"), std::string::npos) << table.status().message();
  }
}

TEST(AuthorizeTest, DecidesByTokenThenRole) {
  TokenFile file("A1 admin\nR1 reader\nW1 worker\n");
  auto table = TokenTable::Load(file.path());
  ASSERT_TRUE(table.ok());
  const std::string submit = "/madam.v1.Coordinator/SubmitSweep";
  const std::string list = "/madam.v1.Coordinator/ListSweeps";
  const std::string acquire = "/madam.v1.WorkerApi/AcquireRun";
  EXPECT_EQ(Authorize(*table, list, "").code(), StatusCode::kUnauthenticated);
  EXPECT_EQ(Authorize(*table, list, "Bearer nope").code(), StatusCode::kUnauthenticated);
  EXPECT_EQ(Authorize(*table, list, "Basic R1").code(), StatusCode::kUnauthenticated);
  EXPECT_EQ(Authorize(*table, list, "Bearer ").code(), StatusCode::kUnauthenticated);
  EXPECT_TRUE(Authorize(*table, list, "bearer R1").ok());
  EXPECT_TRUE(Authorize(*table, list, "Bearer A1").ok());
  EXPECT_TRUE(Authorize(*table, submit, "Bearer A1").ok());
  EXPECT_TRUE(Authorize(*table, acquire, "Bearer A1").ok());
  EXPECT_TRUE(Authorize(*table, acquire, "Bearer W1").ok());
  Status s = Authorize(*table, submit, "Bearer R1");
  EXPECT_EQ(s.code(), StatusCode::kPermissionDenied);
  EXPECT_NE(s.message().find("needs the admin role"), std::string::npos) << s.message();
  EXPECT_EQ(s.message().find("R1"), std::string::npos) << s.message();
  EXPECT_EQ(Authorize(*table, submit, "Bearer W1").code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(Authorize(*table, list, "Bearer W1").code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(Authorize(*table, acquire, "Bearer R1").code(), StatusCode::kPermissionDenied);
  // Fail closed: a method missing from the table is refused even to admin.
  EXPECT_EQ(Authorize(*table, "/madam.v1.Coordinator/Unknown", "Bearer A1").code(),
            StatusCode::kPermissionDenied);
  EXPECT_EQ(Authorize(*table, "", "Bearer A1").code(), StatusCode::kPermissionDenied);
}

}  // namespace
}  // namespace madam::server
