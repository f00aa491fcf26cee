// `madam-worker bench-data` end to end: the real binary on a tiny generated
// ImageFolder (with a truncated file), its JSON and sentence outputs, and its
// exit status on bad data and bad usage. Asserts nothing about speed.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "tests/unit/worker/image_files.h"

namespace madam::worker {
namespace {

namespace fs = std::filesystem;
using namespace madam::worker::testing;

struct Outcome {
  int exit_code = -1;
  std::string out, err;
};

class BenchDataCommandTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
            ("madam_bench_data_test_" + std::to_string(::getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    WriteImageFolder(root_ / "data", 4, /*truncated=*/true);
  }
  void TearDown() override { fs::remove_all(root_); }

  Outcome Run(const std::string& args) {
    const fs::path out = root_ / "stdout", err = root_ / "stderr";
    const std::string cmd = std::string(MADAM_WORKER_BINARY) + " bench-data " + args + " >" + out.string() +
                            " 2>" + err.string();
    const int status = std::system(cmd.c_str());
    Outcome o;
    o.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    auto slurp = [](const fs::path& p) {
      std::ifstream in(p);
      std::stringstream ss;
      ss << in.rdbuf();
      return ss.str();
    };
    o.out = slurp(out);
    o.err = slurp(err);
    return o;
  }
  std::string DataDir() const { return (root_ / "data").string(); }
  fs::path root_;
};

TEST_F(BenchDataCommandTest, MeasuresTheTrainingPipelineAndCountsSkippedFiles) {
  Outcome o = Run("--task imagenet-resnet50 --data-dir " + DataDir() +
                  " --threads 2 --seconds 0.2 --batch-size 4 --image-size 32 --warmup-batches 1 --json");
  ASSERT_EQ(o.exit_code, 0) << o.err;
  auto j = nlohmann::json::parse(o.out);
  EXPECT_EQ(j["task"], "imagenet-resnet50");
  EXPECT_GT(j["images_per_second"].get<double>(), 0);
  EXPECT_GE(j["images"].get<int64_t>(), 1);
  EXPECT_GT(j["seconds"].get<double>(), 0);
  EXPECT_EQ(j["threads"], 2);
  EXPECT_EQ(j["batch_size"], 4);
  EXPECT_EQ(j["image_size"], 32);
  EXPECT_EQ(j["skipped_files"], 1);
  // One warning, naming the truncated file, however many epochs ran.
  const std::string bad = (root_ / "data" / "train" / "b_cls" / "b_truncated.JPEG").string();
  const size_t first = o.err.find(bad);
  ASSERT_NE(first, std::string::npos) << o.err;
  EXPECT_EQ(o.err.find(bad, first + 1), std::string::npos) << o.err;
}

TEST_F(BenchDataCommandTest, PrintsASentenceWithoutJson) {
  Outcome o = Run("--task imagenet-resnet50 --data-dir " + DataDir() +
                  " --threads 1 --seconds 0 --batch-size 5 --image-size 16 --warmup-batches 0");
  ASSERT_EQ(o.exit_code, 0) << o.err;
  EXPECT_NE(o.out.find("bench-data imagenet-resnet50: "), std::string::npos) << o.out;
  EXPECT_NE(o.out.find(" images/s"), std::string::npos) << o.out;
}

TEST_F(BenchDataCommandTest, BadDataDirectoryFailsNamingThePath) {
  fs::remove_all(root_ / "data" / "val");
  Outcome o = Run("--task imagenet-resnet50 --data-dir " + DataDir() + " --seconds 0");
  EXPECT_EQ(o.exit_code, 1);
  EXPECT_NE(o.err.find((root_ / "data" / "val").string()), std::string::npos) << o.err;
}

TEST_F(BenchDataCommandTest, AFolderOfUndecodableFilesFailsInsteadOfSpinning) {
  for (const auto& e : fs::recursive_directory_iterator(root_ / "data" / "train")) {
    if (e.is_regular_file()) WriteBytes(e.path(), "not an image");
  }
  Outcome o = Run("--task imagenet-resnet50 --data-dir " + DataDir() + " --batch-size 4 --seconds 1");
  EXPECT_EQ(o.exit_code, 1);
  EXPECT_NE(o.err.find("no file could be decoded"), std::string::npos) << o.err;
}

TEST_F(BenchDataCommandTest, BadUsageExitsTwo) {
  EXPECT_EQ(Run("--task fmnist-mlp --data-dir " + DataDir()).exit_code, 2);
  EXPECT_EQ(Run("--data-dir " + DataDir()).exit_code, 2);  // --task is required
  EXPECT_EQ(Run("--task imagenet-resnet50 --data-dir " + DataDir() + " --threads -1").exit_code, 2);
}

}  // namespace
}  // namespace madam::worker
