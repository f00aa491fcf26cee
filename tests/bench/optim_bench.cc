// Optimiser step benchmark: Madam (fused), IntegerMadam (fused), LibTorch's
// torch::optim::Adam and an eager Madam (the same maths as separate tensor
// ops), on an MLP's parameters and on ResNet-18-sized parameters (11M), at
// one thread. Prints ns per parameter per step and ratios against Adam
// measured in the same run. A program, not a timed test.
//
//   optim_bench [--quick] [--threads N]
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "madam/optim/integer_madam.h"
#include "madam/optim/madam.h"

namespace {

using Clock = std::chrono::steady_clock;

std::vector<std::vector<int64_t>> MlpShapes() {
  return {{256, 784}, {256}, {256, 256}, {256}, {10, 256}, {10}};
}

// The CIFAR ResNet-18's parameter shapes: 11.2M parameters.
std::vector<std::vector<int64_t>> ResNet18Shapes() {
  std::vector<std::vector<int64_t>> shapes = {{64, 3, 3, 3}, {64}, {64}};
  int64_t in = 64;
  for (int64_t out : {64, 128, 256, 512}) {
    for (int block = 0; block < 2; ++block) {
      const int64_t c_in = block == 0 ? in : out;
      shapes.push_back({out, c_in, 3, 3});
      shapes.push_back({out});
      shapes.push_back({out});
      shapes.push_back({out, out, 3, 3});
      shapes.push_back({out});
      shapes.push_back({out});
      if (block == 0 && c_in != out) {
        shapes.push_back({out, c_in, 1, 1});
        shapes.push_back({out});
        shapes.push_back({out});
      }
    }
    in = out;
  }
  shapes.push_back({10, 512});
  shapes.push_back({10});
  return shapes;
}

struct Params {
  std::vector<torch::Tensor> tensors;
  int64_t count = 0;
};

Params MakeParams(const std::vector<std::vector<int64_t>>& shapes) {
  Params p;
  for (const auto& s : shapes) {
    auto t = torch::randn(s).mul_(0.05).requires_grad_();
    t.mutable_grad() = torch::randn(s).mul_(0.01);
    p.count += t.numel();
    p.tensors.push_back(t);
  }
  return p;
}

// Madam as separate tensor ops, the way a per-op port of the reference runs.
class EagerMadam {
 public:
  EagerMadam(std::vector<torch::Tensor> params, double lr) : params_(std::move(params)), lr_(lr) {}
  void step() {
    torch::NoGradGuard no_grad;
    ++t_;
    if (v_.empty()) {
      for (auto& p : params_) {
        v_.push_back(torch::zeros_like(p));
        max_.push_back(3.0 * (p * p).mean().sqrt().item<double>());
      }
    }
    const double bias_correction = 1 - std::pow(0.999, t_);
    for (size_t i = 0; i < params_.size(); ++i) {
      auto& p = params_[i];
      const auto& g = p.grad();
      v_[i].mul_(0.999).addcmul_(g, g, 0.001);
      auto g_hat = g / (v_[i] / bias_correction).sqrt();
      g_hat.masked_fill_(g_hat.isnan(), 0).clamp_(-10, 10);
      p.mul_(torch::exp(-lr_ * g_hat * torch::sign(p)));
      p.clamp_(-max_[i], max_[i]);
    }
  }

 private:
  std::vector<torch::Tensor> params_;
  std::vector<torch::Tensor> v_;
  std::vector<double> max_;
  double lr_;
  int t_ = 0;
};

// Median seconds per step over `reps` timed repetitions of `steps` steps.
double TimeSteps(const std::function<void()>& step, int steps, int reps) {
  step();  // first step allocates state
  std::vector<double> samples;
  for (int r = 0; r < reps; ++r) {
    const auto start = Clock::now();
    for (int s = 0; s < steps; ++s) step();
    samples.push_back(std::chrono::duration<double>(Clock::now() - start).count() / steps);
  }
  std::sort(samples.begin(), samples.end());
  return samples[samples.size() / 2];
}

void Run(const char* label, const std::vector<std::vector<int64_t>>& shapes, int steps, int reps) {
  torch::manual_seed(0);
  Params adam_p = MakeParams(shapes), madam_p = MakeParams(shapes), int_p = MakeParams(shapes),
         eager_p = MakeParams(shapes);
  torch::optim::Adam adam(adam_p.tensors, torch::optim::AdamOptions(1e-3));
  madam::optim::Madam madam(madam_p.tensors, madam::optim::MadamOptions(0.01));
  madam::optim::IntegerMadam int_madam(int_p.tensors, madam::optim::IntegerMadamOptions(0.001));
  EagerMadam eager(eager_p.tensors, 0.01);

  std::map<std::string, double> seconds;
  seconds["adam"] = TimeSteps([&] { adam.step(); }, steps, reps);
  seconds["madam"] = TimeSteps([&] { madam.step(); }, steps, reps);
  seconds["int_madam"] = TimeSteps([&] { int_madam.step(); }, steps, reps);
  seconds["eager_madam"] = TimeSteps([&] { eager.step(); }, steps, reps);

  const double n = static_cast<double>(adam_p.count);
  std::printf("\n%s: %lld parameters, %d threads, median of %d x %d steps\n", label,
              static_cast<long long>(adam_p.count), at::get_num_threads(), reps, steps);
  std::printf("  %-12s %12s %14s %12s\n", "optimizer", "ms/step", "ns/param", "vs adam");
  for (const char* name : {"adam", "madam", "int_madam", "eager_madam"}) {
    std::printf("  %-12s %12.3f %14.3f %11.2fx\n", name, seconds[name] * 1e3,
                seconds[name] * 1e9 / n, seconds[name] / seconds["adam"]);
  }

  // State bytes per weight: IntegerMadam holds int16 levels and a float
  // second moment; a float level would take 4 + 4 (+4 for a float copy).
  int64_t state_bytes = 0;
  for (const auto& p : int_p.tensors) {
    const auto* st = int_madam.param_state(p);
    state_bytes += st->levels().numel() * st->levels().element_size() +
                   st->exp_avg_sq().numel() * st->exp_avg_sq().element_size();
  }
  std::printf("  int_madam state: %.2f bytes/weight (levels + second moment)\n",
              static_cast<double>(state_bytes) / n);
  std::printf("RATIO %s madam/adam %.3f int_madam/adam %.3f eager_madam/adam %.3f\n", label,
              seconds["madam"] / seconds["adam"], seconds["int_madam"] / seconds["adam"],
              seconds["eager_madam"] / seconds["adam"]);
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  int threads = 1;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) {
      quick = true;
    } else if (std::strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
      threads = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: optim_bench [--quick] [--threads N]\n");
      return 2;
    }
  }
  at::set_num_threads(threads);
  Run("mlp-784-256-256-10", MlpShapes(), quick ? 5 : 200, quick ? 3 : 7);
  Run("resnet18-11M", ResNet18Shapes(), quick ? 1 : 10, quick ? 2 : 5);
  return 0;
}
