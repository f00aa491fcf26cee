// Time and stopping for serve mode, injected so that the lease keeper, the
// metric uploader and the retry backoff can be tested with a clock that only
// moves when a test moves it (tests/unit/worker/fake_clock.h).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <random>

namespace madam::worker::serve {

using std::chrono::milliseconds;

// A steady clock that can be waited on.
class Clock {
 public:
  using Duration = std::chrono::steady_clock::duration;
  using TimePoint = std::chrono::steady_clock::time_point;

  virtual ~Clock() = default;
  virtual TimePoint Now() const = 0;

  // Waits on `cv` (with `lock` held, as std::condition_variable::wait_until)
  // until `done()` is true or this clock reaches `deadline`; returns done().
  // `done` is also re-checked every short while without a notification, so
  // a predicate flipped by a signal handler (which cannot notify) is seen.
  // TimePoint::max() waits for `done` alone.
  virtual bool WaitUntil(std::unique_lock<std::mutex>& lock, std::condition_variable& cv,
                         TimePoint deadline, const std::function<bool()>& done) = 0;

  // Sleeps for `d` on this clock, waking early once `done()`; returns done().
  bool SleepFor(Duration d, const std::function<bool()>& done);
};

// std::chrono::steady_clock; re-checks predicates every 50 ms.
class RealClock final : public Clock {
 public:
  TimePoint Now() const override;
  bool WaitUntil(std::unique_lock<std::mutex>& lock, std::condition_variable& cv,
                 TimePoint deadline, const std::function<bool()>& done) override;
};

// "Stop serving": set once, read everywhere. The flag is a lock-free atomic
// so that a SIGINT/SIGTERM handler may set it; nothing waits on it through a
// notification, every wait re-checks it (Clock::WaitUntil).
class StopFlag {
 public:
  static_assert(std::atomic<bool>::is_always_lock_free, "a signal handler stores to this flag");
  bool stopped() const { return stopped_.load(); }
  // Async-signal-safe: one atomic store.
  void Stop() { stopped_.store(true); }
  // Sleeps up to `d` on `clock`, waking early when stopped; returns stopped().
  bool WaitFor(Clock& clock, Clock::Duration d) const {
    return clock.SleepFor(d, [this] { return stopped(); });
  }

 private:
  std::atomic<bool> stopped_{false};
};

// Exponential backoff with jitter: 200 ms doubling to 5 s, on `clock`, cut
// short when `stop` is set.
class Backoff {
 public:
  Backoff(Clock* clock, const StopFlag* stop) : clock_(clock), stop_(stop) {}
  void Wait();
  void Reset() { delay_ = milliseconds(200); }
  milliseconds delay() const { return delay_; }  // the next wait, before jitter

 private:
  Clock* clock_;
  const StopFlag* stop_;
  milliseconds delay_{200};
  std::mt19937_64 rng_{std::random_device{}()};
};

}  // namespace madam::worker::serve
