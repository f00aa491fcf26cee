// Crop geometry of the ImageNet recipe (PAPER_RECIPES.md; the authors used
// NVIDIA DALI's ImageDecoderRandomCrop with random_area [0.1, 1],
// random_aspect_ratio [0.8, 1.25], num_attempts 100, then a resize to 224).
//
// Sizes and offsets are rounded as torchvision rounds them (Python's round:
// halves to even), so boxes match its RandomResizedCrop and CenterCrop.
// A CropBox is a region of the source image in pixel units, possibly with
// fractional edges; the resampler maps it onto the output. Pure functions;
// thread-safe. Torch-free.
#pragma once

#include <cstdint>

#include "worker/data/sample_rng.h"

namespace madam::worker::data {

struct CropBox {
  double x = 0, y = 0, w = 0, h = 0;  // [x, x + w) x [y, y + h)
};

struct RandomResizedCropOptions {
  double min_area = 0.1, max_area = 1.0;    // fraction of the image's area
  double min_ratio = 0.8, max_ratio = 1.25;  // width / height, drawn log-uniformly
  int attempts = 100;
};

// RandomResizedCrop's box: up to `attempts` draws of (area, log-aspect);
// the first whose rounded width and height fit in the image is placed
// uniformly at integer offsets. When none fits, the fallback is
// CenterCropWithinRatio (torchvision's choice, and DALI's: the whole image,
// its aspect ratio clamped into the range). `fell_back`, when given, says
// which happened. Integer boxes, inside the image.
CropBox RandomResizedCrop(int width, int height, const RandomResizedCropOptions& options,
                          SampleRng& rng, bool* fell_back = nullptr);

// The largest centred box whose aspect ratio is the image's, clamped into
// [min_ratio, max_ratio]. Integer sizes and offsets (offsets floored).
CropBox CenterCropWithinRatio(int width, int height, double min_ratio, double max_ratio);

// The validation geometry: resize so the shorter side is `resize` (the
// longer side truncated to an integer, as torchvision's Resize does), then
// take the centred `crop` x `crop` square (offsets rounded, as CenterCrop
// does), expressed as the box of the source that lands on the output. A
// triangle-filter resample of this box over the whole image gives exactly
// the pixels of resize-then-crop. REQUIRES: crop <= resize.
CropBox ResizeThenCenterCrop(int width, int height, int resize, int crop);

}  // namespace madam::worker::data
