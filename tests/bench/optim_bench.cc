// Optimiser step benchmark, measured so that every side gets the same chance:
// Madam (fused), IntegerMadam (fused), LibTorch's torch::optim::Adam and an
// eager Madam (the same maths as separate tensor ops), on an MLP's parameters
// and on the CIFAR ResNet-18's (11.2M), at one thread by default.
//
// How it measures (STYLE.md, "benchmarks are programs"):
//   * every side is built and warmed up alike: --warmup untimed steps each,
//     taken in alternation, so first-touch page faults, lazily created state
//     and the allocator's first growth are paid before any timing starts;
//   * then --rounds rounds; in each, every side takes --steps timed steps, in
//     an order that rotates from round to round; a side's figure is its median
//     over rounds, and a ratio is the median over rounds of the paired
//     per-round ratio (the two sides ran seconds apart, under the same load);
//   * the memory floor: per optimiser, a kernel over buffers of the same
//     shapes that moves exactly the bytes the optimiser must move and does no
//     arithmetic worth the name (Madam: read p, g, v and write p, v — 20 bytes
//     a parameter; IntegerMadam adds the int16 level, 24; Adam reads p, g, m,
//     v and writes p, m, v, 28). It is timed in the same rounds, and each
//     optimiser is printed as a fraction of its floor;
//   * gradients alternate between g and -g from step to step for every side,
//     so weights wander instead of decaying into denormals over many steps.
// With --peer CMD (optim_bench.sh passes tests/bench/optim_peers.py), a child
// process runs Python peers (torch.optim.Adam with foreach off and on, fused
// on CUDA, and a per-op Madam) as one more side of every round, over the same
// shapes. --device cuda times the same sides on the GPU (no memory floor:
// that is a CPU pass), for tests/bench/cuda_check.sh.
//
// Prints one "RATIO" line per workload, e.g.
//   RATIO resnet18-11M madam/adam 0.312 int_madam/adam 0.498 ... madam/floor 1.277 ...
//
//   optim_bench [--quick] [--device cpu|cuda] [--threads N] [--rounds R] [--steps S] [--warmup W]
//               [--only mlp|resnet18] [--clock cpu|wall] [--peer CMD]
#include <ATen/Parallel.h>
#include <malloc.h>
#include <signal.h>
#include <time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "detail/kernels.h"
#include "madam/optim/integer_madam.h"
#include "madam/optim/madam.h"

