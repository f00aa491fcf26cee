#include "worker/distributed.h"

// LibTorch's c10d headers declare Gloo's process group only under this
// macro; Debian's libtorch_cpu is built with Gloo (it links libgloo).
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef USE_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <stdexcept>
#include <string>

namespace madam::worker {
namespace {

constexpr const char* kHost = "127.0.0.1";

// A tensor's elements as one flat view; contiguous tensors only (every
// parameter, gradient and buffer LibTorch's modules make is).
torch::Tensor Flat(const torch::Tensor& t) { return t.contiguous().view({-1}); }

}  // namespace

struct RankRendezvous::Impl {
  c10::intrusive_ptr<c10d::TCPStore> server;
};

RankRendezvous::RankRendezvous(std::chrono::milliseconds timeout) : impl_(std::make_unique<Impl>()) {
  c10d::TCPStoreOptions opts;
  opts.port = 0;  // the kernel's choice: runs never collide on a port
  opts.isServer = true;
  opts.waitWorkers = false;
  opts.timeout = timeout;
  impl_->server = c10::make_intrusive<c10d::TCPStore>(kHost, opts);
}

RankRendezvous::~RankRendezvous() = default;

uint16_t RankRendezvous::port() const { return impl_->server->getPort(); }

struct RankGroup::Impl {
  torch::Device device{torch::kCPU};
  RankGroupOptions options;
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroup> group;

  // Waits for every piece of work; the first failure throws, saying which
  // collective it was and how long it could wait.
  void WaitAll(std::vector<c10::intrusive_ptr<c10d::Work>>& works, const char* what) {
    try {
      for (auto& w : works) w->wait(options.timeout);
    } catch (const std::exception& e) {
      const auto* c10 = dynamic_cast<const c10::Error*>(&e);
      throw std::runtime_error(std::string(what) + " across the ranks failed (a rank ended or did not "
                               "answer within " + std::to_string(options.timeout.count() / 1000) +
                               " s): " + (c10 != nullptr ? c10->what_without_backtrace() : e.what()));
    }
  }
};

RankGroup::RankGroup(uint16_t port, int rank, int world, torch::Device device,
                     RankGroupOptions options)
    : impl_(std::make_unique<Impl>()), rank_(rank), world_(world) {
  impl_->device = device;
  impl_->options = options;
  c10d::TCPStoreOptions opts;
  opts.port = port;
  opts.isServer = false;
  opts.timeout = options.timeout;
  impl_->store = c10::make_intrusive<c10d::TCPStore>(kHost, opts);
#ifdef USE_C10D_NCCL
  if (device.is_cuda()) {
    auto nccl = c10d::ProcessGroupNCCL::Options::create();
    nccl->timeout = options.timeout;
    impl_->group = c10::make_intrusive<c10d::ProcessGroupNCCL>(impl_->store, rank, world, nccl);
    return;
  }
#endif
  auto gloo = c10d::ProcessGroupGloo::Options::create(options.timeout);
  gloo->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(kHost));
  gloo->threads = 2;
  impl_->group = c10::make_intrusive<c10d::ProcessGroupGloo>(impl_->store, rank, world, gloo);
}

RankGroup::~RankGroup() = default;

void RankGroup::AllReduceGradients(const std::vector<torch::Tensor>& params) {
  torch::NoGradGuard no_grad;
  struct Bucket {
    std::vector<torch::Tensor> grads;
    std::vector<at::Tensor> flat;  // one tensor: what c10d reduces
  };
  std::vector<Bucket> buckets;
  int64_t bytes = 0;
  for (const torch::Tensor& p : params) {
    torch::Tensor& g = const_cast<torch::Tensor&>(p).mutable_grad();
    if (!g.defined()) g = torch::zeros_like(p);
    const int64_t size = g.numel() * static_cast<int64_t>(g.element_size());
    const bool fits = !buckets.empty() && buckets.back().grads.front().scalar_type() == g.scalar_type() &&
                      buckets.back().grads.front().device() == g.device() &&
                      bytes + size <= impl_->options.bucket_bytes;
    if (!fits) {
      buckets.emplace_back();
      bytes = 0;
    }
    buckets.back().grads.push_back(g);
    bytes += size;
  }
  std::vector<c10::intrusive_ptr<c10d::Work>> works;
  for (size_t i = 0; i < buckets.size(); ++i) {
    Bucket& b = buckets[i];
    std::vector<torch::Tensor> views;
    for (const auto& g : b.grads) views.push_back(Flat(g));
    // The step flag rides in the last bucket's last element.
    if (i + 1 == buckets.size()) views.push_back(torch::full({1}, step_flag_, views.front().options()));
    b.flat = {torch::cat(views)};
    works.push_back(impl_->group->allreduce(b.flat));
  }
  impl_->WaitAll(works, "the gradients' all-reduce");
  step_flag_ = buckets.empty() ? 0.0 : buckets.back().flat.front()[-1].item<double>();
  for (Bucket& b : buckets) {
    int64_t offset = 0;
    for (auto& g : b.grads) {
      g.copy_(b.flat.front().narrow(0, offset, g.numel()).view_as(g));
      offset += g.numel();
    }
  }
}

