#include <gtest/gtest.h>

#include "api/query.hpp"
#include "api/router.hpp"
#include "core/error.hpp"

namespace cw::api {
namespace {

// A router whose authenticator knows two tokens: "full" and "otp" (a session
// that may only set a new password).
class AccessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    router_.SetAuthenticator([](std::string_view token) -> Result<Principal> {
      if (token == "full") return Principal{.user_id = "u1", .org_id = "o1"};
      if (token == "otp") {
        return Principal{.user_id = "u2", .org_id = "o1", .password_change_only = true};
      }
      return core::Error::kUnauthenticated;
    });
    for (auto [path, access] :
         {std::pair{"/public", Access::kPublic}, std::pair{"/password", Access::kPasswordChange},
          std::pair{"/signed-in", Access::kSignedIn}}) {
      router_.Add(Method::kGet, SafeText::Trusted(path), access, [](Request& req, Reply reply) {
        reply(Response{.status = 200, .body = req.principal.user_id});
      });
    }
  }

  Response Call(std::string_view path, std::string authorization = "") {
    Request req;
    req.path = std::string(path);
    req.request_id = "r";
    if (!authorization.empty()) req.headers.emplace_back("authorization", authorization);
    Response out;
    router_.Dispatch(req, [&](Response r) { out = std::move(r); });
    return out;
  }

  Router router_;
};

TEST_F(AccessTest, PublicRoutesNeedNothingAndSeeNoPrincipal) {
  EXPECT_EQ(Call("/public").status, 200);
  EXPECT_EQ(Call("/public", "Bearer full").body, "");
}

TEST_F(AccessTest, OtherRoutesNeedAValidBearerToken) {
  for (const std::string& header :
       {std::string(), std::string("Bearer"), std::string("Bearer "), std::string("bearer full"),
        std::string("Basic full"), std::string("Bearer nope"), std::string("Bearer  full"),
        std::string("Bearer ") + std::string(10'000, 'x')}) {
    EXPECT_EQ(Call("/signed-in", header).status, 401) << header.substr(0, 20);
    EXPECT_EQ(Call("/password", header).status, 401) << header.substr(0, 20);
  }
  const Response ok = Call("/signed-in", "Bearer full");
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(ok.body, "u1");
}

TEST_F(AccessTest, APasswordChangeSessionReachesOnlyThePasswordRoute) {
  EXPECT_EQ(Call("/password", "Bearer otp").status, 200);
  const Response refused = Call("/signed-in", "Bearer otp");
  EXPECT_EQ(refused.status, 403);
  EXPECT_NE(refused.body.find("\"forbidden\""), std::string::npos);
  EXPECT_EQ(Call("/password", "Bearer full").status, 200);
}

TEST_F(AccessTest, WithoutAnAuthenticatorNothingButPublicRoutesAnswer) {
  Router bare;
  bare.Add(Method::kGet, "/x", Access::kSignedIn,
           [](Request&, Reply reply) { reply(Response{.status = 200}); });
  Request req;
  req.path = "/x";
  req.headers.emplace_back("authorization", "Bearer full");
  Response out;
  bare.Dispatch(req, [&](Response r) { out = std::move(r); });
  EXPECT_EQ(out.status, 401);
}

TEST(QueryTest, ParsesKnownParametersOnceEach) {
  SafeText problem = "";
  auto q = ParseQuery("a=1&b=x%20y+z&&c=", {"a", "b", "c"}, &problem);
  ASSERT_TRUE(q);
  EXPECT_EQ((*q)["a"], "1");
  EXPECT_EQ((*q)["b"], "x y z");
  EXPECT_EQ((*q)["c"], "");
  EXPECT_TRUE(ParseQuery("", {"a"}, &problem));
}

TEST(QueryTest, RefusesUnknownRepeatedAndMalformedParameters) {
  SafeText problem = "";
  for (std::string_view bad : {"z=1", "a=1&a=2", "a=%", "a=%4", "a=%zz", "a=%00", "a=%0d%0a",
                               "a=%ff", "a=%ed%a0%80", "%61=1&a=2"}) {
    EXPECT_FALSE(ParseQuery(bad, {"a"}, &problem)) << bad;
  }
}

}  // namespace
}  // namespace cw::api
