// Clock: the coordinator's source of wall-clock time, injectable for tests.
//
// The store stamps lease expiries, run start/end times and worker last-seen
// times from a Clock so that tests can move time forward (FakeClock::Advance)
// instead of sleeping. Times are integer milliseconds since the Unix epoch,
// which is also how they are stored in SQLite.
//
// Thread-safety: SystemClock is immutable after construction; FakeClock is safe to read and
// advance from any thread (its time is an atomic).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace madam::server {

class Clock {
 public:
  virtual ~Clock() = default;
  // Milliseconds since the Unix epoch.
  virtual int64_t NowMillis() const = 0;
};

// Wall-clock time read off the monotonic clock: the Unix time when the clock
// was made, plus the steady clock's elapsed time since. Lease expiries are
// stamped and compared with it (ARCHITECTURE.md section 5), so an NTP step
// or an operator setting the system clock neither expires every lease at
// once nor makes one last forever; the times stored stay Unix milliseconds
// (re-anchored at each start, where madamd extends running leases anyway).
class SystemClock final : public Clock {
 public:
  SystemClock()
      : wall_anchor_ms_(std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count()),
        steady_anchor_(std::chrono::steady_clock::now()) {}
  int64_t NowMillis() const override {
    return wall_anchor_ms_ + std::chrono::duration_cast<std::chrono::milliseconds>(
                                 std::chrono::steady_clock::now() - steady_anchor_)
                                 .count();
  }
  // A process-wide instance, anchored at its first use.
  static SystemClock* Default() {
    static SystemClock clock;
    return &clock;
  }

 private:
  const int64_t wall_anchor_ms_;
  const std::chrono::steady_clock::time_point steady_anchor_;
};

// A clock that only moves when told to.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(int64_t start_millis = 1'700'000'000'000) : now_(start_millis) {}
  int64_t NowMillis() const override { return now_.load(); }
  void Advance(int64_t millis) { now_.fetch_add(millis); }
  void AdvanceSeconds(double seconds) { Advance(static_cast<int64_t>(seconds * 1000.0)); }
  void Set(int64_t millis) { now_.store(millis); }

 private:
  std::atomic<int64_t> now_;
};

}  // namespace madam::server
