#include "worker/serve/clock.h"

#include <algorithm>

namespace madam::worker::serve {

bool Clock::SleepFor(Duration d, const std::function<bool()>& done) {
  std::mutex mu;
  std::condition_variable cv;  // never notified: the wait ends on time or `done`
  std::unique_lock<std::mutex> lock(mu);
  return WaitUntil(lock, cv, Now() + d, done);
}

Clock::TimePoint RealClock::Now() const { return std::chrono::steady_clock::now(); }

bool RealClock::WaitUntil(std::unique_lock<std::mutex>& lock, std::condition_variable& cv,
                          TimePoint deadline, const std::function<bool()>& done) {
  // At most 50 ms per wait: a stop set from a signal handler is seen that
  // quickly even though nobody notifies `cv`.
  constexpr milliseconds kSlice(50);
  while (!done()) {
    const TimePoint now = Now();
    if (now >= deadline) return false;
    const TimePoint until = deadline - now > kSlice ? now + kSlice : deadline;
    cv.wait_until(lock, until);
  }
  return true;
}

void Backoff::Wait() {
  std::uniform_int_distribution<int64_t> jitter(0, delay_.count() / 4);
  stop_->WaitFor(*clock_, delay_ + milliseconds(jitter(rng_)));
  delay_ = std::min(delay_ * 2, milliseconds(5000));
}

}  // namespace madam::worker::serve
