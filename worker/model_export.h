// B-bit model export: an int_madam-trained model written as what it really
// is, per parameter tensor the packed B-bit levels k, one sign bit per weight
// and sigma*, so that w = sign * sigma* * exp(-base_lr * k) (paper, section 4).
// Tensors the optimiser never stepped and buffers (batch-norm running
// statistics) are stored as float32.
//
// File layout (little-endian): "MDMQ", u32 version (1), string task,
// u32 bits, f64 base_lr, u32 entry count, then per entry: string name,
// u8 kind (0 ladder, 1 float parameter, 2 float buffer), u32 rank, i64 dims,
// and for a ladder entry f64 sigma*, ceil(n*B/8) level bytes (LSB first),
// ceil(n/8) sign bytes (bit set: negative); else n float32 values.
// Strings are u32 length + bytes. Functions are thread-compatible.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>

#include "common/status.h"
#include <madam/optim/integer_madam.h>

namespace madam::worker {

struct ExportStats {
  int64_t file_bytes = 0;  // size of the file written
  int64_t fp32_bytes = 0;  // the same tensors as float32
};

// Writes `model` trained by `optimizer` to `path`. REQUIRES: the optimiser
// holds `model`'s parameters.
Result<ExportStats> ExportIntegerModel(const torch::nn::Module& model,
                                       const madam::optim::IntegerMadam& optimizer,
                                       const std::string& task, const std::string& path);

// Reads an export into `model` (same architecture): every parameter and
// buffer is overwritten. Fails naming the problem when the file is not an
// export, belongs to another task, or does not match the model's tensors.
Status LoadExportedModel(const std::string& path, const std::string& task,
                         torch::nn::Module& model);

// Packs the low `bits` bits of each value, LSB first. Exposed for tests.
std::string PackBits(const std::vector<uint32_t>& values, int bits);
std::vector<uint32_t> UnpackBits(const std::string& packed, int64_t count, int bits);

}  // namespace madam::worker
