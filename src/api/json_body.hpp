#pragma once

// Strict JSON input. Every body a handler reads goes through here: the
// content type must be application/json (charset utf-8 if given), the text
// must be valid UTF-8 with no lone surrogates, nesting is bounded, an object
// may not repeat a key (a repeated key is ambiguous: two parsers could read
// two different requests from the same bytes), and numbers must be finite.

#include <boost/json/value.hpp>
#include <optional>
#include <string_view>

#include "api/http.hpp"

namespace cw::api {

struct JsonLimits {
  std::size_t max_depth = 64;
};

// Parses `text` as one JSON document. On failure returns nullopt and sets
// `problem` to a fixed description.
std::optional<boost::json::value> ParseStrictJson(std::string_view text, const JsonLimits& limits,
                                                  SafeText* problem);

// Parses a request body that must be a JSON object. On failure returns
// nullopt and sets `error` to the response to send (400 or 415).
std::optional<boost::json::object> ParseJsonObjectBody(const Request& request,
                                                       const JsonLimits& limits, Response* error);

// A JSON response with the given status.
Response JsonResponse(int status, const boost::json::value& body);

}  // namespace cw::api
