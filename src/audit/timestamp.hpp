#pragma once

// RFC 3339 timestamps as the audit log stores and filters them.
//
// Events store occurred_at in exactly the form core::FormatRfc3339 writes
// (UTC, six fractional digits, "Z"): every stored time then has the same
// length and layout, so comparing the text compares the instants, and the
// time filters and indexes can work on the text.

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace cw::audit {

using Microseconds = std::chrono::sys_time<std::chrono::microseconds>;

// Parses an RFC 3339 date-time ("2026-11-21T21:36:20Z", "...20.5+01:00",
// with 0 to 6 fractional digits) or a full date ("2026-11-21", read as
// midnight UTC). Leap seconds and more than six fractional digits are
// refused: stored times have microseconds, and truncating a bound would move
// it across an event.
std::optional<Microseconds> ParseRfc3339(std::string_view text);

// The stored form of `text` (see above), or nullopt when it does not parse.
std::optional<std::string> NormalizeRfc3339(std::string_view text);

// True when `text` is already in the stored form.
bool IsStoredTimeForm(std::string_view text);

}  // namespace cw::audit
