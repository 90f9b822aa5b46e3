#include "api/json_body.hpp"

#include <gtest/gtest.h>

#include <string>

namespace cw::api {
namespace {

Request JsonRequest(std::string body, std::string type = "application/json") {
  Request r;
  r.request_id = "rid";
  r.headers.emplace_back("content-type", std::move(type));
  r.body = std::move(body);
  return r;
}

int StatusOf(const Request& req) {
  Response err;
  auto obj = ParseJsonObjectBody(req, JsonLimits{}, &err);
  return obj ? 200 : err.status;
}

TEST(JsonBodyTest, AcceptsAnObject) {
  Response err;
  auto obj = ParseJsonObjectBody(JsonRequest(R"({"a":1,"b":[true,null,"x"]})"), {}, &err);
  ASSERT_TRUE(obj);
  EXPECT_EQ(obj->at("a").as_int64(), 1);
}

TEST(JsonBodyTest, RefusesBadBodies) {
  EXPECT_EQ(StatusOf(JsonRequest("")), 400);
  EXPECT_EQ(StatusOf(JsonRequest("null")), 400);
  EXPECT_EQ(StatusOf(JsonRequest("[1]")), 400);
  EXPECT_EQ(StatusOf(JsonRequest("{\"a\":1")), 400);
  EXPECT_EQ(StatusOf(JsonRequest("{\"a\":1} x")), 400);
  EXPECT_EQ(StatusOf(JsonRequest("{\"a\":1,}")), 400);
  EXPECT_EQ(StatusOf(JsonRequest("{\"a\":NaN}")), 400);
  EXPECT_EQ(StatusOf(JsonRequest("{\"a\":1e999}")), 400);
  EXPECT_EQ(StatusOf(JsonRequest("{/*c*/\"a\":1}")), 400);
}

TEST(JsonBodyTest, RefusesDuplicateKeysAtAnyDepth) {
  EXPECT_EQ(StatusOf(JsonRequest(R"({"a":1,"a":2})")), 400);
  EXPECT_EQ(StatusOf(JsonRequest(R"({"x":{"a":1,"b":{},"a":2}})")), 400);
  // The same key in sibling objects is fine.
  EXPECT_EQ(StatusOf(JsonRequest(R"({"x":{"a":1},"y":{"a":2},"z":[{"a":1},{"a":1}]})")), 200);
}

TEST(JsonBodyTest, RefusesDeepNesting) {
  std::string deep(10'000, '[');
  deep += std::string(10'000, ']');
  EXPECT_EQ(StatusOf(JsonRequest("{\"a\":" + deep + "}")), 400);
  std::string ok = "{\"a\":" + std::string(50, '[') + std::string(50, ']') + "}";
  EXPECT_EQ(StatusOf(JsonRequest(ok)), 200);
}

TEST(JsonBodyTest, RefusesInvalidUtf8AndLoneSurrogates) {
  EXPECT_EQ(StatusOf(JsonRequest("{\"a\":\"\xff\"}")), 400);
  EXPECT_EQ(StatusOf(JsonRequest("{\"a\":\"\xc0\xaf\"}")), 400);
  EXPECT_EQ(StatusOf(JsonRequest("{\"a\":\"\xed\xa0\x80\"}")), 400);
  EXPECT_EQ(StatusOf(JsonRequest(R"({"a":"\ud800"})")), 400);
  EXPECT_EQ(StatusOf(JsonRequest(R"({"a":"\udc00x"})")), 400);
  EXPECT_EQ(StatusOf(JsonRequest(R"({"a":"\ud83d\ude00"})")), 200);
}

TEST(JsonBodyTest, ChecksContentType) {
  EXPECT_EQ(StatusOf(JsonRequest("{}", "text/plain")), 415);
  EXPECT_EQ(StatusOf(JsonRequest("{}", "application/json; charset=latin1")), 415);
  EXPECT_EQ(StatusOf(JsonRequest("{}", "application/jsonx")), 415);
  EXPECT_EQ(StatusOf(JsonRequest("{}", "Application/JSON; charset=UTF-8")), 200);
}

}  // namespace
}  // namespace cw::api
