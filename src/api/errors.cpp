#include "api/errors.hpp"

#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include "core/error.hpp"
#include "storage/database.hpp"

namespace cw::api {

int HttpStatus(ApiError error) {
  switch (error) {
    case ApiError::kBadRequest:
      return 400;
    case ApiError::kUnauthenticated:
    case ApiError::kMfaRequired:
    case ApiError::kReauthRequired:
      return 401;
    case ApiError::kForbidden:
      return 403;
    case ApiError::kNotFound:
      return 404;
    case ApiError::kMethodNotAllowed:
      return 405;
    case ApiError::kConflict:
      return 409;
    case ApiError::kPayloadTooLarge:
      return 413;
    case ApiError::kUnsupportedMediaType:
      return 415;
    case ApiError::kUpgradeRequired:
      return 426;
    case ApiError::kHeadersTooLarge:
      return 431;
    case ApiError::kRateLimited:
      return 429;
    case ApiError::kInternal:
      return 500;
    case ApiError::kUnavailable:
      return 503;
  }
  return 500;
}

SafeText ErrorCodeName(ApiError error) {
  switch (error) {
    case ApiError::kBadRequest:
      return "bad_request";
    case ApiError::kUnauthenticated:
      return "unauthenticated";
    case ApiError::kMfaRequired:
      return "mfa_required";
    case ApiError::kReauthRequired:
      return "reauth_required";
    case ApiError::kForbidden:
      return "forbidden";
    case ApiError::kNotFound:
      return "not_found";
    case ApiError::kMethodNotAllowed:
      return "method_not_allowed";
    case ApiError::kConflict:
      return "conflict";
    case ApiError::kPayloadTooLarge:
      return "payload_too_large";
    case ApiError::kUnsupportedMediaType:
      return "unsupported_media_type";
    case ApiError::kUpgradeRequired:
      return "upgrade_required";
    case ApiError::kHeadersTooLarge:
      return "headers_too_large";
    case ApiError::kRateLimited:
      return "rate_limited";
    case ApiError::kInternal:
      return "internal";
    case ApiError::kUnavailable:
      return "unavailable";
  }
  return "internal";
}

Response ErrorResponse(std::string_view request_id, ApiError error, SafeText message) {
  boost::json::value body = {{"error",
                              {{"code", ErrorCodeName(error).view()},
                               {"message", message.view()},
                               {"request_id", request_id}}}};
  Response r;
  r.status = HttpStatus(error);
  r.content_type = "application/json; charset=utf-8";
  r.body = boost::json::serialize(body);
  return r;
}

Response RateLimitedResponse(std::string_view request_id, std::chrono::seconds retry_after) {
  Response r = ErrorResponse(request_id, ApiError::kRateLimited,
                             "too many attempts; wait for the time in Retry-After");
  r.headers.emplace_back("retry-after",
                         std::to_string(std::max<std::int64_t>(1, retry_after.count())));
  return r;
}

Response ErrorResponseFor(std::string_view request_id, const ErrorCode& error) {
  if (error.category() == storage::ErrorCategory()) {
    switch (static_cast<storage::Error>(error.value())) {
      case storage::Error::kConstraint:
        return ErrorResponse(request_id, ApiError::kConflict,
                             "the change conflicts with existing data");
      case storage::Error::kFailed:
      case storage::Error::kClosed:
      case storage::Error::kBusy:
      case storage::Error::kIo:
        return ErrorResponse(request_id, ApiError::kUnavailable, "storage is unavailable");
      default:
        return ErrorResponse(request_id, ApiError::kInternal, "internal error");
    }
  }
  if (error.category() == core::ErrorCategory()) {
    switch (static_cast<core::Error>(error.value())) {
      case core::Error::kInvalidArgument:
        return ErrorResponse(request_id, ApiError::kBadRequest, "invalid request");
      case core::Error::kNotFound:
        return ErrorResponse(request_id, ApiError::kNotFound, "not found");
      case core::Error::kConflict:
        return ErrorResponse(request_id, ApiError::kConflict, "conflict");
      case core::Error::kUnavailable:
      case core::Error::kResourceExhausted:
        return ErrorResponse(request_id, ApiError::kUnavailable, "temporarily unavailable");
      case core::Error::kUnauthenticated:
        return ErrorResponse(request_id, ApiError::kUnauthenticated, "unauthenticated");
      case core::Error::kPermissionDenied:
        return ErrorResponse(request_id, ApiError::kForbidden, "forbidden");
      default:
        break;
    }
  }
  return ErrorResponse(request_id, ApiError::kInternal, "internal error");
}

void AddStandardHeaders(Response& response, std::string_view request_id) {
  auto& h = response.headers;
  h.emplace_back("x-request-id", std::string(request_id));
  // Two years, the preload list's minimum; every listener is TLS.
  h.emplace_back("strict-transport-security", "max-age=63072000; includeSubDomains");
  h.emplace_back("cache-control", "no-store");
  h.emplace_back("x-content-type-options", "nosniff");
  h.emplace_back("referrer-policy", "no-referrer");
  h.emplace_back("x-frame-options", "DENY");
  // API answers are data, never documents: nothing may load, run or frame them.
  h.emplace_back("content-security-policy",
                 "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'");
  h.emplace_back("cross-origin-resource-policy", "same-origin");
}

}  // namespace cw::api
