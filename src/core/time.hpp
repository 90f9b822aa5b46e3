#pragma once

#include <chrono>
#include <functional>
#include <string>

namespace cw::core {

// RFC 3339 in UTC with microseconds: 2026-11-21T21:36:20.123456Z.
std::string FormatRfc3339(std::chrono::system_clock::time_point t);

inline std::string NowRfc3339() { return FormatRfc3339(std::chrono::system_clock::now()); }

// The time source of code whose behaviour depends on the wall clock
// (timeouts, one-time codes, throttles), so tests can move time by hand.
using Clock = std::function<std::chrono::system_clock::time_point()>;

inline Clock SystemClock() { return [] { return std::chrono::system_clock::now(); }; }

}  // namespace cw::core
