// Fused CUDA kernels for Madam and B-bit Madam: one launch steps up to
// kCudaMaxSlots tensors of one device (a multi-tensor kernel), instead of
// the ten or so eager tensor ops per tensor of the unfused path.
//
// The per-element maths is detail/elementwise.h's, compiled without fused
// multiply-add (-fmad=false) and with IEEE division and square root (nvcc's
// defaults), so a CUDA step gives the CPU kernels' bits.
//
// Torch-free and CUDA-free: the launchers take raw device pointers and a
// cudaStream_t as void*, so this header is included by host C++ files that
// never see the CUDA headers. Built only when madam_optim has CUDA
// (MADAM_OPTIM_WITH_CUDA); see cuda_step.h for the torch-side batching.
#pragma once

#include <cstdint>

#include "detail/step_args.h"

namespace madam {
namespace optim {
namespace detail {

// One tensor of a launch: contiguous float32 p, g, v (and int16 levels for
// B-bit Madam) of n elements on the launch's device, with its step's scalars.
template <typename Args>
struct CudaSlot {
  float* p;
  const float* g;
  float* v;
  int16_t* levels;  // B-bit Madam only; nullptr for Madam
  int64_t n;
  Args args;
};

// The tensors of one launch. The launcher passes them to the kernel by value,
// as its argument, which must stay under CUDA's 4 KiB: 32 slots of at most
// 72 bytes and their block offsets fit.
constexpr int kCudaMaxSlots = 32;

template <typename Args>
struct CudaBatch {
  CudaSlot<Args> slot[kCudaMaxSlots];
  int count = 0;
};

// Launch one kernel over `batch` on `stream` (a cudaStream_t of the current
// device; the caller sets the device). Asynchronous, as any CUDA launch.
// Returns nullptr, or CUDA's text for the launch's error.
const char* LaunchMadamCuda(const CudaBatch<MadamStepArgs>& batch, void* stream);
const char* LaunchIntegerMadamCuda(const CudaBatch<IntegerMadamStepArgs>& batch, void* stream);

}  // namespace detail
}  // namespace optim
}  // namespace madam
