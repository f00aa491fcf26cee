// One ImageNet sample, file to batch row: read, decode, crop, resize, flip,
// normalise (the authors' recipe, PAPER_RECIPES.md; ARCHITECTURE.md
// section 6).
//
// Training: RandomResizedCrop (area [0.1, 1], aspect [0.8, 1.25] log-uniform,
// 100 attempts, centre-crop fallback) resized to image_size, mirrored with
// probability 1/2. Validation: shorter side resized to
// round(image_size * 256 / 224), centre crop image_size. Both resample with
// the triangle filter and normalise with ImageNet's mean and std. The JPEG
// decoder's DCT scaling (1/2, 1/4, 1/8) is used whenever the crop, scaled,
// still covers the output.
//
// Random choices come from SampleRng(seed, epoch, sample index): a sample's
// pixels depend on nothing else. An ImageTransform holds a decoder and
// scratch memory: not thread-safe, one per loader thread. It reads the split
// it was given, which must outlive it. Torch-free.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "worker/data/crop_geometry.h"
#include "worker/data/image_decoder.h"
#include "worker/data/image_folder.h"
#include "worker/data/resample.h"

namespace madam::worker::data {

inline constexpr int kDefaultImageSize = 224;

struct TransformOptions {
  int image_size = kDefaultImageSize;  // output is image_size x image_size
  bool train = true;                   // false: the validation transform
  RandomResizedCropOptions crop;
  double flip_probability = 0.5;
  Normalization normalization;
  bool dct_scaling = true;  // false: always decode at full size (tests compare the two)
  uint64_t seed = 0;

  // image_size * 256 / 224, rounded: 256 at the recipe's 224.
  int ValidationResize() const;
  // Floats in one output row: 3 * image_size^2.
  int64_t RowFloats() const { return int64_t{3} * image_size * image_size; }
  // image_size >= 8, crop ranges ordered and positive.
  Status Validate() const;
};

// What one sample's decode did (for tests and the benchmark).
struct SampleTrace {
  ImageInfo info;
  CropBox box;            // in source pixels
  ScaleFactor scale;      // the DCT scaling used
  bool flipped = false;
  bool fell_back = false;  // RandomResizedCrop found no box in its attempts
};

class ImageTransform {
 public:
  ImageTransform(const ImageFolderSplit* split, TransformOptions options);

  // Writes sample `index` of `epoch`, as planar float [3][size][size], to
  // `dst`. An error names the file and the cause (the caller skips it).
  Status Produce(int64_t index, int64_t epoch, float* dst, SampleTrace* trace = nullptr);

  // The same for encoded bytes already in memory (tests).
  Status ProduceFromBytes(const uint8_t* data, size_t size, int64_t index, int64_t epoch, float* dst,
                          SampleTrace* trace = nullptr);

 private:
  Status ReadFile(const std::string& path);

  const ImageFolderSplit* split_;
  TransformOptions options_;
  ImageDecoder decoder_;
  Resampler resampler_;
  RgbxImage pixels_;
  std::vector<uint8_t> file_;
};

}  // namespace madam::worker::data
