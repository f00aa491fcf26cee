#include "worker/data/image_loader.h"

#include <sched.h>

#include <torch/cuda.h>

#include <algorithm>
#include <cstdio>
#include <mutex>
#include <new>
#include <thread>
#include <utility>
#include <vector>

#include "worker/data/batch_pipeline.h"
#include "worker/data/sample_rng.h"

namespace madam::worker::data {
namespace {

class TransformProducer : public SampleProducer {
 public:
  TransformProducer(const ImageFolderSplit* split, const TransformOptions& options)
      : transform_(split, options) {}
  Status Produce(int64_t index, int64_t epoch, float* row) override {
    return transform_.Produce(index, epoch, row);
  }

 private:
  ImageTransform transform_;
};

void WarnToStderr(const std::string& message) {
  std::fprintf(stderr, "madam-worker: warning: %s\n", message.c_str());
}

}  // namespace

// Recycles unpinned batch memory: a batch of 100 images at 224 is 60 MB, and
// fresh memory would cost its page faults every batch. Blocks go back to the
// pool when the last tensor viewing them dies, on whatever thread that is.
// Thread-safe.
class ImageLoader::MemoryPool {
 public:
  MemoryPool(size_t block_floats, size_t keep) : block_floats_(block_floats), keep_(keep) {}
  ~MemoryPool() {
    for (float* b : free_) Free(b);
  }
  float* Take() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!free_.empty()) {
        float* b = free_.back();
        free_.pop_back();
        return b;
      }
    }
    return static_cast<float*>(::operator new(block_floats_ * sizeof(float), std::align_val_t(64)));
  }
  void Give(float* block) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (free_.size() < keep_) {
        free_.push_back(block);
        return;
      }
    }
    Free(block);
  }

 private:
  static void Free(float* b) { ::operator delete(b, std::align_val_t(64)); }
  const size_t block_floats_, keep_;
  std::mutex mu_;
  std::vector<float*> free_;  // guarded by mu_
};

ImageLoaderOptions ImageLoaderOptions::Train(int image_size, int64_t batch_size, uint64_t seed) {
  ImageLoaderOptions o;
  o.transform.image_size = image_size;
  o.transform.train = true;
  o.transform.seed = seed;
  o.batch_size = batch_size;
  o.shuffle = true;
  o.drop_last = true;
  return o;
}

ImageLoaderOptions ImageLoaderOptions::Validation(int image_size, int64_t batch_size) {
  ImageLoaderOptions o;
  o.transform.image_size = image_size;
  o.transform.train = false;
  o.batch_size = batch_size;
  o.shuffle = false;
  o.drop_last = false;
  return o;
}

int DefaultLoaderThreads(int training_threads) {
  int cpus = 0;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) cpus = CPU_COUNT(&set);
  if (cpus <= 0) cpus = static_cast<int>(std::thread::hardware_concurrency());
  return std::max(1, cpus - std::max(0, training_threads));
}

ImageLoader::ImageLoader(const ImageFolderSplit* split, ImageLoaderOptions options)
    : split_(split), options_(std::move(options)) {}

ImageLoader::~ImageLoader() = default;

