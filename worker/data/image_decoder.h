// Decoding of the ImageNet files (ARCHITECTURE.md section 6): JPEG through
// libjpeg-turbo's TurboJPEG API, with its DCT-domain downscaling; PNG through
// libpng (real ImageNet holds a PNG named .JPEG). The format is sniffed from
// the bytes, never taken from the file name.
//
// Every image decodes to 8-bit RGBX (4 bytes a pixel, the 4th unspecified):
// greyscale JPEGs are expanded by libjpeg, CMYK/YCCK JPEGs are converted here
// with the naive formula Pillow uses (so our pixels match torchvision's:
// R = (255 - C)(255 - K) / 255, and Adobe-marked files hold inverted CMYK, as
// Photoshop writes them), PNG alpha is dropped. Four bytes a pixel lets the
// resampler treat a pixel as one 4-lane vector.
//
// A damaged file is an error value, never a crash and never a partial image:
// libjpeg's warnings (a truncated file reads as "premature end of data",
// corrupt entropy data as "corrupt JPEG data") stop the decode and fail it.
//
// An ImageDecoder owns a TurboJPEG handle and is not thread-safe: use one per
// thread. Torch-free.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace madam::worker::data {

enum class ImageFormat { kJpeg, kPng };

// A JPEG DCT scaling factor num/denom (1/1 = no scaling).
struct ScaleFactor {
  int num = 1, denom = 1;
  // The scaled size of an extent, rounded up as libjpeg does.
  int Scaled(int extent) const { return (extent * num + denom - 1) / denom; }
  double value() const { return static_cast<double>(num) / denom; }
};

struct ImageInfo {
  ImageFormat format = ImageFormat::kJpeg;
  int width = 0, height = 0;
};

// Decoded pixels, RGBX, rows `stride()` bytes apart. The memory is reused
// across decodes (it grows to the largest image seen).
class RgbxImage {
 public:
  int width() const { return width_; }
  int height() const { return height_; }
  size_t stride() const { return static_cast<size_t>(width_) * 4; }
  const uint8_t* data() const { return data_.get(); }
  uint8_t* data() { return data_.get(); }
  const uint8_t* Row(int y) const { return data_.get() + stride() * static_cast<size_t>(y); }
  // Sets the size, growing (never zero-filling) the memory when needed.
  void Resize(int width, int height);

 private:
  int width_ = 0, height_ = 0;
  size_t capacity_ = 0;
  std::unique_ptr<uint8_t[]> data_;
};

// Larger images are refused (a corrupt header must not allocate gigabytes):
// the JPEG format's own limit per side, and this many pixels.
inline constexpr int64_t kMaxDecodedPixels = int64_t{1} << 27;  // 134 M, 512 MiB RGBX

class ImageDecoder {
 public:
  ImageDecoder();
  ~ImageDecoder();
  ImageDecoder(const ImageDecoder&) = delete;
  ImageDecoder& operator=(const ImageDecoder&) = delete;

  // Format and size from the header.
  Result<ImageInfo> ReadInfo(const uint8_t* data, size_t size);

  // Decodes the whole image into `out` as RGBX. `scale` applies to JPEG only
  // (it must be one of ReductionFactors()); PNG always decodes at 1/1. The
  // out image is `scale.Scaled(width) x scale.Scaled(height)`.
  Status Decode(const uint8_t* data, size_t size, ScaleFactor scale, RgbxImage& out);

  // The reductions of tjGetScalingFactors() this decoder uses, strongest
  // first and 1/1 last: 1/8, 1/4, 1/2. libjpeg-turbo has SIMD inverse DCTs
  // for these; its 3/8 .. 7/8 kernels are scalar: with libjpeg-turbo 2.1,
  // 5/8 .. 7/8 decode slower than 1/1 and 3/8 slower than 1/2, so they are
  // not used.
  static const std::vector<ScaleFactor>& ReductionFactors();

 private:
  Status DecodeJpeg(const uint8_t* data, size_t size, ScaleFactor scale, RgbxImage& out);
  Status DecodePng(const uint8_t* data, size_t size, RgbxImage& out);
  // The error of the last TurboJPEG call, after which the handle is replaced.
  Status JpegFailure(const char* what);
  void* tj_;  // tjhandle; null only if TurboJPEG cannot allocate one
};

// The strongest reduction of ReductionFactors() for which a crop of
// `crop_w x crop_h` source pixels, scaled, still covers `out_w x out_h`
// output pixels, so the resampler only ever shrinks (quality is kept: the
// decoder's DCT scaling is itself a good low-pass). 1/1 for PNG.
ScaleFactor ChooseScale(const ImageInfo& info, double crop_w, double crop_h, int out_w, int out_h);

}  // namespace madam::worker::data
