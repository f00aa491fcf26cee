// The resize of the ImageNet recipe: a crop box of an RGBX image to an
// out_w x out_h output with a triangle filter (linear interpolation,
// antialiased when shrinking: the filter widens with the scale factor), the
// interpolation DALI calls INTERP_TRIANGULAR and Pillow calls BILINEAR
// (torchvision's default for RandomResizedCrop and Resize). The output is
// written planar (CHW) as float, optionally mirrored, normalised per channel
// ((v / 255 - mean) / std): the layout of one row of a batch tensor.
//
// Unlike Pillow the intermediate and the output stay in float (no rounding
// to 8 bits between the passes).
//
// A Resampler holds scratch memory reused across calls; not thread-safe:
// use one per thread. Torch-free.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "worker/data/crop_geometry.h"
#include "worker/data/image_decoder.h"

namespace madam::worker::data {

struct Normalization {
  float mean[3] = {0.485f, 0.456f, 0.406f};  // ImageNet's, as in the authors' recipe
  float std[3] = {0.229f, 0.224f, 0.225f};
};

// Which source pixels the filter may read: only those inside the box (a
// crop, then a resize: torchvision's RandomResizedCrop, DALI's decoder crop)
// or any pixel of the image (a resize, then a crop: the validation transform).
enum class FilterDomain { kBox, kImage };

// The weights of one axis: output i reads `count[i]` source pixels starting
// at `first[i]`, with weights `weight[i * taps + t]` (summing to 1).
struct AxisWeights {
  int taps = 0;
  std::vector<int> first, count;
  std::vector<float> weight;
};

// Triangle-filter weights mapping [box_start, box_start + box_len) of a
// source axis of `in_size` pixels onto `out_size` outputs: output i is
// centred at box_start + (i + 0.5) * box_len / out_size, the filter's radius
// is max(1, box_len / out_size) source pixels, and taps falling outside the
// domain are dropped (the rest renormalised).
void ComputeAxisWeights(int in_size, double box_start, double box_len, int out_size, FilterDomain domain,
                        AxisWeights& out);

class Resampler {
 public:
  // Resamples `box` of `src` into dst[3][out_h][out_w]; `flip` mirrors
  // left-right. REQUIRES: the box overlaps the image; out_w, out_h > 0.
  void Run(const RgbxImage& src, const CropBox& box, int out_w, int out_h, bool flip, FilterDomain domain,
           const Normalization& norm, float* dst);

 private:
  AxisWeights wx_, wy_;
  std::unique_ptr<float[]> row_;  // one vertically filtered row, RGBX floats, 16-byte aligned
  size_t row_capacity_ = 0;       // floats
};

}  // namespace madam::worker::data
