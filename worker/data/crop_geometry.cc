#include "worker/data/crop_geometry.h"

#include <algorithm>
#include <cmath>

namespace madam::worker::data {
namespace {

// Python's round(), which torchvision's geometry uses: halves go to even.
int64_t RoundHalfEven(double v) {
  const double r = std::round(v);
  if (std::abs(v - std::trunc(v)) == 0.5 && std::fmod(r, 2.0) != 0.0) return static_cast<int64_t>(r - std::copysign(1.0, v));
  return static_cast<int64_t>(r);
}

}  // namespace

CropBox CenterCropWithinRatio(int width, int height, double min_ratio, double max_ratio) {
  const double in_ratio = static_cast<double>(width) / height;
  int64_t w = width, h = height;
  if (in_ratio < min_ratio) {
    h = std::clamp<int64_t>(RoundHalfEven(width / min_ratio), 1, height);
  } else if (in_ratio > max_ratio) {
    w = std::clamp<int64_t>(RoundHalfEven(height * max_ratio), 1, width);
  }
  return CropBox{static_cast<double>((width - w) / 2), static_cast<double>((height - h) / 2),
                 static_cast<double>(w), static_cast<double>(h)};
}

CropBox RandomResizedCrop(int width, int height, const RandomResizedCropOptions& o, SampleRng& rng,
                          bool* fell_back) {
  const double area = static_cast<double>(width) * height;
  const double log_lo = std::log(o.min_ratio), log_hi = std::log(o.max_ratio);
  for (int attempt = 0; attempt < o.attempts; ++attempt) {
    const double target = area * rng.Uniform(o.min_area, o.max_area);
    const double ratio = std::exp(rng.Uniform(log_lo, log_hi));
    const int64_t w = RoundHalfEven(std::sqrt(target * ratio));
    const int64_t h = RoundHalfEven(std::sqrt(target / ratio));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      const int64_t y = rng.UniformInt(0, height - h);
      const int64_t x = rng.UniformInt(0, width - w);
      if (fell_back) *fell_back = false;
      return CropBox{static_cast<double>(x), static_cast<double>(y), static_cast<double>(w),
                     static_cast<double>(h)};
    }
  }
  if (fell_back) *fell_back = true;
  return CenterCropWithinRatio(width, height, o.min_ratio, o.max_ratio);
}

CropBox ResizeThenCenterCrop(int width, int height, int resize, int crop) {
  const bool wide = width >= height;
  const int short_side = wide ? height : width, long_side = wide ? width : height;
  const auto new_long = static_cast<int64_t>(static_cast<double>(resize) * long_side / short_side);
  const int64_t new_w = wide ? new_long : resize, new_h = wide ? resize : new_long;
  const double top = static_cast<double>(RoundHalfEven((new_h - crop) / 2.0));
  const double left = static_cast<double>(RoundHalfEven((new_w - crop) / 2.0));
  const double sx = static_cast<double>(width) / new_w, sy = static_cast<double>(height) / new_h;
  return CropBox{left * sx, top * sy, crop * sx, crop * sy};
}

}  // namespace madam::worker::data
