#pragma once

// The one place where an error becomes an HTTP status and an API error code.
// Error messages are SafeText: fixed strings chosen by the code, so an error
// response can never echo PHI back.

#include <chrono>
#include <string_view>

#include "api/http.hpp"
#include "core/result.hpp"

namespace cw::api {

enum class ApiError {
  kBadRequest,            // 400 bad_request
  kUnauthenticated,       // 401 unauthenticated
  kMfaRequired,           // 401 mfa_required
  kReauthRequired,        // 401 reauth_required
  kForbidden,             // 403 forbidden
  kNotFound,              // 404 not_found
  kMethodNotAllowed,      // 405 method_not_allowed
  kConflict,              // 409 conflict
  kPayloadTooLarge,       // 413 payload_too_large
  kUnsupportedMediaType,  // 415 unsupported_media_type
  kUpgradeRequired,       // 426 upgrade_required
  kHeadersTooLarge,       // 431 headers_too_large
  kRateLimited,           // 429 rate_limited
  kInternal,              // 500 internal
  kUnavailable,           // 503 unavailable
};

int HttpStatus(ApiError error);
SafeText ErrorCodeName(ApiError error);

// {"error":{"code","message","request_id"}} with the error's status.
Response ErrorResponse(std::string_view request_id, ApiError error, SafeText message);

// 429 rate_limited with Retry-After (whole seconds, at least 1).
Response RateLimitedResponse(std::string_view request_id, std::chrono::seconds retry_after);

// Maps a subsystem error to the API error a client should see, with a
// message that names the problem without echoing any input.
Response ErrorResponseFor(std::string_view request_id, const ErrorCode& error);

// Adds the headers every response carries: X-Request-Id, HSTS,
// Cache-Control: no-store, nosniff, Referrer-Policy, a strict CSP and
// X-Frame-Options.
void AddStandardHeaders(Response& response, std::string_view request_id);

}  // namespace cw::api
