#pragma once

#include "core/result.hpp"

namespace cw::core {

// Errors that belong to no single subsystem: configuration and input checks.
enum class Error {
  kOk = 0,
  kInvalidArgument,
  kNotFound,
  kConflict,
  kUnavailable,
  kInternal,
  kUnauthenticated,    // no, or no longer valid, credentials
  kPermissionDenied,   // valid credentials without the right to this action
  kResourceExhausted,  // a queue or limit is full; try again later
};

const boost::system::error_category& ErrorCategory();

inline ErrorCode make_error_code(Error e) { return {static_cast<int>(e), ErrorCategory()}; }

}  // namespace cw::core

template <>
struct boost::system::is_error_code_enum<cw::core::Error> : std::true_type {};
