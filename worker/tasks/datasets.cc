#include "worker/tasks/datasets.h"

#include <zlib.h>

#include <fstream>
#include <memory>
#include <sstream>
#include <unordered_map>

namespace madam::worker {
namespace {

struct GzCloser {
  void operator()(gzFile_s* f) const { gzclose(f); }
};
using GzFile = std::unique_ptr<gzFile_s, GzCloser>;

// Reads exactly `n` bytes or explains why not.
Status GzReadExact(gzFile f, void* buf, size_t n, const std::string& path, const char* what) {
  auto* out = static_cast<unsigned char*>(buf);
  size_t done = 0;
  while (done < n) {
    unsigned chunk = static_cast<unsigned>(std::min<size_t>(n - done, 1u << 30));
    int got = gzread(f, out + done, chunk);
    if (got < 0) {
      int err = 0;
      const char* msg = gzerror(f, &err);
      return Status::DataLoss(path + ": cannot read " + what + ": " + (msg ? msg : "zlib error"));
    }
    if (got == 0) {
      return Status::DataLoss(path + ": truncated: expected " + std::to_string(n) + " bytes of " +
                              what + ", got " + std::to_string(done));
    }
    done += static_cast<size_t>(got);
  }
  return Status::Ok();
}

uint32_t BigEndian32(const unsigned char* b) {
  return (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | uint32_t{b[3]};
}

Result<GzFile> OpenGz(const std::string& path, const char* what) {
  std::ifstream probe(path, std::ios::binary);
  if (!probe) {
    return Status::NotFound(path + ": cannot open (expected " + std::string(what) + ")");
  }
  gzFile f = gzopen(path.c_str(), "rb");
  if (f == nullptr) {
    return Status::NotFound(path + ": cannot open (expected " + std::string(what) + ")");
  }
  return GzFile(f);
}

// Reads an idx file: magic, dims, then uint8 data. `magic` is 2051 (images,
// 3 dims) or 2049 (labels, 1 dim).
Result<torch::Tensor> ReadIdx(const std::string& path, uint32_t magic, int dims, const char* what) {
  auto file = OpenGz(path, what);
  if (!file.ok()) return file.status();
  gzFile f = file->get();
  unsigned char header[16];
  const size_t header_bytes = 4 + 4 * static_cast<size_t>(dims);
  MADAM_RETURN_IF_ERROR(GzReadExact(f, header, header_bytes, path, "idx header"));
  uint32_t got_magic = BigEndian32(header);
  if (got_magic != magic) {
    return Status::DataLoss(path + ": bad idx magic number " + std::to_string(got_magic) +
                            " (expected " + std::to_string(magic) + " for " + what + ")");
  }
  std::vector<int64_t> shape;
  int64_t total = 1;
  for (int d = 0; d < dims; ++d) {
    int64_t n = BigEndian32(header + 4 + 4 * d);
    if (n <= 0 || n > (int64_t{1} << 28)) {
      return Status::DataLoss(path + ": implausible idx dimension " + std::to_string(n));
    }
    shape.push_back(n);
    total *= n;
  }
  if (total > (int64_t{1} << 32)) return Status::DataLoss(path + ": idx file too large");
  torch::Tensor out = torch::empty(shape, torch::kUInt8);
  MADAM_RETURN_IF_ERROR(GzReadExact(f, out.data_ptr<uint8_t>(), static_cast<size_t>(total), path,
                                    "idx data"));
  return out;
}

Result<std::string> ReadWholeFile(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound(path + ": cannot open (expected " + std::string(what) + ")");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return Status::DataLoss(path + ": read error");
  return ss.str();
}

}  // namespace

Result<torch::Tensor> ReadIdxImages(const std::string& path) {
  return ReadIdx(path, 2051, 3, "an idx3 image file (magic 2051)");
}

Result<torch::Tensor> ReadIdxLabels(const std::string& path) {
  return ReadIdx(path, 2049, 1, "an idx1 label file (magic 2049)");
}

Result<ClassificationData> LoadFashionMnist(const std::string& dir) {
  auto train_x = ReadIdxImages(dir + "/train-images-idx3-ubyte.gz");
  if (!train_x.ok()) return train_x.status();
  auto train_y = ReadIdxLabels(dir + "/train-labels-idx1-ubyte.gz");
  if (!train_y.ok()) return train_y.status();
  auto test_x = ReadIdxImages(dir + "/t10k-images-idx3-ubyte.gz");
  if (!test_x.ok()) return test_x.status();
  auto test_y = ReadIdxLabels(dir + "/t10k-labels-idx1-ubyte.gz");
  if (!test_y.ok()) return test_y.status();
  if (train_x->size(0) != train_y->size(0) || test_x->size(0) != test_y->size(0)) {
    return Status::DataLoss(dir + ": image and label counts differ (train " +
                            std::to_string(train_x->size(0)) + "/" +
                            std::to_string(train_y->size(0)) + ", test " +
                            std::to_string(test_x->size(0)) + "/" +
                            std::to_string(test_y->size(0)) + ")");
  }
  if (train_x->size(1) != 28 || train_x->size(2) != 28 || test_x->size(1) != 28 ||
      test_x->size(2) != 28) {
    return Status::DataLoss(dir + ": Fashion-MNIST images must be 28x28");
  }
  ClassificationData d;
  // x / 255 standardised with one global mean/std (grey images: per-pixel
  // statistics would blow up always-black border pixels). In place: the
  // train split is 188 MB as float.
  auto tx = train_x->to(torch::kFloat).reshape({-1, 784});
  auto vx = test_x->to(torch::kFloat).reshape({-1, 784});
  const double mean = tx.mean().item<double>();
  const double std = tx.std().item<double>();
  tx.sub_(mean).div_(std);
  vx.sub_(mean).div_(std);
  d.train_x = tx;
  d.test_x = vx;
  d.train_y = train_y->to(torch::kLong);
  d.test_y = test_y->to(torch::kLong);
  d.num_classes = 10;
  if (d.train_y.max().item<int64_t>() >= 10 || d.test_y.max().item<int64_t>() >= 10) {
    return Status::DataLoss(dir + ": Fashion-MNIST labels must be 0..9");
  }
  return d;
}

Result<CifarSplit> ReadCifarBinary(const std::string& path, int label_bytes) {
  constexpr int64_t kPixels = 3 * 32 * 32;
  const int64_t record = label_bytes + kPixels;
  auto bytes = ReadWholeFile(path, label_bytes == 1 ? "a CIFAR-10 binary batch"
                                                    : "a CIFAR-100 binary file");
  if (!bytes.ok()) return bytes.status();
  const int64_t size = static_cast<int64_t>(bytes->size());
  if (size == 0 || size % record != 0) {
    return Status::DataLoss(path + ": truncated or malformed CIFAR file: " + std::to_string(size) +
                            " bytes is not a whole number of " + std::to_string(record) +
                            "-byte records");
  }
  const int64_t n = size / record;
  auto raw = torch::from_blob(bytes->data(), {n, record}, torch::kUInt8);
  CifarSplit out;
  out.labels = raw.select(1, label_bytes - 1).to(torch::kLong);
  out.images = raw.narrow(1, label_bytes, kPixels).reshape({n, 3, 32, 32}).clone();
  return out;
}

Result<ClassificationData> LoadCifar(const std::string& dir, int num_classes) {
  std::vector<std::string> train_files, test_files;
  int label_bytes = 1;
  if (num_classes == 10) {
    for (int i = 1; i <= 5; ++i) train_files.push_back(dir + "/data_batch_" + std::to_string(i) + ".bin");
    test_files.push_back(dir + "/test_batch.bin");
  } else {
    label_bytes = 2;
    train_files.push_back(dir + "/train.bin");
    test_files.push_back(dir + "/test.bin");
  }
  auto load = [&](const std::vector<std::string>& files) -> Result<CifarSplit> {
    std::vector<torch::Tensor> images, labels;
    for (const auto& f : files) {
      auto split = ReadCifarBinary(f, label_bytes);
      if (!split.ok()) return split.status();
      if (split->labels.max().item<int64_t>() >= num_classes) {
        return Status::DataLoss(f + ": label out of range for " + std::to_string(num_classes) +
                                " classes");
      }
      images.push_back(split->images);
      labels.push_back(split->labels);
    }
    return CifarSplit{torch::cat(images), torch::cat(labels)};
  };
  auto train = load(train_files);
  if (!train.ok()) return train.status();
  auto test = load(test_files);
  if (!test.ok()) return test.status();
  ClassificationData d;
  d.train_x = train->images;
  d.test_x = test->images;
  d.train_y = train->labels;
  d.test_y = test->labels;
  d.num_classes = num_classes;
  return d;
}

Result<LanguageData> LoadWikiText(const std::string& dir) {
  LanguageData d;
  std::unordered_map<std::string, int64_t> ids;
  auto id_of = [&](const std::string& w, bool grow) -> int64_t {
    auto it = ids.find(w);
    if (it != ids.end()) return it->second;
    if (!grow) return ids.at("<unk>");
    int64_t id = static_cast<int64_t>(d.vocab.size());
    ids.emplace(w, id);
    d.vocab.push_back(w);
    return id;
  };
  id_of("<unk>", true);
  id_of("<eos>", true);
  auto tokenize = [&](const std::string& name, bool grow) -> Result<torch::Tensor> {
    const std::string path = dir + "/" + name;
    auto text = ReadWholeFile(path, "a WikiText-2 token file");
    if (!text.ok()) return text.status();
    std::vector<int64_t> tokens;
    std::istringstream lines(*text);
    std::string line, word;
    while (std::getline(lines, line)) {
      std::istringstream words(line);
      while (words >> word) tokens.push_back(id_of(word, grow));
      tokens.push_back(ids.at("<eos>"));
    }
    if (tokens.size() < 2) return Status::DataLoss(path + ": no tokens (expected WikiText-2 text)");
    return torch::tensor(tokens, torch::kLong);
  };
  auto train = tokenize("wiki.train.tokens", true);
  if (!train.ok()) return train.status();
  auto valid = tokenize("wiki.valid.tokens", false);
  if (!valid.ok()) return valid.status();
  auto test = tokenize("wiki.test.tokens", false);
  if (!test.ok()) return test.status();
  d.train = *train;
  d.valid = *valid;
  d.test = *test;
  return d;
}

ClassificationData MakeSyntheticData() {
  constexpr int64_t kTrain = 2000, kTest = 500, kFeatures = 20, kClasses = 4, kHidden = 16;
  auto gen = at::detail::createCPUGenerator(12345);
  auto x = torch::randn({kTrain + kTest, kFeatures}, gen);
  auto w1 = torch::randn({kFeatures, kHidden}, gen);
  auto w2 = torch::randn({kHidden, kClasses}, gen);
  auto y = torch::tanh(x.matmul(w1) / std::sqrt(double(kFeatures))).matmul(w2).argmax(1);
  ClassificationData d;
  d.train_x = x.narrow(0, 0, kTrain).contiguous();
  d.train_y = y.narrow(0, 0, kTrain).contiguous();
  d.test_x = x.narrow(0, kTrain, kTest).contiguous();
  d.test_y = y.narrow(0, kTrain, kTest).contiguous();
  d.num_classes = kClasses;
  return d;
}

}  // namespace madam::worker
