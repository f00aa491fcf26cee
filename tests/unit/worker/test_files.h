// Writers of small data files in the real formats the worker reads
// (idx.gz, CIFAR binary, WikiText tokens), for tests. Torch-free.
#pragma once

#include <unistd.h>
#include <zlib.h>

#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

namespace madam::worker::testing {

// A fresh directory per test (named after the suite's prefix, the process and
// the test), removed afterwards.
class ScratchDirTest : public ::testing::Test {
 protected:
  explicit ScratchDirTest(std::string prefix) : prefix_(std::move(prefix)) {}
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           (prefix_ + "_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string Path(const std::string& name) const { return (dir_ / name).string(); }
  std::filesystem::path dir_;

 private:
  std::string prefix_;
};

inline void PutBigEndian32(std::string& out, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<char>((v >> s) & 0xff));
}

inline void WriteGz(const std::string& path, const std::string& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  if (!bytes.empty()) gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
  gzclose(f);
}

inline std::string IdxImages(const std::vector<uint8_t>& pixels, uint32_t n, uint32_t rows,
                             uint32_t cols, uint32_t magic = 2051) {
  std::string out;
  PutBigEndian32(out, magic);
  PutBigEndian32(out, n);
  PutBigEndian32(out, rows);
  PutBigEndian32(out, cols);
  out.append(pixels.begin(), pixels.end());
  return out;
}

inline std::string IdxLabels(const std::vector<uint8_t>& labels, uint32_t magic = 2049) {
  std::string out;
  PutBigEndian32(out, magic);
  PutBigEndian32(out, static_cast<uint32_t>(labels.size()));
  out.append(labels.begin(), labels.end());
  return out;
}

// A Fashion-MNIST-shaped directory with n_train / n_test random 28x28 images;
// the label is a function of the image so a model can learn it.
inline void WriteFashionMnistDir(const std::string& dir, uint32_t n_train, uint32_t n_test,
                                 uint32_t seed = 1) {
  std::filesystem::create_directories(dir);
  std::mt19937 rng(seed);
  auto split = [&](uint32_t n, const std::string& prefix) {
    std::vector<uint8_t> pixels(static_cast<size_t>(n) * 784), labels(n);
    for (uint32_t i = 0; i < n; ++i) {
      uint8_t label = static_cast<uint8_t>(rng() % 10);
      labels[i] = label;
      for (int p = 0; p < 784; ++p) {
        pixels[i * 784 + p] = static_cast<uint8_t>((p % 10 == label) ? 200 + rng() % 56 : rng() % 64);
      }
    }
    WriteGz(dir + "/" + prefix + "-images-idx3-ubyte.gz", IdxImages(pixels, n, 28, 28));
    WriteGz(dir + "/" + prefix + "-labels-idx1-ubyte.gz", IdxLabels(labels));
  };
  split(n_train, "train");
  split(n_test, "t10k");
}

inline void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// CIFAR records: label_bytes label bytes (coarse then fine for CIFAR-100),
// 3072 pixels. Label of record i is (first_label + i) % classes.
inline std::string CifarRecords(int n, int label_bytes, int classes, int first_label = 0) {
  std::string out;
  for (int i = 0; i < n; ++i) {
    int label = (first_label + i) % classes;
    if (label_bytes == 2) out.push_back(static_cast<char>(label % 20));  // coarse
    out.push_back(static_cast<char>(label));
    for (int p = 0; p < 3072; ++p) out.push_back(static_cast<char>((p * 7 + i * 13 + label * 31) % 256));
  }
  return out;
}

inline void WriteCifar10Dir(const std::string& dir, int per_batch, int n_test) {
  std::filesystem::create_directories(dir);
  for (int b = 1; b <= 5; ++b) {
    WriteFile(dir + "/data_batch_" + std::to_string(b) + ".bin", CifarRecords(per_batch, 1, 10, b));
  }
  WriteFile(dir + "/test_batch.bin", CifarRecords(n_test, 1, 10));
}

inline void WriteCifar100Dir(const std::string& dir, int n_train, int n_test) {
  std::filesystem::create_directories(dir);
  WriteFile(dir + "/train.bin", CifarRecords(n_train, 2, 100, 50));
  WriteFile(dir + "/test.bin", CifarRecords(n_test, 2, 100, 90));
}

// A WikiText-2-shaped directory: `lines` lines of words from a small vocabulary,
// with " = heading = " lines and blank lines as the real files have.
inline void WriteWikiTextDir(const std::string& dir, int lines, uint32_t seed = 3) {
  std::filesystem::create_directories(dir);
  std::mt19937 rng(seed);
  const char* words[] = {"the", "cat", "sat", "on", "mat", "a", "dog", "ran", "to", "park",
                         "<unk>", "@-@", ",", ".", "and", "then", "it", "was", "good", "day"};
  auto write = [&](const std::string& name, int n, bool novel) {
    std::string text;
    for (int l = 0; l < n; ++l) {
      if (l % 10 == 0) {
        text += " = Heading = \n \n";
        continue;
      }
      text += " ";
      for (int w = 0; w < 12; ++w) text += std::string(words[rng() % 20]) + " ";
      if (novel && l == 1) text += "zebra ";
      text += "\n";
    }
    WriteFile(dir + "/" + name, text);
  };
  write("wiki.train.tokens", lines, false);
  write("wiki.valid.tokens", lines / 4, true);
  write("wiki.test.tokens", lines / 4, true);
}

}  // namespace madam::worker::testing
