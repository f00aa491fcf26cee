// The loader's engine: a pool of threads producing samples into batch
// memory, handing out whole batches in order, with a bounded prefetch
// window (ARCHITECTURE.md section 6, the ImageNet input pipeline).
//
// An epoch is a sequence of sample indices (`order`). Position p of the
// epoch goes to row p % batch_size of batch p / batch_size. Threads claim
// positions one at a time, in increasing order, and write each sample
// straight into its row, so work spreads evenly however slow single files
// are; no thread starts a position of batch b before batch
// b - prefetch_batches has been handed out, so at most prefetch_batches
// batches exist in the engine at once and memory stays flat.
//
// A sample that fails (a corrupt or truncated file) is left out of its batch
// (the later rows move up; the batch is shorter), reported once through the
// warning callback with the producer's message, and counted in
// skipped_files(); later epochs skip it without reading it again. A batch
// whose every sample failed is not handed out. Which samples fail and the
// order of the rest depend only on the data, so the batches are the same for
// any number of threads.
//
// Sharding hook (data parallelism, not built): rank r of N would take rows
// [r * B / N, (r + 1) * B / N) of each global batch of B; only BatchRows()
// and the position of a (batch, row) would change.
//
// Thread rules: StartEpoch, Next and the destructor are called from one
// consumer thread. The loader threads are owned here; each calls only its own
// producer and, without the lock, the warning callback. The allocator runs on
// the consumer thread (in StartEpoch and Next, outside the lock): one that
// throws throws there, and the epoch is unusable until the next StartEpoch.
// Torch-free.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "common/status.h"

namespace madam::worker::data {

// One loader thread's way of producing a sample into its batch row.
class SampleProducer {
 public:
  virtual ~SampleProducer() = default;
  // Writes sample `index` of `epoch` into `row` (row_floats floats). A non-OK
  // status skips the sample; its message names the file.
  virtual Status Produce(int64_t index, int64_t epoch, float* row) = 0;
};

// Memory for one batch: `rows` points at capacity * row_floats floats, kept
// alive by `owner` (for the loader, the batch tensor).
struct BatchMemory {
  float* rows = nullptr;
  std::shared_ptr<void> owner;
};

struct PipelineOptions {
  int64_t batch_size = 100;
  int64_t row_floats = 0;
  int threads = 1;
  int prefetch_batches = 2;
  bool drop_last = true;  // false: a short last batch
};

struct ReadyBatch {
  int64_t batch_index = 0;       // within the epoch
  BatchMemory memory;            // rows [0, size) hold the samples
  std::vector<int64_t> samples;  // the sample index of each row
  int64_t size() const { return static_cast<int64_t>(samples.size()); }
};

class BatchPipeline {
 public:
  using ProducerFactory = std::function<std::unique_ptr<SampleProducer>()>;
  // Returns memory for a batch of `rows` rows.
  using Allocator = std::function<BatchMemory(int64_t rows)>;
  using WarningSink = std::function<void(const std::string&)>;

  // Starts options.threads threads (each with its own producer from
  // `make_producer`); they idle until StartEpoch. REQUIRES: options valid
  // (see Validate).
  BatchPipeline(PipelineOptions options, const ProducerFactory& make_producer, Allocator allocate,
                WarningSink warn);
  ~BatchPipeline();  // abandons the epoch, joins the threads
  BatchPipeline(const BatchPipeline&) = delete;
  BatchPipeline& operator=(const BatchPipeline&) = delete;

  static Status Validate(const PipelineOptions& options);

  // Begins an epoch over `order`, abandoning any unfinished one.
  void StartEpoch(int64_t epoch, std::vector<int64_t> order);
  // The next batch of the epoch, waiting for it; nullopt when it is over.
  std::optional<ReadyBatch> Next();

  // Batches in an epoch of n samples (before any skipping).
  int64_t BatchesPerEpoch(int64_t n) const;
  // Distinct samples skipped so far (all epochs).
  int64_t skipped_files() const;

 private:
  struct Slot {
    int64_t batch = -1;  // -1: free
    int64_t rows = 0, done = 0;
    BatchMemory memory;
    std::vector<uint8_t> ok;  // per row
  };
  void Loop(SampleProducer* producer);
  int64_t BatchRows(int64_t batch) const;  // REQUIRES: mu_ held

  const PipelineOptions options_;
  const Allocator allocate_;
  const WarningSink warn_;
  std::vector<std::unique_ptr<SampleProducer>> producers_;
  std::vector<std::thread> threads_;

  mutable std::mutex mu_;
  std::condition_variable work_cv_;   // loader threads wait here
  std::condition_variable ready_cv_;  // the consumer waits here
  bool stop_ = false;                 // guarded by mu_
  uint64_t generation_ = 0;           // guarded by mu_; bumps at each StartEpoch
  int64_t epoch_ = 0;                 // guarded by mu_
  std::vector<int64_t> order_;        // guarded by mu_
  int64_t positions_ = 0;             // guarded by mu_; positions in the epoch
  int64_t next_position_ = 0;         // guarded by mu_; the next to claim
  int64_t next_batch_ = 0;            // guarded by mu_; the next to hand out
  std::vector<Slot> slots_;           // guarded by mu_; batch b lives in slot b % prefetch
  std::unordered_set<int64_t> bad_;   // guarded by mu_; samples that failed
};

}  // namespace madam::worker::data