Result<std::unique_ptr<ImageLoader>> ImageLoader::Create(const ImageFolderSplit* split,
                                                         ImageLoaderOptions options, WarningSink warn) {
  if (split == nullptr || split->size() == 0) {
    return Status::InvalidArgument("the image loader needs a split with at least one file");
  }
  MADAM_RETURN_IF_ERROR(options.transform.Validate());
  if (options.threads == 0) options.threads = DefaultLoaderThreads(options.training_threads);
  PipelineOptions p;
  p.batch_size = options.batch_size;
  p.row_floats = options.transform.RowFloats();
  p.threads = options.threads;
  p.prefetch_batches = options.prefetch_batches;
  p.drop_last = options.drop_last;
  MADAM_RETURN_IF_ERROR(BatchPipeline::Validate(p));
  if (options.shard_count < 1 || options.shard_rank < 0 || options.shard_rank >= options.shard_count) {
    return Status::InvalidArgument("shard_rank " + std::to_string(options.shard_rank) + " of shard_count " +
                                   std::to_string(options.shard_count) + " names no shard");
  }
  if (options.shard_count > 1 && !options.drop_last) {
    return Status::InvalidArgument("a sharded loader needs drop_last: every rank takes whole batches");
  }
  const int64_t global_batch = options.batch_size * options.shard_count;
  if (options.drop_last && split->size() < global_batch) {
    return Status::InvalidArgument(split->root() + ": " + std::to_string(split->size()) +
                                   " files make no full batch of " + std::to_string(global_batch));
  }
  if (options.pin_memory && !torch::cuda::is_available()) {
    return Status::FailedPrecondition("pin_memory needs CUDA, and this LibTorch sees no CUDA device");
  }
  std::unique_ptr<ImageLoader> loader(new ImageLoader(split, options));
  const int64_t size = options.transform.image_size;
  const int64_t row_floats = p.row_floats;
  const int64_t batch = options.batch_size;
  BatchPipeline::Allocator allocate;
  if (options.pin_memory) {
    // LibTorch's caching host allocator recycles pinned blocks, and knows
    // when a non_blocking copy still reads one.
    allocate = [size](int64_t rows) {
      auto t = std::make_shared<torch::Tensor>(
          torch::empty({rows, 3, size, size}, torch::TensorOptions().dtype(torch::kFloat).pinned_memory(true)));
      return BatchMemory{t->data_ptr<float>(), std::static_pointer_cast<void>(t)};
    };
  } else {
    loader->pool_ = std::make_shared<MemoryPool>(static_cast<size_t>(batch * row_floats),
                                                 static_cast<size_t>(options.prefetch_batches + 2));
    allocate = [pool = loader->pool_, size](int64_t rows) {
      float* block = pool->Take();
      auto t = std::make_shared<torch::Tensor>(torch::from_blob(
          block, {rows, 3, size, size}, [pool](void* p) { pool->Give(static_cast<float*>(p)); },
          torch::TensorOptions().dtype(torch::kFloat)));
      return BatchMemory{block, std::static_pointer_cast<void>(t)};
    };
  }
  const ImageFolderSplit* s = split;
  const TransformOptions transform = options.transform;
  loader->pipeline_ = std::make_unique<BatchPipeline>(
      p, [s, transform] { return std::make_unique<TransformProducer>(s, transform); }, std::move(allocate),
      warn ? std::move(warn) : WarningSink(WarnToStderr));
  return loader;
}

void ImageLoader::StartEpoch(int64_t epoch) {
  std::vector<int64_t> order;
  if (options_.shuffle) {
    order = EpochPermutation(split_->size(), options_.transform.seed, static_cast<uint64_t>(epoch));
  } else {
    order.resize(static_cast<size_t>(split_->size()));
    for (int64_t i = 0; i < split_->size(); ++i) order[static_cast<size_t>(i)] = i;
  }
  if (options_.shard_count > 1) {
    // This rank's slice of every whole global batch, in batch order.
    const int64_t b = options_.batch_size, global = b * options_.shard_count;
    const int64_t batches = static_cast<int64_t>(order.size()) / global;
    std::vector<int64_t> mine;
    mine.reserve(static_cast<size_t>(batches * b));
    for (int64_t g = 0; g < batches; ++g) {
      const auto first = order.begin() + g * global + options_.shard_rank * b;
      mine.insert(mine.end(), first, first + b);
    }
    order = std::move(mine);
  }
  pipeline_->StartEpoch(epoch, std::move(order));
}

std::optional<ImageBatch> ImageLoader::Next() {
  std::optional<ReadyBatch> ready = pipeline_->Next();
  if (!ready) return std::nullopt;
  const int64_t n = ready->size();
  ImageBatch out;
  out.index = ready->batch_index;
  out.images = std::static_pointer_cast<torch::Tensor>(ready->memory.owner)->narrow(0, 0, n);
  out.labels = torch::empty({n}, torch::TensorOptions().dtype(torch::kLong).pinned_memory(options_.pin_memory));
  int64_t* labels = out.labels.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) labels[i] = split_->Label(ready->samples[static_cast<size_t>(i)]);
  out.samples = std::move(ready->samples);
  return out;
}

int64_t ImageLoader::batches_per_epoch() const {
  return pipeline_->BatchesPerEpoch(split_->size() / options_.shard_count);
}

int64_t ImageLoader::skipped_files() const { return pipeline_->skipped_files(); }

}  // namespace madam::worker::data
