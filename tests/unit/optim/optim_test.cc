// Tests for madam::optim: golden trajectories from the committed generator
// (golden/make_golden.py), the paper's invariants, per-group options,
// save/load continuation, training a small model, and bad options.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "detail/cuda_plan.h"
#include "detail/cuda_step.h"
#include "detail/elementwise.h"
#include "detail/kernels.h"
#include "madam/optim/integer_madam.h"
#include "madam/optim/madam.h"

namespace madam::optim {
namespace {

using nlohmann::json;

const json& Golden() {
  static const json golden = [] {
    std::ifstream in(MADAM_OPTIM_GOLDEN);
    EXPECT_TRUE(in) << "cannot open " << MADAM_OPTIM_GOLDEN;
    return json::parse(in);
  }();
  return golden;
}

torch::Tensor FromJson(const json& values) {
  std::vector<float> v = values.get<std::vector<float>>();
  return torch::tensor(v, torch::kFloat);
}

// Where a golden case runs: on the CPU or on CUDA, as a contiguous tensor
// (the fused kernel runs) or as a strided view (the eager tensor-op path).
struct StepPath {
  const char* name;
  bool cuda;
  bool strided;
};
void PrintTo(const StepPath& path, std::ostream* os) { *os << path.name; }

torch::Tensor MakeParam(const torch::Tensor& init, const StepPath& path) {
  const torch::Device device = path.cuda ? torch::kCUDA : torch::kCPU;
  if (!path.strided) return init.to(device).clone().requires_grad_();
  auto base = torch::zeros({init.numel() * 2}, torch::TensorOptions().device(device));
  auto view = base.slice(0, 0, init.numel() * 2, 2);
  view.copy_(init);
  auto p = view.detach().requires_grad_();
  EXPECT_FALSE(p.is_contiguous());
  return p;
}

void ExpectClose(const torch::Tensor& actual, const torch::Tensor& expected,
                 const std::string& where) {
  auto a = actual.detach().cpu().contiguous();
  auto e = expected.contiguous();
  ASSERT_EQ(a.numel(), e.numel());
  for (int64_t i = 0; i < a.numel(); ++i) {
    const float x = a[i].item<float>(), y = e[i].item<float>();
    EXPECT_NEAR(x, y, 2e-6f * std::fabs(y) + 1e-30f) << where << " element " << i;
  }
}

// The CUDA paths need a GPU; without one they are reported as skipped with
// the reason, never passed.
class GoldenTest : public ::testing::TestWithParam<StepPath> {
 protected:
  void SetUp() override {
    if (!GetParam().cuda) return;
    if (!torch::cuda::is_available()) {
      GTEST_SKIP() << "no CUDA device here: the golden cases did not run on CUDA";
    }
    if (!GetParam().strided && !detail::CudaKernelsBuilt()) {
      GTEST_SKIP() << "LibTorch has CUDA but madam_optim was built without its fused CUDA "
                      "kernels (MADAM_OPTIM_CUDA, no nvcc?): the fused CUDA path did not run";
    }
  }
  torch::Device device() const { return GetParam().cuda ? torch::kCUDA : torch::kCPU; }
};

TEST_P(GoldenTest, MadamMatchesReferenceTrajectory) {
  for (const auto& c : Golden()["cases"]) {
    if (c["optimizer"] != "madam") continue;
    auto p = MakeParam(FromJson(c["init"]), GetParam());
    Madam opt({p}, MadamOptions(c["lr"].get<double>()));
    for (size_t t = 0; t < c["grads"].size(); ++t) {
      p.mutable_grad() = FromJson(c["grads"][t]).to(device());
      opt.step();
      ExpectClose(p, FromJson(c["weights"][t]), c["name"].get<std::string>() + " step " +
                                                    std::to_string(t + 1));
    }
    EXPECT_FLOAT_EQ(opt.param_state(p)->max(), c["sigma"].get<double>());
  }
}

TEST_P(GoldenTest, IntegerMadamMatchesReferenceLevelsAndWeights) {
  for (const auto& c : Golden()["cases"]) {
    if (c["optimizer"] != "int_madam") continue;
    auto p = MakeParam(FromJson(c["init"]), GetParam());
    IntegerMadam opt({p}, IntegerMadamOptions(c["base_lr"].get<double>())
                              .lr_factor(c["lr_factor"].get<double>())
                              .bits(c["bits"].get<int64_t>())
                              .init("nearest"));
    for (size_t t = 0; t < c["grads"].size(); ++t) {
      p.mutable_grad() = FromJson(c["grads"][t]).to(device());
      opt.step();
      const std::string where = c["name"].get<std::string>() + " step " + std::to_string(t + 1);
      auto levels = DecodeLevels(opt.param_state(p)->levels()).cpu();
      auto expected = c["levels"][t].get<std::vector<int>>();
      ASSERT_EQ(levels.numel(), static_cast<int64_t>(expected.size()));
      for (size_t i = 0; i < expected.size(); ++i) {
        EXPECT_EQ(levels[i].item<int>(), expected[i]) << where << " level " << i;
      }
      ExpectClose(p, FromJson(c["weights"][t]), where);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(EveryPath, GoldenTest,
                         ::testing::Values(StepPath{"FusedCpu", false, false},
                                           StepPath{"EagerCpu", false, true},
                                           StepPath{"FusedCuda", true, false},
                                           StepPath{"EagerCuda", true, true}),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(FastExpTest, AccurateAcrossRange) {
  double worst = 0;
  for (float x = -87.0f; x <= 88.0f; x += 0.0137f) {
    const double exact = std::exp(static_cast<double>(x));
    worst = std::max(worst, std::fabs(detail::FastExp(x) - exact) / exact);
  }
  EXPECT_LT(worst, 3e-7);
  EXPECT_EQ(detail::FastExp(0.0f), 1.0f);
}

// The small-exponent exp (no range reduction) must give Exp's bits wherever
// the Madam kernel uses it.
TEST(FastExpTest, SmallPathGivesTheSameBitsAsTheFullOne) {
  auto same = [](float x) {
    const float a = detail::ExpSmall(x), b = detail::Exp(x);
    return std::memcmp(&a, &b, sizeof a) == 0;
  };
  constexpr int kSamples = 1 << 20;
  const float bound = detail::kSmallExpBound;
  for (int i = 0; i <= kSamples; ++i) {
    const float x = -bound + (2 * bound) * static_cast<float>(i) / kSamples;
    ASSERT_TRUE(same(x)) << "x = " << x;
  }
  for (float x = bound; x > 1e-30f; x *= 0.5f) {
    ASSERT_TRUE(same(x) && same(-x)) << "x = " << x;
  }
  EXPECT_TRUE(same(0.0f) && same(-0.0f) && same(bound) && same(-bound));
}

// Inputs for the kernel tests: random weights, gradients and second moments
// with the awkward values of the golden cases mixed in (zero weights and
// gradients, underflowing and overflowing g^2, weights beyond sigma*), and a
// length that is no multiple of any vector width or block.
struct KernelInputs {
  std::vector<float> p, g, v;
  std::vector<int16_t> levels;
};

KernelInputs MakeKernelInputs(int64_t n, int64_t max_level, uint64_t seed = 42) {
  torch::manual_seed(seed);
  auto to_vec = [](const torch::Tensor& t) {
    auto c = t.contiguous();
    return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
  };
  KernelInputs in;
  in.p = to_vec(torch::randn({n}));
  in.g = to_vec(torch::randn({n}) * 0.1);
  in.v = to_vec(torch::rand({n}) * 0.01);
  auto k = torch::randint(0, max_level + 1, {n}, torch::kInt);
  for (int64_t i = 0; i < n; ++i) in.levels.push_back(detail::EncodeLevel(k[i].item<float>()));
  const float specials_p[] = {0.0f, -0.0f, 25.0f, -25.0f, 1e-3f, -1e-30f};
  const float specials_g[] = {0.0f, 1e-30f, -1e-30f, 1e30f, -1e30f, 1e-20f};
  for (int64_t i = 0; i < 6 && 13 * i + 2 < n; ++i) {
    in.p[7 * i] = specials_p[i];
    in.g[11 * i + 1] = specials_g[i];
    in.v[13 * i + 2] = 0.0f;
  }
  return in;
}

template <typename Step>
void ExpectEveryIsaMatchesBaseline(const KernelInputs& in, Step step) {
  bool compared = false;
  KernelInputs base = in;
  step(base, detail::Isa::kBaseline);
  for (auto isa : {detail::Isa::kAvx2, detail::Isa::kAvx512}) {
    if (!detail::CpuSupports(isa)) continue;
    compared = true;
    KernelInputs out = in;
    step(out, isa);
    ASSERT_EQ(std::memcmp(out.p.data(), base.p.data(), 4 * in.p.size()), 0) << detail::IsaName(isa);
    ASSERT_EQ(std::memcmp(out.v.data(), base.v.data(), 4 * in.v.size()), 0) << detail::IsaName(isa);
    ASSERT_EQ(out.levels, base.levels) << detail::IsaName(isa);
  }
  if (!compared) GTEST_SKIP() << "this CPU runs only the baseline kernels; nothing to compare";
}

// The vectorised kernels (AVX2, AVX-512) must compute the baseline's bits:
// results may not depend on the machine a run happens to land on.
TEST(KernelTest, EveryInstructionSetGivesTheBaselineBits) {
  const int64_t n = 3 * 4096 + 37;
  const auto in = MakeKernelInputs(n, 4095);
  for (float lr : {0.01f, 0.5f}) {  // the small-exponent path and the full exp
    SCOPED_TRACE("Madam lr " + std::to_string(lr));
    detail::MadamStepArgs a{{0.999f, 0.001f, 0.3f, 10.0f}, -lr, 2.5f};
    ExpectEveryIsaMatchesBaseline(in, [&](KernelInputs& io, detail::Isa isa) {
      detail::MadamStep(io.p.data(), io.g.data(), io.v.data(), n, a, isa);
    });
  }
  SCOPED_TRACE("IntegerMadam");
  detail::IntegerMadamStepArgs a{{0.999f, 0.001f, 0.3f, 10.0f}, 7.0f, -0.001f, 2.5f, 4095.0f};
  ExpectEveryIsaMatchesBaseline(in, [&](KernelInputs& io, detail::Isa isa) {
    detail::IntegerMadamStep(io.p.data(), io.g.data(), io.v.data(), io.levels.data(), n, a, isa);
  });
}

// The fused Madam kernel, blocks, small-exponent path and all, computes
// exactly the per-element maths of elementwise.h.
TEST(KernelTest, MadamKernelIsTheElementwiseMaths) {
  const int64_t n = 2 * 4096 + 5;
  const auto in = MakeKernelInputs(n, 4095);
  for (float lr : {0.01f, 0.5f}) {
    detail::MadamStepArgs a{{0.999f, 0.001f, 0.3f, 10.0f}, -lr, 2.5f};
    KernelInputs fused = in, scalar = in;
    detail::MadamStep(fused.p.data(), fused.g.data(), fused.v.data(), n, a);
    for (int64_t i = 0; i < n; ++i) {
      const float x = detail::MadamExponent(scalar.p[i], scalar.g[i], scalar.v[i], a);
      scalar.p[i] = detail::MadamWeight(scalar.p[i], x, a.max);
    }
    EXPECT_EQ(std::memcmp(fused.p.data(), scalar.p.data(), 4 * n), 0) << "lr " << lr;
    EXPECT_EQ(std::memcmp(fused.v.data(), scalar.v.data(), 4 * n), 0) << "lr " << lr;
  }
}

// Tensor sizes for the multi-tensor CUDA tests: around the kernel's chunk
// (one, several, a remainder of one) and small ones, `count` in all.
std::vector<int64_t> CudaTestSizes(int count) {
  const int64_t chunk = detail::kCudaChunk;
  const int64_t pattern[] = {1, 7, chunk - 1, chunk, chunk + 1, 3 * chunk + 17, 333, 2 * chunk};
  std::vector<int64_t> sizes;
  for (int i = 0; i < count; ++i) sizes.push_back(pattern[i % 8] + (i / 8) * 5);
  return sizes;
}

// Per tensor scalars that differ, so a block that picked the wrong tensor's
// slot would give other numbers.
detail::MadamStepArgs MadamArgsFor(int i, float lr) {
  return {{0.999f, 0.001f, 0.1f + 0.02f * static_cast<float>(i), 10.0f}, -lr,
          1.5f + 0.1f * static_cast<float>(i)};
}
detail::IntegerMadamStepArgs IntegerMadamArgsFor(int i) {
  return {{0.999f, 0.001f, 0.1f + 0.02f * static_cast<float>(i), 10.0f},
          static_cast<float>(1 + i % 7), -0.001f, 1.0f + 0.1f * static_cast<float>(i), 4095.0f};
}

// The CUDA kernels' work split and per-thread code (detail/cuda_plan.h), run
// on the CPU for every block and thread of a full batch: each element is
// stepped exactly once (a second step would change v) and gives the CPU
// kernel's bits, for every tensor with its own scalars.
TEST(CudaPlanTest, EveryThreadOfALaunchStepsItsElementsOnceWithTheCpuBits) {
  const auto sizes = CudaTestSizes(detail::kCudaMaxSlots);
  std::vector<KernelInputs> sim, cpu;
  for (size_t i = 0; i < sizes.size(); ++i) {
    sim.push_back(MakeKernelInputs(sizes[i], 4095, 100 + i));
    cpu.push_back(sim.back());
  }
  auto run_grid = [](const auto& kernel_batch, int64_t blocks, auto thread_fn) {
    for (int64_t b = 0; b < blocks; ++b) {
      for (int t = 0; t < detail::kCudaThreads; ++t) thread_fn(kernel_batch, b, t);
    }
  };
  for (float lr : {0.01f, 0.5f}) {
    SCOPED_TRACE("Madam lr " + std::to_string(lr));
    auto sim_madam = sim, cpu_madam = cpu;
    detail::CudaBatch<detail::MadamStepArgs> batch;
    for (size_t i = 0; i < sizes.size(); ++i) {
      batch.slot[batch.count++] = {sim_madam[i].p.data(), sim_madam[i].g.data(),
                                   sim_madam[i].v.data(), nullptr, sizes[i],
                                   MadamArgsFor(static_cast<int>(i), lr)};
      detail::MadamStep(cpu_madam[i].p.data(), cpu_madam[i].g.data(), cpu_madam[i].v.data(),
                        sizes[i], MadamArgsFor(static_cast<int>(i), lr));
    }
    auto kernel_batch = std::make_unique<detail::CudaKernelBatch<detail::MadamStepArgs>>();
    const int64_t blocks = detail::PlanCudaBatch(batch, *kernel_batch);
    EXPECT_EQ(blocks, kernel_batch->first_block[batch.count]);
    run_grid(*kernel_batch, blocks, detail::MadamCudaThread);
    for (size_t i = 0; i < sizes.size(); ++i) {
      ASSERT_EQ(sim_madam[i].p, cpu_madam[i].p) << "tensor " << i << " of " << sizes[i];
      ASSERT_EQ(sim_madam[i].v, cpu_madam[i].v) << "tensor " << i << " of " << sizes[i];
    }
  }
  SCOPED_TRACE("IntegerMadam");
  detail::CudaBatch<detail::IntegerMadamStepArgs> batch;
  for (size_t i = 0; i < sizes.size(); ++i) {
    batch.slot[batch.count++] = {sim[i].p.data(), sim[i].g.data(), sim[i].v.data(),
                                 sim[i].levels.data(), sizes[i],
                                 IntegerMadamArgsFor(static_cast<int>(i))};
    detail::IntegerMadamStep(cpu[i].p.data(), cpu[i].g.data(), cpu[i].v.data(),
                             cpu[i].levels.data(), sizes[i],
                             IntegerMadamArgsFor(static_cast<int>(i)));
  }
  auto kernel_batch = std::make_unique<detail::CudaKernelBatch<detail::IntegerMadamStepArgs>>();
  const int64_t blocks = detail::PlanCudaBatch(batch, *kernel_batch);
  run_grid(*kernel_batch, blocks, detail::IntegerMadamCudaThread);
  for (size_t i = 0; i < sizes.size(); ++i) {
    ASSERT_EQ(sim[i].p, cpu[i].p) << "tensor " << i << " of " << sizes[i];
    ASSERT_EQ(sim[i].v, cpu[i].v) << "tensor " << i << " of " << sizes[i];
    ASSERT_EQ(sim[i].levels, cpu[i].levels) << "tensor " << i << " of " << sizes[i];
  }
}

torch::Tensor ToDevice(std::vector<float>& values, torch::Device device) {
  return torch::from_blob(values.data(), {static_cast<int64_t>(values.size())}, torch::kFloat)
      .to(device)
      .clone();
}

template <typename T>
std::vector<T> ToVector(const torch::Tensor& t) {
  auto c = t.cpu().contiguous();
  return std::vector<T>(c.data_ptr<T>(), c.data_ptr<T>() + c.numel());
}

// On a GPU: the real CUDA kernels, over more tensors than one launch holds,
// give the CPU kernels' bits (-fmad=false, IEEE division and square root).
TEST(CudaTest, FusedCudaKernelsGiveTheCpuKernelsBits) {
  if (!torch::cuda::is_available()) {
    GTEST_SKIP() << "no CUDA device here: the fused CUDA kernels were not run";
  }
  if (!detail::CudaKernelsBuilt()) {
    GTEST_SKIP() << "LibTorch has CUDA but madam_optim was built without its fused CUDA kernels";
  }
  const torch::Device cuda(torch::kCUDA);
  const auto sizes = CudaTestSizes(detail::kCudaMaxSlots + 9);  // two launches
  for (int variant = 0; variant < 3; ++variant) {  // Madam lr 0.01, Madam lr 0.5, IntegerMadam
    SCOPED_TRACE("variant " + std::to_string(variant));
    std::vector<KernelInputs> cpu;
    std::vector<torch::Tensor> p, g, v, k;
    detail::CudaStepBatcher<detail::MadamStepArgs> madam;
    detail::CudaStepBatcher<detail::IntegerMadamStepArgs> integer_madam;
    for (size_t i = 0; i < sizes.size(); ++i) {
      const int n = static_cast<int>(i);
      cpu.push_back(MakeKernelInputs(sizes[i], 4095, 200 + i));
      KernelInputs& c = cpu.back();
      p.push_back(ToDevice(c.p, cuda));
      g.push_back(ToDevice(c.g, cuda));
      v.push_back(ToDevice(c.v, cuda));
      k.push_back(torch::from_blob(c.levels.data(), {sizes[i]}, torch::kShort).to(cuda).clone());
      if (variant < 2) {
        const auto args = MadamArgsFor(n, variant == 0 ? 0.01f : 0.5f);
        madam.Add(p.back(), g.back(), v.back(), nullptr, args);
        detail::MadamStep(c.p.data(), c.g.data(), c.v.data(), sizes[i], args);
      } else {
        integer_madam.Add(p.back(), g.back(), v.back(), &k.back(), IntegerMadamArgsFor(n));
        detail::IntegerMadamStep(c.p.data(), c.g.data(), c.v.data(), c.levels.data(), sizes[i],
                                 IntegerMadamArgsFor(n));
      }
    }
    madam.Flush();
    integer_madam.Flush();
    for (size_t i = 0; i < sizes.size(); ++i) {
      ASSERT_EQ(ToVector<float>(p[i]), cpu[i].p) << "tensor " << i << " of " << sizes[i];
      ASSERT_EQ(ToVector<float>(v[i]), cpu[i].v) << "tensor " << i << " of " << sizes[i];
      ASSERT_EQ(ToVector<int16_t>(k[i]), cpu[i].levels) << "tensor " << i << " of " << sizes[i];
    }
  }
}

// On a GPU: whole optimisers on CUDA follow their CPU runs (sigma* is a
// reduction, whose order differs by device, so weights agree to rounding).
TEST(CudaTest, OptimisersOnCudaFollowTheirCpuRuns) {
  if (!torch::cuda::is_available()) {
    GTEST_SKIP() << "no CUDA device here: the optimisers were not run on CUDA";
  }
  torch::manual_seed(5);
  std::vector<torch::Tensor> init, grads;
  for (int64_t n : CudaTestSizes(detail::kCudaMaxSlots + 3)) init.push_back(torch::randn({n}));
  for (int t = 0; t < 5; ++t) {
    for (const auto& w : init) grads.push_back(torch::randn(w.sizes()) * 0.1);
  }
  auto run = [&](torch::Device device, bool integer) {
    std::vector<torch::Tensor> ps;
    for (const auto& w : init) ps.push_back(w.to(device).clone().requires_grad_());
    std::unique_ptr<torch::optim::Optimizer> opt;
    if (integer) {
      opt = std::make_unique<IntegerMadam>(ps, IntegerMadamOptions(0.001).lr_factor(10).init("nearest"));
    } else {
      opt = std::make_unique<Madam>(ps, MadamOptions(0.05));
    }
    for (int t = 0; t < 5; ++t) {
      for (size_t i = 0; i < ps.size(); ++i) {
        ps[i].mutable_grad() = grads[t * init.size() + i].to(device);
      }
      opt->step();
    }
    std::vector<torch::Tensor> out;
    for (const auto& q : ps) out.push_back(q.detach().cpu());
    return out;
  };
  for (bool integer : {false, true}) {
    const auto on_cpu = run(torch::kCPU, integer);
    const auto on_cuda = run(torch::kCUDA, integer);
    for (size_t i = 0; i < on_cpu.size(); ++i) {
      EXPECT_TRUE(torch::allclose(on_cuda[i], on_cpu[i], 1e-5, 1e-30))
          << (integer ? "IntegerMadam" : "Madam") << " tensor " << i << ": max difference "
          << (on_cuda[i] - on_cpu[i]).abs().max().item<double>();
    }
  }
}

// A few hundred steps of random gradients, large lr: the invariants of
// Algorithm 1 hold at every step.
TEST(MadamTest, SignsNeverFlipAndWeightsStayWithinBounds) {
  torch::manual_seed(0);
  const double lr = 0.2, g_bound = 10;
  auto p = torch::randn({4096}).requires_grad_();
  Madam opt({p}, MadamOptions(lr).g_bound(g_bound));
  const auto sign0 = torch::sign(p.detach()).clone();
  for (int t = 0; t < 200; ++t) {
    auto before = p.detach().clone();
    p.mutable_grad() = torch::randn({4096}) * (t % 7 == 0 ? 1e6 : 1.0);
    opt.step();
    const double sigma = opt.param_state(p)->max();
    auto now = p.detach();
    ASSERT_TRUE(torch::equal(torch::sign(now), sign0)) << "a sign flipped at step " << t;
    ASSERT_LE(now.abs().max().item<double>(), sigma * (1 + 1e-6)) << "step " << t;
    if (t > 0) {  // step 1 may clamp weights initially beyond sigma*
      auto nonzero = before != 0;
      auto ratio = (now.masked_select(nonzero) / before.masked_select(nonzero)).abs();
      ASSERT_LE(ratio.max().item<double>(), std::exp(lr * g_bound) * (1 + 1e-6)) << "step " << t;
      ASSERT_GE(ratio.min().item<double>(), std::exp(-lr * g_bound) * (1 - 1e-6)) << "step " << t;
    }
  }
}

TEST(MadamTest, SkipsParametersWithoutGradient) {
  auto a = torch::ones({3}).requires_grad_();
  auto b = torch::ones({3}).requires_grad_();
  Madam opt({a, b});
  a.mutable_grad() = torch::ones({3});
  opt.step();
  EXPECT_TRUE(torch::equal(b.detach(), torch::ones({3})));
  EXPECT_EQ(opt.param_state(b), nullptr);
  EXPECT_NE(opt.param_state(a), nullptr);
}

TEST(IntegerMadamTest, LevelsStayInRangeAndWeightsOnLadder) {
  for (int64_t bits : {1, 4, 8, 12, 16}) {
    for (const char* init : {"uniform", "nearest"}) {
      torch::manual_seed(bits);
      const double base_lr = std::log(60.0) / static_cast<double>((1 << bits) - 1);
      auto p = torch::randn({2000}).requires_grad_();
      const auto sign0 = torch::sign(p.detach()).clone();
      IntegerMadam opt({p},
                       IntegerMadamOptions(base_lr).lr_factor(4).bits(bits).init(init));
      for (int t = 0; t < 50; ++t) {
        p.mutable_grad() = torch::randn({2000});
        opt.step();
        const auto* st = opt.param_state(p);
        auto k = DecodeLevels(st->levels());
        ASSERT_EQ(st->levels().scalar_type(), torch::kShort);
        ASSERT_GE(k.min().item<int>(), 0) << bits << " bits";
        ASSERT_LE(k.max().item<int>(), (1 << bits) - 1) << bits << " bits";
        ASSERT_TRUE(torch::equal(torch::sign(p.detach()), sign0)) << "a sign flipped";
        auto ladder = sign0.to(torch::kDouble) * st->max() *
                      torch::exp(-base_lr * k.to(torch::kDouble));
        auto err = ((p.detach().to(torch::kDouble) - ladder).abs() / ladder.abs()).max();
        ASSERT_LT(err.item<double>(), 1e-6) << bits << " bits, init " << init << ", step " << t;
      }
    }
  }
}

TEST(IntegerMadamTest, SixteenBitLevelsUseTheWholeUnsignedRange) {
  auto stored = torch::tensor({0, 32767, -32768, -1}, torch::kShort);
  auto k = DecodeLevels(stored);
  EXPECT_EQ(k[0].item<int>(), 0);
  EXPECT_EQ(k[1].item<int>(), 32767);
  EXPECT_EQ(k[2].item<int>(), 32768);
  EXPECT_EQ(k[3].item<int>(), 65535);
}

TEST(IntegerMadamTest, StateIsSixBytesPerWeight) {
  auto p = torch::randn({1000}).requires_grad_();
  IntegerMadam opt({p});
  p.mutable_grad() = torch::randn({1000});
  opt.step();
  const auto* st = opt.param_state(p);
  const int64_t bytes = st->levels().numel() * st->levels().element_size() +
                        st->exp_avg_sq().numel() * st->exp_avg_sq().element_size();
  EXPECT_EQ(bytes, 6 * 1000);
}

TEST(IntegerMadamTest, SetLrMovesLrFactorAndNeverBelowOne) {
  IntegerMadamOptions o(0.001);
  EXPECT_DOUBLE_EQ(o.get_lr(), 0.01);
  o.set_lr(0.005);
  EXPECT_DOUBLE_EQ(o.lr_factor(), 5.0);
  o.set_lr(1e-6);
  EXPECT_DOUBLE_EQ(o.lr_factor(), 1.0);
  EXPECT_DOUBLE_EQ(o.base_lr(), 0.001);
}

// A standard LibTorch scheduler decays eta toward eta0 and the optimiser
// stops it there (eta0 <= eta, the paper's section 6): no caller needs a
// floor of its own.
TEST(IntegerMadamTest, SchedulerDecayStopsAtBaseLr) {
  auto p = torch::full({8}, 1.0).requires_grad_();
  IntegerMadam opt({p}, IntegerMadamOptions(0.001).lr_factor(30).init("nearest"));
  torch::optim::StepLR decay(opt, /*step_size=*/1, /*gamma=*/0.1);
  const auto& options = static_cast<const IntegerMadamOptions&>(opt.param_groups()[0].options());
  std::vector<double> factors;
  for (int epoch = 0; epoch < 5; ++epoch) {
    p.mutable_grad() = torch::ones({8});
    opt.step();
    decay.step();
    factors.push_back(options.lr_factor());
  }
  // 30 -> 3 -> 0.3, floored to 1, and 1 from then on.
  const auto three = std::find_if(factors.begin(), factors.end(),
                                  [](double f) { return std::fabs(f - 3.0) < 1e-12; });
  ASSERT_NE(three, factors.end()) << "the decay never reached 3";
  ASSERT_NE(three + 1, factors.end());
  for (auto it = three + 1; it != factors.end(); ++it) EXPECT_DOUBLE_EQ(*it, 1.0);
  EXPECT_DOUBLE_EQ(options.get_lr(), 0.001);
  EXPECT_DOUBLE_EQ(options.base_lr(), 0.001);
  // At the floor a step still moves a level: g_hat = 1 (steady gradient),
  // round(1 * 1) = 1 level per step.
  const int before = DecodeLevels(opt.param_state(p)->levels())[0].item<int>();
  p.mutable_grad() = torch::ones({8});
  opt.step();
  EXPECT_EQ(DecodeLevels(opt.param_state(p)->levels())[0].item<int>(), before + 1);
}

TEST(IntegerMadamTest, SetLrWithNanLandsOnTheFloor) {
  IntegerMadamOptions o(0.004);
  o.set_lr(std::nan(""));
  EXPECT_DOUBLE_EQ(o.lr_factor(), 1.0);
}

// First Madam step: g_hat = sign(g), so p1 = p0 * exp(-lr * sign(g) * sign(p0)).
TEST(MadamTest, PerGroupOptionsReachStep) {
  auto a = torch::full({4}, 1.0).requires_grad_();
  auto b = torch::full({4}, 1.0).requires_grad_();
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(std::vector<torch::Tensor>{a});
  groups.emplace_back(std::vector<torch::Tensor>{b}, std::make_unique<MadamOptions>(0.1));
  Madam opt(std::move(groups), MadamOptions(0.01));
  a.mutable_grad() = torch::ones({4});
  b.mutable_grad() = torch::ones({4});
  opt.step();
  EXPECT_NEAR(a[0].item<double>(), std::exp(-0.01), 1e-6);
  EXPECT_NEAR(b[0].item<double>(), std::exp(-0.1), 1e-6);
}

TEST(IntegerMadamTest, PerGroupOptionsReachStep) {
  auto a = torch::full({4}, 1.0).requires_grad_();
  auto b = torch::full({4}, 1.0).requires_grad_();
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(std::vector<torch::Tensor>{a});
  groups.emplace_back(std::vector<torch::Tensor>{b},
                      std::make_unique<IntegerMadamOptions>(
                          IntegerMadamOptions(0.001).lr_factor(3).bits(8).init("nearest")));
  IntegerMadam opt(std::move(groups), IntegerMadamOptions(0.001).lr_factor(7).init("nearest"));
  a.mutable_grad() = torch::ones({4});
  b.mutable_grad() = torch::ones({4});
  opt.step();
  // sigma* = 3, and |w| = 1 sits at level round(ln 3 / 0.001) = 1099; one
  // step adds round(1 * lr_factor) levels.
  EXPECT_EQ(DecodeLevels(opt.param_state(a)->levels())[0].item<int>(), 1099 + 7);
  EXPECT_EQ(DecodeLevels(opt.param_state(b)->levels())[0].item<int>(), 255);  // 8-bit cap
}

template <typename Opt, typename Options>
void ExpectSaveLoadContinuesExactly(Options options) {
  torch::manual_seed(7);
  auto init = torch::randn({3, 5});
  std::vector<torch::Tensor> grads;
  for (int t = 0; t < 8; ++t) grads.push_back(torch::randn({3, 5}));

  // Both runs draw any random initial state (IntegerMadam's uniform levels)
  // from the same generator state.
  auto p = init.clone().requires_grad_();
  Opt uninterrupted({p}, options);
  torch::manual_seed(11);
  for (const auto& g : grads) {
    p.mutable_grad() = g;
    uninterrupted.step();
  }

  auto q = init.clone().requires_grad_();
  std::stringstream saved;
  torch::Tensor q_saved;
  {
    Opt first({q}, options);
    torch::manual_seed(11);
    for (int t = 0; t < 4; ++t) {
      q.mutable_grad() = grads[t];
      first.step();
    }
    torch::serialize::OutputArchive archive;
    first.save(archive);
    archive.save_to(saved);
    q_saved = q.detach().clone();
  }
  auto r = q_saved.clone().requires_grad_();
  Opt resumed({r}, Options(options).p_scale(99));  // state, not these options, must win
  torch::serialize::InputArchive archive;
  archive.load_from(saved);
  resumed.load(archive);
  for (int t = 4; t < 8; ++t) {
    r.mutable_grad() = grads[t];
    resumed.step();
  }
  EXPECT_TRUE(torch::equal(r.detach(), p.detach())) << (r - p).abs().max().item<double>();
}

TEST(MadamTest, SaveLoadContinuesExactly) { ExpectSaveLoadContinuesExactly<Madam>(MadamOptions(0.05)); }

TEST(IntegerMadamTest, SaveLoadContinuesExactly) {
  ExpectSaveLoadContinuesExactly<IntegerMadam>(IntegerMadamOptions(0.001).lr_factor(20));
}

// A 2-layer MLP on a fixed, learnable classification problem.
template <typename MakeOpt>
std::pair<double, double> TrainSmallModel(MakeOpt make_opt) {
  torch::manual_seed(3);
  auto x = torch::randn({512, 10});
  auto y = (x.narrow(1, 0, 1) + x.narrow(1, 1, 1) > 0).squeeze(1).to(torch::kLong);
  torch::nn::Sequential net(torch::nn::Linear(10, 32), torch::nn::ReLU(), torch::nn::Linear(32, 2));
  for (auto& p : net->parameters()) {
    if (p.dim() == 1) p.data().uniform_(0.01, 0.05);  // biases away from 0 (paper, section 5)
  }
  auto opt = make_opt(net->parameters());
  double first = 0, last = 0;
  for (int t = 0; t < 300; ++t) {
    opt->zero_grad();
    auto loss = torch::nn::functional::cross_entropy(net->forward(x), y);
    loss.backward();
    opt->step();
    if (t == 0) first = loss.item<double>();
    last = loss.item<double>();
  }
  return {first, last};
}

TEST(MadamTest, TrainsSmallModel) {
  auto [first, last] = TrainSmallModel(
      [](auto params) { return std::make_unique<Madam>(params, MadamOptions(0.01)); });
  EXPECT_LT(last, 0.5 * first) << "loss " << first << " -> " << last;
}

TEST(IntegerMadamTest, TrainsSmallModel) {
  auto [first, last] = TrainSmallModel([](auto params) {
    return std::make_unique<IntegerMadam>(params, IntegerMadamOptions(0.001).lr_factor(10));
  });
  EXPECT_LT(last, 0.5 * first) << "loss " << first << " -> " << last;
}

TEST(IntegerMadamTest, EightBitTrainsSmallModel) {
  auto [first, last] = TrainSmallModel([](auto params) {
    return std::make_unique<IntegerMadam>(
        params, IntegerMadamOptions(std::log(60.0) / 255).lr_factor(1).bits(8));
  });
  EXPECT_LT(last, 0.7 * first) << "loss " << first << " -> " << last;
}

void ExpectRejected(const std::function<void()>& construct, const std::string& needle) {
  try {
    construct();
    ADD_FAILURE() << "no error; expected one naming " << needle;
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(MadamTest, RejectsOutOfRangeOptionsNamingThem) {
  std::vector<torch::Tensor> ps{torch::ones({2}).requires_grad_()};
  ExpectRejected([&] { Madam(ps, MadamOptions(-0.1)); }, "invalid lr -0.1");
  ExpectRejected([&] { Madam(ps, MadamOptions(0)); }, "invalid lr 0");
  ExpectRejected([&] { Madam(ps, MadamOptions(std::nan(""))); }, "invalid lr nan");
  ExpectRejected([&] { Madam(ps, MadamOptions().beta(1)); }, "invalid beta 1");
  ExpectRejected([&] { Madam(ps, MadamOptions().beta(-0.5)); }, "invalid beta -0.5");
  ExpectRejected([&] { Madam(ps, MadamOptions().g_bound(0)); }, "invalid g_bound 0");
  ExpectRejected([&] { Madam(ps, MadamOptions().p_scale(-3)); }, "invalid p_scale -3");
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(ps, std::make_unique<MadamOptions>(-1));
  ExpectRejected([&] { Madam(std::move(groups), MadamOptions()); }, "invalid lr -1");
}

TEST(IntegerMadamTest, RejectsOutOfRangeOptionsNamingThem) {
  std::vector<torch::Tensor> ps{torch::ones({2}).requires_grad_()};
  ExpectRejected([&] { IntegerMadam(ps, IntegerMadamOptions(0)); }, "invalid base_lr 0");
  ExpectRejected([&] { IntegerMadam(ps, IntegerMadamOptions().bits(0)); }, "invalid bits 0");
  ExpectRejected([&] { IntegerMadam(ps, IntegerMadamOptions().bits(17)); }, "invalid bits 17");
  ExpectRejected([&] { IntegerMadam(ps, IntegerMadamOptions().lr_factor(-1)); },
                 "invalid lr_factor -1");
  ExpectRejected([&] { IntegerMadam(ps, IntegerMadamOptions().lr_factor(std::nan(""))); },
                 "invalid lr_factor nan");
  ExpectRejected([&] { IntegerMadam(ps, IntegerMadamOptions().beta(1.5)); }, "invalid beta 1.5");
  ExpectRejected([&] { IntegerMadam(ps, IntegerMadamOptions().g_bound(-2)); }, "invalid g_bound -2");
  ExpectRejected([&] { IntegerMadam(ps, IntegerMadamOptions().p_scale(0)); }, "invalid p_scale 0");
  ExpectRejected([&] { IntegerMadam(ps, IntegerMadamOptions().init("gaussian")); },
                 "invalid init \"gaussian\"");
}

// eta0 <= eta (the paper, section 6): an lr_factor below 1 would put eta
// below eta0; the message names both numbers a user has to fix.
TEST(IntegerMadamTest, RejectsLrFactorBelowOneNamingBaseLr) {
  std::vector<torch::Tensor> ps{torch::ones({2}).requires_grad_()};
  for (double bad : {0.625, 0.999, 0.0}) {
    try {
      IntegerMadam(ps, IntegerMadamOptions(0.016).lr_factor(bad));
      ADD_FAILURE() << "lr_factor " << bad << " accepted";
    } catch (const c10::Error& e) {
      const std::string what = e.what();
      std::ostringstream factor;
      factor << "invalid lr_factor " << bad;
      EXPECT_NE(what.find(factor.str()), std::string::npos) << what;
      EXPECT_NE(what.find("base_lr 0.016"), std::string::npos) << what;
    }
  }
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(ps, std::make_unique<IntegerMadamOptions>(
                              IntegerMadamOptions(0.01).lr_factor(0.5)));
  ExpectRejected([&] { IntegerMadam(std::move(groups), IntegerMadamOptions()); },
                 "invalid lr_factor 0.5");
  // eta = eta0 exactly is the paper's 8-bit setting.
  EXPECT_NO_THROW(IntegerMadam(ps, IntegerMadamOptions(0.01).lr_factor(1)));
}

// Options that reach the optimiser after construction are checked too.
TEST(IntegerMadamTest, StepRejectsAGroupAddedWithLrFactorBelowOne) {
  auto a = torch::ones({2}).requires_grad_();
  auto b = torch::ones({2}).requires_grad_();
  IntegerMadam opt({a});
  opt.add_param_group(torch::optim::OptimizerParamGroup(
      {b}, std::make_unique<IntegerMadamOptions>(IntegerMadamOptions(0.004).lr_factor(0.25))));
  b.mutable_grad() = torch::ones({2});
  ExpectRejected([&] { opt.step(); }, "base_lr 0.004");
}

TEST(MadamTest, SparseGradientIsAClearError) {
  auto p = torch::ones({4}).requires_grad_();
  Madam opt({p});
  p.mutable_grad() = torch::ones({4}).to_sparse();
  ExpectRejected([&] { opt.step(); }, "sparse gradients");
  IntegerMadam iopt({p});
  ExpectRejected([&] { iopt.step(); }, "sparse gradients");
}

}  // namespace
}  // namespace madam::optim
