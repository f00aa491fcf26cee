// The decoder on real files from TurboJPEG's compressor and libpng: every
// colour case comes out RGB of the right size with the right pixels; DCT
// scaling gives the scaled size and the same picture; damaged files are
// errors, never crashes.
#include "worker/data/image_decoder.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <random>

#include "tests/unit/worker/image_files.h"

namespace madam::worker::data {
namespace {

using namespace madam::worker::testing;

const uint8_t* Bytes(const std::string& s) { return reinterpret_cast<const uint8_t*>(s.data()); }

// Mean absolute difference between the decoded RGB and `want` (RGB or grey).
double MeanAbsDiff(const RgbxImage& got, const Pixels& want) {
  double sum = 0;
  for (int y = 0; y < want.height; ++y) {
    for (int x = 0; x < want.width; ++x) {
      for (int c = 0; c < 3; ++c) {
        const int w = want.at(x, y, want.channels == 1 ? 0 : c);
        sum += std::abs(static_cast<int>(got.Row(y)[x * 4 + c]) - w);
      }
    }
  }
  return sum / (3.0 * want.width * want.height);
}

TEST(ImageDecoderTest, RgbJpegDecodesToItsPixels) {
  const Pixels src = SmoothRgb(123, 77, 1);
  const std::string jpeg = EncodeJpeg(src, TJPF_RGB, 95);
  ImageDecoder d;
  auto info = d.ReadInfo(Bytes(jpeg), jpeg.size());
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->format, ImageFormat::kJpeg);
  EXPECT_EQ(info->width, 123);
  EXPECT_EQ(info->height, 77);
  RgbxImage out;
  ASSERT_TRUE(d.Decode(Bytes(jpeg), jpeg.size(), {1, 1}, out).ok());
  EXPECT_EQ(out.width(), 123);
  EXPECT_EQ(out.height(), 77);
  EXPECT_LT(MeanAbsDiff(out, src), 3.0);
}

TEST(ImageDecoderTest, GreyscaleJpegDecodesToEqualRgb) {
  Pixels grey = MakePixels(64, 40, 1);
  for (int y = 0; y < 40; ++y)
    for (int x = 0; x < 64; ++x) grey.at(x, y, 0) = static_cast<uint8_t>(30 + 3 * x);
  const std::string jpeg = EncodeJpeg(grey, TJPF_GRAY, 95);
  ImageDecoder d;
  RgbxImage out;
  ASSERT_TRUE(d.Decode(Bytes(jpeg), jpeg.size(), {1, 1}, out).ok());
  ASSERT_EQ(out.width(), 64);
  ASSERT_EQ(out.height(), 40);
  for (int y = 0; y < 40; ++y) {
    for (int x = 0; x < 64; ++x) {
      const uint8_t* p = out.Row(y) + 4 * x;
      ASSERT_EQ(p[0], p[1]);
      ASSERT_EQ(p[1], p[2]);
    }
  }
  EXPECT_LT(MeanAbsDiff(out, grey), 2.0);
}

TEST(ImageDecoderTest, AdobeCmykJpegDecodesToRgbAsPillowDoes) {
  // Adobe (inverted) CMYK as stored: C'=200 M'=120 Y'=60 K'=255 (no black),
  // which Pillow reads as RGB (200, 120, 60); K'=128 halves each channel.
  for (int k : {255, 128}) {
    const std::string jpeg = EncodeJpeg(Constant(40, 24, 4, {200, 120, 60, static_cast<uint8_t>(k)}), TJPF_CMYK, 98);
    ImageDecoder d;
    RgbxImage out;
    Status s = d.Decode(Bytes(jpeg), jpeg.size(), {1, 1}, out);
    ASSERT_TRUE(s.ok()) << s.ToString();
    ASSERT_EQ(out.width(), 40);
    ASSERT_EQ(out.height(), 24);
    const uint8_t* p = out.Row(12) + 4 * 20;
    EXPECT_NEAR(p[0], 200 * k / 255.0, 3) << "K'=" << k;
    EXPECT_NEAR(p[1], 120 * k / 255.0, 3) << "K'=" << k;
    EXPECT_NEAR(p[2], 60 * k / 255.0, 3) << "K'=" << k;
  }
}

TEST(ImageDecoderTest, PngNamedJpegDecodesExactly) {
  const Pixels src = SmoothRgb(31, 17, 4);
  const std::string png = EncodePng(src);
  ImageDecoder d;
  auto info = d.ReadInfo(Bytes(png), png.size());
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->format, ImageFormat::kPng);
  RgbxImage out;
  ASSERT_TRUE(d.Decode(Bytes(png), png.size(), {1, 1}, out).ok());
  ASSERT_EQ(out.width(), 31);
  ASSERT_EQ(out.height(), 17);
  EXPECT_EQ(MeanAbsDiff(out, src), 0.0);  // lossless
}

