// The torch side of the fused CUDA step: an optimiser's step() hands each
// fusable CUDA tensor to a CudaStepBatcher, which launches one multi-tensor
// kernel (cuda_kernels.h) per kCudaMaxSlots tensors of one device on that
// device's current stream, with the device set as LibTorch expects.
//
// Built in every configuration; without CUDA kernels (MADAM_OPTIM_WITH_CUDA
// unset, as with Debian's CPU-only LibTorch) CudaKernelsBuilt() is false,
// the optimisers never fuse a CUDA tensor, and Add() throws.
//
// Not thread-safe; one lives for one step() call, which calls Flush() at
// its end.
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

#include "detail/cuda_kernels.h"

namespace madam {
namespace optim {
namespace detail {

// Whether this build of madam_optim holds the fused CUDA kernels.
bool CudaKernelsBuilt();

// Whether a step of p (gradient g, state tensors) can take the fused CUDA
// kernel: the kernels are built, and all are contiguous float32 CUDA tensors
// of p's shape on p's device (levels: int16, when given).
bool CanFuseCuda(const at::Tensor& p, const at::Tensor& g, const at::Tensor& v,
                 const at::Tensor* levels = nullptr);

template <typename Args>
class CudaStepBatcher {
 public:
  CudaStepBatcher() = default;
  // Launches what is still queued, errors ignored: when a step() throws
  // half-way, the tensors it queued are stepped, as on the CPU the tensors
  // before the throw are.
  ~CudaStepBatcher();
  CudaStepBatcher(const CudaStepBatcher&) = delete;
  CudaStepBatcher& operator=(const CudaStepBatcher&) = delete;

  // Queues one tensor's step; launches the queued batch first when it is
  // full or on another device. `levels` is B-bit Madam's (nullptr for Madam).
  // REQUIRES: CanFuseCuda(p, g, v, levels).
  void Add(const at::Tensor& p, const at::Tensor& g, const at::Tensor& v,
           const at::Tensor* levels, const Args& args);

  // Launches what is queued. Throws c10::Error with CUDA's message on failure.
  void Flush();

 private:
  CudaBatch<Args> batch_;
  int device_ = -1;
  // Tensors whose memory the queued slots point into (a contiguous copy of
  // a gradient, for one), kept alive until the launch is queued on the
  // stream; the caching allocator orders any later reuse after it.
  std::vector<at::Tensor> keep_alive_;
};

extern template class CudaStepBatcher<MadamStepArgs>;
extern template class CudaStepBatcher<IntegerMadamStepArgs>;

}  // namespace detail
}  // namespace optim
}  // namespace madam
