// Crop geometry and the triangle-filter resize, against references computed
// here independently: RandomResizedCrop's boxes keep the recipe's area and
// aspect bounds and stay inside the image; the validation box is
// torchvision's resize-then-centre-crop; the resampler matches a direct 2-D
// evaluation of the filter, reproduces constants and linear ramps, and
// mirrors exactly.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "worker/data/crop_geometry.h"
#include "worker/data/resample.h"
#include "worker/data/sample_rng.h"

namespace madam::worker::data {
namespace {

// An RGBX image whose channel c at (x, y) is f(x, y, c).
template <typename F>
RgbxImage MakeImage(int w, int h, F f) {
  RgbxImage img;
  img.Resize(w, h);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < 4; ++c) img.data()[img.stride() * y + 4 * x + c] = static_cast<uint8_t>(f(x, y, c));
  return img;
}

TEST(CropGeometryTest, RandomResizedCropKeepsAreaAspectAndImageBounds) {
  const RandomResizedCropOptions o;  // the recipe: area [0.1, 1], aspect [0.8, 1.25], 100 attempts
  for (auto [w, h] : std::vector<std::pair<int, int>>{{500, 375}, {375, 500}, {64, 48}, {333, 500}, {1600, 1200}}) {
    double min_frac = 1, max_frac = 0, min_ratio = 10, max_ratio = 0;
    for (int i = 0; i < 3000; ++i) {
      SampleRng rng(7, 0, static_cast<uint64_t>(i));
      bool fell_back = true;
      const CropBox b = RandomResizedCrop(w, h, o, rng, &fell_back);
      ASSERT_FALSE(fell_back);  // with 100 attempts these images always fit
      // Integer boxes inside the image.
      ASSERT_EQ(b.x, std::floor(b.x));
      ASSERT_EQ(b.w, std::floor(b.w));
      ASSERT_GE(b.x, 0);
      ASSERT_GE(b.y, 0);
      ASSERT_GE(b.w, 1);
      ASSERT_GE(b.h, 1);
      ASSERT_LE(b.x + b.w, w);
      ASSERT_LE(b.y + b.h, h);
      // Width and height are sqrt(area * r), sqrt(area / r) rounded: some
      // real (w*, h*) within half a pixel of them meets the bounds.
      const double area = static_cast<double>(w) * h;
      ASSERT_GE((b.w + 0.5) * (b.h + 0.5), 0.1 * area);
      ASSERT_LE((b.w - 0.5) * (b.h - 0.5), 1.0 * area);
      ASSERT_GE((b.w + 0.5) / (b.h - 0.5), 0.8);
      ASSERT_LE((b.w - 0.5) / (b.h + 0.5), 1.25);
      min_frac = std::min(min_frac, b.w * b.h / area);
      max_frac = std::max(max_frac, b.w * b.h / area);
      min_ratio = std::min(min_ratio, b.w / b.h);
      max_ratio = std::max(max_ratio, b.w / b.h);
    }
    // The draws cover the ranges.
    EXPECT_LT(min_frac, 0.12) << w << "x" << h;
    EXPECT_GT(max_frac, 0.7) << w << "x" << h;
    if (w >= 300) {
      EXPECT_LT(min_ratio, 0.82) << w << "x" << h;
      EXPECT_GT(max_ratio, 1.22) << w << "x" << h;
    }
  }
}

TEST(CropGeometryTest, RandomResizedCropPlacementIsUniformEnough) {
  // x offsets of boxes of a wide image spread over the free range.
  const RandomResizedCropOptions o;
  int left = 0, right = 0;
  for (int i = 0; i < 2000; ++i) {
    SampleRng rng(1, 2, static_cast<uint64_t>(i));
    const CropBox b = RandomResizedCrop(400, 300, o, rng);
    const double centre = b.x + b.w / 2;
    (centre < 200 ? left : right)++;
  }
  EXPECT_NEAR(left, 1000, 150);
  EXPECT_NEAR(right, 1000, 150);
}

TEST(CropGeometryTest, RandomResizedCropIsAFunctionOfSeedEpochAndIndex) {
  const RandomResizedCropOptions o;
  auto box = [&](uint64_t seed, uint64_t epoch, uint64_t index) {
    SampleRng rng(seed, epoch, index);
    return RandomResizedCrop(500, 375, o, rng);
  };
  const CropBox a = box(3, 1, 42), b = box(3, 1, 42);
  EXPECT_EQ(std::memcmp(&a, &b, sizeof a), 0);
  int same_index = 0, same_epoch = 0, same_seed = 0;
  for (uint64_t i = 0; i < 100; ++i) {
    const CropBox base = box(3, 1, i);
    const CropBox ni = box(3, 1, i + 1000), ne = box(3, 2, i), ns = box(4, 1, i);
    same_index += std::memcmp(&base, &ni, sizeof base) == 0;
    same_epoch += std::memcmp(&base, &ne, sizeof base) == 0;
    same_seed += std::memcmp(&base, &ns, sizeof base) == 0;
  }
  EXPECT_LT(same_index, 3);
  EXPECT_LT(same_epoch, 3);
  EXPECT_LT(same_seed, 3);
}

TEST(CropGeometryTest, FallbackIsTheCentredCropWithClampedAspect) {
  // 1000x10: no box of area >= 1000 px with aspect <= 1.25 fits in 10 rows.
  RandomResizedCropOptions o;
  SampleRng rng(0, 0, 0);
  bool fell_back = false;
  CropBox b = RandomResizedCrop(1000, 10, o, rng, &fell_back);
  EXPECT_TRUE(fell_back);
  EXPECT_EQ(b.h, 10);
  EXPECT_EQ(b.w, 12);  // round(10 * 1.25) = round(12.5): halves to even, as Python
  EXPECT_EQ(b.x, (1000 - 12) / 2);
  EXPECT_EQ(b.y, 0);
  // Tall: aspect clamped to 0.8 -> h = round(10 / 0.8) = 12 (12.5 to even).
  b = CenterCropWithinRatio(10, 1000, 0.8, 1.25);
  EXPECT_EQ(b.w, 10);
  EXPECT_EQ(b.h, 12);
  EXPECT_EQ(b.y, (1000 - 12) / 2);
  // An image within the range: the whole of it.
  b = CenterCropWithinRatio(500, 450, 0.8, 1.25);
  EXPECT_EQ(b.x, 0);
  EXPECT_EQ(b.w, 500);
  EXPECT_EQ(b.h, 450);
}

TEST(CropGeometryTest, ValidationBoxIsResizeThenCentreCrop) {
  // 500x375 -> Resize(256): 341x256 (341.33 truncated), CenterCrop(224):
  // top round(16) = 16, left round(58.5) = 58 (halves to even).
  CropBox b = ResizeThenCenterCrop(500, 375, 256, 224);
  EXPECT_DOUBLE_EQ(b.x, 58 * 500.0 / 341);
  EXPECT_DOUBLE_EQ(b.w, 224 * 500.0 / 341);
  EXPECT_DOUBLE_EQ(b.y, 16 * 375.0 / 256);
  EXPECT_DOUBLE_EQ(b.h, 224 * 375.0 / 256);
  // Portrait: 333x500 -> 256x384 (384.38 truncated); top round(80) = 80.
  b = ResizeThenCenterCrop(333, 500, 256, 224);
  EXPECT_DOUBLE_EQ(b.x, 16 * 333.0 / 256);
  EXPECT_DOUBLE_EQ(b.y, 80 * 500.0 / 384);
  EXPECT_DOUBLE_EQ(b.h, 224 * 500.0 / 384);
}

// The resampled value at output (i, j), channel c, computed directly from
// the definition (a separable triangle over source pixel centres, renormalised
// over the domain), in double.
double Reference(const RgbxImage& src, const CropBox& box, int out_w, int out_h, int i, int j, int c,
                 FilterDomain domain) {
  auto axis = [&](double start, double len, int out, int k, int size, std::vector<double>& w) {
    const double scale = len / out, radius = std::max(1.0, scale);
    const double centre = start + (k + 0.5) * scale;
    int lo = 0, hi = size;
    if (domain == FilterDomain::kBox) {
      lo = std::max(0, static_cast<int>(std::floor(start)));
      hi = std::min(size, static_cast<int>(std::ceil(start + len)));
    }
    w.assign(static_cast<size_t>(size), 0.0);
    for (int p = lo; p < hi; ++p) w[static_cast<size_t>(p)] = std::max(0.0, 1.0 - std::abs(p + 0.5 - centre) / radius);
  };
  std::vector<double> wx, wy;
  axis(box.x, box.w, out_w, j, src.width(), wx);
  axis(box.y, box.h, out_h, i, src.height(), wy);
  double num = 0, den = 0;
  for (int y = 0; y < src.height(); ++y) {
    for (int x = 0; x < src.width(); ++x) {
      const double w = wx[static_cast<size_t>(x)] * wy[static_cast<size_t>(y)];
      num += w * src.Row(y)[4 * x + c];
      den += w;
    }
  }
  return num / den;
}

TEST(ResampleTest, MatchesADirectEvaluationOfTheFilter) {
  const RgbxImage src = MakeImage(97, 71, [](int x, int y, int c) { return (x * 7 + y * 13 + c * 50 + x * y) % 256; });
  Normalization unit;  // identity normalisation: output = value / 255
  for (int c = 0; c < 3; ++c) {
    unit.mean[c] = 0;
    unit.std[c] = 1;
  }
  struct Case {
    CropBox box;
    int out_w, out_h;
    FilterDomain domain;
  };
  const Case cases[] = {
      {{10, 5, 60, 50}, 16, 12, FilterDomain::kBox},          // shrink ~4x
      {{0, 0, 97, 71}, 40, 30, FilterDomain::kBox},           // whole image
      {{30, 20, 12, 9}, 24, 20, FilterDomain::kBox},          // enlarge 2x
      {{13.7, 8.2, 51.3, 44.9}, 20, 20, FilterDomain::kImage},  // fractional box, filter reads outside it
      {{0.5, 0.25, 96, 70}, 31, 23, FilterDomain::kImage},
  };
  Resampler r;
  for (const Case& k : cases) {
    for (bool flip : {false, true}) {
      std::vector<float> out(static_cast<size_t>(3 * k.out_w * k.out_h));
      r.Run(src, k.box, k.out_w, k.out_h, flip, k.domain, unit, out.data());
      double worst = 0;
      for (int c = 0; c < 3; ++c) {
        for (int i = 0; i < k.out_h; ++i) {
          for (int j = 0; j < k.out_w; ++j) {
            const double want = Reference(src, k.box, k.out_w, k.out_h, i, j, c, k.domain) / 255.0;
            const int oj = flip ? k.out_w - 1 - j : j;
            const double got = out[static_cast<size_t>((c * k.out_h + i) * k.out_w + oj)];
            worst = std::max(worst, std::abs(got - want));
          }
        }
      }
      EXPECT_LT(worst, 2e-5) << "box " << k.box.x << "," << k.box.y << " " << k.box.w << "x" << k.box.h
                             << " -> " << k.out_w << "x" << k.out_h << " flip " << flip;
    }
  }
}

TEST(ResampleTest, ConstantImageGivesTheNormalisedConstant) {
  const RgbxImage src = MakeImage(120, 90, [](int, int, int c) { return c == 0 ? 200 : c == 1 ? 100 : 30; });
  const Normalization n;  // ImageNet's
  std::vector<float> out(3 * 32 * 32);
  Resampler r;
  for (const CropBox& box : {CropBox{0, 0, 120, 90}, CropBox{100, 70, 20, 20}, CropBox{3.3, 1.1, 7, 9}}) {
    r.Run(src, box, 32, 32, false, FilterDomain::kBox, n, out.data());
    const double want[3] = {(200 / 255.0 - 0.485) / 0.229, (100 / 255.0 - 0.456) / 0.224,
                            (30 / 255.0 - 0.406) / 0.225};
    for (int c = 0; c < 3; ++c)
      for (int k = 0; k < 32 * 32; ++k) ASSERT_NEAR(out[static_cast<size_t>(c * 1024 + k)], want[c], 1e-5);
  }
}

TEST(ResampleTest, LinearRampIsReproducedAwayFromTheEdges) {
  // Red rises 2 levels a pixel left to right, green 1 a row. With whole
  // shrink factors (and when enlarging) the sampled triangle is symmetric
  // about each output centre, so it returns the ramp's value there.
  const RgbxImage src = MakeImage(120, 100, [](int x, int y, int c) { return c == 0 ? 10 + 2 * x : c == 1 ? 20 + y : 0; });
  Normalization unit;
  for (int c = 0; c < 3; ++c) {
    unit.mean[c] = 0;
    unit.std[c] = 1;
  }
  const int out = 24;
  for (const CropBox& box : {CropBox{0, 0, 120, 96}, CropBox{20, 30, 48, 72}, CropBox{40, 40, 12, 12}}) {
    std::vector<float> o(3 * out * out);
    Resampler r;
    r.Run(src, box, out, out, false, FilterDomain::kImage, unit, o.data());
    const double sx = box.w / out, sy = box.h / out;
    const double rx = std::max(1.0, sx), ry = std::max(1.0, sy);
    for (int i = 0; i < out; ++i) {
      for (int j = 0; j < out; ++j) {
        const double cx = box.x + (j + 0.5) * sx, cy = box.y + (i + 0.5) * sy;
        if (cx - rx < 0 || cx + rx > 120 || cy - ry < 0 || cy + ry > 100) continue;  // edge: support cut
        ASSERT_NEAR(o[static_cast<size_t>(i * out + j)] * 255.0, 10 + 2 * (cx - 0.5), 1e-3) << i << "," << j;
        ASSERT_NEAR(o[static_cast<size_t>(out * out + i * out + j)] * 255.0, 20 + (cy - 0.5), 1e-3) << i << "," << j;
      }
    }
  }
}

TEST(ResampleTest, AxisWeightsAreNormalisedAndWidenWhenShrinking) {
  AxisWeights w;
  ComputeAxisWeights(400, 0, 400, 100, FilterDomain::kBox, w);  // 4x shrink: radius 4
  for (int i = 0; i < 100; ++i) {
    double sum = 0;
    for (int t = 0; t < w.count[static_cast<size_t>(i)]; ++t) sum += w.weight[static_cast<size_t>(i * w.taps + t)];
    ASSERT_NEAR(sum, 1.0, 1e-6);
  }
  EXPECT_EQ(w.count[50], 8);  // centre 202: pixels 198..205 within 4 of it
  ComputeAxisWeights(50, 0, 50, 100, FilterDomain::kBox, w);  // 2x enlarge: plain linear interpolation
  EXPECT_LE(w.count[50], 2);
}

}  // namespace
}  // namespace madam::worker::data
