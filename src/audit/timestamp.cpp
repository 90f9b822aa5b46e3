#include "audit/timestamp.hpp"

#include <cstdio>

namespace cw::audit {
namespace {

// "2026-11-21T21:36:20.123456Z"
constexpr std::size_t kStoredSize = 27;

// Reads `n` decimal digits at `pos`; false when any is missing.
bool Digits(std::string_view s, std::size_t pos, std::size_t n, int* out) {
  if (pos + n > s.size()) return false;
  int value = 0;
  for (std::size_t i = pos; i < pos + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    value = value * 10 + (s[i] - '0');
  }
  *out = value;
  return true;
}

std::optional<std::chrono::sys_days> ParseDate(std::string_view s) {
  int year = 0;
  int month = 0;
  int day = 0;
  if (!Digits(s, 0, 4, &year) || s.size() < 10 || s[4] != '-' || !Digits(s, 5, 2, &month) ||
      s[7] != '-' || !Digits(s, 8, 2, &day)) {
    return std::nullopt;
  }
  const std::chrono::year_month_day date{std::chrono::year(year),
                                         std::chrono::month(static_cast<unsigned>(month)),
                                         std::chrono::day(static_cast<unsigned>(day))};
  if (!date.ok()) return std::nullopt;
  return std::chrono::sys_days(date);
}

}  // namespace

std::optional<Microseconds> ParseRfc3339(std::string_view s) {
  using std::chrono::hours;
  using std::chrono::microseconds;
  using std::chrono::minutes;
  using std::chrono::seconds;

  const auto date = ParseDate(s);
  if (!date) return std::nullopt;
  if (s.size() == 10) return Microseconds(*date);

  int hour = 0;
  int minute = 0;
  int second = 0;
  if (s.size() < 20 || (s[10] != 'T' && s[10] != 't') || !Digits(s, 11, 2, &hour) || s[13] != ':' ||
      !Digits(s, 14, 2, &minute) || s[16] != ':' || !Digits(s, 17, 2, &second)) {
    return std::nullopt;
  }
  if (hour > 23 || minute > 59 || second > 59) return std::nullopt;

  std::size_t pos = 19;
  std::int64_t micros = 0;
  if (s[pos] == '.') {
    ++pos;
    std::size_t digits = 0;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
      if (++digits > 6) return std::nullopt;
      micros = micros * 10 + (s[pos] - '0');
      ++pos;
    }
    if (digits == 0) return std::nullopt;
    for (std::size_t i = digits; i < 6; ++i) micros *= 10;
  }

  minutes offset{0};
  if (pos < s.size() && (s[pos] == 'Z' || s[pos] == 'z')) {
    ++pos;
  } else if (pos < s.size() && (s[pos] == '+' || s[pos] == '-')) {
    int offset_hours = 0;
    int offset_minutes = 0;
    if (!Digits(s, pos + 1, 2, &offset_hours) || pos + 3 >= s.size() || s[pos + 3] != ':' ||
        !Digits(s, pos + 4, 2, &offset_minutes) || offset_hours > 23 || offset_minutes > 59) {
      return std::nullopt;
    }
    offset = hours(offset_hours) + minutes(offset_minutes);
    if (s[pos] == '-') offset = -offset;
    pos += 6;
  } else {
    return std::nullopt;
  }
  if (pos != s.size()) return std::nullopt;

  // Local time minus its offset from UTC is UTC.
  return Microseconds(*date) + hours(hour) + minutes(minute) + seconds(second) +
         microseconds(micros) - offset;
}

std::optional<std::string> NormalizeRfc3339(std::string_view text) {
  const auto t = ParseRfc3339(text);
  if (!t) return std::nullopt;
  // Formatted here rather than with core::FormatRfc3339 (same output), whose
  // system_clock nanoseconds cannot hold years outside 1678 to 2262.
  const auto day = std::chrono::floor<std::chrono::days>(*t);
  const std::chrono::year_month_day date(day);
  const std::chrono::hh_mm_ss time(*t - day);
  // An offset can carry 0000-01-01 or 9999-12-31 out of four-digit years,
  // and a longer text would no longer compare as its instant.
  const int year = static_cast<int>(date.year());
  if (year < 0 || year > 9999) return std::nullopt;
  char stored[64];
  const int length = std::snprintf(
      stored, sizeof stored, "%04d-%02u-%02uT%02d:%02d:%02d.%06lldZ", year,
      static_cast<unsigned>(date.month()), static_cast<unsigned>(date.day()),
      static_cast<int>(time.hours().count()), static_cast<int>(time.minutes().count()),
      static_cast<int>(time.seconds().count()), static_cast<long long>(time.subseconds().count()));
  if (length != static_cast<int>(kStoredSize)) return std::nullopt;
  return std::string(stored, kStoredSize);
}

bool IsStoredTimeForm(std::string_view text) {
  // The stored form's fixed length rules out most bad input before parsing.
  if (text.size() != kStoredSize) return false;
  const auto normalized = NormalizeRfc3339(text);
  return normalized && *normalized == text;
}

}  // namespace cw::audit
