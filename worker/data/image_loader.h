// The ImageNet input pipeline as LibTorch batches (ARCHITECTURE.md
// section 6): files of an ImageFolderSplit, decoded and augmented on
// `threads` loader threads (ImageTransform, BatchPipeline), handed out as
//   images: float [n, 3, image_size, image_size], normalised, NCHW
//   labels: int64 [n]
// in a deterministic order for a given (seed, epoch): a training epoch is a
// permutation of the split, validation goes in file order. n is batch_size
// except for a short last batch (validation) and batches that lost a
// skipped file. Memory stays flat: at most prefetch_batches batches are
// being filled, and their memory is recycled once the consumer drops a
// batch. With pin_memory (a consumer training on CUDA) batches come from
// LibTorch's pinned host allocator, ready for non_blocking copies.
//
// Skipped files (corrupt, truncated) are reported once each through the
// warning sink (default: stderr) and counted by skipped_files(), the value
// of the `data/skipped_files` metric.
//
// Thread rules: StartEpoch and Next are called from one thread (the
// trainer's); skipped_files() from any. The split must outlive the loader.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "worker/data/image_folder.h"
#include "worker/data/image_transform.h"

namespace madam::worker::data {

class BatchPipeline;

struct ImageLoaderOptions {
  TransformOptions transform;  // image_size, train or validation, seed
  int64_t batch_size = 100;    // the authors' batch per GPU
  int threads = 0;             // 0: DefaultLoaderThreads(training_threads)
  int training_threads = 0;    // threads the trainer computes with (for the default)
  int prefetch_batches = 2;
  bool shuffle = true;         // a permutation per epoch (training)
  bool drop_last = true;       // training drops the short last batch
  bool pin_memory = false;     // set when the consumer trains on CUDA
  // Data parallel (ARCHITECTURE.md section 6): this loader is rank
  // `shard_rank` of `shard_count` and yields, for each global batch of
  // shard_count x batch_size consecutive samples of the epoch's order, its
  // shard_rank-th slice of batch_size. A sample's augmentation depends on
  // its index alone, so the ranks together see exactly the 1-rank run's
  // batches at shard_count x batch_size. Needs drop_last.
  int64_t shard_rank = 0;
  int64_t shard_count = 1;

  // The recipe's training and validation loaders.
  static ImageLoaderOptions Train(int image_size, int64_t batch_size, uint64_t seed);
  static ImageLoaderOptions Validation(int image_size, int64_t batch_size);
};

// The cores left after the training threads (at least 1), counting the CPUs
// this process may run on.
int DefaultLoaderThreads(int training_threads);

struct ImageBatch {
  torch::Tensor images;  // float [n, 3, size, size]
  torch::Tensor labels;  // int64 [n]
  int64_t index = 0;     // the batch's index within the epoch
  std::vector<int64_t> samples;  // the split's index of each row's file
};

class ImageLoader {
 public:
  using WarningSink = std::function<void(const std::string&)>;

  // Validates the options (an error names the bad value; pin_memory without
  // CUDA is one) and starts the loader threads.
  static Result<std::unique_ptr<ImageLoader>> Create(const ImageFolderSplit* split,
                                                      ImageLoaderOptions options,
                                                      WarningSink warn = nullptr);
  ~ImageLoader();

  // Begins `epoch` (abandoning an unfinished one).
  void StartEpoch(int64_t epoch);
  // The next batch of the epoch; nullopt when the epoch is over.
  std::optional<ImageBatch> Next();

  int64_t batches_per_epoch() const;
  int64_t skipped_files() const;
  int threads() const { return options_.threads; }
  const ImageLoaderOptions& options() const { return options_; }

 private:
  class MemoryPool;
  ImageLoader(const ImageFolderSplit* split, ImageLoaderOptions options);

  const ImageFolderSplit* split_;
  ImageLoaderOptions options_;
  std::shared_ptr<MemoryPool> pool_;  // shared with the deleters of handed-out batches
  std::unique_ptr<BatchPipeline> pipeline_;
};

}  // namespace madam::worker::data
