#pragma once

// Expected failures are values. Every subsystem defines one error enum with a
// fixed-string category, so an error can never carry PHI: the message is chosen
// from a table, never built from input.

#include <boost/system/error_code.hpp>
#include <boost/system/result.hpp>

namespace cw {

using ErrorCode = boost::system::error_code;

template <class T>
using Result = boost::system::result<T, ErrorCode>;

// Result<void> reads better as Status at call sites that only succeed or fail.
using Status = Result<void>;

inline Status Ok() { return {}; }

// An error for a Result of any type. Result<bool> cannot take an ErrorCode
// implicitly (the code is itself convertible to bool), so functions returning
// Result<bool> write `return Fail(ec);`.
struct Fail {
  ErrorCode code;
  template <class E>
  explicit Fail(E e) : code(e) {}
  template <class T>
  operator Result<T>() const {  // NOLINT(google-explicit-constructor)
    return Result<T>(boost::system::in_place_error, code);
  }
};

}  // namespace cw