void RankGroup::AllReduceSum(std::vector<double>& values) {
  if (values.empty()) return;
  std::vector<at::Tensor> t = {torch::tensor(values, torch::kDouble).to(impl_->device)};
  std::vector<c10::intrusive_ptr<c10d::Work>> works = {impl_->group->allreduce(t)};
  impl_->WaitAll(works, "a sum");
  const torch::Tensor back = t.front().to(torch::kCPU).contiguous();
  for (size_t i = 0; i < values.size(); ++i) values[i] = back.data_ptr<double>()[i];
}

void RankGroup::Broadcast(const std::vector<torch::Tensor>& tensors) {
  torch::NoGradGuard no_grad;
  std::vector<std::vector<at::Tensor>> each;
  std::vector<c10::intrusive_ptr<c10d::Work>> works;
  each.reserve(tensors.size());
  for (const auto& t : tensors) {
    if (!t.defined() || t.numel() == 0) continue;
    each.push_back({t.is_contiguous() ? t.detach() : t.detach().contiguous()});
    c10d::BroadcastOptions opts;
    opts.rootRank = 0;
    works.push_back(impl_->group->broadcast(each.back(), opts));
  }
  impl_->WaitAll(works, "the weights' broadcast");
  size_t i = 0;
  for (const auto& t : tensors) {
    if (!t.defined() || t.numel() == 0) continue;
    // A non-contiguous tensor was broadcast through a copy: write it back.
    if (!t.is_contiguous()) const_cast<torch::Tensor&>(t).detach().copy_(each[i].front());
    ++i;
  }
}

void RankGroup::BroadcastValues(std::vector<double>& values) {
  if (values.empty()) return;
  std::vector<at::Tensor> t = {torch::tensor(values, torch::kDouble).to(impl_->device)};
  c10d::BroadcastOptions opts;
  opts.rootRank = 0;
  std::vector<c10::intrusive_ptr<c10d::Work>> works = {impl_->group->broadcast(t, opts)};
  impl_->WaitAll(works, "rank 0's decision");
  const torch::Tensor back = t.front().to(torch::kCPU).contiguous();
  for (size_t i = 0; i < values.size(); ++i) values[i] = back.data_ptr<double>()[i];
}

void RankGroup::CheckIdentical(const std::vector<torch::Tensor>& tensors, int64_t step) {
  torch::NoGradGuard no_grad;
  std::vector<double> sums;
  for (const auto& t : tensors) sums.push_back(t.to(torch::kDouble).sum().item<double>());
  // The largest and the smallest of each sum over the ranks, in one MAX.
  const size_t n = sums.size();
  std::vector<double> both(sums);
  for (double s : sums) both.push_back(-s);
  std::vector<at::Tensor> t = {torch::tensor(both, torch::kDouble).to(impl_->device)};
  c10d::AllreduceOptions opts;
  opts.reduceOp = c10d::ReduceOp::MAX;
  std::vector<c10::intrusive_ptr<c10d::Work>> works = {impl_->group->allreduce(t, opts)};
  impl_->WaitAll(works, "the weights' check");
  const torch::Tensor back = t.front().to(torch::kCPU).contiguous();
  for (size_t i = 0; i < n; ++i) {
    const double hi = back.data_ptr<double>()[i], lo = -back.data_ptr<double>()[n + i];
    if (hi != lo) {
      throw std::runtime_error("ranks' weights differ at step " + std::to_string(step) + ": tensor " +
                               std::to_string(i) + " sums to " + std::to_string(lo) + " .. " +
                               std::to_string(hi));
    }
  }
}

}  // namespace madam::worker
