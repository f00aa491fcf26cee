// How the multi-tensor CUDA kernels (cuda_kernels.cu) split their work, and
// what one thread of them does, as host-and-device code: nvcc compiles it
// into the kernels, and the unit tests run it on the CPU, every block and
// thread of a launch, to check the indexing and the maths without a GPU.
//
// The grid is cut into blocks of kCudaChunk elements; each tensor of a batch
// owns a run of consecutive blocks (first_block), so one launch covers every
// tensor, and a block finds its tensor by scanning at most kCudaMaxSlots
// offsets held in the kernel's argument. Each element is read once and
// written once: p, g, v (and the level) in, p, v (and the level) out.
//
// Torch-free and CUDA-free, like elementwise.h.
#pragma once

#include <cstdint>

#include "detail/cuda_kernels.h"
#include "detail/elementwise.h"

namespace madam {
namespace optim {
namespace detail {

constexpr int kCudaThreads = 256;
constexpr int kCudaItemsPerThread = 8;
constexpr int64_t kCudaChunk = int64_t{kCudaThreads} * kCudaItemsPerThread;

// The kernel's argument: the batch's slots plus where each tensor's blocks
// start; first_block[count] is the grid size.
template <typename Args>
struct CudaKernelBatch {
  CudaSlot<Args> slot[kCudaMaxSlots];
  int64_t first_block[kCudaMaxSlots + 1];
  int count;
};

// Fills `out` from `in`; returns the grid size (0: nothing to do).
template <typename Args>
inline int64_t PlanCudaBatch(const CudaBatch<Args>& in, CudaKernelBatch<Args>& out) {
  int64_t blocks = 0;
  out.count = in.count;
  for (int s = 0; s < in.count; ++s) {
    out.slot[s] = in.slot[s];
    out.first_block[s] = blocks;
    blocks += (in.slot[s].n + kCudaChunk - 1) / kCudaChunk;
  }
  out.first_block[in.count] = blocks;
  return blocks;
}

// The slot whose blocks include `block`. REQUIRES: block < grid size.
template <typename Args>
MADAM_OPTIM_ELEMENTWISE int CudaSlotOf(const CudaKernelBatch<Args>& batch, int64_t block) {
  int s = 0;
  while (s + 1 < batch.count && batch.first_block[s + 1] <= block) ++s;
  return s;
}

// Thread `thread` of block `block`: a stride of kCudaThreads over the
// block's chunk of its tensor.
MADAM_OPTIM_ELEMENTWISE void MadamCudaThread(const CudaKernelBatch<MadamStepArgs>& batch,
                                             int64_t block, int thread) {
  const int s = CudaSlotOf(batch, block);
  const CudaSlot<MadamStepArgs> t = batch.slot[s];  // a copy: registers, not the argument
  const int64_t begin = (block - batch.first_block[s]) * kCudaChunk;
  const int64_t end = begin + kCudaChunk < t.n ? begin + kCudaChunk : t.n;
  for (int64_t i = begin + thread; i < end; i += kCudaThreads) {
    const float p = t.p[i];
    float v = t.v[i];
    const float exponent = MadamExponent(p, t.g[i], v, t.args);
    t.v[i] = v;
    t.p[i] = MadamWeight(p, exponent, t.args.max);
  }
}

MADAM_OPTIM_ELEMENTWISE void IntegerMadamCudaThread(
    const CudaKernelBatch<IntegerMadamStepArgs>& batch, int64_t block, int thread) {
  const int s = CudaSlotOf(batch, block);
  const CudaSlot<IntegerMadamStepArgs> t = batch.slot[s];
  const int64_t begin = (block - batch.first_block[s]) * kCudaChunk;
  const int64_t end = begin + kCudaChunk < t.n ? begin + kCudaChunk : t.n;
  for (int64_t i = begin + thread; i < end; i += kCudaThreads) {
    const float p = t.p[i];
    float v = t.v[i];
    const float k = IntegerMadamLevel(p, t.g[i], v, t.levels[i], t.args);
    t.v[i] = v;
    t.levels[i] = EncodeLevel(k);
    t.p[i] = LadderWeight(p, k, t.args.neg_base_lr, t.args.sigma);
  }
}

}  // namespace detail
}  // namespace optim
}  // namespace madam
