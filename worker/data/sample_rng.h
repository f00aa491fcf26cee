// Deterministic random numbers for the input pipeline.
//
// Every random choice of a sample (its crop, its flip) comes from a
// SampleRng seeded by (seed, epoch, sample index) alone, and an epoch's
// shuffle from (seed, epoch): results never depend on which thread did the
// work or when. The generator is SplitMix64 and every distribution is
// written out here (not std::uniform_*_distribution, whose algorithms differ
// between standard libraries), so a seed means the same everywhere.
// A SampleRng is a small value; not shared between threads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

namespace madam::worker::data {

class SampleRng {
 public:
  // Streams for different purposes never collide: the purpose is mixed in.
  enum class Stream : uint64_t { kAugment = 1, kShuffle = 2 };

  SampleRng(uint64_t seed, uint64_t epoch, uint64_t index, Stream stream = Stream::kAugment)
      : state_(Mix(Mix(Mix(seed + kGolden) ^ (epoch + static_cast<uint64_t>(stream) * kGolden)) ^ index)) {}

  uint64_t Next() {
    state_ += kGolden;
    return Mix(state_);
  }
  // Uniform in [0, 1), 53 random bits.
  double Uniform01() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }
  double Uniform(double lo, double hi) { return lo + (hi - lo) * Uniform01(); }
  // Uniform integer in [lo, hi], both inclusive, unbiased (rejection).
  // REQUIRES: lo <= hi.
  int64_t UniformInt(int64_t lo, int64_t hi) {
    const uint64_t range = static_cast<uint64_t>(hi) - static_cast<uint64_t>(lo) + 1;
    if (range == 0) return static_cast<int64_t>(Next());  // the whole 64-bit range
    const uint64_t limit = std::numeric_limits<uint64_t>::max() -
                           std::numeric_limits<uint64_t>::max() % range;
    uint64_t x = Next();
    while (x >= limit) x = Next();
    return lo + static_cast<int64_t>(x % range);
  }
  bool Coin() { return (Next() >> 63) != 0; }

 private:
  static constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ull;
  static uint64_t Mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  uint64_t state_;
};

// The epoch's order of n samples: a uniformly random permutation of 0..n-1
// (Fisher-Yates) determined by (seed, epoch).
inline std::vector<int64_t> EpochPermutation(int64_t n, uint64_t seed, uint64_t epoch) {
  std::vector<int64_t> order(static_cast<std::size_t>(n));
  for (int64_t i = 0; i < n; ++i) order[static_cast<std::size_t>(i)] = i;
  SampleRng rng(seed, epoch, 0, SampleRng::Stream::kShuffle);
  for (int64_t i = n - 1; i > 0; --i) {
    const int64_t j = rng.UniformInt(0, i);
    std::swap(order[static_cast<std::size_t>(i)], order[static_cast<std::size_t>(j)]);
  }
  return order;
}

}  // namespace madam::worker::data
