// RankGroup: the ranks of one data-parallel run (ARCHITECTURE.md section
// 6, `devices`) joined through LibTorch's c10d — a TCPStore on loopback for
// the rendezvous, ProcessGroupGloo for the collectives on CPU (and
// ProcessGroupNCCL on CUDA where LibTorch was built with it, USE_C10D_NCCL;
// Debian's LibTorch is not). No communication code of our own: this file
// only packs tensors for c10d and waits for its work.
//
// Every collective has a timeout (RankGroupOptions::timeout): a rank that
// hangs makes its peers' next collective fail within it, and a rank that
// ends (a failure, a stop) closes its connections so that its peers' next
// collective fails at once. Both surface as c10::Error from the call.
//
// Thread-compatible: one RankGroup per rank, used by that rank's thread.
#pragma once

#include <torch/torch.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

namespace madam::worker {

struct RankGroupOptions {
  std::chrono::milliseconds timeout{60000};
  // Gradients are summed in buckets of about this many bytes, every bucket
  // in flight at once (the default of PyTorch's DDP).
  int64_t bucket_bytes = int64_t{25} << 20;
};

// The rendezvous point: a TCPStore server on 127.0.0.1 at a port the kernel
// picks. Lives as long as the run's ranks do.
class RankRendezvous {
 public:
  explicit RankRendezvous(std::chrono::milliseconds timeout);
  ~RankRendezvous();
  RankRendezvous(const RankRendezvous&) = delete;
  RankRendezvous& operator=(const RankRendezvous&) = delete;
  uint16_t port() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

class RankGroup {
 public:
  // Joins as `rank` of `world` through the store at 127.0.0.1:`port`;
  // blocks until every rank has joined (or the timeout passes: throws).
  RankGroup(uint16_t port, int rank, int world, torch::Device device, RankGroupOptions options);
  ~RankGroup();
  RankGroup(const RankGroup&) = delete;
  RankGroup& operator=(const RankGroup&) = delete;

  int rank() const { return rank_; }
  int world() const { return world_; }

  // Sums every parameter's gradient over the ranks, in place; a parameter
  // without a gradient contributes zeros (and gets them), so every rank
  // packs the same buckets. Launches every bucket, then waits for them all:
  // the reduction does not overlap the backward pass. The step flag
  // (SetStepFlag) is summed with them, in the same collective.
  void AllReduceGradients(const std::vector<torch::Tensor>& params);
  // A small number every rank learns the sum of at the next
  // AllReduceGradients, at no extra collective: rank 0's stop decision
  // (1 to stop, the others 0). TakeStepFlag returns that sum and resets it.
  void SetStepFlag(double value) { step_flag_ = value; }
  double TakeStepFlag() {
    const double v = step_flag_;
    step_flag_ = 0;
    return v;
  }
  // Sums `values` over the ranks, in place.
  void AllReduceSum(std::vector<double>& values);
  // Makes every rank's `tensors` (parameters, buffers: any dtype) rank 0's.
  void Broadcast(const std::vector<torch::Tensor>& tensors);
  // Makes every rank's `values` rank 0's.
  void BroadcastValues(std::vector<double>& values);
  // Throws unless every tensor's sum is the same on every rank.
  void CheckIdentical(const std::vector<torch::Tensor>& tensors, int64_t step);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  const int rank_;
  const int world_;
  double step_flag_ = 0;
};

}  // namespace madam::worker
