#include "worker/fid.h"

#include <fstream>
#include <iterator>
#include <stdexcept>

#include "worker/fid_model.h"

namespace madam::worker {
namespace {

std::string WhatOf(const std::exception& e) {
  if (const auto* c10 = dynamic_cast<const c10::Error*>(&e)) return c10->what_without_backtrace();
  return e.what();
}

// S^(1/2) of a symmetric positive semi-definite S, from its eigenvalues
// (those below zero, from rounding, taken as zero).
torch::Tensor SymmetricSqrt(const torch::Tensor& s) {
  auto [values, vectors] = torch::linalg_eigh(s);
  return torch::mm(vectors * values.clamp_min(0).sqrt().unsqueeze(0), vectors.t());
}

TensorStats ToTensors(const FeatureStats& s) {
  auto opts = torch::TensorOptions().dtype(torch::kDouble);
  return {torch::tensor(s.mean, opts), torch::tensor(s.cov, opts).view({s.dim, s.dim})};
}

// A 2-D feature tensor from a file written by torch.save (a zip archive
// with a pickle) or LibTorch's torch::save.
Result<torch::Tensor> ReadFeatures(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound(path + ": cannot open the feature file");
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  torch::Tensor t;
  std::string pickle_error;
  try {
    c10::IValue v = torch::pickle_load(bytes);
    if (!v.isTensor()) return Status::InvalidArgument(path + ": holds a " + v.tagKind() + ", not a tensor");
    t = v.toTensor();
  } catch (const std::exception& e) {
    pickle_error = WhatOf(e);
    try {
      torch::load(t, path);
    } catch (const std::exception&) {
      return Status::InvalidArgument(path + ": not a saved tensor (torch.save): " + pickle_error);
    }
  }
  if (t.dim() != 2 || t.size(0) < 2 || t.size(1) < 1) {
    return Status::InvalidArgument(path + ": features must be a 2-D tensor with at least 2 rows, got shape " +
                                   c10::str(t.sizes()));
  }
  if (!t.is_floating_point()) t = t.to(torch::kDouble);
  return t;
}

}  // namespace

TensorStats StatsOf(const torch::Tensor& features) {
  auto x = features.detach().to(torch::kCPU, torch::kDouble);
  auto mean = x.mean(0);
  auto centred = x - mean;
  auto cov = torch::mm(centred.t(), centred) / static_cast<double>(x.size(0) - 1);
  return {mean, cov};
}

double FrechetDistance(const TensorStats& a, const TensorStats& b) {
  torch::NoGradGuard no_grad;
  auto s1 = a.cov.to(torch::kCPU, torch::kDouble), s2 = b.cov.to(torch::kCPU, torch::kDouble);
  auto diff = a.mean.to(torch::kCPU, torch::kDouble) - b.mean.to(torch::kCPU, torch::kDouble);
  auto root = SymmetricSqrt(s1);
  auto m = torch::mm(torch::mm(root, s2), root);
  m = (m + m.t()) / 2;
  const double tr_covmean = torch::linalg_eigvalsh(m).clamp_min(0).sqrt().sum().item<double>();
  return diff.dot(diff).item<double>() + s1.trace().item<double>() + s2.trace().item<double>() -
         2.0 * tr_covmean;
}

Result<FeatureStats> StatsOfRows(const std::vector<double>& rows, int64_t count, int64_t dim) {
  if (count < 2 || dim < 1 || static_cast<int64_t>(rows.size()) != count * dim) {
    return Status::InvalidArgument("feature statistics need at least 2 rows of " +
                                   std::to_string(dim) + " numbers");
  }
  auto x = torch::tensor(rows, torch::kDouble).view({count, dim});
  TensorStats t = StatsOf(x);
  FeatureStats s;
  s.dim = dim;
  s.count = count;
  s.mean.assign(t.mean.data_ptr<double>(), t.mean.data_ptr<double>() + dim);
  auto cov = t.cov.contiguous();
  s.cov.assign(cov.data_ptr<double>(), cov.data_ptr<double>() + dim * dim);
  return s;
}

Result<double> FrechetDistance(const FeatureStats& a, const FeatureStats& b) {
  if (a.dim != b.dim || a.dim < 1) {
    return Status::InvalidArgument("feature dimensions differ: " + std::to_string(a.dim) + " and " +
                                   std::to_string(b.dim));
  }
  if (static_cast<int64_t>(a.mean.size()) != a.dim || static_cast<int64_t>(b.mean.size()) != b.dim ||
      static_cast<int64_t>(a.cov.size()) != a.dim * a.dim ||
      static_cast<int64_t>(b.cov.size()) != b.dim * b.dim) {
    return Status::InvalidArgument("feature statistics have the wrong sizes for their dimension");
  }
  try {
    return FrechetDistance(ToTensors(a), ToTensors(b));
  } catch (const std::exception& e) {
    return Status::Internal("Frechet distance: " + WhatOf(e));
  }
}

Result<double> FidOfFeatureFiles(const std::string& a, const std::string& b) {
  auto fa = ReadFeatures(a);
  if (!fa.ok()) return fa.status();
  auto fb = ReadFeatures(b);
  if (!fb.ok()) return fb.status();
  if (fa->size(1) != fb->size(1)) {
    return Status::InvalidArgument(a + " has " + std::to_string(fa->size(1)) + " features per row, " +
                                   b + " has " + std::to_string(fb->size(1)));
  }
  try {
    return FrechetDistance(StatsOf(*fa), StatsOf(*fb));
  } catch (const std::exception& e) {
    return Status::Internal("Frechet distance: " + WhatOf(e));
  }
}

Status CheckFidModel(const std::string& path) {
  auto model = FidModel::Load(path, torch::Device(torch::kCPU));
  return model.ok() ? Status::Ok() : model.status();
}

Result<std::unique_ptr<FidModel>> FidModel::Load(const std::string& path, torch::Device device) {
  const std::string what = "--fid-model " + path + ": ";
  std::unique_ptr<FidModel> model;
  try {
    model.reset(new FidModel(torch::jit::load(path, device), device, path));
  } catch (const std::exception& e) {
    return Status::InvalidArgument(what + "not a TorchScript module (torch.jit.save): " + WhatOf(e));
  }
  model->module_.eval();
  torch::Tensor out;
  try {
    torch::NoGradGuard no_grad;
    out = model->Forward(torch::rand({2, 3, 32, 32}, torch::TensorOptions().device(device)));
  } catch (const std::exception& e) {
    return Status::InvalidArgument(what + "fails on a 2 x 3 x 32 x 32 batch in [0, 1]: " + WhatOf(e));
  }
  if (out.dim() != 2 || out.size(0) != 2) {
    return Status::InvalidArgument(what + "must map N x 3 x H x W images to N x D features, got shape " +
                                   c10::str(out.sizes()) + " for N = 2");
  }
  if (out.size(1) < 2) {
    return Status::InvalidArgument(what + "gives " + std::to_string(out.size(1)) +
                                   " feature(s) per image; FID needs at least 2");
  }
  model->dim_ = out.size(1);
  return model;
}

torch::Tensor FidModel::Forward(const torch::Tensor& batch) {
  c10::IValue out = module_.forward({batch});
  if (!out.isTensor()) {
    throw std::runtime_error("--fid-model " + path_ + ": forward returned a " + out.tagKind() +
                             ", not a tensor");
  }
  return out.toTensor();
}

torch::Tensor FidModel::Features(const torch::Tensor& images, int64_t chunk) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> parts;
  for (int64_t s = 0; s < images.size(0); s += chunk) {
    const int64_t len = std::min(chunk, images.size(0) - s);
    auto batch = images.narrow(0, s, len).to(device_, torch::kFloat);
    parts.push_back(Forward(batch).to(torch::kCPU, torch::kDouble));
  }
  return torch::cat(parts, 0);
}

}  // namespace madam::worker
