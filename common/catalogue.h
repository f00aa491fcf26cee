// The catalogue: every task and optimiser a worker has compiled in, and the
// metrics runs report (ARCHITECTURE.md section 6), as torch-free facts.
//
// madamd validates sweeps against it, reports order their rows and columns
// by it and read each metric's goal from it, the CLI names what exists, and
// the worker registers one implementation under each task and optimiser name
// (worker/tasks/registry.cc, worker/optimizers.cc; a unit test checks that
// every name here has one). Nothing outside this file lists task or
// optimiser names.
//
// Plain constant data built on first use; every function is thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

namespace madam {

enum class MetricGoal { kMinimize, kMaximize };

// "minimize" | "maximize", as sweep files and the wire spell them.
std::string_view GoalName(MetricGoal goal);

enum class TaskKind {
  kClassifier,     // one network, cross-entropy, test/error (%)
  kLanguageModel,  // one network, next-token cross-entropy, test/perplexity
  kGenerative,     // two networks (generator and discriminator), test/fid
};

// Groups of run parameters that only some tasks have (common/run_config.h
// says which parameter belongs to which group).
enum TaskFeature : uint32_t {
  kHoldout = 1u << 0,         // val_split: a validation split held out of train
  kBatchNorm = 1u << 1,       // bn_affine
  kCifarAugment = 1u << 2,    // crop_padding, hflip, rotation_degrees, normalize_*
  kTransformerLm = 1u << 3,   // emsize, nhid, nlayers, nhead, dropout, bptt, eval_batch_size
  kImageFolder = 1u << 4,     // image_size: JPEG folders decoded, cropped and resized
  kGan = 1u << 5,             // gan_channels, attention_gain_init, fid_samples, fid_every
};

struct TaskInfo {
  std::string_view name;
  TaskKind kind;
  std::string_view metric;             // the test metric reports use
  std::string_view validation_metric;  // what plateau decay and best-validation watch
  std::string_view description;
  uint32_t features;   // TaskFeature bits
  // Row order of the paper's tables (1: CIFAR-10 .. 5: WikiText-2); 0 for a
  // task that is not in the paper.
  int paper_order;
  std::string_view paper_name;  // the paper's column/row name, e.g. "CIFAR-10"
  // Depth L for the paper's Theorem 1 (common/theory.h): weight layers on
  // the longest input-to-output path (a Transformer layer counts its
  // attention's two projections and its feed-forward's two matrices;
  // embeddings and the decoder count once each).
  int depth;
  bool has(TaskFeature f) const { return (features & f) != 0; }
};

struct OptimizerInfo {
  std::string_view name;
  std::string_view display;  // "SGD", "Adam", "Madam", "B-bit Madam"
  bool multiplicative;       // updates W <- W * exp(...): signs never change
  bool uses_bits;            // stores weights as integer levels (bits, base_lr)
  bool baseline;             // tuned in Figure 1 and chosen by its best lr in Table 1
};

struct MetricInfo {
  std::string_view name;
  MetricGoal goal;
};

// In the paper's order, then the tasks that are not in the paper.
const std::vector<TaskInfo>& KnownTasks();
const TaskInfo* FindTask(std::string_view name);

// sgd, adam, madam, int_madam: the paper's column order.
const std::vector<OptimizerInfo>& KnownOptimizers();
const OptimizerInfo* FindOptimizer(std::string_view name);
bool IsKnownOptimizer(std::string_view name);

// Every metric name a run reports whose goal is known.
const std::vector<MetricInfo>& KnownMetrics();
// The goal of a metric name: the table's, else minimise for */loss, */error*,
// */perplexity and */fid; nullopt when it cannot be told.
std::optional<MetricGoal> GoalOfMetric(std::string_view name);

}  // namespace madam
