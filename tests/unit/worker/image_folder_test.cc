// ImageFolder scanning: class order, file order, what counts as an image,
// and the errors of a malformed tree (each naming the path).
#include "worker/data/image_folder.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "tests/unit/worker/image_files.h"

namespace madam::worker::data {
namespace {

namespace fs = std::filesystem;
using namespace madam::worker::testing;

class ImageFolderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
            ("madam_image_folder_test_" + std::to_string(::getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override { fs::remove_all(root_); }
  void Touch(const fs::path& rel) { WriteBytes(root_ / rel, "x"); }
  fs::path root_;
};

TEST_F(ImageFolderTest, ClassesSortedFilesSortedLabelsIndexTrainClasses) {
  for (const char* f : {"train/zebra/2.JPEG", "train/zebra/10.JPEG", "train/ant/b.jpeg", "train/ant/a.JPG",
                        "train/moth/x.png", "val/zebra/v.JPEG", "val/ant/w.JPEG"}) {
    Touch(f);
  }
  auto d = ScanImageFolder(root_.string());
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->classes, (std::vector<std::string>{"ant", "moth", "zebra"}));
  ASSERT_EQ(d->train.size(), 5);
  EXPECT_EQ(d->train.Path(0), (root_ / "train/ant/a.JPG").string());
  EXPECT_EQ(d->train.Path(1), (root_ / "train/ant/b.jpeg").string());
  EXPECT_EQ(d->train.Path(2), (root_ / "train/moth/x.png").string());
  EXPECT_EQ(d->train.Path(3), (root_ / "train/zebra/10.JPEG").string());  // byte order, like sorted()
  EXPECT_EQ(d->train.Path(4), (root_ / "train/zebra/2.JPEG").string());
  EXPECT_EQ(d->train.Label(0), 0);
  EXPECT_EQ(d->train.Label(2), 1);
  EXPECT_EQ(d->train.Label(4), 2);
  // val holds a subset of the classes; its labels are train's indices.
  ASSERT_EQ(d->val.size(), 2);
  EXPECT_EQ(d->val.Path(0), (root_ / "val/ant/w.JPEG").string());
  EXPECT_EQ(d->val.Label(0), 0);
  EXPECT_EQ(d->val.Label(1), 2);
  EXPECT_EQ(d->train.ClassCounts(3), (std::vector<int64_t>{2, 1, 2}));
}

TEST_F(ImageFolderTest, NonImageAndHiddenFilesAreIgnored) {
  for (const char* f : {"train/a/1.JPEG", "train/a/notes.txt", "train/a/.hidden.JPEG", "train/README",
                        "train/.cache/x.JPEG", "val/a/1.JPEG"}) {
    Touch(f);
  }
  auto d = ScanImageFolder(root_.string());
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->classes, (std::vector<std::string>{"a"}));
  EXPECT_EQ(d->train.size(), 1);
}

TEST_F(ImageFolderTest, FollowsSymlinkedClassFolders) {
  Touch("elsewhere/1.JPEG");
  fs::create_directories(root_ / "train");
  fs::create_directory_symlink(root_ / "elsewhere", root_ / "train" / "linked");
  Touch("val/linked/1.JPEG");
  auto d = ScanImageFolder(root_.string());
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->train.size(), 1);
}

TEST_F(ImageFolderTest, MissingDataDirectoryNamesIt) {
  auto d = ScanImageFolder((root_ / "nowhere").string());
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find((root_ / "nowhere").string()), std::string::npos) << d.status().message();
  EXPECT_FALSE(ScanImageFolder("").ok());
}

TEST_F(ImageFolderTest, MissingTrainOrValNamesThePath) {
  Touch("val/a/1.JPEG");
  auto d = ScanImageFolder(root_.string());
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find((root_ / "train").string() + ": missing"), std::string::npos)
      << d.status().message();

  fs::remove_all(root_ / "val");
  Touch("train/a/1.JPEG");
  d = ScanImageFolder(root_.string());
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find((root_ / "val").string() + ": missing"), std::string::npos)
      << d.status().message();
}

TEST_F(ImageFolderTest, EmptyClassFolderNamesIt) {
  Touch("train/a/1.JPEG");
  Touch("train/b/readme.txt");  // no images
  Touch("val/a/1.JPEG");
  auto d = ScanImageFolder(root_.string());
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find((root_ / "train" / "b").string() + ": empty class folder"),
            std::string::npos)
      << d.status().message();

  fs::remove_all(root_ / "train" / "b");
  fs::create_directories(root_ / "val" / "empty_too");
  Touch("train/empty_too/1.JPEG");
  d = ScanImageFolder(root_.string());
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find((root_ / "val" / "empty_too").string()), std::string::npos)
      << d.status().message();
}

TEST_F(ImageFolderTest, ValClassMissingFromTrainNamesIt) {
  Touch("train/a/1.JPEG");
  Touch("val/a/1.JPEG");
  Touch("val/stray/1.JPEG");
  auto d = ScanImageFolder(root_.string());
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find((root_ / "val" / "stray").string()), std::string::npos)
      << d.status().message();
  EXPECT_NE(d.status().message().find("not present in train"), std::string::npos);
}

TEST_F(ImageFolderTest, TrainWithoutClassFoldersIsAnError) {
  Touch("train/loose.JPEG");
  Touch("val/a/1.JPEG");
  auto d = ScanImageFolder(root_.string());
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("no class folders"), std::string::npos) << d.status().message();
}

}  // namespace
}  // namespace madam::worker::data
