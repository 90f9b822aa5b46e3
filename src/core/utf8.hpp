#pragma once

#include <string_view>

namespace cw::core {

// True when `text` is well-formed UTF-8: no overlong forms, no surrogates
// (so no lone surrogates smuggled as CESU-8), nothing above U+10FFFF.
bool IsValidUtf8(std::string_view text);

}  // namespace cw::core
