// The LibTorch side of FID (worker/fid.h): the feature extractor behind
// --fid-model and feature statistics as tensors. Used by the cifar10-cgan
// task and its tests. Thread-compatible.
#pragma once

#include <torch/script.h>
#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>

#include "common/status.h"

namespace madam::worker {

// Mean [d] and covariance [d, d] in double.
struct TensorStats {
  torch::Tensor mean, cov;
};

// Statistics of features [n, d] (n >= 2; any floating type, any device):
// computed in double on the CPU.
TensorStats StatsOf(const torch::Tensor& features);
// The Fréchet distance between two statistics (worker/fid.h says how).
double FrechetDistance(const TensorStats& a, const TensorStats& b);

// A TorchScript feature extractor: images [n, 3, H, W] in [0, 1] to
// features [n, d]; the module resizes and normalises them itself (as
// tools/export_fid_inception.py exports pytorch-fid's Inception-v3).
class FidModel {
 public:
  // Loads `path` onto `device` and checks it on a probe batch.
  static Result<std::unique_ptr<FidModel>> Load(const std::string& path, torch::Device device);

  // Features of `images` ([n, 3, H, W], values in [0, 1], on any device),
  // `chunk` images per forward pass; [n, dim()] double on the CPU.
  torch::Tensor Features(const torch::Tensor& images, int64_t chunk = 250);
  int64_t dim() const { return dim_; }
  const std::string& path() const { return path_; }

 private:
  FidModel(torch::jit::script::Module module, torch::Device device, std::string path)
      : module_(std::move(module)), device_(device), path_(std::move(path)) {}
  torch::Tensor Forward(const torch::Tensor& batch);

  torch::jit::script::Module module_;
  torch::Device device_;
  std::string path_;
  int64_t dim_ = 0;
};

}  // namespace madam::worker
