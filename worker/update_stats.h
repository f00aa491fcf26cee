// UpdateTracker: what one training step did to the weights, for the optim/*
// metrics (ARCHITECTURE.md section 6): the mean over tensors of
// ||dW|| / ||W|| (the quantity deep relative trust bounds, the paper's
// section 3), the share of weights at their bound, and the weights whose
// sign flipped (0 under Madam: signs never change).
//
// Snapshot before the step (into buffers reused across steps), Compare
// after. Thread-compatible; the loop calls it only on the steps it logs.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

namespace madam::worker {

struct UpdateSummary {
  double relative_update = 0;    // mean over tensors with ||W|| > 0
  double at_bound_fraction = 0;  // |w| >= bound * (1 - 1e-6), over every weight
  double sign_flips = 0;         // weights whose sign changed
};

// One tensor's share of the step, for per-layer telemetry.
struct TensorUpdate {
  double relative_update = 0;    // ||dW|| / ||W|| (0 when ||W|| = 0)
  double at_bound_fraction = 0;  // of this tensor's weights
};

class UpdateTracker {
 public:
  void Snapshot(const std::vector<torch::Tensor>& params);
  // REQUIRES: Snapshot of the same tensors first. bounds[i] is params[i]'s
  // bound (0: none).
  // With `per_tensor`, also each tensor's own figures (in params' order).
  UpdateSummary Compare(const std::vector<torch::Tensor>& params, const std::vector<double>& bounds,
                        std::vector<TensorUpdate>* per_tensor = nullptr) const;

 private:
  std::vector<torch::Tensor> before_;
};

}  // namespace madam::worker
