#include "worker/update_stats.h"

#include <cmath>
#include <limits>

namespace madam::worker {
namespace {

// What one optimiser step did to one tensor (the optim/* diagnostics).
struct UpdateStats {
  double delta_sq = 0;   // ||W_after - W_before||^2
  double before_sq = 0;  // ||W_before||^2
  int64_t flips = 0;     // weights whose sign changed
  int64_t at_bound = 0;  // weights with |w| >= bound * (1 - 1e-6)
};

UpdateStats CompareUpdate(const torch::Tensor& before, const torch::Tensor& after, double bound) {
  UpdateStats st;
  const double threshold = bound > 0 ? bound * (1 - 1e-6) : std::numeric_limits<double>::infinity();
  if (before.device().is_cpu() && before.scalar_type() == torch::kFloat && before.is_contiguous() &&
      after.is_contiguous() && after.scalar_type() == torch::kFloat) {
    // One pass over raw memory: the diagnostics run every kLogEvery steps and
    // must not cost a noticeable share of training time.
    // Eight independent lanes per block so the compiler can vectorise
    // without reassociating; block sums go to doubles to keep precision.
    const float* b = before.data_ptr<float>();
    const float* a = after.data_ptr<float>();
    const float t = static_cast<float>(threshold);
    const int64_t n = before.numel();
    constexpr int64_t kLanes = 8, kBlock = 1024;
    double d2 = 0, b2 = 0;
    int64_t flips = 0, at_bound = 0;
    int64_t i = 0;
    for (; i + kBlock <= n; i += kBlock) {
      float ld[kLanes] = {}, lb[kLanes] = {};
      int32_t lf[kLanes] = {}, lt[kLanes] = {};
      for (int64_t j = i; j < i + kBlock; j += kLanes) {
        for (int64_t k = 0; k < kLanes; ++k) {
          const float d = a[j + k] - b[j + k];
          ld[k] += d * d;
          lb[k] += b[j + k] * b[j + k];
          lf[k] += (a[j + k] * b[j + k] < 0.0f) ? 1 : 0;
          lt[k] += (std::fabs(a[j + k]) >= t) ? 1 : 0;
        }
      }
      for (int64_t k = 0; k < kLanes; ++k) {
        d2 += ld[k];
        b2 += lb[k];
        flips += lf[k];
        at_bound += lt[k];
      }
    }
    for (; i < n; ++i) {
      const float d = a[i] - b[i];
      d2 += static_cast<double>(d) * d;
      b2 += static_cast<double>(b[i]) * b[i];
      flips += (a[i] * b[i] < 0.0f);
      at_bound += (std::fabs(a[i]) >= t);
    }
    st.delta_sq = d2;
    st.before_sq = b2;
    st.flips = flips;
    st.at_bound = at_bound;
    return st;
  }
  auto b = before.to(torch::kDouble);
  auto a = after.to(torch::kDouble);
  st.delta_sq = (a - b).pow(2).sum().item<double>();
  st.before_sq = b.pow(2).sum().item<double>();
  st.flips = (a * b).lt(0).sum().item<int64_t>();
  st.at_bound = a.abs().ge(threshold).sum().item<int64_t>();
  return st;
}

}  // namespace

void UpdateTracker::Snapshot(const std::vector<torch::Tensor>& params) {
  torch::NoGradGuard no_grad;
  before_.resize(params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    if (!before_[i].defined() || !before_[i].sizes().equals(params[i].sizes()) ||
        before_[i].device() != params[i].device()) {
      before_[i] = torch::empty_like(params[i], torch::MemoryFormat::Contiguous);
    }
    before_[i].copy_(params[i].detach());
  }
}

UpdateSummary UpdateTracker::Compare(const std::vector<torch::Tensor>& params,
                                     const std::vector<double>& bounds,
                                     std::vector<TensorUpdate>* per_tensor) const {
  torch::NoGradGuard no_grad;
  double rel_sum = 0;
  int64_t rel_count = 0, flips = 0, at_bound = 0, total = 0;
  if (per_tensor) per_tensor->assign(params.size(), TensorUpdate{});
  for (size_t i = 0; i < params.size(); ++i) {
    auto now = params[i].detach();
    if (!now.is_contiguous()) now = now.contiguous();
    UpdateStats st = CompareUpdate(before_[i], now, bounds[i]);
    if (st.before_sq > 0) {
      rel_sum += std::sqrt(st.delta_sq / st.before_sq);
      ++rel_count;
    }
    flips += st.flips;
    at_bound += st.at_bound;
    total += now.numel();
    if (per_tensor) {
      (*per_tensor)[i].relative_update = st.before_sq > 0 ? std::sqrt(st.delta_sq / st.before_sq) : 0.0;
      (*per_tensor)[i].at_bound_fraction =
          now.numel() ? static_cast<double>(st.at_bound) / static_cast<double>(now.numel()) : 0.0;
    }
  }
  UpdateSummary out;
  out.relative_update = rel_count ? rel_sum / static_cast<double>(rel_count) : 0.0;
  out.at_bound_fraction = total ? static_cast<double>(at_bound) / static_cast<double>(total) : 0.0;
  out.sign_flips = static_cast<double>(flips);
  return out;
}

}  // namespace madam::worker
