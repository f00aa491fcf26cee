// Loaders on small files in the real formats; malformed, truncated and
// missing files; B-bit packing.
#include "worker/tasks/datasets.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "tests/unit/worker/test_files.h"
#include "worker/model_export.h"

namespace madam::worker {
namespace {

namespace fs = std::filesystem;
using namespace madam::worker::testing;

class DatasetsTest : public ScratchDirTest {
 protected:
  DatasetsTest() : ScratchDirTest("madam_datasets_test") {}
};

TEST_F(DatasetsTest, ReadsIdxImagesFromGzip) {
  std::vector<uint8_t> pixels(2 * 3 * 4);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<uint8_t>(i * 10);
  WriteGz(Path("img.gz"), IdxImages(pixels, 2, 3, 4));
  auto t = ReadIdxImages(Path("img.gz"));
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->sizes(), torch::IntArrayRef({2, 3, 4}));
  EXPECT_EQ(t->index({1, 2, 3}).item<int>(), 230);
}

TEST_F(DatasetsTest, ReadsIdxLabels) {
  WriteGz(Path("lab.gz"), IdxLabels({3, 1, 4, 1, 5}));
  auto t = ReadIdxLabels(Path("lab.gz"));
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->numel(), 5);
  EXPECT_EQ((*t)[2].item<int>(), 4);
}

TEST_F(DatasetsTest, WrongMagicNamesPathAndMagic) {
  WriteGz(Path("lab.gz"), IdxLabels({1, 2}, /*magic=*/2051));
  auto t = ReadIdxLabels(Path("lab.gz"));
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find(Path("lab.gz")), std::string::npos);
  EXPECT_NE(t.status().message().find("magic"), std::string::npos);
  EXPECT_NE(t.status().message().find("2049"), std::string::npos);
}

TEST_F(DatasetsTest, TruncatedIdxIsAnError) {
  std::string bytes = IdxImages(std::vector<uint8_t>(2 * 28 * 28, 7), 2, 28, 28);
  WriteGz(Path("img.gz"), bytes.substr(0, bytes.size() - 100));
  auto t = ReadIdxImages(Path("img.gz"));
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("truncated"), std::string::npos) << t.status().message();
  WriteGz(Path("empty.gz"), "");
  EXPECT_FALSE(ReadIdxImages(Path("empty.gz")).ok());
}

TEST_F(DatasetsTest, MissingFashionMnistFileNamesIt) {
  auto d = LoadFashionMnist(Path("nowhere"));
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("train-images-idx3-ubyte.gz"), std::string::npos);
  EXPECT_NE(d.status().message().find("idx3"), std::string::npos);
}

TEST_F(DatasetsTest, LoadsFashionMnistDirectory) {
  WriteFashionMnistDir(Path("fm"), 30, 12);
  auto d = LoadFashionMnist(Path("fm"));
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->train_x.sizes(), torch::IntArrayRef({30, 784}));
  EXPECT_EQ(d->test_x.sizes(), torch::IntArrayRef({12, 784}));
  EXPECT_EQ(d->train_y.scalar_type(), torch::kLong);
  EXPECT_NEAR(d->train_x.mean().item<double>(), 0.0, 1e-4);
}

TEST_F(DatasetsTest, MismatchedImageAndLabelCounts) {
  WriteFashionMnistDir(Path("fm"), 30, 12);
  WriteGz(Path("fm/train-labels-idx1-ubyte.gz"), IdxLabels(std::vector<uint8_t>(29, 1)));
  auto d = LoadFashionMnist(Path("fm"));
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("counts differ"), std::string::npos);
}

TEST_F(DatasetsTest, ReadsCifar10Records) {
  WriteFile(Path("b.bin"), CifarRecords(3, 1, 10, 4));
  auto s = ReadCifarBinary(Path("b.bin"), 1);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->images.sizes(), torch::IntArrayRef({3, 3, 32, 32}));
  EXPECT_EQ(s->labels[0].item<int64_t>(), 4);
  EXPECT_EQ(s->labels[2].item<int64_t>(), 6);
  // Pixel (record 1, channel 0, row 0, col 5) is byte 5 of the record's image.
  EXPECT_EQ(s->images.index({1, 0, 0, 5}).item<int>(), (5 * 7 + 13 + 5 * 31) % 256);
}

