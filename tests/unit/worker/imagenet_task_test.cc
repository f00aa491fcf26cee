// The LibTorch side of the imagenet-resnet50 task on a generated ImageFolder:
// the batch loader (shapes, labels, a permutation per epoch, the same
// batches for any number of threads, the truncated file skipped once and
// counted, flat memory) and ResNet-50 (torchvision's layout and parameter
// count, a forward and backward pass at a small image size).
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <filesystem>
#include <mutex>
#include <set>

#include "common/recipe.h"
#include "tests/unit/worker/image_files.h"
#include "worker/data/image_loader.h"
#include "worker/tasks/resnet50.h"
#include "worker/trainer.h"

namespace madam::worker {
namespace {

namespace fs = std::filesystem;
using namespace madam::worker::testing;
using data::ImageLoader;
using data::ImageLoaderOptions;

class ImageLoaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
            ("madam_image_loader_test_" + std::to_string(::getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    WriteImageFolder(root_, 6, /*truncated=*/true);  // 18 + grey, cmyk, png, truncated = 22 train files
    auto d = data::ScanImageFolder(root_.string());
    ASSERT_TRUE(d.ok()) << d.status().ToString();
    data_ = std::move(*d);
  }
  void TearDown() override { fs::remove_all(root_); }

  std::unique_ptr<ImageLoader> Make(ImageLoaderOptions o, bool validation = false) {
    auto loader = ImageLoader::Create(validation ? &data_.val : &data_.train, o, [this](const std::string& m) {
      std::lock_guard<std::mutex> lock(mu_);
      warnings_.push_back(m);
    });
    EXPECT_TRUE(loader.ok()) << loader.status().ToString();
    return loader.ok() ? std::move(*loader) : nullptr;
  }
  static ImageLoaderOptions Train(int threads) {
    auto o = ImageLoaderOptions::Train(/*image_size=*/32, /*batch_size=*/4, /*seed=*/11);
    o.threads = threads;
    return o;
  }
  int64_t TruncatedIndex() const {
    for (int64_t i = 0; i < data_.train.size(); ++i) {
      if (fs::path(data_.train.Path(i)).filename() == "b_truncated.JPEG") return i;
    }
    return -1;
  }

  fs::path root_;
  data::ImageFolderDataset data_;
  std::mutex mu_;
  std::vector<std::string> warnings_;  // guarded by mu_
};

TEST_F(ImageLoaderTest, TrainBatchesAreNormalisedNchwWithTheirFilesLabels) {
  auto loader = Make(Train(2));
  ASSERT_TRUE(loader);
  EXPECT_EQ(loader->batches_per_epoch(), 5);  // 22 files, drop_last
  loader->StartEpoch(0);
  int64_t batches = 0;
  while (auto b = loader->Next()) {
    ASSERT_EQ(b->images.dtype(), torch::kFloat);
    ASSERT_EQ(b->images.dim(), 4);
    ASSERT_EQ(b->images.size(1), 3);
    ASSERT_EQ(b->images.size(2), 32);
    ASSERT_EQ(b->images.size(3), 32);
    ASSERT_TRUE(b->images.is_contiguous());
    ASSERT_EQ(b->labels.dtype(), torch::kLong);
    ASSERT_EQ(b->labels.size(0), b->images.size(0));
    ASSERT_EQ(static_cast<int64_t>(b->samples.size()), b->images.size(0));
    for (int64_t r = 0; r < b->labels.size(0); ++r) {
      EXPECT_EQ(b->labels[r].item<int64_t>(), data_.train.Label(b->samples[static_cast<size_t>(r)]));
    }
    EXPECT_TRUE(torch::isfinite(b->images).all().item<bool>());
    EXPECT_LT(b->images.abs().max().item<float>(), 2.7f);
    EXPECT_GT(b->images.std().item<float>(), 0.05f);  // real pictures, not a constant fill
    ++batches;
  }
  EXPECT_EQ(batches, 5);
}

TEST_F(ImageLoaderTest, EachEpochIsAPermutationOfTheTrainFiles) {
  auto o = Train(3);
  o.drop_last = false;
  auto loader = Make(o);
  ASSERT_TRUE(loader);
  std::vector<int64_t> first;
  for (int64_t epoch = 0; epoch < 2; ++epoch) {
    loader->StartEpoch(epoch);
    std::vector<int64_t> seen;
    while (auto b = loader->Next()) seen.insert(seen.end(), b->samples.begin(), b->samples.end());
    // Every file once, except the truncated one, skipped.
    std::set<int64_t> unique(seen.begin(), seen.end());
    EXPECT_EQ(unique.size(), seen.size());
    EXPECT_EQ(static_cast<int64_t>(seen.size()), data_.train.size() - 1);
    EXPECT_FALSE(unique.count(TruncatedIndex()));
    if (epoch == 0) first = seen;
    else EXPECT_NE(seen, first);  // a new shuffle
  }
}

TEST_F(ImageLoaderTest, BatchesAreTheSameForAnyNumberOfThreads) {
  std::vector<std::vector<torch::Tensor>> runs;
  for (int threads : {1, 2, 5}) {
    auto o = Train(threads);
    o.prefetch_batches = threads == 5 ? 3 : 1;
    auto loader = Make(o);
    ASSERT_TRUE(loader);
    std::vector<torch::Tensor> out;
    for (int64_t epoch = 0; epoch < 2; ++epoch) {
      loader->StartEpoch(epoch);
      while (auto b = loader->Next()) {
        out.push_back(b->images.clone());
        out.push_back(b->labels.clone());
      }
    }
    runs.push_back(std::move(out));
  }
  for (size_t r = 1; r < runs.size(); ++r) {
    ASSERT_EQ(runs[r].size(), runs[0].size());
    for (size_t i = 0; i < runs[0].size(); ++i) {
      ASSERT_TRUE(torch::equal(runs[r][i], runs[0][i])) << "run " << r << " tensor " << i;
    }
  }
}

// Data parallel: two loaders at batch b, shards 0 and 1, yield together the
// 1-rank loader's batches at 2b, row for row (augmentation included).
TEST_F(ImageLoaderTest, ShardsSplitEachGlobalBatchBetweenTheRanks) {
  auto whole_options = ImageLoaderOptions::Train(32, 8, 11);
  whole_options.threads = 2;
  auto whole = Make(whole_options);
  std::vector<std::unique_ptr<ImageLoader>> shards;
  for (int64_t r = 0; r < 2; ++r) {
    auto o = Train(2);
    o.shard_rank = r;
    o.shard_count = 2;
    shards.push_back(Make(o));
    ASSERT_TRUE(shards.back());
  }
  ASSERT_TRUE(whole);
  EXPECT_EQ(whole->batches_per_epoch(), 22 / 8);
  EXPECT_EQ(shards[0]->batches_per_epoch(), whole->batches_per_epoch());
  for (int64_t epoch = 0; epoch < 2; ++epoch) {
    whole->StartEpoch(epoch);
    for (auto& s : shards) s->StartEpoch(epoch);
    int64_t batches = 0;
    while (auto w = whole->Next()) {
      auto a = shards[0]->Next(), b = shards[1]->Next();
      ASSERT_TRUE(a && b) << "epoch " << epoch << " batch " << batches;
      std::vector<int64_t> joined = a->samples;
      joined.insert(joined.end(), b->samples.begin(), b->samples.end());
      EXPECT_EQ(joined, w->samples) << "epoch " << epoch << " batch " << batches;
      EXPECT_TRUE(torch::equal(torch::cat({a->images, b->images}), w->images));
      EXPECT_TRUE(torch::equal(torch::cat({a->labels, b->labels}), w->labels));
      ++batches;
    }
    EXPECT_FALSE(shards[0]->Next());
    EXPECT_FALSE(shards[1]->Next());
    EXPECT_EQ(batches, whole->batches_per_epoch());
  }
  auto bad = Train(1);
  bad.shard_rank = 2;
  bad.shard_count = 2;
  auto refused = ImageLoader::Create(&data_.train, bad);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("shard_rank 2"), std::string::npos);
}

TEST_F(ImageLoaderTest, TruncatedFileIsSkippedWithOneWarningAndCounted) {
  auto o = Train(2);
  o.drop_last = false;
  o.shuffle = false;  // file order
  auto loader = Make(o);
  ASSERT_TRUE(loader);
  const int64_t bad = TruncatedIndex();
  ASSERT_GE(bad, 0);
  for (int64_t epoch = 0; epoch < 2; ++epoch) {
    loader->StartEpoch(epoch);
    int64_t images = 0;
    while (auto b = loader->Next()) {
      images += b->images.size(0);
      const int64_t first = b->index * 4;
      const bool holds_bad = bad >= first && bad < first + 4;
      EXPECT_EQ(b->images.size(0), std::min<int64_t>(4, data_.train.size() - first) - (holds_bad ? 1 : 0));
      for (int64_t s : b->samples) EXPECT_NE(s, bad);
    }
    EXPECT_EQ(images, data_.train.size() - 1);
    EXPECT_EQ(loader->skipped_files(), 1);
  }
  std::lock_guard<std::mutex> lock(mu_);
  ASSERT_EQ(warnings_.size(), 1u);  // once, not once per epoch
  EXPECT_NE(warnings_[0].find(data_.train.Path(bad)), std::string::npos) << warnings_[0];
}

TEST_F(ImageLoaderTest, ABadHeaderDoesNotSpoilTheFilesAfterIt) {
  // One thread, so one decoder reads every file: a header cut mid-table
  // must cost that file only.
  const std::string jpeg = EncodeJpeg(SmoothRgb(50, 40, 1), TJPF_RGB, 90);
  WriteBytes(root_ / "train" / "a_cls" / "header_cut.JPEG", jpeg.substr(0, 91));
  auto d = data::ScanImageFolder(root_.string());
  ASSERT_TRUE(d.ok());
  data_ = std::move(*d);
  auto o = Train(1);
  o.drop_last = false;
  o.shuffle = false;
  auto loader = Make(o);
  ASSERT_TRUE(loader);
  loader->StartEpoch(0);
  int64_t images = 0;
  while (auto b = loader->Next()) images += b->images.size(0);
  EXPECT_EQ(loader->skipped_files(), 2);  // the cut header and the truncated file
  EXPECT_EQ(images, data_.train.size() - 2);
}

TEST_F(ImageLoaderTest, ValidationGoesInFileOrderWithAShortLastBatch) {
  auto o = ImageLoaderOptions::Validation(32, 3);
  o.threads = 2;
  auto loader = Make(o, /*validation=*/true);
  ASSERT_TRUE(loader);
  data::ImageTransform reference(&data_.val, o.transform);
  std::vector<float> row(static_cast<size_t>(o.transform.RowFloats()));
  for (int64_t epoch = 0; epoch < 2; ++epoch) {
    loader->StartEpoch(epoch);
    std::vector<int64_t> sizes, order;
    while (auto b = loader->Next()) {
      sizes.push_back(b->images.size(0));
      for (int64_t r = 0; r < b->images.size(0); ++r) {
        const int64_t s = b->samples[static_cast<size_t>(r)];
        order.push_back(s);
        ASSERT_TRUE(reference.Produce(s, epoch, row.data()).ok());
        auto want = torch::from_blob(row.data(), {3, 32, 32});
        ASSERT_TRUE(torch::equal(b->images[r], want));
      }
    }
    EXPECT_EQ(sizes, (std::vector<int64_t>{3, 1}));  // 4 val files
    EXPECT_EQ(order, (std::vector<int64_t>{0, 1, 2, 3}));
  }
}

TEST_F(ImageLoaderTest, BatchMemoryIsRecycled) {
  auto o = Train(2);
  o.prefetch_batches = 2;
  auto loader = Make(o);
  ASSERT_TRUE(loader);
  std::set<const void*> blocks;
  for (int64_t epoch = 0; epoch < 3; ++epoch) {
    loader->StartEpoch(epoch);
    while (auto b = loader->Next()) blocks.insert(b->images.data_ptr());
  }
  // 15 batches from at most prefetch + 2 blocks: memory stays flat.
  EXPECT_LE(blocks.size(), 4u);
}

TEST_F(ImageLoaderTest, PinMemoryNeedsCuda) {
  auto o = Train(1);
  o.pin_memory = true;
  auto loader = ImageLoader::Create(&data_.train, o);
  if (!torch::cuda::is_available()) {
    ASSERT_FALSE(loader.ok());
    EXPECT_NE(loader.status().message().find("pin_memory needs CUDA"), std::string::npos);
    return;
  }
  ASSERT_TRUE(loader.ok()) << loader.status().ToString();
  (*loader)->StartEpoch(0);
  auto b = (*loader)->Next();
  ASSERT_TRUE(b.has_value());
  EXPECT_TRUE(b->images.is_pinned());
  EXPECT_TRUE(b->labels.is_pinned());
}

TEST_F(ImageLoaderTest, BadOptionsAreErrors) {
  auto o = Train(1);
  o.batch_size = 100;  // more than the 22 files, with drop_last
  auto loader = ImageLoader::Create(&data_.train, o);
  ASSERT_FALSE(loader.ok());
  EXPECT_NE(loader.status().message().find(data_.train.root()), std::string::npos);
  o = Train(1);
  o.transform.image_size = 2;
  EXPECT_FALSE(ImageLoader::Create(&data_.train, o).ok());
  o = Train(1);
  o.prefetch_batches = 0;
  EXPECT_FALSE(ImageLoader::Create(&data_.train, o).ok());
  EXPECT_GE(data::DefaultLoaderThreads(0), 1);
  EXPECT_EQ(data::DefaultLoaderThreads(100000), 1);
}

int64_t CountParameters(torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel();
  return n;
}

TEST(ResNet50Test, HasTorchvisionsParameterCountAndLayout) {
  auto model = MakeResNet50(1000, /*bn_affine=*/true);
  EXPECT_EQ(CountParameters(*model), 25557032);  // torchvision.models.resnet50()
  auto params = model->named_parameters();
  const std::pair<const char*, std::vector<int64_t>> expected[] = {
      {"conv1.weight", {64, 3, 7, 7}},
      {"layer1.0.conv1.weight", {64, 64, 1, 1}},
      {"layer1.0.conv3.weight", {256, 64, 1, 1}},
      {"layer1.0.downsample.0.weight", {256, 64, 1, 1}},
      {"layer2.0.conv2.weight", {128, 128, 3, 3}},
      {"layer2.0.downsample.1.bias", {512}},
      {"layer3.5.conv3.weight", {1024, 256, 1, 1}},
      {"layer4.2.bn3.weight", {2048}},
      {"fc.weight", {1000, 2048}},
      {"fc.bias", {1000}},
  };
  for (const auto& [name, shape] : expected) {
    ASSERT_TRUE(params.contains(name)) << name;
    EXPECT_EQ(params[name].sizes().vec(), shape) << name;
  }
  EXPECT_FALSE(params.contains("layer3.6.conv1.weight"));  // 6 blocks in stage 3
  EXPECT_FALSE(params.contains("layer1.1.downsample.0.weight"));
  // The stride sits on the 3x3 of each stage's first block (torchvision's
  // "ResNet v1.5"), not on the first 1x1.
  for (const auto& item : model->named_modules()) {
    auto* conv = item.value()->as<torch::nn::Conv2d>();
    if (conv == nullptr) continue;
    const int64_t stride = conv->options.stride()->at(0);
    const std::string& name = item.key();
    const bool strided = name == "conv1" || name == "layer2.0.conv2" || name == "layer3.0.conv2" ||
                         name == "layer4.0.conv2" || name == "layer2.0.downsample.0" ||
                         name == "layer3.0.downsample.0" || name == "layer4.0.downsample.0";
    EXPECT_EQ(stride, strided ? 2 : 1) << name;
  }
}

TEST(ResNet50Test, BatchNormWithoutAffineHasNoScaleOrShift) {
  auto affine = MakeResNet50(1000, true);
  auto plain = MakeResNet50(1000, false);
  int64_t bn_channels = 0;
  for (const auto& m : affine->modules(false)) {
    if (auto* bn = m->as<torch::nn::BatchNorm2d>()) bn_channels += bn->options.num_features();
  }
  EXPECT_EQ(bn_channels, 26560);
  EXPECT_EQ(CountParameters(*plain), 25557032 - 2 * bn_channels);
  for (const auto& item : plain->named_parameters()) {
    EXPECT_TRUE(item.key().find("bn") == std::string::npos && item.key().find("downsample.1") == std::string::npos)
        << item.key();
  }
}

TEST(ResNet50Test, RunsForwardAndBackwardAtASmallImageSize) {
  torch::manual_seed(0);
  auto model = MakeResNet50(10);
  model->train();
  auto x = torch::randn({2, 3, 32, 32});
  auto logits = model->forward(x);
  ASSERT_EQ(logits.sizes().vec(), (std::vector<int64_t>{2, 10}));
  EXPECT_TRUE(torch::isfinite(logits).all().item<bool>());
  torch::nn::functional::cross_entropy(logits, torch::tensor({1, 7})).backward();
  for (const auto& item : model->named_parameters()) {
    ASSERT_TRUE(item.value().grad().defined()) << item.key();
  }
  model->eval();
  EXPECT_EQ(model->forward(torch::randn({1, 3, 64, 48})).sizes().vec(), (std::vector<int64_t>{1, 10}));
}


// ---- the task through the training loop ------------------------------------

RunConfig ImageNetRun(const std::string& optimizer, RunParams extra) {
  extra["task"] = ParamValue::String("imagenet-resnet50");
  extra["optimizer"] = ParamValue::String(optimizer);
  auto c = ResolveConfig(extra, {});
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return c.ok() ? *c : RunConfig{};
}

TEST_F(ImageLoaderTest, ATrainRunReportsTopOneTopFiveAndSkippedFiles) {
  WorkerOptions o;
  o.device = "cpu";
  o.threads = 1;
  o.loader_threads = 2;
  o.data_dir = root_.string();
  Trainer trainer(o);
  // The recipe at a size this machine trains in seconds: 32 px crops, a
  // constant rate (the recipe's milestones and warm-up outlast 2 epochs).
  RunConfig c = ImageNetRun("madam", {{"epochs", ParamValue::Number(2)},
                                      {"batch_size", ParamValue::Number(4)},
                                      {"image_size", ParamValue::Number(32)},
                                      {"lr_schedule", ParamValue::String("constant")},
                                      {"warmup_epochs", ParamValue::Number(0)}});
  EXPECT_EQ(c.zero_init, "normal");  // the authors' --init_bias for Madam
  RunSummary s = trainer.Run(c, RunHooks{});
  ASSERT_EQ(s.status, "succeeded") << s.error;
  EXPECT_EQ(s.steps, 2 * (21 / 4));  // 22 files, one truncated; whole batches only
  ASSERT_EQ(s.final.count("test/error"), 1u);
  ASSERT_EQ(s.final.count("test/error5"), 1u);
  EXPECT_LE(s.final.at("test/error5"), s.final.at("test/error"));
  // Three classes: the top five always hold the label.
  EXPECT_EQ(s.final.at("test/error5"), 0.0);
  EXPECT_EQ(s.final.at("data/skipped_files"), 1.0);
}

TEST_F(ImageLoaderTest, BadImageFoldersAndSizesAreClearErrors) {
  WorkerOptions o;
  o.device = "cpu";
  o.threads = 1;
  o.data_dir = (root_ / "train").string();  // no train/ or val/ inside
  Trainer trainer(o);
  RunConfig c = ImageNetRun("sgd", {{"epochs", ParamValue::Number(1)},
                                    {"image_size", ParamValue::Number(32)},
                                    {"lr_schedule", ParamValue::String("constant")},
                                    {"warmup_epochs", ParamValue::Number(0)}});
  RunSummary s = trainer.Run(c, RunHooks{});
  EXPECT_EQ(s.status, "failed");
  EXPECT_NE(s.error.find((root_ / "train").string()), std::string::npos) << s.error;
  // image_size below 32 or not a multiple of 8 is refused before any run.
  for (double size : {24.0, 100.0}) {
    RunParams p{{"task", ParamValue::String("imagenet-resnet50")}, {"optimizer", ParamValue::String("sgd")},
                {"image_size", ParamValue::Number(size)}};
    auto r = ResolveConfig(p, {});
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("parameter image_size must be a"), std::string::npos)
        << r.status().message();
  }
}

}  // namespace
}  // namespace madam::worker
