#include "core/error.hpp"

namespace cw::core {
namespace {

class Category final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "cw.core"; }
  std::string message(int ev) const override {
    switch (static_cast<Error>(ev)) {
      case Error::kOk:
        return "ok";
      case Error::kInvalidArgument:
        return "invalid argument";
      case Error::kNotFound:
        return "not found";
      case Error::kConflict:
        return "conflict";
      case Error::kUnavailable:
        return "unavailable";
      case Error::kInternal:
        return "internal error";
      case Error::kUnauthenticated:
        return "unauthenticated";
      case Error::kPermissionDenied:
        return "permission denied";
      case Error::kResourceExhausted:
        return "resource exhausted";
    }
    return "unknown core error";
  }
};

}  // namespace

const boost::system::error_category& ErrorCategory() {
  static const Category category;
  return category;
}

}  // namespace cw::core
