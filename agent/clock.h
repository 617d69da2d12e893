#pragma once
// Time as the recorder sees it: a monotonic clock for idle timeouts and latencies, a wall clock
// for timestamps. Tests inject a fake so no unit test sleeps.

#include <chrono>

namespace kscribe {

/// Source of monotonic and wall-clock time.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual std::chrono::steady_clock::time_point now() = 0;
  virtual std::chrono::system_clock::time_point wallNow() = 0;
};

/// The real clocks.
class SystemClock : public Clock {
 public:
  std::chrono::steady_clock::time_point now() override { return std::chrono::steady_clock::now(); }
  std::chrono::system_clock::time_point wallNow() override {
    return std::chrono::system_clock::now();
  }
};

}  // namespace kscribe
