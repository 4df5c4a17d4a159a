// The clock seam: where actors and connections read the time, so that tests
// can drive it by hand instead of sleeping.
#pragma once

#include <chrono>
#include <functional>

namespace smsp {

using steady_time = std::chrono::steady_clock::time_point;

/// Returns the current time. Every timed rule (deadlines, the idle rule,
/// passivation, the login throttle) reads its time through one of these;
/// the default reads std::chrono::steady_clock, a test passes its own.
using clock_fn = std::function<steady_time()>;

/// std::chrono::steady_clock::now, as a clock_fn.
inline clock_fn steady_clock_fn() {
  return [] { return std::chrono::steady_clock::now(); };
}

} // namespace smsp
