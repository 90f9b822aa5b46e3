#include "api/router.hpp"

#include <gtest/gtest.h>

namespace cw::api {
namespace {

Handler Noop() {
  return [](Request&, Reply) {};
}

TEST(RouterTest, MatchesLiteralAndParameterSegments) {
  Router r;
  r.Add(Method::kGet, "/api/v1/users", Access::Public(), Noop());
  r.Add(Method::kGet, "/api/v1/users/{id}", Access::Public(), Noop());
  auto m = r.Find(Method::kGet, "/api/v1/users/u%2D1");
  ASSERT_NE(m.route, nullptr);
  EXPECT_EQ(m.route->pattern, "/api/v1/users/{id}");
  ASSERT_EQ(m.params.size(), 1u);
  EXPECT_EQ(m.params[0].first, "id");
  EXPECT_EQ(m.params[0].second, "u-1");
  EXPECT_EQ(r.Find(Method::kGet, "/api/v1/users").route->pattern, "/api/v1/users");
}

TEST(RouterTest, ReportsAllowedMethodsOnMethodMismatch) {
  Router r;
  r.Add(Method::kGet, "/x", Access::Public(), Noop());
  r.Add(Method::kPost, "/x", Access::Public(), Noop());
  auto m = r.Find(Method::kDelete, "/x");
  EXPECT_EQ(m.route, nullptr);
  EXPECT_EQ(m.allowed.size(), 2u);
}

TEST(RouterTest, RefusesMalformedPaths) {
  Router r;
  r.Add(Method::kGet, "/api/v1/users/{id}", Access::Public(), Noop());
  for (const char* path :
       {"", "api/v1/users/1", "/api/v1/users/", "/api/v1/users//", "/api/v1/users/1/",
        "/api//v1/users/1", "/api/v1/users/..%2fetc", "/api/v1/users/%00", "/api/v1/users/%ff",
        "/api/v1/users/%ed%a0%80", "/api/v1/users/%zz", "/api/v1/users/%4", "/%61pi/v1/users/1"}) {
    auto m = r.Find(Method::kGet, path);
    EXPECT_EQ(m.route, nullptr) << path;
    EXPECT_TRUE(m.allowed.empty()) << path;
  }
}

TEST(RouterTest, RejectsBadPatternsAndDuplicates) {
  Router r;
  EXPECT_THROW(r.Add(Method::kGet, "x", Access::Public(), Noop()), std::logic_error);
  EXPECT_THROW(r.Add(Method::kGet, "/a//b", Access::Public(), Noop()), std::logic_error);
  EXPECT_THROW(r.Add(Method::kGet, "/a/{}", Access::Public(), Noop()), std::logic_error);
  r.Add(Method::kGet, "/a", Access::Public(), Noop());
  EXPECT_THROW(r.Add(Method::kGet, "/a", Access::Public(), Noop()), std::logic_error);
}

TEST(RouterTest, DispatchAnswers404And405AsJsonErrors) {
  Router r;
  r.Add(Method::kGet, "/x", Access::Public(), Noop());
  Request req;
  req.request_id = "rid";
  req.path = "/nope";
  Response got;
  r.Dispatch(req, [&](Response res) { got = std::move(res); });
  EXPECT_EQ(got.status, 404);
  EXPECT_NE(got.body.find("\"not_found\""), std::string::npos);
  EXPECT_NE(got.body.find("\"rid\""), std::string::npos);

  req.path = "/x";
  req.method = Method::kPost;
  r.Dispatch(req, [&](Response res) { got = std::move(res); });
  EXPECT_EQ(got.status, 405);
  ASSERT_EQ(got.headers.size(), 1u);
  EXPECT_EQ(got.headers[0].first, "allow");
  EXPECT_EQ(got.headers[0].second, "GET");
}

}  // namespace
}  // namespace cw::api
