#include "worker/data/resample.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace madam::worker::data {
namespace {

// Four floats as one SSE register (GCC/Clang vector extension): an RGBX
// pixel is filtered as a unit.
typedef float Float4 __attribute__((vector_size(16)));

inline Float4 Load4(const float* p) {
  Float4 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

}  // namespace

void ComputeAxisWeights(int in_size, double box_start, double box_len, int out_size, FilterDomain domain,
                        AxisWeights& out) {
  const double scale = box_len / out_size;
  const double radius = std::max(1.0, scale);  // the triangle widens when shrinking (antialiasing)
  const double inv_radius = 1.0 / radius;
  int lo = 0, hi = in_size;
  if (domain == FilterDomain::kBox) {
    lo = std::clamp(static_cast<int>(std::floor(box_start)), 0, in_size - 1);
    hi = std::clamp(static_cast<int>(std::ceil(box_start + box_len)), lo + 1, in_size);
  }
  out.taps = 2 * static_cast<int>(std::ceil(radius)) + 2;
  out.first.assign(static_cast<size_t>(out_size), 0);
  out.count.assign(static_cast<size_t>(out_size), 0);
  out.weight.assign(static_cast<size_t>(out_size) * out.taps, 0.0f);
  std::vector<double> w(static_cast<size_t>(out.taps));
  for (int i = 0; i < out_size; ++i) {
    const double center = box_start + (i + 0.5) * scale;
    // Pixel j's centre is j + 0.5; it is in reach when |j + 0.5 - center| < radius.
    int j0 = std::max(lo, static_cast<int>(std::floor(center - radius - 0.5)));
    int j1 = std::min(hi - 1, static_cast<int>(std::ceil(center + radius - 0.5)));
    double sum = 0;
    int n = 0;
    for (int j = j0; j <= j1 && n < out.taps; ++j) {
      const double x = std::abs(j + 0.5 - center) * inv_radius;
      const double v = x < 1.0 ? 1.0 - x : 0.0;
      if (v == 0.0 && n == 0) {
        ++j0;  // leading zero weight: start later
        continue;
      }
      w[static_cast<size_t>(n++)] = v;
      sum += v;
    }
    while (n > 0 && w[static_cast<size_t>(n - 1)] == 0.0) --n;  // trailing zeros
    if (n == 0 || sum <= 0.0) {
      // Nothing in reach inside the domain (a box at its edge): the nearest pixel.
      j0 = std::clamp(static_cast<int>(std::floor(center)), lo, hi - 1);
      n = 1;
      w[0] = sum = 1.0;
    }
    out.first[static_cast<size_t>(i)] = j0;
    out.count[static_cast<size_t>(i)] = n;
    float* dst = &out.weight[static_cast<size_t>(i) * out.taps];
    for (int t = 0; t < n; ++t) dst[t] = static_cast<float>(w[static_cast<size_t>(t)] / sum);
  }
}

void Resampler::Run(const RgbxImage& src, const CropBox& box, int out_w, int out_h, bool flip,
                    FilterDomain domain, const Normalization& norm, float* dst) {
  ComputeAxisWeights(src.width(), box.x, box.w, out_w, domain, wx_);
  ComputeAxisWeights(src.height(), box.y, box.h, out_h, domain, wy_);
  int xlo = src.width(), xhi = 0;
  for (int j = 0; j < out_w; ++j) {
    xlo = std::min(xlo, wx_.first[static_cast<size_t>(j)]);
    xhi = std::max(xhi, wx_.first[static_cast<size_t>(j)] + wx_.count[static_cast<size_t>(j)]);
  }
  const size_t row_floats = static_cast<size_t>(xhi - xlo) * 4;
  if (row_floats > row_capacity_) {
    row_.reset(new float[row_floats]);
    row_capacity_ = row_floats;
  }
  float* __restrict row = row_.get();
  // (v / 255 - mean) / std as one multiply-add per value.
  float a[3], b[3];
  for (int c = 0; c < 3; ++c) {
    a[c] = 1.0f / (255.0f * norm.std[c]);
    b[c] = -norm.mean[c] / norm.std[c];
  }
  const size_t plane = static_cast<size_t>(out_w) * out_h;
  float* __restrict out_r = dst;
  float* __restrict out_g = dst + plane;
  float* __restrict out_b = dst + 2 * plane;

  for (int i = 0; i < out_h; ++i) {
    // Vertical pass: the source rows in reach of output row i, blended into
    // one float row over the columns the horizontal pass will read.
    const int y0 = wy_.first[static_cast<size_t>(i)], ny = wy_.count[static_cast<size_t>(i)];
    const float* wy = &wy_.weight[static_cast<size_t>(i) * wy_.taps];
    {
      const uint8_t* __restrict s = src.Row(y0) + static_cast<size_t>(xlo) * 4;
      const float w = wy[0];
      for (size_t k = 0; k < row_floats; ++k) row[k] = w * static_cast<float>(s[k]);
    }
    int t = 1;
    for (; t + 1 < ny; t += 2) {  // two rows per sweep: half the traffic on `row`
      const uint8_t* __restrict s0 = src.Row(y0 + t) + static_cast<size_t>(xlo) * 4;
      const uint8_t* __restrict s1 = src.Row(y0 + t + 1) + static_cast<size_t>(xlo) * 4;
      const float w0 = wy[t], w1 = wy[t + 1];
      for (size_t k = 0; k < row_floats; ++k) {
        row[k] += w0 * static_cast<float>(s0[k]) + w1 * static_cast<float>(s1[k]);
      }
    }
    for (; t < ny; ++t) {
      const uint8_t* __restrict s = src.Row(y0 + t) + static_cast<size_t>(xlo) * 4;
      const float w = wy[t];
      for (size_t k = 0; k < row_floats; ++k) row[k] += w * static_cast<float>(s[k]);
    }
    // Horizontal pass: each output pixel from its taps, RGBX as one vector.
    const size_t out_row = static_cast<size_t>(i) * out_w;
    for (int j = 0; j < out_w; ++j) {
      const int nx = wx_.count[static_cast<size_t>(j)];
      const float* wx = &wx_.weight[static_cast<size_t>(j) * wx_.taps];
      const float* p = row + static_cast<size_t>(wx_.first[static_cast<size_t>(j)] - xlo) * 4;
      Float4 acc = wx[0] * Load4(p);
      for (int u = 1; u < nx; ++u) acc += wx[u] * Load4(p + 4 * u);
      const size_t o = out_row + static_cast<size_t>(flip ? out_w - 1 - j : j);
      out_r[o] = acc[0] * a[0] + b[0];
      out_g[o] = acc[1] * a[1] + b[1];
      out_b[o] = acc[2] * a[2] + b[2];
    }
  }
}

}  // namespace madam::worker::data
