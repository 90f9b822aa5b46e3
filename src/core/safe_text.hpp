#pragma once

#include <string>
#include <string_view>

namespace cw {

// Text that may appear in a log line or a metrics label.
//
// A SafeText is built from a string literal (checked at compile time) or, for
// values the server generated itself (route templates registered in code,
// request ids, error-category messages), through the explicitly named
// Trusted(). There is no implicit conversion from std::string, so text that
// came from a request cannot reach a log line or a label by accident.
class SafeText {
 public:
  template <std::size_t N>
  consteval SafeText(const char (&literal)[N])
      : text_(literal, N - 1) {}  // NOLINT: implicit on purpose

  // REQUIRES: `text` was produced by the server, not taken from input, and
  // outlives every use of this SafeText.
  static SafeText Trusted(std::string_view text) { return SafeText(text, 0); }

  std::string_view view() const { return text_; }

 private:
  constexpr SafeText(std::string_view text, int) : text_(text) {}
  std::string_view text_;
};

}  // namespace cw
