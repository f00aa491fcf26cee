// Multi-tensor CUDA kernels for Madam and B-bit Madam (detail/cuda_kernels.h);
// the work split and each thread's work are detail/cuda_plan.h's.
#include <cuda_runtime.h>

#include <cstdint>

#include "detail/cuda_kernels.h"
#include "detail/cuda_plan.h"

namespace madam {
namespace optim {
namespace detail {
namespace {

static_assert(sizeof(CudaKernelBatch<IntegerMadamStepArgs>) <= 4000 &&
                  sizeof(CudaKernelBatch<MadamStepArgs>) <= 4000,
              "the batch is a kernel argument and must stay under CUDA's 4 KiB");

__global__ void __launch_bounds__(kCudaThreads)
    MadamKernel(const CudaKernelBatch<MadamStepArgs> batch) {
  MadamCudaThread(batch, blockIdx.x, static_cast<int>(threadIdx.x));
}

__global__ void __launch_bounds__(kCudaThreads)
    IntegerMadamKernel(const CudaKernelBatch<IntegerMadamStepArgs> batch) {
  IntegerMadamCudaThread(batch, blockIdx.x, static_cast<int>(threadIdx.x));
}

const char* LaunchError() {
  const cudaError_t err = cudaGetLastError();
  return err == cudaSuccess ? nullptr : cudaGetErrorString(err);
}

// gridDim.x is at most 2^31 - 1 blocks (4 * 10^12 elements a launch).
constexpr int64_t kMaxBlocks = 2147483647;

}  // namespace

const char* LaunchMadamCuda(const CudaBatch<MadamStepArgs>& batch, void* stream) {
  CudaKernelBatch<MadamStepArgs> kernel_batch;
  const int64_t blocks = PlanCudaBatch(batch, kernel_batch);
  if (blocks == 0) return nullptr;
  if (blocks > kMaxBlocks) return "Madam CUDA step: too many elements for one launch";
  MadamKernel<<<static_cast<unsigned int>(blocks), kCudaThreads, 0,
                static_cast<cudaStream_t>(stream)>>>(kernel_batch);
  return LaunchError();
}

const char* LaunchIntegerMadamCuda(const CudaBatch<IntegerMadamStepArgs>& batch, void* stream) {
  CudaKernelBatch<IntegerMadamStepArgs> kernel_batch;
  const int64_t blocks = PlanCudaBatch(batch, kernel_batch);
  if (blocks == 0) return nullptr;
  if (blocks > kMaxBlocks) return "IntegerMadam CUDA step: too many elements for one launch";
  IntegerMadamKernel<<<static_cast<unsigned int>(blocks), kCudaThreads, 0,
                       static_cast<cudaStream_t>(stream)>>>(kernel_batch);
  return LaunchError();
}

}  // namespace detail
}  // namespace optim
}  // namespace madam
