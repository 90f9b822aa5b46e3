#pragma once

#include <cstddef>
#include <string_view>

namespace cw::core {

// True when `text` is well-formed UTF-8: no overlong forms, no surrogates
// (so no lone surrogates smuggled as CESU-8), nothing above U+10FFFF.
bool IsValidUtf8(std::string_view text);

// True when valid UTF-8 `text` holds a bidirectional embedding, override or
// isolate control (U+202A to U+202E, U+2066 to U+2069): characters that
// make text display in another order than it is stored ("exe.pdf" shown as
// "fdp.exe"), refused in anything one user shows another.
bool HasBidiControl(std::string_view text);

// The number of code points of valid UTF-8 `text`.
std::size_t CodePointCount(std::string_view text);

}  // namespace cw::core
