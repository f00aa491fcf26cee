// One sample, file to batch row, on a generated ImageFolder: every colour
// case gives a normalised RGB row; results are a function of (seed, epoch,
// index); DCT-scaled decoding keeps the picture; the validation transform is
// resize-then-centre-crop; damaged and missing files are errors naming them.
#include "worker/data/image_transform.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "tests/unit/worker/image_files.h"

namespace madam::worker::data {
namespace {

namespace fs = std::filesystem;
using namespace madam::worker::testing;

class ImageTransformTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
            ("madam_image_transform_test_" + std::to_string(::getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    WriteImageFolder(root_, 4, /*truncated=*/true);
    auto d = ScanImageFolder(root_.string());
    ASSERT_TRUE(d.ok()) << d.status().ToString();
    data_ = std::move(*d);
  }
  void TearDown() override { fs::remove_all(root_); }
  int64_t IndexOf(const std::string& name) const {
    for (int64_t i = 0; i < data_.train.size(); ++i) {
      if (fs::path(data_.train.Path(i)).filename() == name) return i;
    }
    ADD_FAILURE() << name << " not in the split";
    return -1;
  }
  static TransformOptions Small(bool train) {
    TransformOptions o;
    o.image_size = 32;
    o.train = train;
    o.seed = 5;
    return o;
  }
  fs::path root_;
  ImageFolderDataset data_;
};

TEST_F(ImageTransformTest, EveryColourCaseGivesANormalisedRgbRow) {
  ImageTransform t(&data_.train, Small(true));
  std::vector<float> row(static_cast<size_t>(Small(true).RowFloats()));
  for (const char* name : {"img0.JPEG", "grey.JPEG", "cmyk.JPEG", "png.JPEG"}) {
    SampleTrace trace;
    Status s = t.Produce(IndexOf(name), 0, row.data(), &trace);
    ASSERT_TRUE(s.ok()) << s.ToString();
    for (float v : row) {
      ASSERT_TRUE(std::isfinite(v));
      ASSERT_GE(v, -2.2f);  // (0 - 0.485) / 0.229 = -2.12
      ASSERT_LE(v, 2.7f);   // (1 - 0.406) / 0.225 = 2.64
    }
  }
  // The CMYK file is one colour: RGB (200, 120, 60) as Pillow reads it.
  ASSERT_TRUE(t.Produce(IndexOf("cmyk.JPEG"), 0, row.data()).ok());
  const double want[3] = {(200 / 255.0 - 0.485) / 0.229, (120 / 255.0 - 0.456) / 0.224,
                          (60 / 255.0 - 0.406) / 0.225};
  for (int c = 0; c < 3; ++c) EXPECT_NEAR(row[static_cast<size_t>(c * 32 * 32 + 500)], want[c], 0.06) << c;
  // The greyscale file: the three planes are equal.
  ASSERT_TRUE(t.Produce(IndexOf("grey.JPEG"), 0, row.data()).ok());
  for (int k = 0; k < 32 * 32; ++k) {
    const double r = row[static_cast<size_t>(k)] * 0.229 + 0.485;
    const double g = row[static_cast<size_t>(1024 + k)] * 0.224 + 0.456;
    const double b = row[static_cast<size_t>(2048 + k)] * 0.225 + 0.406;
    ASSERT_NEAR(r, g, 1e-5);
    ASSERT_NEAR(g, b, 1e-5);
  }
}

TEST_F(ImageTransformTest, SampleIsAFunctionOfSeedEpochAndIndex) {
  const auto o = Small(true);
  ImageTransform a(&data_.train, o), b(&data_.train, o);
  std::vector<float> ra(static_cast<size_t>(o.RowFloats())), rb(ra.size()), rc(ra.size());
  const int64_t i = IndexOf("img2.JPEG");
  ASSERT_TRUE(a.Produce(i, 3, ra.data()).ok());
  ASSERT_TRUE(a.Produce(IndexOf("img1.JPEG"), 3, rc.data()).ok());  // other work in between
  ASSERT_TRUE(b.Produce(i, 3, rb.data()).ok());
  EXPECT_EQ(ra, rb);
  ASSERT_TRUE(b.Produce(i, 4, rc.data()).ok());
  EXPECT_NE(ra, rc);  // another epoch, another crop
}

TEST_F(ImageTransformTest, FlipsAboutHalfTheSamples) {
  ImageTransform t(&data_.train, Small(true));
  std::vector<float> row(static_cast<size_t>(Small(true).RowFloats()));
  int flipped = 0;
  const int n = 400;
  for (int e = 0; e < n; ++e) {
    SampleTrace trace;
    ASSERT_TRUE(t.Produce(0, e, row.data(), &trace).ok());
    flipped += trace.flipped;
  }
  EXPECT_NEAR(flipped, n / 2, 50);
}

TEST_F(ImageTransformTest, DctScalingIsUsedWhenTheCropAllowsAndKeepsThePicture) {
  // A large smooth photo-like JPEG: the validation crop of 1600x1200 at 32 px
  // is 1046 px, so 1/8 (131 px) still covers the output.
  WriteBytes(root_ / "train" / "c_cls" / "zz_large.JPEG", EncodeJpeg(SmoothRgb(1600, 1200, 3), TJPF_RGB, 92));
  auto d = ScanImageFolder(root_.string());
  ASSERT_TRUE(d.ok());
  const int64_t i = d->train.size() - 1;
  for (bool train : {false, true}) {
    TransformOptions scaled = Small(train), full = Small(train);
    full.dct_scaling = false;
    ImageTransform ts(&d->train, scaled), tf(&d->train, full);
    std::vector<float> a(static_cast<size_t>(scaled.RowFloats())), b(a.size());
    for (int epoch = 0; epoch < (train ? 5 : 1); ++epoch) {
      SampleTrace trace_scaled, trace_full;
      ASSERT_TRUE(ts.Produce(i, epoch, a.data(), &trace_scaled).ok());
      ASSERT_TRUE(tf.Produce(i, epoch, b.data(), &trace_full).ok());
      EXPECT_EQ(trace_full.scale.denom, 1);
      EXPECT_GT(trace_scaled.scale.denom, 1) << "box " << trace_scaled.box.w << "x" << trace_scaled.box.h;
      // Scaled width still covers the output.
      EXPECT_GE(trace_scaled.box.w * trace_scaled.scale.value(), 32 - 1e-9);
      double diff = 0;
      for (size_t k = 0; k < a.size(); ++k) diff += std::abs(a[k] - b[k]);
      EXPECT_LT(diff / static_cast<double>(a.size()), 0.03)  // under 2 levels of 255
          << (train ? "train" : "val") << " epoch " << epoch;
    }
  }
}

TEST_F(ImageTransformTest, ValidationIsResizeThenCentreCrop) {
  const auto o = Small(false);
  ImageTransform t(&data_.val, o);
  std::vector<float> row(static_cast<size_t>(o.RowFloats())), want(row.size());
  SampleTrace trace;
  ASSERT_TRUE(t.Produce(0, 0, row.data(), &trace).ok());
  EXPECT_EQ(o.ValidationResize(), 37);  // 32 * 256 / 224 = 36.6
  const CropBox box = ResizeThenCenterCrop(trace.info.width, trace.info.height, 37, 32);
  EXPECT_DOUBLE_EQ(trace.box.x, box.x);
  EXPECT_DOUBLE_EQ(trace.box.w, box.w);
  EXPECT_FALSE(trace.flipped);
  // The same pixels by hand: decode, resample the box over the whole image.
  const std::string bytes = [&] {
    std::ifstream in(data_.val.Path(0), std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  }();
  ImageDecoder d;
  RgbxImage img;
  ASSERT_TRUE(d.Decode(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), {1, 1}, img).ok());
  Resampler r;
  r.Run(img, box, 32, 32, false, FilterDomain::kImage, Normalization(), want.data());
  EXPECT_EQ(row, want);
  // Validation never varies with the epoch.
  std::vector<float> again(row.size());
  ASSERT_TRUE(t.Produce(0, 9, again.data()).ok());
  EXPECT_EQ(row, again);
}

TEST_F(ImageTransformTest, TruncatedAndMissingFilesAreErrorsNamingThePath) {
  ImageTransform t(&data_.train, Small(true));
  std::vector<float> row(static_cast<size_t>(Small(true).RowFloats()));
  const int64_t bad = IndexOf("b_truncated.JPEG");
  Status s = t.Produce(bad, 0, row.data());
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find(data_.train.Path(bad)), std::string::npos) << s.message();
  fs::remove(data_.train.Path(0));
  s = t.Produce(0, 0, row.data());
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find(data_.train.Path(0)), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("cannot open"), std::string::npos) << s.message();
  WriteBytes(data_.train.Path(0), "");
  s = t.Produce(0, 0, row.data());
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("empty file"), std::string::npos) << s.message();
}

TEST(TransformOptionsTest, ValidatesImageSizeAndRanges) {
  TransformOptions o;
  EXPECT_TRUE(o.Validate().ok());
  EXPECT_EQ(o.ValidationResize(), 256);
  o.image_size = 4;
  EXPECT_NE(o.Validate().message().find("image_size"), std::string::npos);
  o = TransformOptions();
  o.crop.min_area = 0;
  EXPECT_FALSE(o.Validate().ok());
  o = TransformOptions();
  o.crop.min_ratio = 2;
  EXPECT_FALSE(o.Validate().ok());
}

}  // namespace
}  // namespace madam::worker::data
