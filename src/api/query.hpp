#pragma once

// Strict parsing of a URL query string: every name must be one the route
// knows, appear once, and decode (percent-encoding, '+' as space) to valid
// UTF-8 without NUL or control characters.

#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "core/safe_text.hpp"

namespace cw::api {

// The parameters, or nullopt with `problem` naming what was wrong (never
// echoing the input).
std::optional<std::map<std::string, std::string>> ParseQuery(
    std::string_view query, std::initializer_list<std::string_view> allowed, SafeText* problem);

}  // namespace cw::api