TEST(ImageDecoderTest, PngAlphaIsDropped) {
  Pixels rgba = Constant(8, 8, 4, {10, 20, 30, 0});  // fully transparent
  const std::string png = EncodePng(rgba);
  ImageDecoder d;
  RgbxImage out;
  ASSERT_TRUE(d.Decode(Bytes(png), png.size(), {1, 1}, out).ok());
  EXPECT_EQ(out.Row(3)[4 * 3 + 0], 10);
  EXPECT_EQ(out.Row(3)[4 * 3 + 1], 20);
  EXPECT_EQ(out.Row(3)[4 * 3 + 2], 30);
}

TEST(ImageDecoderTest, DctScalingGivesTheScaledSizeAndTheSamePicture) {
  const Pixels src = SmoothRgb(203, 150, 2);
  const std::string jpeg = EncodeJpeg(src, TJPF_RGB, 95);
  ImageDecoder d;
  for (const ScaleFactor& f : ImageDecoder::ReductionFactors()) {
    RgbxImage out;
    ASSERT_TRUE(d.Decode(Bytes(jpeg), jpeg.size(), f, out).ok());
    EXPECT_EQ(out.width(), (203 * f.num + f.denom - 1) / f.denom);
    EXPECT_EQ(out.height(), (150 * f.num + f.denom - 1) / f.denom);
    // Each decoded pixel is close to the source block it stands for.
    double sum = 0;
    int n = 0;
    const int step = f.denom / f.num;
    for (int y = 0; y + 1 < out.height(); ++y) {
      for (int x = 0; x + 1 < out.width(); ++x) {
        for (int c = 0; c < 3; ++c) {
          double block = 0;
          for (int v = 0; v < step; ++v)
            for (int u = 0; u < step; ++u) block += src.at(x * step + u, y * step + v, c);
          sum += std::abs(out.Row(y)[x * 4 + c] - block / (step * step));
          ++n;
        }
      }
    }
    EXPECT_LT(sum / n, 3.0) << "scale 1/" << f.denom;
  }
}

TEST(ImageDecoderTest, ReductionFactorsAreTheSimdOnes) {
  const auto& f = ImageDecoder::ReductionFactors();
  ASSERT_EQ(f.size(), 4u);
  EXPECT_EQ(f[0].denom, 8);
  EXPECT_EQ(f[1].denom, 4);
  EXPECT_EQ(f[2].denom, 2);
  EXPECT_EQ(f[3].denom, 1);
}

TEST(ImageDecoderTest, ChooseScaleKeepsTheCropAtLeastTheOutputSize) {
  ImageInfo info{ImageFormat::kJpeg, 2000, 1600};
  EXPECT_EQ(ChooseScale(info, 1800, 1500, 224, 224).denom, 4);  // 1/8 would give 225 x 187.5
  EXPECT_EQ(ChooseScale(info, 1800, 1800, 224, 224).denom, 8);  // 225 x 225 covers 224
  EXPECT_EQ(ChooseScale(info, 500, 500, 224, 224).denom, 2);
  EXPECT_EQ(ChooseScale(info, 447, 500, 224, 224).denom, 1);  // 223.5 < 224
  EXPECT_EQ(ChooseScale(info, 100, 100, 224, 224).denom, 1);   // upscaling: never reduce
  info.format = ImageFormat::kPng;
  EXPECT_EQ(ChooseScale(info, 1800, 1800, 224, 224).denom, 1);
  // libjpeg rounds scaled sizes up: 1001 px at 1/8 is 126, so a full-width
  // crop of 1001 px covers 126 output pixels.
  ImageInfo odd{ImageFormat::kJpeg, 1001, 1001};
  EXPECT_EQ(ChooseScale(odd, 1001, 1001, 126, 126).denom, 8);
}

