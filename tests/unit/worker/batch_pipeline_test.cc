// The loader's engine with a fake producer (no files): batches in order with
// the right rows for any thread count, at most prefetch_batches batches of
// memory, failed samples left out, reported once and counted, abandoned
// epochs, short last batches.
#include "worker/data/batch_pipeline.h"

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <set>
#include <vector>

namespace madam::worker::data {
namespace {

constexpr int64_t kRowFloats = 3;

// Row = (index, epoch, index * 10 + epoch); fails for the indices in `bad`.
class FakeProducer : public SampleProducer {
 public:
  explicit FakeProducer(std::set<int64_t> bad, std::atomic<int>* calls) : bad_(std::move(bad)), calls_(calls) {}
  Status Produce(int64_t index, int64_t epoch, float* row) override {
    calls_->fetch_add(1);
    if (bad_.count(index)) return Status::DataLoss("file" + std::to_string(index) + ": corrupt");
    row[0] = static_cast<float>(index);
    row[1] = static_cast<float>(epoch);
    row[2] = static_cast<float>(index * 10 + epoch);
    return Status::Ok();
  }

 private:
  std::set<int64_t> bad_;
  std::atomic<int>* calls_;
};

struct Harness {
  explicit Harness(PipelineOptions o, std::set<int64_t> bad = {}) {
    o.row_floats = kRowFloats;
    pipeline = std::make_unique<BatchPipeline>(
        o, [this, bad] { return std::make_unique<FakeProducer>(bad, &calls); },
        [this](int64_t rows) {
          const int now = ++live;
          max_live = std::max(max_live.load(), now);
          auto* mem = new std::vector<float>(static_cast<size_t>(rows * kRowFloats), -1.0f);
          std::shared_ptr<void> owner(mem, [this](void* p) {
            delete static_cast<std::vector<float>*>(p);
            --live;
          });
          return BatchMemory{mem->data(), owner};
        },
        [this](const std::string& m) {
          std::lock_guard<std::mutex> lock(mu);
          warnings.push_back(m);
        });
  }
  std::vector<int64_t> Order(int64_t n, int64_t shift) {
    std::vector<int64_t> order;
    for (int64_t i = 0; i < n; ++i) order.push_back((i * 7 + shift) % n);  // a permutation for n prime to 7
    return order;
  }
  std::atomic<int> calls{0}, live{0}, max_live{0};
  std::mutex mu;
  std::vector<std::string> warnings;
  std::unique_ptr<BatchPipeline> pipeline;
};

TEST(BatchPipelineTest, BatchesComeInOrderWithTheirRowsForAnyThreadCount) {
  for (int threads : {1, 2, 5}) {
    for (int prefetch : {1, 3}) {
      PipelineOptions o;
      o.batch_size = 4;
      o.threads = threads;
      o.prefetch_batches = prefetch;
      Harness h(o);
      const auto order = h.Order(30, 3);
      h.pipeline->StartEpoch(2, order);
      EXPECT_EQ(h.pipeline->BatchesPerEpoch(30), 7);  // drop_last: 28 of 30
      int64_t b = 0;
      while (auto batch = h.pipeline->Next()) {
        ASSERT_EQ(batch->batch_index, b);
        ASSERT_EQ(batch->size(), 4);
        for (int64_t r = 0; r < 4; ++r) {
          const int64_t want = order[static_cast<size_t>(b * 4 + r)];
          ASSERT_EQ(batch->samples[static_cast<size_t>(r)], want);
          ASSERT_EQ(batch->memory.rows[r * kRowFloats + 0], static_cast<float>(want));
          ASSERT_EQ(batch->memory.rows[r * kRowFloats + 1], 2.0f);
          ASSERT_EQ(batch->memory.rows[r * kRowFloats + 2], static_cast<float>(want * 10 + 2));
        }
        ++b;
      }
      EXPECT_EQ(b, 7) << threads << " threads";
      EXPECT_FALSE(h.pipeline->Next().has_value());  // stays over
      // Memory is bounded by the window: prefetch batches, plus the one
      // being handed out while its replacement is allocated.
      EXPECT_LE(h.max_live.load(), prefetch + 1) << threads << " threads, prefetch " << prefetch;
    }
  }
}

TEST(BatchPipelineTest, ShortLastBatchWithoutDropLast) {
  PipelineOptions o;
  o.batch_size = 4;
  o.threads = 2;
  o.drop_last = false;
  Harness h(o);
  h.pipeline->StartEpoch(0, h.Order(10, 0));
  std::vector<int64_t> sizes;
  while (auto batch = h.pipeline->Next()) sizes.push_back(batch->size());
  EXPECT_EQ(sizes, (std::vector<int64_t>{4, 4, 2}));
}

TEST(BatchPipelineTest, FailedSamplesAreLeftOutReportedOnceAndCounted) {
  PipelineOptions o;
  o.batch_size = 5;
  o.threads = 3;
  Harness h(o, /*bad=*/{4, 17});
  for (int64_t epoch = 0; epoch < 3; ++epoch) {
    const auto order = h.Order(20, epoch);
    h.pipeline->StartEpoch(epoch, order);
    std::vector<int64_t> seen;
    while (auto batch = h.pipeline->Next()) {
      const int64_t b = batch->batch_index;
      // The survivors of positions [5b, 5b + 5), in order, rows moved up.
      std::vector<int64_t> want;
      for (int64_t p = 5 * b; p < 5 * b + 5; ++p) {
        const int64_t s = order[static_cast<size_t>(p)];
        if (s != 4 && s != 17) want.push_back(s);
      }
      ASSERT_EQ(batch->samples, want);
      for (size_t r = 0; r < want.size(); ++r) {
        ASSERT_EQ(batch->memory.rows[r * kRowFloats], static_cast<float>(want[r]));
        ASSERT_EQ(batch->memory.rows[r * kRowFloats + 2], static_cast<float>(want[r] * 10 + epoch));
      }
      seen.insert(seen.end(), want.begin(), want.end());
    }
    EXPECT_EQ(seen.size(), 18u);
  }
  EXPECT_EQ(h.pipeline->skipped_files(), 2);
  ASSERT_EQ(h.warnings.size(), 2u);  // once each, not once per epoch
  std::set<std::string> w(h.warnings.begin(), h.warnings.end());
  EXPECT_TRUE(w.count("skipping file4: corrupt"));
  EXPECT_TRUE(w.count("skipping file17: corrupt"));
  // Known-bad samples are not produced again in later epochs.
  EXPECT_EQ(h.calls.load(), 20 + 18 + 18);
}

TEST(BatchPipelineTest, ABatchWhoseSamplesAllFailIsNotHandedOut) {
  PipelineOptions o;
  o.batch_size = 2;
  o.threads = 2;
  Harness h(o, /*bad=*/{2, 3});
  h.pipeline->StartEpoch(0, {0, 1, 2, 3, 4, 5});
  std::vector<int64_t> indices;
  while (auto batch = h.pipeline->Next()) indices.push_back(batch->batch_index);
  EXPECT_EQ(indices, (std::vector<int64_t>{0, 2}));
}

TEST(BatchPipelineTest, StartEpochAbandonsTheUnfinishedOne) {
  PipelineOptions o;
  o.batch_size = 3;
  o.threads = 4;
  o.prefetch_batches = 2;
  Harness h(o);
  h.pipeline->StartEpoch(0, h.Order(30, 0));
  ASSERT_TRUE(h.pipeline->Next().has_value());
  const auto order = h.Order(30, 5);
  h.pipeline->StartEpoch(1, order);
  int64_t b = 0;
  while (auto batch = h.pipeline->Next()) {
    ASSERT_EQ(batch->batch_index, b);
    for (int64_t r = 0; r < 3; ++r) {
      ASSERT_EQ(batch->samples[static_cast<size_t>(r)], order[static_cast<size_t>(b * 3 + r)]);
      ASSERT_EQ(batch->memory.rows[r * kRowFloats + 1], 1.0f);  // the new epoch's rows
    }
    ++b;
  }
  EXPECT_EQ(b, 10);
}

TEST(BatchPipelineTest, NextBeforeAnyEpochIsTheEnd) {
  PipelineOptions o;
  Harness h(o);
  EXPECT_FALSE(h.pipeline->Next().has_value());
}

TEST(BatchPipelineTest, ValidateNamesTheBadOption) {
  PipelineOptions o;
  o.row_floats = 1;
  EXPECT_TRUE(BatchPipeline::Validate(o).ok());
  o.batch_size = 0;
  EXPECT_NE(BatchPipeline::Validate(o).message().find("batch size"), std::string::npos);
  o.batch_size = 1;
  o.threads = 0;
  EXPECT_NE(BatchPipeline::Validate(o).message().find("loader threads"), std::string::npos);
  o.threads = 1;
  o.prefetch_batches = 0;
  EXPECT_NE(BatchPipeline::Validate(o).message().find("prefetch"), std::string::npos);
}

}  // namespace
}  // namespace madam::worker::data
