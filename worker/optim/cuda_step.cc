#include "detail/cuda_step.h"

#include <c10/util/Exception.h>

// Set to 1 by the build when it compiles cuda_kernels.cu (worker/optim/cuda.cmake).
#ifndef MADAM_OPTIM_WITH_CUDA
#define MADAM_OPTIM_WITH_CUDA 0
#endif

#if MADAM_OPTIM_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace madam {
namespace optim {
namespace detail {
namespace {

#if MADAM_OPTIM_WITH_CUDA
const char* Launch(const CudaBatch<MadamStepArgs>& batch, void* stream) {
  return LaunchMadamCuda(batch, stream);
}
const char* Launch(const CudaBatch<IntegerMadamStepArgs>& batch, void* stream) {
  return LaunchIntegerMadamCuda(batch, stream);
}
#endif

}  // namespace

bool CudaKernelsBuilt() { return MADAM_OPTIM_WITH_CUDA != 0; }

bool CanFuseCuda(const at::Tensor& p, const at::Tensor& g, const at::Tensor& v,
                 const at::Tensor* levels) {
  if (!CudaKernelsBuilt() || !p.is_cuda() || p.scalar_type() != at::kFloat ||
      !p.is_contiguous()) {
    return false;
  }
  auto same_place = [&](const at::Tensor& t) { return t.device() == p.device() && t.sizes() == p.sizes(); };
  if (g.scalar_type() != at::kFloat || !same_place(g)) return false;
  if (v.scalar_type() != at::kFloat || !same_place(v) || !v.is_contiguous()) return false;
  if (levels != nullptr &&
      (levels->scalar_type() != at::kShort || !same_place(*levels) || !levels->is_contiguous())) {
    return false;
  }
  return true;
}

template <typename Args>
void CudaStepBatcher<Args>::Add(const at::Tensor& p, const at::Tensor& g, const at::Tensor& v,
                                const at::Tensor* levels, const Args& args) {
  TORCH_CHECK(CudaKernelsBuilt(), "madam::optim was built without its CUDA kernels");
  TORCH_INTERNAL_ASSERT(CanFuseCuda(p, g, v, levels));
  if (p.numel() == 0) return;
  const int device = p.get_device();
  if (batch_.count == kCudaMaxSlots || (batch_.count > 0 && device != device_)) Flush();
  device_ = device;
  const at::Tensor grad = g.contiguous();
  keep_alive_.push_back(grad);
  CudaSlot<Args>& slot = batch_.slot[batch_.count++];
  slot.p = p.data_ptr<float>();
  slot.g = grad.data_ptr<float>();
  slot.v = v.data_ptr<float>();
  slot.levels = levels != nullptr ? levels->data_ptr<int16_t>() : nullptr;
  slot.n = p.numel();
  slot.args = args;
}

template <typename Args>
CudaStepBatcher<Args>::~CudaStepBatcher() {
  try {
    Flush();
  } catch (const std::exception&) {  // NOLINT(bugprone-empty-catch): see the header
  }
}

template <typename Args>
void CudaStepBatcher<Args>::Flush() {
  if (batch_.count == 0) return;
#if MADAM_OPTIM_WITH_CUDA
  const c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device_));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(static_cast<c10::DeviceIndex>(device_));
  const char* error = Launch(batch_, static_cast<void*>(stream));
  batch_.count = 0;
  keep_alive_.clear();
  TORCH_CHECK(error == nullptr, "madam::optim fused CUDA step failed on cuda:", device_, ": ",
              error);
#else
  batch_.count = 0;
  keep_alive_.clear();
  TORCH_CHECK(false, "madam::optim was built without its CUDA kernels");
#endif
}

template class CudaStepBatcher<MadamStepArgs>;
template class CudaStepBatcher<IntegerMadamStepArgs>;

}  // namespace detail
}  // namespace optim
}  // namespace madam