TEST(ImageDecoderTest, TruncatedJpegIsAnErrorNotAPartialImage) {
  const std::string jpeg = EncodeJpeg(SmoothRgb(120, 90, 3), TJPF_RGB, 90);
  ImageDecoder d;
  RgbxImage out;
  for (size_t keep : {jpeg.size() / 2, jpeg.size() - 2, size_t{700}}) {
    const std::string cut = jpeg.substr(0, keep);
    Status s = d.Decode(Bytes(cut), cut.size(), {1, 1}, out);
    EXPECT_FALSE(s.ok()) << "kept " << keep << " of " << jpeg.size() << " bytes";
    EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  }
  // The decoder is still usable afterwards.
  EXPECT_TRUE(d.Decode(Bytes(jpeg), jpeg.size(), {1, 1}, out).ok());
}

TEST(ImageDecoderTest, CorruptOrForeignBytesAreErrors) {
  ImageDecoder d;
  RgbxImage out;
  const std::string garbage = "\xFF\xD8\xFF\xE0 this is not really a JPEG at all, just text";
  EXPECT_FALSE(d.ReadInfo(Bytes(garbage), garbage.size()).ok());
  EXPECT_FALSE(d.Decode(Bytes(garbage), garbage.size(), {1, 1}, out).ok());
  const std::string gif = "GIF89a....";
  auto info = d.ReadInfo(Bytes(gif), gif.size());
  ASSERT_FALSE(info.ok());
  EXPECT_NE(info.status().message().find("neither a JPEG nor a PNG"), std::string::npos);
  EXPECT_FALSE(d.ReadInfo(Bytes(gif), 0).ok());
  std::string png = EncodePng(SmoothRgb(40, 40, 1));
  png = png.substr(0, png.size() / 2);
  EXPECT_FALSE(d.Decode(Bytes(png), png.size(), {1, 1}, out).ok());
  // Flipped bits in the entropy-coded data.
  std::string jpeg = EncodeJpeg(SmoothRgb(120, 90, 3), TJPF_RGB, 90);
  for (size_t i = jpeg.size() / 2; i < jpeg.size() / 2 + 40; ++i) jpeg[i] = static_cast<char>(0xFF);
  EXPECT_FALSE(d.Decode(Bytes(jpeg), jpeg.size(), {1, 1}, out).ok());
}

TEST(ImageDecoderTest, DamagedFilesNeverCrashNeverLieAndNeverPoisonTheDecoder) {
  // Every truncation point and many random byte changes of a JPEG and a
  // PNG: each decode either fails or yields an image of the header's size,
  // and the same decoder then still decodes the good file.
  std::mt19937 rng(1234);
  ImageDecoder d;
  RgbxImage out;
  for (const std::string& good : {EncodeJpeg(SmoothRgb(64, 48, 5), TJPF_RGB, 90), EncodePng(SmoothRgb(30, 20, 5)),
                                  EncodeJpeg(Constant(24, 16, 4, {10, 20, 30, 40}), TJPF_CMYK, 90)}) {
    int failures = 0;
    for (size_t keep = 0; keep < good.size(); keep += 7) {
      const std::string cut = good.substr(0, keep);
      failures += !d.Decode(Bytes(cut), cut.size(), {1, 1}, out).ok();
      ASSERT_TRUE(d.Decode(Bytes(good), good.size(), {1, 1}, out).ok()) << "after keeping " << keep;
    }
    EXPECT_GT(failures, 0);
    for (int trial = 0; trial < 300; ++trial) {
      std::string bad = good;
      const int changes = 1 + static_cast<int>(rng() % 8);
      for (int c = 0; c < changes; ++c) bad[rng() % bad.size()] = static_cast<char>(rng() % 256);
      auto info = d.ReadInfo(Bytes(bad), bad.size());
      for (const ScaleFactor& f : ImageDecoder::ReductionFactors()) {
        if (d.Decode(Bytes(bad), bad.size(), f, out).ok()) {
          ASSERT_TRUE(info.ok());
          const ScaleFactor used = info->format == ImageFormat::kPng ? ScaleFactor{1, 1} : f;
          EXPECT_EQ(out.width(), used.Scaled(info->width));
          EXPECT_EQ(out.height(), used.Scaled(info->height));
        }
      }
      ASSERT_TRUE(d.Decode(Bytes(good), good.size(), {1, 1}, out).ok()) << "after trial " << trial;
    }
  }
}

}  // namespace
}  // namespace madam::worker::data