TEST_F(DatasetsTest, Cifar100UsesFineLabel) {
  WriteFile(Path("train.bin"), CifarRecords(2, 2, 100, 57));
  auto s = ReadCifarBinary(Path("train.bin"), 2);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->labels[0].item<int64_t>(), 57);
  EXPECT_EQ(s->labels[1].item<int64_t>(), 58);
}

TEST_F(DatasetsTest, TruncatedCifarIsAnError) {
  std::string bytes = CifarRecords(2, 1, 10);
  WriteFile(Path("b.bin"), bytes.substr(0, bytes.size() - 1));
  auto s = ReadCifarBinary(Path("b.bin"), 1);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find(Path("b.bin")), std::string::npos);
  EXPECT_NE(s.status().message().find("truncated"), std::string::npos);
}

TEST_F(DatasetsTest, LoadsCifarDirectoriesAsStoredBytes) {
  WriteCifar10Dir(Path("c10"), 4, 3);
  auto d = LoadCifar(Path("c10"), 10);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->train_x.size(0), 20);
  EXPECT_EQ(d->test_x.size(0), 3);
  // The pixels as the files hold them: the task normalises each batch.
  EXPECT_EQ(d->train_x.scalar_type(), torch::kUInt8);
  auto direct = ReadCifarBinary(Path("c10/data_batch_1.bin"), 1);
  ASSERT_TRUE(direct.ok());
  EXPECT_TRUE(d->train_x.narrow(0, 0, 4).equal(direct->images));
  auto missing = LoadCifar(Path("c100"), 100);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("train.bin"), std::string::npos);
  WriteCifar100Dir(Path("c100"), 5, 2);
  auto d100 = LoadCifar(Path("c100"), 100);
  ASSERT_TRUE(d100.ok()) << d100.status().ToString();
  EXPECT_EQ(d100->num_classes, 100);
}

TEST_F(DatasetsTest, WikiTextVocabularyAndUnknownWords) {
  WriteWikiTextDir(Path("wt"), 40);
  auto d = LoadWikiText(Path("wt"));
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->vocab[0], "<unk>");
  EXPECT_EQ(d->vocab[1], "<eos>");
  // "zebra" is only in valid/test: it reads as <unk>.
  EXPECT_EQ(std::find(d->vocab.begin(), d->vocab.end(), "zebra"), d->vocab.end());
  // One <eos> per line.
  EXPECT_EQ(d->train.eq(1).sum().item<int64_t>(), 40 + 4);  // each heading line adds a blank line
  EXPECT_LT(d->test.max().item<int64_t>(), static_cast<int64_t>(d->vocab.size()));
  auto missing = LoadWikiText(Path("none"));
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("wiki.train.tokens"), std::string::npos);
}

TEST_F(DatasetsTest, SyntheticDataIsFixed) {
  auto a = MakeSyntheticData();
  auto b = MakeSyntheticData();
  EXPECT_TRUE(torch::equal(a.train_x, b.train_x));
  EXPECT_EQ(a.train_x.sizes(), torch::IntArrayRef({2000, 20}));
  EXPECT_EQ(a.test_x.size(0), 500);
  // Every class occurs.
  EXPECT_EQ(std::get<0>(torch::_unique(a.train_y)).numel(), 4);
}

TEST(PackBitsTest, RoundTripsEveryWidth) {
  for (int bits : {1, 3, 8, 10, 12, 16}) {
    std::vector<uint32_t> v;
    for (uint32_t i = 0; i < 100; ++i) v.push_back((i * 2654435761u) & ((1u << bits) - 1));
    auto packed = PackBits(v, bits);
    EXPECT_EQ(packed.size(), (100 * static_cast<size_t>(bits) + 7) / 8);
    EXPECT_EQ(UnpackBits(packed, 100, bits), v) << bits;
  }
}

}  // namespace
}  // namespace madam::worker