namespace {

// Seconds on the benchmark's clock. "cpu" (the default at one thread on the
// CPU) is the process's CPU time: on a shared machine it leaves out the time
// the process sat descheduled while others ran, and still counts page faults
// and memory stalls; with more threads CPU time sums over them, and a GPU's
// time is no CPU's, so there "wall" is used.
bool g_cpu_clock = true;
double Now() {
  timespec ts{};
  clock_gettime(g_cpu_clock ? CLOCK_PROCESS_CPUTIME_ID : CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}
using Shapes = std::vector<std::vector<int64_t>>;

Shapes MlpShapes() { return {{256, 784}, {256}, {256, 256}, {256}, {10, 256}, {10}}; }

// The CIFAR ResNet-18's parameter shapes: 11.2M parameters.
Shapes ResNet18Shapes() {
  Shapes shapes = {{64, 3, 3, 3}, {64}, {64}};
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

// One side's parameters with two gradient sets, g and -g; Flip() installs
// the other set, a pointer swap per tensor.
struct Params {
  std::vector<torch::Tensor> tensors;
  std::vector<torch::Tensor> grads[2];
  int64_t count = 0;
  int parity = 0;

  void Flip() {
    parity ^= 1;
    for (size_t i = 0; i < tensors.size(); ++i) tensors[i].mutable_grad() = grads[parity][i];
  }
};

Params MakeParams(const Shapes& shapes, torch::Device device) {
  Params p;
  const auto on = torch::TensorOptions().device(device);
  for (const auto& s : shapes) {
    auto t = torch::randn(s, on).mul_(0.05).requires_grad_();
    auto g = torch::randn(s, on).mul_(0.01);
    p.grads[0].push_back(g);
    p.grads[1].push_back(-g);
    t.mutable_grad() = g;
    p.count += t.numel();
    p.tensors.push_back(t);
  }
  return p;
}

// Madam as separate tensor ops, the way a per-op port of the reference runs
// (and as madam::optim's eager path runs on tensors it cannot fuse).
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

// The memory floor: buffers shaped like the parameters, and a pass that reads
// `reads` float arrays (plus one int16 array when `levels`) and writes back
// `writes` of them (and the int16 array), with one add per element so the
// compiler cannot drop a load. Vectorised at the widest width the CPU has,
// chosen at run time, like the optimiser kernels.
__attribute__((target_clones("avx512f", "avx2", "default")))
void FloorRange(float* __restrict a, float* __restrict b, float* __restrict c,
                float* __restrict d, int16_t* __restrict k, int64_t begin, int64_t end, int reads,
                int writes) {
  // Specialised loops: a generic one would not vectorise cleanly.
  if (k != nullptr) {  // IntegerMadam: read p, g, v, k; write p, v, k
    for (int64_t i = begin; i < end; ++i) {
      const float x = a[i], y = b[i], z = c[i];
      a[i] = x + y;
      c[i] = z + y;
      k[i] = static_cast<int16_t>(static_cast<uint16_t>(k[i]) + 1u);
    }
  } else if (reads == 3 && writes == 2) {  // Madam: read p, g, v; write p, v
    for (int64_t i = begin; i < end; ++i) {
      const float x = a[i], y = b[i], z = c[i];
      a[i] = x + y;
      c[i] = z + y;
    }
  } else {  // Adam: read p, g, m, v; write p, m, v
    for (int64_t i = begin; i < end; ++i) {
      const float x = a[i], y = b[i], z = c[i], w = d[i];
      a[i] = x + y;
      c[i] = z + y;
      d[i] = w + y;
    }
  }
}

class MemoryFloor {
 public:
  MemoryFloor(const Shapes& shapes, int reads, int writes, bool levels)
      : reads_(reads), writes_(writes) {
    for (const auto& s : shapes) {
      // Real, distinct pages (never the shared zero page), like the
      // optimisers' buffers; values grow by one small step a pass at most.
      for (auto* v : {&a_, &b_, &c_, &d_}) v->push_back(torch::randn(s));
      if (levels) k_.push_back(torch::zeros(s, torch::kShort).fill_(1));
    }
  }
  // Bytes moved per parameter: 4 per float read and write, 2 + 2 for a level.
  int bytes_per_param() const { return 4 * (reads_ + writes_) + (k_.empty() ? 0 : 4); }
  void step() {
    for (size_t i = 0; i < a_.size(); ++i) {
      float* a = a_[i].data_ptr<float>();
      float* b = b_[i].data_ptr<float>();
      float* c = c_[i].data_ptr<float>();
      float* d = d_[i].data_ptr<float>();
      int16_t* k = k_.empty() ? nullptr : k_[i].data_ptr<int16_t>();
      at::parallel_for(0, a_[i].numel(), 1 << 15, [&](int64_t begin, int64_t end) {
        FloorRange(a, b, c, d, k, begin, end, reads_, writes_);
      });
    }
  }

 private:
  int reads_, writes_;
  std::vector<torch::Tensor> a_, b_, c_, d_, k_;
};

// A child process speaking optim_peers.py's line protocol on a pipe pair:
// we send the shapes and "go WARMUP", it answers "ready"; each "round STEPS"
// is answered with one "NAME SECONDS_PER_STEP" line per peer, then "end".
class Peer {
 public:
  explicit Peer(const std::string& command) {
    int to_child[2], from_child[2];
    if (pipe(to_child) != 0 || pipe(from_child) != 0) return;
    pid_ = fork();
    if (pid_ == 0) {
      dup2(to_child[0], 0);
      dup2(from_child[1], 1);
      close(to_child[1]);
      close(from_child[0]);
      execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    close(to_child[0]);
    close(from_child[1]);
    out_ = fdopen(to_child[1], "w");
    in_ = fdopen(from_child[0], "r");
  }
  ~Peer() {
    if (out_ != nullptr) {
      std::fputs("quit\n", out_);
      std::fclose(out_);
    }
    if (in_ != nullptr) std::fclose(in_);
    if (pid_ > 0) waitpid(pid_, nullptr, 0);
  }
  Peer(const Peer&) = delete;
  Peer& operator=(const Peer&) = delete;

  bool ok() const { return pid_ > 0 && in_ != nullptr && out_ != nullptr && !failed_; }

  bool Start(const Shapes& shapes, int threads, int warmup, const std::string& device) {
    std::fprintf(out_, "threads %d\nclock %s\ndevice %s\n", threads, g_cpu_clock ? "cpu" : "wall",
                 device.c_str());
    for (const auto& s : shapes) {
      std::fputs("shape", out_);
      for (int64_t d : s) std::fprintf(out_, " %lld", static_cast<long long>(d));
      std::fputs("\n", out_);
    }
    std::fprintf(out_, "go %d\n", warmup);
    std::fflush(out_);
    return ReadLine() == "ready";
  }

  // One timed round; seconds per step by peer name (empty on failure).
  std::map<std::string, double> Round(int steps) {
    std::map<std::string, double> out;
    std::fprintf(out_, "round %d\n", steps);
    std::fflush(out_);
    for (std::string line = ReadLine(); line != "end"; line = ReadLine()) {
      if (line.empty()) {
        failed_ = true;
        return {};
      }
      std::istringstream fields(line);
      std::string name;
      double seconds = 0;
      fields >> name >> seconds;
      out[name] = seconds;
    }
    return out;
  }

 private:
  std::string ReadLine() {
    char buf[512];
    if (in_ == nullptr || std::fgets(buf, sizeof buf, in_) == nullptr) return "";
    std::string line(buf);
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
    return line;
  }

  pid_t pid_ = -1;
  FILE* out_ = nullptr;
  FILE* in_ = nullptr;
  bool failed_ = false;
};

struct Side {
  std::string name;
  std::function<void()> step;  // one step over every tensor
};

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

struct Config {
  std::string device = "cpu";  // "cpu" | "cuda"
  int threads = 1;
  int rounds = 0;  // 0: the workload's default
  int steps = 0;
  int warmup = 5;
  std::string only;
  std::string peer;
  std::string clock;  // "cpu" | "wall"; empty: cpu at one thread, else wall
  bool quick = false;
};

void Run(const std::string& label, const Shapes& shapes, int rounds, int steps,
         const Config& config) {
  torch::manual_seed(0);
  const bool cuda = config.device == "cuda";
  const torch::Device device = cuda ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
  // A CUDA step only queues kernels: wait for them before reading the clock.
  auto sync = [&] {
    if (cuda) torch::cuda::synchronize();
  };
  Params adam_p = MakeParams(shapes, device), madam_p = MakeParams(shapes, device),
         int_p = MakeParams(shapes, device), eager_p = MakeParams(shapes, device);
  torch::optim::Adam adam(adam_p.tensors, torch::optim::AdamOptions(1e-3));
  madam::optim::Madam madam(madam_p.tensors, madam::optim::MadamOptions(0.01));
  madam::optim::IntegerMadam int_madam(int_p.tensors, madam::optim::IntegerMadamOptions(0.001));
  EagerMadam eager(eager_p.tensors, 0.01);
  // The memory floors are CPU passes; on CUDA the ratios to Adam stand alone.
  const Shapes floor_shapes = cuda ? Shapes{} : shapes;
  MemoryFloor floor_madam(floor_shapes, 3, 2, false), floor_int(floor_shapes, 3, 2, true),
      floor_adam(floor_shapes, 4, 3, false);

  std::vector<Side> sides = {
      {"adam", [&] { adam_p.Flip(); adam.step(); }},
      {"madam", [&] { madam_p.Flip(); madam.step(); }},
      {"int_madam", [&] { int_p.Flip(); int_madam.step(); }},
      {"eager_madam", [&] { eager_p.Flip(); eager.step(); }},
  };
  if (!cuda) {
    sides.push_back({"floor_madam", [&] { floor_madam.step(); }});
    sides.push_back({"floor_int_madam", [&] { floor_int.step(); }});
    sides.push_back({"floor_adam", [&] { floor_adam.step(); }});
  }

  std::unique_ptr<Peer> peer;
  if (!config.peer.empty()) {
    peer = std::make_unique<Peer>(config.peer);
    if (!peer->ok() || !peer->Start(shapes, config.threads, config.warmup, config.device)) {
      std::fprintf(stderr, "optim_bench: peer \"%s\" did not start; running without it\n",
                   config.peer.c_str());
      peer.reset();
    }
  }

  // Equal warm-up, in alternation (the peer warmed up its own sides while
  // Start() waited for it).
  for (int w = 0; w < config.warmup; ++w) {
    for (auto& s : sides) s.step();
  }
  sync();

  std::map<std::string, std::vector<double>> seconds;  // per round, per step
  const size_t n_sides = sides.size() + (peer ? 1 : 0);
  for (int r = 0; r < rounds; ++r) {
    for (size_t j = 0; j < n_sides; ++j) {
      const size_t i = (j + static_cast<size_t>(r)) % n_sides;
      if (i == sides.size()) {
        auto result = peer->Round(steps);
        if (result.empty()) {
          std::fprintf(stderr, "optim_bench: peer stopped answering; dropping it\n");
          peer.reset();
          continue;
        }
        for (const auto& [name, s] : result) seconds[name].push_back(s);
        continue;
      }
      const double start = Now();
      for (int s = 0; s < steps; ++s) sides[i].step();
      sync();
      seconds[sides[i].name].push_back((Now() - start) / steps);
    }
  }

  // Paired ratio: the median over rounds of a/b within each round.
  auto ratio = [&](const std::string& a, const std::string& b) {
    const auto &x = seconds[a], &y = seconds[b];
    std::vector<double> r;
    for (size_t i = 0; i < std::min(x.size(), y.size()); ++i) r.push_back(x[i] / y[i]);
    return r.empty() ? std::nan("") : Median(r);
  };
  const std::map<std::string, std::string> floor_of = {
      {"adam", "floor_adam"},      {"madam", "floor_madam"},
      {"int_madam", "floor_int_madam"}, {"py_adam", "floor_adam"},
      {"py_adam_foreach", "floor_adam"}, {"py_adam_fused", "floor_adam"},
      {"py_madam_perop", "floor_madam"},
      {"eager_madam", "floor_madam"}};
  const std::map<std::string, int> floor_bytes = {{"floor_madam", floor_madam.bytes_per_param()},
                                                  {"floor_int_madam", floor_int.bytes_per_param()},
                                                  {"floor_adam", floor_adam.bytes_per_param()}};

  const double n = static_cast<double>(adam_p.count);
  std::printf("\n%s on %s: %lld parameters in %zu tensors, %d thread(s), %d warm-up steps "
              "each, median of %d rounds x %d steps, %s clock\n",
              label.c_str(), config.device.c_str(), static_cast<long long>(adam_p.count),
              shapes.size(), at::get_num_threads(), config.warmup, rounds, steps,
              g_cpu_clock ? "cpu" : "wall");
  std::printf("  %-16s %10s %10s %9s %10s %9s\n", "side", "ms/step", "ns/param", "vs adam",
              "vs floor", "GB/s");
  std::vector<std::string> order = {"adam", "madam", "int_madam", "eager_madam"};
  for (const char* py : {"py_adam", "py_adam_foreach", "py_adam_fused", "py_madam_perop"}) {
    if (seconds.count(py)) order.push_back(py);
  }
  for (const char* f : {"floor_adam", "floor_madam", "floor_int_madam"}) order.push_back(f);
  for (const auto& name : order) {
    if (!seconds.count(name)) continue;
    const double med = Median(seconds[name]);
    std::printf("  %-16s %10.3f %10.3f %8.3fx", name.c_str(), med * 1e3, med * 1e9 / n,
                ratio(name, "adam"));
    auto f = floor_of.find(name);
    if (cuda) {
      std::printf("\n");
    } else if (f != floor_of.end()) {
      std::printf(" %9.3fx %9s\n", ratio(name, f->second), "");
    } else {
      // A floor: its bandwidth, bytes moved per second.
      std::printf(" %10s %9.1f\n", "", floor_bytes.at(name) * n / med / 1e9);
    }
  }

  int64_t state_bytes = 0;
  for (const auto& p : int_p.tensors) {
    const auto* st = int_madam.param_state(p);
    state_bytes += st->levels().numel() * st->levels().element_size() +
                   st->exp_avg_sq().numel() * st->exp_avg_sq().element_size();
  }
  std::printf("  fused CPU kernels: %s (MADAM_OPTIM_ISA=baseline|avx2 narrows them)\n",
              madam::optim::detail::IsaName(madam::optim::detail::ActiveIsa()));
  std::printf("  int_madam state: %.2f bytes/weight (int16 level + float second moment)\n",
              static_cast<double>(state_bytes) / n);
  if (!cuda) {
    std::printf("  floors move %d (adam), %d (madam), %d (int_madam) bytes/parameter\n",
                floor_adam.bytes_per_param(), floor_madam.bytes_per_param(),
                floor_int.bytes_per_param());
  }
  const std::string tag = cuda ? label + "-cuda" : label;
  std::printf("RATIO %s madam/adam %.3f int_madam/adam %.3f eager_madam/adam %.3f", tag.c_str(),
              ratio("madam", "adam"), ratio("int_madam", "adam"), ratio("eager_madam", "adam"));
  if (!cuda) {
    std::printf(" madam/floor %.3f int_madam/floor %.3f adam/floor %.3f",
                ratio("madam", "floor_madam"), ratio("int_madam", "floor_int_madam"),
                ratio("adam", "floor_adam"));
  }
  for (const char* py : {"py_adam", "py_adam_foreach", "py_adam_fused", "py_madam_perop"}) {
    if (seconds.count(py)) std::printf(" %s/adam %.3f", py, ratio(py, "adam"));
  }
  std::printf("\n");
  std::fflush(stdout);
}

int Usage() {
  std::fprintf(stderr,
               "usage: optim_bench [--quick] [--device cpu|cuda] [--threads N] [--rounds R] [--steps S] "
               "[--warmup W] [--only mlp|resnet18] [--clock cpu|wall] [--peer CMD]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  Config config;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const bool has_value = i + 1 < argc;
    if (arg == "--quick") {
      config.quick = true;
    } else if (arg == "--device" && has_value) {
      config.device = argv[++i];
    } else if (arg == "--threads" && has_value) {
      config.threads = std::atoi(argv[++i]);
    } else if (arg == "--rounds" && has_value) {
      config.rounds = std::atoi(argv[++i]);
    } else if (arg == "--steps" && has_value) {
      config.steps = std::atoi(argv[++i]);
    } else if (arg == "--warmup" && has_value) {
      config.warmup = std::atoi(argv[++i]);
    } else if (arg == "--only" && has_value) {
      config.only = argv[++i];
    } else if (arg == "--clock" && has_value) {
      config.clock = argv[++i];
    } else if (arg == "--peer" && has_value) {
      config.peer = argv[++i];
    } else {
      return Usage();
    }
  }
  if (config.threads < 1 || config.warmup < 1 || config.rounds < 0 || config.steps < 0 ||
      (!config.only.empty() && config.only != "mlp" && config.only != "resnet18") ||
      (!config.clock.empty() && config.clock != "cpu" && config.clock != "wall") ||
      (config.device != "cpu" && config.device != "cuda")) {
    return Usage();
  }
  if (config.device == "cuda" && !torch::cuda::is_available()) {
    std::fprintf(stderr, "optim_bench: --device cuda, but LibTorch sees no CUDA device\n");
    return 1;
  }
  g_cpu_clock = config.device == "cpu" &&
                (config.clock.empty() ? config.threads == 1 : config.clock == "cpu");
  if (config.quick) config.warmup = std::min(config.warmup, 2);
  // glibc serves each large temporary of an eager step (Adam's denominator,
  // eager Madam's g_hat) from fresh pages: it maps big blocks anew or trims
  // the heap top back to the kernel after the step, so every step page-faults
  // its temporaries in again, and costs several times more than the ops'
  // arithmetic and memory traffic. That is the allocator's doing, not
  // Adam's: keep freed memory in the heap so that eager sides run at their
  // best. The peer gets the same settings through glibc's environment.
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  setenv("MALLOC_MMAP_THRESHOLD_", "1073741824", 1);
  setenv("MALLOC_TRIM_THRESHOLD_", "1073741824", 1);
  // A peer that dies must not kill us with SIGPIPE: its failure is reported.
  signal(SIGPIPE, SIG_IGN);
  at::set_num_threads(config.threads);
  auto pick = [&](int given, int normal, int quick) {
    return given > 0 ? given : (config.quick ? quick : normal);
  };
  if (config.only.empty() || config.only == "mlp") {
    Run("mlp-784-256-256-10", MlpShapes(), pick(config.rounds, 25, 3), pick(config.steps, 50, 5),
        config);
  }
  if (config.only.empty() || config.only == "resnet18") {
    Run("resnet18-11M", ResNet18Shapes(), pick(config.rounds, 25, 3), pick(config.steps, 2, 1),
        config);
  }
  return 0;
}
