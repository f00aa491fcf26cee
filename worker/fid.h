// The Fréchet Inception Distance (Heusel et al. 2017), as the cifar10-cgan
// task reports it in test/fid (ARCHITECTURE.md sections 3 and 6):
//   FID = |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^(1/2))
// over two sets of feature vectors, each summarised by its mean and
// (unbiased) covariance, in double precision.
//
// tr((S_a S_b)^(1/2)) is the sum of the square roots of the eigenvalues of
// the symmetric positive semi-definite S_a^(1/2) S_b S_a^(1/2) (the same
// spectrum as S_a S_b), each from a symmetric eigendecomposition;
// eigenvalues that rounding makes slightly negative count as 0, where
// pytorch-fid's scipy.linalg.sqrtm drops the imaginary parts they cause.
//
// This header is torch-free (the commands use it); worker/fid_model.h has
// the LibTorch side (the feature extractor, statistics from tensors).
// Functions never throw; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace madam::worker {

// A feature set's statistics: the mean (dim) and the covariance (dim x dim,
// row-major) of `count` vectors.
struct FeatureStats {
  int64_t dim = 0;
  int64_t count = 0;
  std::vector<double> mean;
  std::vector<double> cov;
};

// Mean and unbiased covariance of `count` rows of `dim` numbers (row-major),
// count >= 2.
Result<FeatureStats> StatsOfRows(const std::vector<double>& rows, int64_t count, int64_t dim);

// The Fréchet distance between two Gaussians; an error when the
// dimensions differ.
Result<double> FrechetDistance(const FeatureStats& a, const FeatureStats& b);

// `madam-worker fid --a A.pt --b B.pt`: the distance between two saved
// feature tensors (2-D, rows = samples; written by Python's torch.save or
// LibTorch's torch::save / torch::pickle_save).
Result<double> FidOfFeatureFiles(const std::string& a, const std::string& b);

// Loads a --fid-model file and checks it on a probe batch: a TorchScript
// module mapping N x 3 x H x W floats in [0, 1] to N x D features, D >= 2.
// The error names the file and what is wrong with it.
Status CheckFidModel(const std::string& path);

}  // namespace madam::worker
