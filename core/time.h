// Time in the core is a plain value: seconds (double) on whatever clock the driver runs, real or
// simulated. Components never read a clock; every entry point receives `now` from the driver.
#pragma once

#include <limits>

namespace bouquet::core {

using Time = double;

// A deadline that never comes (a timer that is not armed, an unlimited wait).
inline constexpr Time kNever = std::numeric_limits<double>::infinity();

}  // namespace bouquet::core
