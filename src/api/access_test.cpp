#include <gtest/gtest.h>

#include "api/query.hpp"
#include "api/router.hpp"
#include "core/error.hpp"

namespace cw::api {
namespace {

using identity::Permission;
using identity::SessionScope;

// A router whose authenticator knows these tokens: "full" (a nurse, who
// signed in just now), "stale" (the same, signed in an hour ago), "otp" (a
// session that may only set a new password) and "enrol" (one that may only
// enrol a second factor).
class AccessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    router_.SetAuthenticator([](std::string_view token) -> Result<Principal> {
      Principal p{.user_id = "u1", .org_id = "o1", .roles = {"nurse"}};
      p.permissions = identity::BuiltInPermissions(p.roles);
      p.reauthenticated_at = std::chrono::system_clock::now();
      if (token == "full") return p;
      if (token == "stale") {
        p.reauthenticated_at -= std::chrono::hours(1);
        return p;
      }
      p.permissions.reset();
      p.user_id = "u2";
      if (token == "otp") {
        p.scope = SessionScope::kPasswordChange;
        return p;
      }
      if (token == "enrol") {
        p.scope = SessionScope::kMfaEnrollment;
        return p;
      }
      return core::Error::kUnauthenticated;
    });
    router_.SetDenialRecorder(
        [this](const Route& route, const Request&) { denied_.push_back(route.pattern); });
    for (auto [path, access] : {
             std::pair{"/public", Access::Public()},
             std::pair{"/password", Access::PasswordChange()},
             std::pair{"/enrol", Access::MfaEnrollment()},
             std::pair{"/signed-in", Access::OwnAccount()},
             std::pair{"/patients", Access::Needs(Permission::kPatientsRead)},
             std::pair{"/users", Access::Needs(Permission::kUsersManage)},
             std::pair{"/glass", Access::Needs(Permission::kBreakGlass).Sensitive()},
         }) {
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
  std::vector<std::string> denied_;
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
    for (const char* path : {"/signed-in", "/password", "/enrol", "/patients", "/glass"}) {
      EXPECT_EQ(Call(path, header).status, 401) << path << " " << header.substr(0, 20);
    }
  }
  const Response ok = Call("/signed-in", "Bearer full");
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(ok.body, "u1");
  EXPECT_TRUE(denied_.empty());  // no principal, nothing to record against
}

TEST_F(AccessTest, APasswordChangeSessionReachesOnlyThePasswordRoute) {
  EXPECT_EQ(Call("/password", "Bearer otp").status, 200);
  for (const char* path : {"/signed-in", "/enrol", "/patients"}) {
    const Response refused = Call(path, "Bearer otp");
    EXPECT_EQ(refused.status, 403) << path;
    EXPECT_NE(refused.body.find("\"forbidden\""), std::string::npos);
  }
  EXPECT_EQ(Call("/password", "Bearer full").status, 200);
}

TEST_F(AccessTest, AnEnrolmentSessionReachesOnlyEnrolmentAndPasswordRoutes) {
  EXPECT_EQ(Call("/enrol", "Bearer enrol").status, 200);
  EXPECT_EQ(Call("/password", "Bearer enrol").status, 200);
  EXPECT_EQ(Call("/signed-in", "Bearer enrol").status, 403);
  EXPECT_EQ(Call("/patients", "Bearer enrol").status, 403);
  EXPECT_EQ(Call("/enrol", "Bearer full").status, 200);
}

TEST_F(AccessTest, ARouteNeedingAPermissionRefusesRolesWithoutItAndRecordsTheRefusal) {
  EXPECT_EQ(Call("/patients", "Bearer full").status, 200);  // nurses read patients
  const Response refused = Call("/users", "Bearer full");
  EXPECT_EQ(refused.status, 403);
  EXPECT_NE(refused.body.find("\"forbidden\""), std::string::npos);
  ASSERT_EQ(denied_.size(), 1u);
  EXPECT_EQ(denied_[0], "/users");
}

TEST_F(AccessTest, ASensitiveRouteNeedsARecentReauthentication) {
  EXPECT_EQ(Call("/glass", "Bearer full").status, 200);
  const Response stale = Call("/glass", "Bearer stale");
  EXPECT_EQ(stale.status, 401);
  EXPECT_NE(stale.body.find("\"reauth_required\""), std::string::npos);
  EXPECT_EQ(Call("/patients", "Bearer stale").status, 200);  // not sensitive
}

TEST_F(AccessTest, WithoutAnAuthenticatorNothingButPublicRoutesAnswer) {
  Router bare;
  bare.Add(Method::kGet, "/x", Access::OwnAccount(),
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
