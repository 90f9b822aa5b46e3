#include "api/errors.hpp"

#include <gtest/gtest.h>

#include <boost/json/parse.hpp>

#include "core/error.hpp"
#include "storage/database.hpp"

namespace cw::api {
namespace {

TEST(ErrorsTest, EnvelopeHasCodeMessageAndRequestId) {
  Response r = ErrorResponse("abc", ApiError::kPayloadTooLarge, "too big");
  EXPECT_EQ(r.status, 413);
  auto v = boost::json::parse(r.body);
  EXPECT_EQ(v.at("error").at("code").as_string(), "payload_too_large");
  EXPECT_EQ(v.at("error").at("message").as_string(), "too big");
  EXPECT_EQ(v.at("error").at("request_id").as_string(), "abc");
}

TEST(ErrorsTest, MapsSubsystemErrors) {
  EXPECT_EQ(ErrorResponseFor("r", storage::Error::kConstraint).status, 409);
  EXPECT_EQ(ErrorResponseFor("r", storage::Error::kFailed).status, 503);
  EXPECT_EQ(ErrorResponseFor("r", storage::Error::kIo).status, 503);
  EXPECT_EQ(ErrorResponseFor("r", storage::Error::kBadStatement).status, 500);
  EXPECT_EQ(ErrorResponseFor("r", core::Error::kNotFound).status, 404);
  EXPECT_EQ(ErrorResponseFor("r", core::Error::kInvalidArgument).status, 400);
}

TEST(ErrorsTest, StandardHeadersAreAllPresent) {
  Response r;
  AddStandardHeaders(r, "rid");
  auto has = [&](std::string_view name) {
    for (auto& [n, v] : r.headers) {
      if (n == name) return true;
    }
    return false;
  };
  for (auto name : {"x-request-id", "strict-transport-security", "cache-control",
                    "x-content-type-options", "referrer-policy", "content-security-policy"}) {
    EXPECT_TRUE(has(name)) << name;
  }
}

}  // namespace
}  // namespace cw::api
