// A serve::Clock whose time moves only when a test moves it, so tests of the
// lease keeper, the uploader and the backoff are deterministic: a wait on it
// ends when its predicate is true or when Advance() carries the time past
// its deadline, never because real time passed.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>

#include "worker/serve/clock.h"

namespace madam::worker::serve {

class FakeClock final : public Clock {
 public:
  TimePoint Now() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return now_;
  }

  bool WaitUntil(std::unique_lock<std::mutex>& lock, std::condition_variable& cv,
                 TimePoint deadline, const std::function<bool()>& done) override {
    if (done()) return true;
    int64_t id;
    {
      std::lock_guard<std::mutex> g(mu_);
      id = next_id_++;
      sleepers_[id] = deadline;
    }
    changed_.notify_all();
    // Re-checked every millisecond of real time as well as on a notify:
    // predicates may flip without one (a stop flag), and Advance notifies
    // this clock's waiters without touching their mutexes. Only the outcome
    // depends on fake time; real time just bounds the reaction.
    while (!done() && Now() < deadline) cv.wait_for(lock, std::chrono::milliseconds(1));
    const bool result = done();
    {
      std::lock_guard<std::mutex> g(mu_);
      sleepers_.erase(id);
      ++wakeups_;
    }
    changed_.notify_all();
    return result;
  }

  // Moves the time on by `d`, then returns once every wait whose deadline
  // that passed has ended (so the waiting thread is running again, or
  // already back in a new wait).
  void Advance(Duration d) {
    std::unique_lock<std::mutex> lock(mu_);
    now_ += d;
    changed_.wait(lock, [this] {
      for (const auto& [id, deadline] : sleepers_) {
        if (deadline <= now_) return false;
      }
      return true;
    });
  }

  // Returns true once at least `n` threads wait on this clock for a
  // deadline still ahead (TimePoint::max() included): they are blocked until
  // time moves or their predicate turns true. Returns false as soon as
  // `instead()` is true (checked every millisecond), e.g. when the thread
  // expected to wait has ended instead.
  bool AwaitSleepers(int n, const std::function<bool()>& instead = nullptr) {
    std::unique_lock<std::mutex> lock(mu_);
    while (true) {
      int ahead = 0;
      for (const auto& [id, deadline] : sleepers_) ahead += deadline > now_ ? 1 : 0;
      if (ahead >= n) return true;
      if (instead && instead()) return false;
      changed_.wait_for(lock, std::chrono::milliseconds(1));
    }
  }

  // How many waits have ended so far.
  int64_t wakeups() const {
    std::lock_guard<std::mutex> lock(mu_);
    return wakeups_;
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable changed_;  // sleepers_ or now_ changed
  TimePoint now_{std::chrono::hours(1)};
  std::map<int64_t, TimePoint> sleepers_;  // id -> deadline
  int64_t next_id_ = 0;
  int64_t wakeups_ = 0;
};

}  // namespace madam::worker::serve
