#include "worker/data/batch_pipeline.h"

#include <algorithm>
#include <cstring>
#include <utility>

namespace madam::worker::data {

Status BatchPipeline::Validate(const PipelineOptions& o) {
  if (o.batch_size < 1) return Status::InvalidArgument("batch size must be at least 1, got " + std::to_string(o.batch_size));
  if (o.row_floats < 1) return Status::InvalidArgument("a batch row needs at least one float");
  if (o.threads < 1 || o.threads > 1024) {
    return Status::InvalidArgument("loader threads must be in [1, 1024], got " + std::to_string(o.threads));
  }
  if (o.prefetch_batches < 1 || o.prefetch_batches > 1024) {
    return Status::InvalidArgument("prefetch batches must be in [1, 1024], got " +
                                   std::to_string(o.prefetch_batches));
  }
  return Status::Ok();
}

BatchPipeline::BatchPipeline(PipelineOptions options, const ProducerFactory& make_producer,
                             Allocator allocate, WarningSink warn)
    : options_(options), allocate_(std::move(allocate)), warn_(std::move(warn)) {
  slots_.resize(static_cast<size_t>(options_.prefetch_batches));
  for (int t = 0; t < options_.threads; ++t) producers_.push_back(make_producer());
  for (auto& p : producers_) threads_.emplace_back([this, producer = p.get()] { Loop(producer); });
}

BatchPipeline::~BatchPipeline() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  for (auto& t : threads_) t.join();
}

int64_t BatchPipeline::BatchesPerEpoch(int64_t n) const {
  const int64_t b = options_.batch_size;
  return options_.drop_last ? n / b : (n + b - 1) / b;
}

int64_t BatchPipeline::BatchRows(int64_t batch) const {
  return std::min(options_.batch_size, positions_ - batch * options_.batch_size);
}

int64_t BatchPipeline::skipped_files() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int64_t>(bad_.size());
}

void BatchPipeline::StartEpoch(int64_t epoch, std::vector<int64_t> order) {
  const int64_t n = static_cast<int64_t>(order.size());
  int64_t batches = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++generation_;  // loader threads still on the old epoch drop their results
    epoch_ = epoch;
    order_ = std::move(order);
    batches = BatchesPerEpoch(n);
    positions_ = options_.drop_last ? batches * options_.batch_size : n;
    next_position_ = 0;
    next_batch_ = 0;
    for (Slot& s : slots_) s = Slot();
  }
  // The first window of batches. Allocation happens on this (the consumer's)
  // thread, outside the lock: an allocator that throws throws here.
  const int64_t window = std::min<int64_t>(options_.prefetch_batches, batches);
  for (int64_t b = 0; b < window; ++b) {
    int64_t rows = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      rows = BatchRows(b);
    }
    BatchMemory memory = allocate_(rows);
    std::lock_guard<std::mutex> lock(mu_);
    Slot& s = slots_[static_cast<size_t>(b % options_.prefetch_batches)];
    s.batch = b;
    s.rows = rows;
    s.memory = std::move(memory);
    s.ok.assign(static_cast<size_t>(rows), 0);
    work_cv_.notify_all();
  }
}

std::optional<ReadyBatch> BatchPipeline::Next() {
  for (;;) {
    ReadyBatch out;
    std::vector<uint8_t> ok;
    int64_t refill = -1, refill_rows = 0;
    uint64_t generation = 0;
    {
      std::unique_lock<std::mutex> lock(mu_);
      const int64_t batches = BatchesPerEpoch(static_cast<int64_t>(order_.size()));
      if (next_batch_ >= batches) return std::nullopt;
      const int64_t b = next_batch_;
      Slot& slot = slots_[static_cast<size_t>(b % options_.prefetch_batches)];
      ready_cv_.wait(lock, [&] { return slot.batch == b && slot.done == slot.rows; });
      out.batch_index = b;
      out.memory = std::move(slot.memory);
      ok = std::move(slot.ok);
      out.samples.reserve(static_cast<size_t>(slot.rows));
      for (int64_t r = 0; r < slot.rows; ++r) {
        if (ok[static_cast<size_t>(r)]) out.samples.push_back(order_[static_cast<size_t>(b * options_.batch_size + r)]);
      }
      slot = Slot();
      ++next_batch_;
      generation = generation_;
      if (b + options_.prefetch_batches < batches) {
        refill = b + options_.prefetch_batches;
        refill_rows = BatchRows(refill);
      }
    }
    if (refill >= 0) {
      BatchMemory memory = allocate_(refill_rows);
      std::lock_guard<std::mutex> lock(mu_);
      if (generation == generation_) {
        Slot& s = slots_[static_cast<size_t>(refill % options_.prefetch_batches)];
        s.batch = refill;
        s.rows = refill_rows;
        s.memory = std::move(memory);
        s.ok.assign(static_cast<size_t>(refill_rows), 0);
        work_cv_.notify_all();
      }
    }
    // Move the surviving rows up over the skipped ones, keeping their order.
    int64_t w = 0;
    const auto row_bytes = static_cast<size_t>(options_.row_floats) * sizeof(float);
    for (size_t r = 0; r < ok.size(); ++r) {
      if (!ok[r]) continue;
      if (static_cast<int64_t>(r) != w) {
        std::memmove(out.memory.rows + static_cast<size_t>(w) * options_.row_floats,
                     out.memory.rows + r * options_.row_floats, row_bytes);
      }
      ++w;
    }
    if (w > 0) return out;
    // Every sample of this batch failed: go on to the next.
  }
}

void BatchPipeline::Loop(SampleProducer* producer) {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    work_cv_.wait(lock, [&] {
      if (stop_) return true;
      if (next_position_ >= positions_) return false;
      const int64_t b = next_position_ / options_.batch_size;
      return slots_[static_cast<size_t>(b % options_.prefetch_batches)].batch == b;
    });
    if (stop_) return;
    const int64_t position = next_position_++;
    const int64_t b = position / options_.batch_size, row = position % options_.batch_size;
    const uint64_t generation = generation_;
    const int64_t epoch = epoch_;
    const int64_t sample = order_[static_cast<size_t>(position)];
    Slot* slot = &slots_[static_cast<size_t>(b % options_.prefetch_batches)];
    Status status;
    if (bad_.count(sample) != 0) {
      status = Status::DataLoss("known bad");  // skipped again, not re-read, not re-reported
    } else {
      BatchMemory memory = slot->memory;  // stays alive even if the epoch is abandoned meanwhile
      lock.unlock();
      status = producer->Produce(sample, epoch, memory.rows + row * options_.row_floats);
      memory = BatchMemory();
      lock.lock();
      if (!status.ok() && bad_.insert(sample).second && warn_) {
        lock.unlock();
        warn_("skipping " + status.message());
        lock.lock();
      }
    }
    if (generation != generation_) continue;  // StartEpoch ran meanwhile: the slot is someone else's
    slot->ok[static_cast<size_t>(row)] = status.ok() ? 1 : 0;
    if (++slot->done == slot->rows) ready_cv_.notify_all();
  }
}

}  // namespace madam::worker::data
