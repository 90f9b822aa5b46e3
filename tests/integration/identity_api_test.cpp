// Identity and access as a client sees them, against the real binary over
// TLS: the whole MFA flow (enrolment, challenges, replayed and recovery
// codes, exhausted challenges), organizations without MFA, identical answers
// to the three sign-in failures, the throttle against spoofed addresses and
// its growing delays, staff management within one's roles and organization,
// re-authentication, live sockets closed by deactivation and logout
// everywhere, session lists and revocation, organization settings, custom
// roles, break-glass with its alerts and sealed reason, and the bad inputs
// of /work/shared/QUALITY.md on the identity route families.
//
// Most tests share one deployment (IdentityApiTest): two organizations
// whose owners are activated once, in SetUpTestSuite, and one server. Each
// test creates the users it needs under names of its own, so the tests do
// not depend on one another or on their order. Sign-in costs an Argon2id
// hash (about 0.2 s) and activating a user costs four, so users are created
// only where a test needs them. The throttle tests (ThrottleApiTest) start
// servers of their own with the throttle configured through CAREWIRE_AUTH_*.
//
// Every request of these tests comes from 127.0.0.1, and the throttle delays
// an address after auth.free_failures failures across all accounts; the
// shared deployment lifts that number so the failures some tests make on
// purpose do not slow the others down. The hourly limits stay as configured
// by default.
//
// TOTP codes come from support/accounts.hpp (an RFC 6238 implementation of
// its own). The server accepts each 30-second step once, so a test that
// needs several second-factor answers in quick succession falls back to
// recovery codes rather than waiting for the next step.
//
// QUALITY.md item 13 (internal URLs) does not apply: none of these routes
// fetches anything. Tokens in the query string, cookies and malformed
// Authorization headers are covered by auth_audit_api_test.cpp; here, item 14
// is the enrolment-only token, revoked and deactivated users' tokens and
// another organization's ids.

#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>

#include <algorithm>
#include <boost/json.hpp>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <functional>
#include <iomanip>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "support/accounts.hpp"
#include "support/api.hpp"
#include "support/deployment.hpp"
#include "support/https_client.hpp"
#include "support/server_process.hpp"
#include "support/sql.hpp"

namespace cw::testing {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace std::chrono_literals;
using Headers = std::vector<std::pair<std::string, std::string>>;
using SteadyTime = std::chrono::steady_clock::time_point;

constexpr const char* kOrgA = "clinic-a";
constexpr const char* kOwnerA = "alice";
constexpr const char* kOrgB = "clinic-b";
constexpr const char* kOwnerB = "bob";
// What every activated user of these tests chooses: a passphrase zxcvbn rates
// at about 70 bits, holding none of the usernames used here.
const std::string kPassword = "violet-lantern-orbit-97";

// The permissions of the built-in roles, as docs/roles.md lists them (and
// GET /api/v1/me orders them).
const json::array kNursePermissions = {"messages.send",  "messages.read", "patients.read",
                                       "patients.write", "users.read",    "break_glass"};
const json::array kFrontDeskPermissions = {"messages.send", "messages.read", "patients.read",
                                           "patients.write", "users.read"};

// ---- small helpers -------------------------------------------------------------

// A unique suffix, so names stay unique when the suite runs more than once
// in one process (--gtest_repeat) against the shared deployment.
std::string Unique(const std::string& stem) {
  static int counter = 0;
  return stem + std::to_string(++counter);
}

// The time as the server stores it: RFC 3339 UTC with microseconds.
std::string StoredTime(std::time_t t) {
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S.000000Z", &tm);
  return buf;
}

std::string PercentDecode(const std::string& in) {
  std::string out;
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '%' && i + 2 < in.size()) {
      out += static_cast<char>(std::stoi(in.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else {
      out += in[i];
    }
  }
  return out;
}

// The error message of an error response.
std::string Message(const HttpResponse& r) {
  const json::object v = Parse(r);
  if (!v.contains("error") || !v.at("error").is_object()) return "";
  return Field(v.at("error").as_object(), "message");
}

// ---- accounts --------------------------------------------------------------------

HttpResponse Call(std::uint16_t port, const std::string& method, const std::string& target,
                  const std::string& token, const std::string& body = "") {
  Headers headers;
  if (!token.empty()) headers = BearerHeader(token);
  return Fetch(port, method, target, body, headers);
}

HttpResponse Login(std::uint16_t port, const std::string& org, const std::string& username,
                   const std::string& password, const Headers& headers = {}) {
  return Fetch(port, "POST", "/api/v1/auth/login", LoginBody(org, username, password), headers);
}

// A later sign-in: the password, then a code when the account has a factor.
// Returns the new token ("" after a test failure) and sets account.token.
std::string SignInFull(std::uint16_t port, TestAccount& account) {
  auto r = Login(port, account.org, account.username, account.password);
  json::object o = Parse(r);
  if (r.status == 200 && o.contains("mfa_required")) {
    r = Fetch(port, "POST", "/api/v1/auth/mfa",
              Body({{"mfa_token", Field(o, "mfa_token")}, {"code", CodeFor(account)}}));
    o = Parse(r);
  }
  if (r.status != 200 || Field(o, "token").empty()) {
    ADD_FAILURE() << "sign-in of " << account.username << ": " << r.status << " " << r.body;
    return "";
  }
  account.token = Field(o, "token");
  return account.token;
}

// Re-authenticates the account's session: POST /api/v1/auth/reauth with the
// password and, for an account with a factor, a code.
HttpResponse Reauthenticate(std::uint16_t port, TestAccount& account) {
  json::object body{{"password", account.password}};
  if (!account.totp_secret.empty()) body["code"] = CodeFor(account);
  return Call(port, "POST", "/api/v1/auth/reauth", account.token, Body(body));
}

// The id of the session a token belongs to (GET /api/v1/me/sessions).
std::string CurrentSessionId(std::uint16_t port, const std::string& token) {
  const auto r = Call(port, "GET", "/api/v1/me/sessions", token);
  EXPECT_EQ(r.status, 200) << r.body;
  const json::object o = Parse(r);
  if (!o.contains("sessions")) return "";
  for (const auto& s : o.at("sessions").as_array()) {
    if (s.at("current") == json::value(true)) return Field(s.as_object(), "id");
  }
  ADD_FAILURE() << "no current session in " << r.body;
  return "";
}

// Some 6-digit code the server will not accept now: none of the codes of the
// steps around the current one.
std::string WrongCode(const std::string& secret) {
  const std::int64_t now = CurrentTotpStep();
  std::set<std::string> valid;
  for (std::int64_t s = now - 3; s <= now + 3; ++s) valid.insert(TotpForStep(secret, s));
  for (int n = 123456;; n = (n + 111111) % 1'000'000) {
    std::ostringstream code;
    code << std::setw(6) << std::setfill('0') << n;
    if (!valid.count(code.str())) return code.str();
  }
}

// ---- the shared deployment -----------------------------------------------------------

struct Shared {
  std::unique_ptr<Deployment> deployment;
  TestAccount alice;         // owner of clinic-a
  TestAccount bob;           // owner of clinic-b
  SteadyTime alice_checked;  // when alice's session last showed her password
};

class IdentityApiTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    shared_ = new Shared;
    shared_->deployment = std::make_unique<Deployment>(
        std::map<std::string, std::string>{{"CAREWIRE_AUTH_FREE_FAILURES", "1000"}});
    Deployment& d = *shared_->deployment;
    const std::string otp_a = d.AddOrg(kOrgA, kOwnerA);
    const std::string otp_b = d.AddOrg(kOrgB, kOwnerB);
    if (otp_a.empty() || otp_b.empty()) return;
    d.Start();
    shared_->alice = ActivateAccount(d.port(), kOrgA, kOwnerA, otp_a, kPassword);
    shared_->bob = ActivateAccount(d.port(), kOrgB, kOwnerB, otp_b, kPassword);
    shared_->alice_checked = std::chrono::steady_clock::now();
  }

  static void TearDownTestSuite() {
    if (shared_ != nullptr && shared_->deployment) {
      // The deployment's audit chain still verifies after everything the
      // suite did to it (including the tests' direct edits of sessions).
      shared_->deployment->StopAndVerifyAudit();
    }
    delete shared_;
    shared_ = nullptr;
  }

  void SetUp() override {
    ASSERT_NE(shared_, nullptr);
    ASSERT_TRUE(shared_->deployment);
    ASSERT_FALSE(shared_->alice.token.empty()) << "the suite's set-up failed";
    ASSERT_FALSE(shared_->bob.token.empty()) << "the suite's set-up failed";
  }

  static std::uint16_t port() { return shared_->deployment->port(); }
  static fs::path database() { return shared_->deployment->database(); }
  static ServerProcess& server() { return shared_->deployment->server(); }
  static TestAccount& alice() { return shared_->alice; }
  static TestAccount& bob() { return shared_->bob; }

  // Alice's session with a password check recent enough for sensitive
  // actions (5 minutes): re-authenticates when the last one is 4 minutes old.
  static TestAccount& FreshAlice() {
    if (std::chrono::steady_clock::now() - shared_->alice_checked > 4min) {
      const auto r = Reauthenticate(port(), shared_->alice);
      EXPECT_EQ(r.status, 204) << r.body;
      shared_->alice_checked = std::chrono::steady_clock::now();
    }
    return shared_->alice;
  }

  static HttpResponse Get(const std::string& target, const std::string& token) {
    return Call(port(), "GET", target, token);
  }
  static HttpResponse Send(const std::string& method, const std::string& target,
                           const std::string& token, const json::object& body) {
    return Call(port(), method, target, token, Body(body));
  }

  // POST /api/v1/users by `actor`; returns the answer's body (with the
  // one-time password) after checking it is 201.
  static json::object CreateUser(const TestAccount& actor, const std::string& username,
                                 const json::array& roles) {
    const auto r =
        Send("POST", "/api/v1/users", actor.token,
             {{"username", username}, {"display_name", "Staff " + username}, {"roles", roles}});
    EXPECT_EQ(r.status, 201) << username << ": " << r.body;
    return Parse(r);
  }

  // A user of clinic-a created by alice and activated (full session, TOTP).
  static TestAccount NewUser(const std::string& stem, const json::array& roles) {
    const std::string name = Unique(stem);
    const json::object created = CreateUser(alice(), name, roles);
    TestAccount a =
        ActivateAccount(port(), kOrgA, name, Field(created, "one_time_password"), kPassword);
    EXPECT_EQ(a.user_id, Field(created, "id"));
    return a;
  }

  // The audit events of clinic-a matching `query`, newest first (alice reads).
  static std::vector<json::object> Audit(const std::string& query) {
    const auto r = Get("/api/v1/audit?limit=500&" + query, alice().token);
    EXPECT_EQ(r.status, 200) << query << ": " << r.body;
    std::vector<json::object> out;
    const json::object o = Parse(r);
    if (!o.contains("events")) return out;
    for (const auto& e : o.at("events").as_array()) out.push_back(e.as_object());
    return out;
  }

  static std::int64_t Rows(const std::string& table) {
    Sql db(database(), false);
    return db.Count(table);
  }

  static Shared* shared_;
};

Shared* IdentityApiTest::shared_ = nullptr;

// ---- MFA -----------------------------------------------------------------------------

TEST_F(IdentityApiTest, MfaEnrolmentChallengesReplaysAndRecoveryCodes) {
  const std::string name = Unique("mia");
  const json::object created = CreateUser(alice(), name, {"nurse"});
  const std::string otp = Field(created, "one_time_password");
  const std::string user_id = Field(created, "id");
  ASSERT_FALSE(otp.empty());

  // The first sign-in and the forced password change.
  const auto first = Login(port(), kOrgA, name, otp);
  ASSERT_EQ(first.status, 200) << first.body;
  ASSERT_EQ(Send("POST", "/api/v1/me/password", Field(Parse(first), "token"),
                 {{"current_password", otp}, {"new_password", kPassword}})
                .status,
            204);

  // 1. The next sign-in gives a session that may only enrol a second factor.
  const auto enrol = Login(port(), kOrgA, name, kPassword);
  ASSERT_EQ(enrol.status, 200) << enrol.body;
  const json::object enrol_body = Parse(enrol);
  EXPECT_EQ(enrol_body.at("mfa_enrollment_required"), json::value(true)) << enrol.body;
  EXPECT_FALSE(enrol_body.contains("mfa_required")) << enrol.body;
  EXPECT_FALSE(enrol_body.contains("password_change_required")) << enrol.body;
  const std::string token = Field(enrol_body, "token");
  ASSERT_TRUE(std::regex_match(token, std::regex("cwt_[0-9a-f]{64}"))) << enrol.body;

  // 2. It reaches only the two TOTP routes, POST /me/password and logout.
  struct Refused {
    const char* method;
    const char* target;
    std::string body;
  };
  for (const Refused& x : std::vector<Refused>{
           {"GET", "/api/v1/me", ""},
           {"GET", "/api/v1/me/sessions", ""},
           {"DELETE", "/api/v1/me/sessions", ""},
           {"GET", "/api/v1/org", ""},
           {"GET", "/api/v1/users", ""},
           {"GET", "/api/v1/roles", ""},
           {"GET", "/api/v1/audit", ""},
           {"GET", "/api/v1/alerts", ""},
           {"POST", "/api/v1/auth/reauth", Body({{"password", kPassword}})},
           {"POST", "/api/v1/break-glass", Body({{"reason", "a patient needs it now"}})},
           {"POST", "/api/v1/users", Body({{"username", "x"}, {"roles", {"nurse"}}})},
       }) {
    EXPECT_TRUE(IsError(Call(port(), x.method, x.target, token, x.body), 403, "forbidden"))
        << x.method << " " << x.target;
  }
  // The allowed routes answer for themselves (not 403): a body the password
  // route refuses, a confirmation before any enrolment started.
  EXPECT_TRUE(IsError(Send("POST", "/api/v1/me/password", token, {}), 400, "bad_request"));
  EXPECT_TRUE(IsError(Send("POST", "/api/v1/me/mfa/totp/confirm", token, {{"code", "123456"}}), 409,
                      "conflict"));
  {
    // Logout, with a second enrolment-only session.
    const auto other = Login(port(), kOrgA, name, kPassword);
    const std::string other_token = Field(Parse(other), "token");
    ASSERT_FALSE(other_token.empty()) << other.body;
    EXPECT_EQ(Call(port(), "POST", "/api/v1/auth/logout", other_token).status, 204);
    EXPECT_TRUE(IsError(Send("POST", "/api/v1/me/mfa/totp", other_token, {{"password", kPassword}}),
                        401, "unauthenticated"));
  }

  // 3. Enrolment: the password again, then secret, URI and QR code.
  EXPECT_TRUE(IsError(Send("POST", "/api/v1/me/mfa/totp", token, {{"password", "not-it-at-all"}}),
                      401, "unauthenticated"));
  const auto started = Send("POST", "/api/v1/me/mfa/totp", token, {{"password", kPassword}});
  ASSERT_EQ(started.status, 200) << started.body;
  const json::object enrolment = Parse(started);
  const std::string secret = Field(enrolment, "secret");
  EXPECT_TRUE(std::regex_match(secret, std::regex("[A-Z2-7]{32}"))) << secret;  // 160 bits
  const std::string uri = Field(enrolment, "otpauth_uri");
  std::smatch m;
  ASSERT_TRUE(std::regex_match(uri, m, std::regex(R"(otpauth://totp/([^?]+)\?(.+))"))) << uri;
  const std::string label = PercentDecode(m[1].str());
  std::map<std::string, std::string> params;
  {
    std::istringstream query(m[2].str());
    std::string pair;
    while (std::getline(query, pair, '&')) {
      const std::size_t eq = pair.find('=');
      ASSERT_NE(eq, std::string::npos) << uri;
      EXPECT_EQ(params.count(pair.substr(0, eq)), 0u) << "repeated parameter in " << uri;
      params[pair.substr(0, eq)] = PercentDecode(pair.substr(eq + 1));
    }
  }
  const std::size_t colon = label.find(':');
  ASSERT_NE(colon, std::string::npos) << label;
  const std::string issuer = label.substr(0, colon);
  EXPECT_NE(issuer.find(kOrgA), std::string::npos) << issuer;
  EXPECT_EQ(label.substr(colon + 1), name);
  EXPECT_EQ(params["issuer"], issuer);
  EXPECT_EQ(params["secret"], secret);
  EXPECT_EQ(params["algorithm"], "SHA1");
  EXPECT_EQ(params["digits"], "6");
  EXPECT_EQ(params["period"], "30");
  const std::string svg = Field(enrolment, "qr_svg");
  EXPECT_TRUE(svg.rfind("<svg", 0) == 0 || svg.rfind("<?xml", 0) == 0) << svg.substr(0, 80);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);

  // 4. A wrong code does not confirm; the session stays enrolment-only.
  EXPECT_TRUE(
      IsError(Send("POST", "/api/v1/me/mfa/totp/confirm", token, {{"code", WrongCode(secret)}}),
              401, "unauthenticated"));
  EXPECT_TRUE(IsError(Get("/api/v1/me", token), 403, "forbidden"));

  // 5. The right one answers ten distinct recovery codes and makes the
  //    session full.
  TestAccount account;
  account.org = kOrgA;
  account.username = name;
  account.password = kPassword;
  account.token = token;
  account.user_id = user_id;
  account.totp_secret = secret;
  const std::string confirm_code = account.NextCode();
  const auto confirmed =
      Send("POST", "/api/v1/me/mfa/totp/confirm", token, {{"code", confirm_code}});
  ASSERT_EQ(confirmed.status, 200) << confirmed.body;
  const json::object codes = Parse(confirmed);
  std::set<std::string> distinct;
  for (const auto& c : codes.at("recovery_codes").as_array()) {
    const std::string code = Str(c);
    EXPECT_TRUE(std::regex_match(code, std::regex("[a-z0-9]{5}-[a-z0-9]{5}"))) << code;
    distinct.insert(code);
    account.recovery_codes.push_back(code);
  }
  EXPECT_EQ(distinct.size(), 10u) << confirmed.body;
  ASSERT_EQ(account.recovery_codes.size(), 10u);
  const auto me = Get("/api/v1/me", token);
  ASSERT_EQ(me.status, 200) << me.body;
  EXPECT_EQ(Parse(me).at("mfa_enabled"), json::value(true));
  EXPECT_EQ(Parse(me).at("permissions"), json::value(kNursePermissions));
  // A second factor cannot be enrolled over the first.
  EXPECT_TRUE(IsError(Send("POST", "/api/v1/me/mfa/totp", token, {{"password", kPassword}}), 409,
                      "conflict"));

  // 6. Later sign-ins answer an MFA challenge, not a session.
  auto challenge = [&]() {
    const auto r = Login(port(), kOrgA, name, kPassword);
    EXPECT_EQ(r.status, 200) << r.body;
    const json::object o = Parse(r);
    EXPECT_EQ(o.size(), 2u) << r.body;
    EXPECT_EQ(o.if_contains("mfa_required") ? *o.if_contains("mfa_required") : json::value(),
              json::value(true))
        << r.body;
    const std::string mfa_token = Field(o, "mfa_token");
    EXPECT_TRUE(std::regex_match(mfa_token, std::regex("cwm_[0-9a-f]{64}"))) << r.body;
    return mfa_token;
  };
  auto answer = [&](const std::string& mfa_token, const std::string& code) {
    return Fetch(port(), "POST", "/api/v1/auth/mfa",
                 Body({{"mfa_token", mfa_token}, {"code", code}}));
  };
  const std::string c1 = challenge();
  // The code that confirmed the enrolment has been used: a replay fails.
  EXPECT_TRUE(IsError(answer(c1, confirm_code), 401, "unauthenticated"));
  // A fresh code on the same challenge opens a full session.
  const std::string code2 = account.NextCode();
  const auto signed_in = answer(c1, code2);
  ASSERT_EQ(signed_in.status, 200) << signed_in.body;
  const json::object signed_in_body = Parse(signed_in);
  const std::string token2 = Field(signed_in_body, "token");
  EXPECT_EQ(Get("/api/v1/me", token2).status, 200);
  EXPECT_FALSE(signed_in_body.contains("mfa_enrollment_required")) << signed_in.body;
  // The challenge is spent, and the code too.
  EXPECT_TRUE(IsError(answer(c1, account.recovery_codes[9]), 401, "unauthenticated"));
  const std::string c2 = challenge();
  EXPECT_TRUE(IsError(answer(c2, code2), 401, "unauthenticated"));

  // 7. A recovery code works once; capitals and a missing hyphen are the same code.
  const std::string c3 = challenge();
  EXPECT_EQ(answer(c3, account.recovery_codes[0]).status, 200);
  const std::string c4 = challenge();
  EXPECT_TRUE(IsError(answer(c4, account.recovery_codes[0]), 401, "unauthenticated"));
  std::string typed = account.recovery_codes[1];
  typed.erase(std::remove(typed.begin(), typed.end(), '-'), typed.end());
  std::transform(typed.begin(), typed.end(), typed.begin(),
                 [](char c) { return static_cast<char>(std::toupper(c)); });
  EXPECT_EQ(answer(c4, typed).status, 200) << typed;

  // 8. Five wrong codes exhaust a challenge: even a good code fails on it
  //    afterwards, and is not spent by that.
  const std::string c5 = challenge();
  for (int i = 0; i < 5; ++i) {
    EXPECT_TRUE(IsError(answer(c5, WrongCode(secret)), 401, "unauthenticated")) << i;
  }
  EXPECT_TRUE(IsError(answer(c5, account.recovery_codes[2]), 401, "unauthenticated"));
  const std::string c6 = challenge();
  EXPECT_EQ(answer(c6, account.recovery_codes[2]).status, 200);
  // An MFA token is not a session token, nor the other way round.
  EXPECT_TRUE(IsError(Get("/api/v1/me", c6), 401, "unauthenticated"));
  EXPECT_TRUE(IsError(answer(token2, account.recovery_codes[3]), 401, "unauthenticated"));

  // 9. The audit trail has each step, and none of the secrets.
  auto count = [&](const std::string& action, const std::string& outcome) {
    const auto events = Audit("target=" + user_id + "&action=" + action);
    return std::count_if(events.begin(), events.end(),
                         [&](const json::object& e) { return Field(e, "outcome") == outcome; });
  };
  EXPECT_EQ(count("mfa.enabled", "success"), 1);
  EXPECT_EQ(count("mfa.enabled", "failure"), 1);  // the wrong confirmation
  // The replayed confirmation code, the replayed sign-in code, the spent
  // recovery code and five wrong codes. Spent or exhausted challenges are
  // refused before any code is checked, and leave no event.
  EXPECT_EQ(count("auth.mfa_failed", "failure"), 8);
  EXPECT_EQ(count("mfa.recovery_code_used", "success"), 3);
  const std::string log = server().Stderr();
  EXPECT_EQ(log.find(secret), std::string::npos);
  for (const std::string& c : account.recovery_codes) {
    EXPECT_EQ(log.find(c), std::string::npos);
  }
}

TEST_F(IdentityApiTest, AnOrganizationWithoutMfaGivesAFullSessionAtOnce) {
  const std::string slug = Unique("nomfa-clinic-");
  const std::string owner_name = Unique("carol");
  const std::string owner_otp = shared_->deployment->AddOrg(slug, owner_name);
  ASSERT_FALSE(owner_otp.empty());
  TestAccount owner = ActivateAccount(port(), slug, owner_name, owner_otp, kPassword);
  ASSERT_FALSE(owner.totp_secret.empty()) << "a new organization requires MFA";

  const auto before = Get("/api/v1/org", owner.token);
  ASSERT_EQ(before.status, 200) << before.body;
  EXPECT_EQ(Parse(before).at("settings").at("mfa_required"), json::value(true));
  const auto patched =
      Send("PATCH", "/api/v1/org", owner.token, {{"settings", {{"mfa_required", false}}}});
  ASSERT_EQ(patched.status, 200) << patched.body;
  EXPECT_EQ(Parse(patched).at("settings").at("mfa_required"), json::value(false));

  const std::string name = Unique("dan");
  const json::object created = CreateUser(owner, name, {"front_desk"});
  const std::string otp = Field(created, "one_time_password");
  const auto first = Login(port(), slug, name, otp);
  ASSERT_EQ(first.status, 200) << first.body;
  EXPECT_EQ(Parse(first).at("password_change_required"), json::value(true));
  ASSERT_EQ(Send("POST", "/api/v1/me/password", Field(Parse(first), "token"),
                 {{"current_password", otp}, {"new_password", kPassword}})
                .status,
            204);
  // The second sign-in is a full session: no enrolment, no challenge.
  const auto second = Login(port(), slug, name, kPassword);
  ASSERT_EQ(second.status, 200) << second.body;
  const json::object body = Parse(second);
  EXPECT_FALSE(body.contains("mfa_enrollment_required")) << second.body;
  EXPECT_FALSE(body.contains("mfa_required")) << second.body;
  EXPECT_FALSE(body.contains("password_change_required")) << second.body;
  const std::string token = Field(body, "token");
  const auto me = Get("/api/v1/me", token);
  ASSERT_EQ(me.status, 200) << me.body;
  const json::object me_body = Parse(me);
  EXPECT_EQ(me_body.at("mfa_enabled"), json::value(false));
  EXPECT_EQ(me_body.at("permissions"), json::value(kFrontDeskPermissions));
  EXPECT_EQ(Get("/api/v1/users", token).status, 200);
  // The sign-in answer describes the same user as GET /api/v1/me.
  ASSERT_TRUE(body.contains("user")) << second.body;
  EXPECT_EQ(body.at("user"), json::value(me_body))
      << "the sign-in answer's user differs from GET /api/v1/me";

  // A user who has a second factor keeps using it.
  const auto owner_login = Login(port(), slug, owner_name, kPassword);
  ASSERT_EQ(owner_login.status, 200) << owner_login.body;
  EXPECT_EQ(Parse(owner_login).at("mfa_required"), json::value(true)) << owner_login.body;
}

// A sign-in with the old password that reached its MFA challenge before a
// password change must not become a session after it: "a password change
// ends every session" would otherwise not hold for a session opened a
// moment later.
TEST_F(IdentityApiTest, AnMfaChallengeDoesNotOutliveAPasswordChange) {
  TestAccount user = NewUser("olga", {"nurse"});
  ASSERT_FALSE(user.token.empty());
  const auto pending = Login(port(), kOrgA, user.username, kPassword);
  const std::string mfa_token = Field(Parse(pending), "mfa_token");
  ASSERT_FALSE(mfa_token.empty()) << pending.body;

  const std::string next = "amber-quarry-sextant-41";
  ASSERT_EQ(Send("POST", "/api/v1/me/password", user.token,
                 {{"current_password", kPassword}, {"new_password", next}})
                .status,
            204);
  EXPECT_TRUE(IsError(Get("/api/v1/me", user.token), 401, "unauthenticated"));

  const auto late = Fetch(port(), "POST", "/api/v1/auth/mfa",
                          Body({{"mfa_token", mfa_token}, {"code", CodeFor(user)}}));
  EXPECT_TRUE(IsError(late, 401, "unauthenticated"))
      << "the old password's challenge opened a session after the password change";
  if (late.status == 200) {
    EXPECT_TRUE(IsError(Get("/api/v1/me", Field(Parse(late), "token")), 401, "unauthenticated"));
  }
  // The new password (and the factor) still sign in.
  user.password = next;
  EXPECT_FALSE(SignInFull(port(), user).empty());
}

// ---- sign-in failures ----------------------------------------------------------------------

// Unknown organization, unknown user and wrong password answer alike: the
// same status, body (but for the request id) and headers (but for
// X-Request-Id and Date), and in about the same time, since each costs the
// same Argon2id verification.
//
// The timing bound is loose on purpose: the medians of five tries of each
// kind (tried in turn, after one untimed round) must differ by less than 50%
// of the smaller. A difference that tells accounts apart is the Argon2id
// work, a factor of 10 or more (about 0.2 s against a few milliseconds),
// while a shared, busy test machine moves single requests by tens of percent.
TEST_F(IdentityApiTest, SignInFailuresAreIndistinguishable) {
  const std::string name = Unique("tim");
  const std::string otp = Field(CreateUser(alice(), name, {"nurse"}), "one_time_password");
  ASSERT_FALSE(otp.empty());
  struct Case {
    const char* what;
    std::string org, username, password;
  };
  const std::vector<Case> cases = {
      {"unknown organization", "no-such-clinic", name, otp},
      {"unknown user", kOrgA, Unique("nobody"), otp},
      {"wrong password", kOrgA, name, "wrong-violet-lantern-77"},
  };
  const auto sessions_before = Rows("sessions");
  const auto failures_before = Audit("action=auth.login_failed").size();  // itself audited
  const auto audit_before = Rows("audit_events");
  std::vector<std::vector<double>> seconds(cases.size());
  std::vector<HttpResponse> answers;
  for (int round = 0; round < 6; ++round) {
    for (std::size_t i = 0; i < cases.size(); ++i) {
      const Case& c = cases[i];
      const auto start = std::chrono::steady_clock::now();
      const auto r = Login(port(), c.org, c.username, c.password);
      const double took =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      EXPECT_TRUE(IsError(r, 401, "unauthenticated")) << c.what;
      if (round == 0) continue;  // warm-up, untimed
      seconds[i].push_back(took);
      answers.push_back(r);
    }
  }
  auto without_request_id = [](const HttpResponse& r) {
    json::object o = Parse(r);
    if (o.contains("error") && o.at("error").is_object())
      o["error"].as_object().erase("request_id");
    return json::serialize(o);
  };
  auto headers = [](const HttpResponse& r) {
    auto h = r.headers;
    h.erase("x-request-id");
    h.erase("date");
    return h;
  };
  for (std::size_t i = 1; i < answers.size(); ++i) {
    const char* what = cases[i % cases.size()].what;
    EXPECT_EQ(answers[i].status, answers[0].status) << what;
    EXPECT_EQ(without_request_id(answers[i]), without_request_id(answers[0])) << what;
    EXPECT_EQ(headers(answers[i]), headers(answers[0])) << what;
  }
  std::vector<double> medians;
  for (std::size_t i = 0; i < cases.size(); ++i) {
    std::vector<double> s = seconds[i];
    std::sort(s.begin(), s.end());
    medians.push_back(s[s.size() / 2]);
    std::cout << "[ timing   ] " << cases[i].what << ": median " << medians.back() << " s\n";
  }
  const double fastest = *std::min_element(medians.begin(), medians.end());
  const double slowest = *std::max_element(medians.begin(), medians.end());
  EXPECT_LT(slowest - fastest, 0.5 * fastest)
      << "medians " << medians[0] << " " << medians[1] << " " << medians[2];

  // Each attempt is one failure event and opens nothing. Failures that
  // name no existing account belong to no organization: clinic-a's log
  // holds the wrong passwords (six rounds) against its user.
  EXPECT_EQ(Rows("sessions"), sessions_before);
  EXPECT_EQ(Rows("audit_events"), audit_before + 18);
  EXPECT_EQ(Audit("action=auth.login_failed").size(), failures_before + 6);
}

// ---- the throttle, on servers of their own ---------------------------------------------------

class ThrottleApiTest : public ::testing::Test {
 protected:
  // A deployment with the throttle set by `env` and one organization,
  // clinic-t, whose owner "olive" still has the one-time password.
  void StartDeployment(std::map<std::string, std::string> env) {
    deployment_ = std::make_unique<Deployment>(std::move(env));
    owner_otp_ = deployment_->AddOrg("clinic-t", "olive");
    ASSERT_FALSE(owner_otp_.empty());
    deployment_->Start();
  }

  std::uint16_t port() const { return deployment_->port(); }

  std::unique_ptr<Deployment> deployment_;
  std::string owner_otp_;
};

TEST_F(ThrottleApiTest, SpoofedAddressesDoNotEscapeTheAccountLimit) {
  // Five failures an hour per account, and no delays before them.
  ASSERT_NO_FATAL_FAILURE(StartDeployment(
      {{"CAREWIRE_AUTH_ACCOUNT_FAILURES_PER_HOUR", "5"}, {"CAREWIRE_AUTH_FREE_FAILURES", "100"}}));
  TestAccount owner = ActivateAccount(port(), "clinic-t", "olive", owner_otp_, kPassword);
  ASSERT_FALSE(owner.token.empty());
  auto create = [&](const std::string& name) {
    const auto r = Call(port(), "POST", "/api/v1/users", owner.token,
                        Body({{"username", name}, {"roles", {"nurse"}}}));
    EXPECT_EQ(r.status, 201) << r.body;
    return Parse(r);
  };
  const json::object victim = create("vic");
  const json::object bystander = create("val");
  const std::string victim_otp = Field(victim, "one_time_password");

  // Each wrong password claims another client address, in every header a
  // proxy might set.
  const std::vector<Headers> spoofs = {
      {{"x-forwarded-for", "203.0.113.1"}},
      {{"forwarded", "for=198.51.100.2;proto=https"}},
      {{"x-real-ip", "192.0.2.3"}},
      {{"x-forwarded-for", "203.0.113.4, 10.0.0.4"}, {"true-client-ip", "203.0.113.44"}},
      {{"x-forwarded-for", "2001:db8::5"},
       {"x-real-ip", "2001:db8::55"},
       {"forwarded", "for=\"[2001:db8::555]\""},
       {"cf-connecting-ip", "198.51.100.5"}},
  };
  for (std::size_t i = 0; i < spoofs.size(); ++i) {
    EXPECT_TRUE(IsError(Login(port(), "clinic-t", "vic", "wrong-violet-lantern-77", spoofs[i]), 401,
                        "unauthenticated"))
        << i;
  }
  // The sixth attempt, with the right password and yet another address, is
  // refused before the password is even checked.
  for (const Headers& spoof :
       {Headers{{"x-forwarded-for", "203.0.113.6"}, {"x-real-ip", "203.0.113.6"}}, Headers{}}) {
    const auto locked = Login(port(), "clinic-t", "vic", victim_otp, spoof);
    EXPECT_TRUE(IsError(locked, 429, "rate_limited")) << locked.body;
    const std::string retry = locked.Header("retry-after");
    ASSERT_TRUE(std::regex_match(retry, std::regex("[0-9]+"))) << "Retry-After: " << retry;
    EXPECT_GE(std::stoll(retry), 1);
    EXPECT_LE(std::stoll(retry), 3600);
  }

  // The lockout is audited against the account, from the real peer address.
  const auto page = Call(port(), "GET", "/api/v1/audit?action=auth.locked_out", owner.token);
  ASSERT_EQ(page.status, 200) << page.body;
  const json::object page_body = Parse(page);
  const json::array& events = page_body.at("events").as_array();
  ASSERT_EQ(events.size(), 1u) << page.body;
  EXPECT_EQ(Field(events[0].as_object(), "target_id"), Field(victim, "id"));
  EXPECT_EQ(Field(events[0].as_object(), "source_address"), "127.0.0.1");
  const auto failed =
      Call(port(), "GET", "/api/v1/audit?action=auth.login_failed&target=" + Field(victim, "id"),
           owner.token);
  ASSERT_EQ(failed.status, 200);
  EXPECT_EQ(Parse(failed).at("events").as_array().size(), 5u) << failed.body;
  const json::object failed_body = Parse(failed);
  for (const auto& e : failed_body.at("events").as_array()) {
    EXPECT_EQ(Field(e.as_object(), "source_address"), "127.0.0.1");
  }

  // Another account is unaffected.
  const auto other = Login(port(), "clinic-t", "val", Field(bystander, "one_time_password"));
  EXPECT_EQ(other.status, 200) << other.body;
}

TEST_F(ThrottleApiTest, DelaysGrowAfterTheFreeFailures) {
  // Two free failures; the first failure beyond them delays the next
  // attempt by 2 s, and each further one doubles it (docs/configuration.md:
  // auth.free_failures, auth.first_delay_ms).
  ASSERT_NO_FATAL_FAILURE(StartDeployment(
      {{"CAREWIRE_AUTH_FREE_FAILURES", "2"}, {"CAREWIRE_AUTH_FIRST_DELAY_MS", "2000"}}));
  auto wrong = [&] { return Login(port(), "clinic-t", "olive", "wrong-violet-lantern-77"); };
  EXPECT_TRUE(IsError(wrong(), 401, "unauthenticated"));
  EXPECT_TRUE(IsError(wrong(), 401, "unauthenticated"));
  EXPECT_TRUE(IsError(wrong(), 401, "unauthenticated"));  // the first that is not free
  // The fourth attempt, right after, is delayed: 429 with Retry-After.
  HttpResponse third = wrong();
  EXPECT_TRUE(IsError(third, 429, "rate_limited"))
      << "the attempt after the first failure beyond the free ones was not delayed";
  // Whenever the first delay comes, it is whole seconds, at least 1.
  HttpResponse refused = third;
  for (int extra = 0; refused.status != 429 && extra < 3; ++extra) refused = wrong();
  ASSERT_EQ(refused.status, 429) << refused.body;
  const std::string first_wait = refused.Header("retry-after");
  ASSERT_TRUE(std::regex_match(first_wait, std::regex("[0-9]+"))) << first_wait;
  EXPECT_GE(std::stoll(first_wait), 1);
  EXPECT_LE(std::stoll(first_wait), 2);
  // While it lasts even the right password is refused, unchecked.
  EXPECT_TRUE(IsError(Login(port(), "clinic-t", "olive", owner_otp_), 429, "rate_limited"));

  // After the wait, one more failure doubles it.
  std::this_thread::sleep_for(std::chrono::seconds(std::stoll(first_wait)) + 100ms);
  EXPECT_TRUE(IsError(wrong(), 401, "unauthenticated"));
  const auto again = wrong();
  ASSERT_TRUE(IsError(again, 429, "rate_limited"));
  const std::string second_wait = again.Header("retry-after");
  ASSERT_TRUE(std::regex_match(second_wait, std::regex("[0-9]+"))) << second_wait;
  EXPECT_GT(std::stoll(second_wait), std::stoll(first_wait));
  EXPECT_LE(std::stoll(second_wait), 4);

  // Once the delay has passed, the right password signs in.
  std::this_thread::sleep_for(std::chrono::seconds(std::stoll(second_wait)) + 100ms);
  EXPECT_EQ(Login(port(), "clinic-t", "olive", owner_otp_).status, 200);
}

// ---- users ---------------------------------------------------------------------------

// The scenario the API describes for an administrator: an admin (users.manage)
// creates clinical staff, changes a nurse's roles after re-authenticating
// and deactivates them.
TEST_F(IdentityApiTest, AnAdminManagesClinicalStaff) {
  TestAccount nurse = NewUser("nina", {"nurse"});
  TestAccount admin = NewUser("adam", {"admin"});
  ASSERT_FALSE(nurse.token.empty());
  ASSERT_FALSE(admin.token.empty());

  // The nurse may not manage staff nor read the audit log.
  const auto users_before = Rows("users");
  const auto create_refused =
      Send("POST", "/api/v1/users", nurse.token, {{"username", Unique("x")}, {"roles", {"nurse"}}});
  EXPECT_TRUE(IsError(create_refused, 403, "forbidden"));
  const auto audit_refused = Get("/api/v1/audit", nurse.token);
  EXPECT_TRUE(IsError(audit_refused, 403, "forbidden"));
  EXPECT_EQ(Get("/api/v1/users", nurse.token).status, 200);  // users.read
  // Both refusals are on record, against their routes.
  for (const auto& refusal : std::vector<std::pair<HttpResponse, std::string>>{
           {create_refused, "POST /api/v1/users"}, {audit_refused, "GET /api/v1/audit"}}) {
    const std::string request_id = refusal.first.Header("x-request-id");
    std::vector<json::object> events;
    EXPECT_TRUE(Eventually([&] {
      events = Audit("action=access.denied&actor=" + nurse.user_id);
      return std::any_of(events.begin(), events.end(), [&](const json::object& e) {
        return Field(e, "request_id") == request_id;
      });
    })) << refusal.second;
    for (const auto& e : events) {
      if (Field(e, "request_id") != request_id) continue;
      EXPECT_EQ(Field(e, "target_id"), refusal.second);
      EXPECT_EQ(Field(e, "outcome"), "denied");
    }
  }

  // An admin cannot create an owner (more than they hold).
  EXPECT_TRUE(IsError(Send("POST", "/api/v1/users", admin.token,
                           {{"username", Unique("boss")}, {"roles", {"owner"}}}),
                      403, "forbidden"));
  EXPECT_EQ(Rows("users"), users_before);
  // An admin creates a nurse.
  const auto created = Send("POST", "/api/v1/users", admin.token,
                            {{"username", Unique("nora")}, {"roles", {"nurse"}}});
  EXPECT_EQ(created.status, 201) << "an admin cannot create a nurse: " << created.body;

  // Changing roles needs a password check within 5 minutes: age the
  // admin's (as if signed in an hour ago) and the change is refused.
  const std::string session = CurrentSessionId(port(), admin.token);
  {
    Sql db(database(), true);
    db.Column("UPDATE sessions SET reauthenticated_at = ? WHERE id = ?",
              {StoredTime(std::time(nullptr) - 3600), session});
  }
  const json::object change{{"roles", {"nurse", "front_desk"}}};
  EXPECT_TRUE(IsError(Send("PATCH", "/api/v1/users/" + nurse.user_id, admin.token, change), 401,
                      "reauth_required"));
  ASSERT_EQ(Reauthenticate(port(), admin).status, 204);
  const auto patched = Send("PATCH", "/api/v1/users/" + nurse.user_id, admin.token, change);
  EXPECT_EQ(patched.status, 200) << "an admin cannot change a nurse's roles: " << patched.body;

  // Deactivation ends the nurse's access at once and is audited with the
  // admin as actor.
  const auto deactivated =
      Send("PATCH", "/api/v1/users/" + nurse.user_id, admin.token, {{"status", "deactivated"}});
  EXPECT_EQ(deactivated.status, 200) << "an admin cannot deactivate a nurse: " << deactivated.body;
  if (deactivated.status == 200) {
    EXPECT_TRUE(IsError(Get("/api/v1/me", nurse.token), 401, "unauthenticated"));
    const auto events = Audit("action=user.deactivated&target=" + nurse.user_id);
    ASSERT_EQ(events.size(), 1u);
    EXPECT_EQ(Field(events[0], "actor_id"), admin.user_id);
  }
}

// Re-authentication, role changes, deactivation and other organizations'
// ids, with an owner as the actor.
TEST_F(IdentityApiTest, RoleChangesNeedReauthAndDeactivationEndsAccessAtOnce) {
  TestAccount nurse = NewUser("nils", {"nurse"});
  // A second owner of clinic-a, so alice's own session is left alone.
  TestAccount owner = NewUser("omar", {"owner"});
  ASSERT_FALSE(nurse.token.empty());
  ASSERT_FALSE(owner.token.empty());

  const std::string session = CurrentSessionId(port(), owner.token);
  {
    Sql db(database(), true);
    db.Column("UPDATE sessions SET reauthenticated_at = ? WHERE id = ?",
              {StoredTime(std::time(nullptr) - 3600), session});
  }
  const std::string target = "/api/v1/users/" + nurse.user_id;
  const json::object change{{"roles", {"nurse", "front_desk"}}};
  const auto stale = Send("PATCH", target, owner.token, change);
  EXPECT_TRUE(IsError(stale, 401, "reauth_required"));
  // Nothing changed.
  EXPECT_EQ(Parse(Get(target, owner.token)).at("roles"), json::parse(R"(["nurse"])"));
  // A wrong password or code does not re-authenticate.
  EXPECT_TRUE(IsError(Send("POST", "/api/v1/auth/reauth", owner.token,
                           {{"password", "not-the-password-9"}, {"code", CodeFor(owner)}}),
                      401, "unauthenticated"));
  EXPECT_TRUE(IsError(Send("POST", "/api/v1/auth/reauth", owner.token,
                           {{"password", kPassword}, {"code", WrongCode(owner.totp_secret)}}),
                      401, "unauthenticated"));
  EXPECT_TRUE(IsError(Send("PATCH", target, owner.token, change), 401, "reauth_required"));
  // The password and a code do.
  const auto reauth = Reauthenticate(port(), owner);
  ASSERT_EQ(reauth.status, 204) << reauth.body;
  EXPECT_TRUE(reauth.body.empty());
  const auto patched = Send("PATCH", target, owner.token, change);
  ASSERT_EQ(patched.status, 200) << patched.body;
  EXPECT_EQ(Parse(patched).at("roles"), json::parse(R"(["nurse","front_desk"])"));
  // The nurse's permissions follow from the next request on.
  EXPECT_EQ(Parse(Get("/api/v1/me", nurse.token)).at("roles"),
            json::parse(R"(["nurse","front_desk"])"));

  // No one changes their own roles or status.
  EXPECT_TRUE(IsError(
      Send("PATCH", "/api/v1/users/" + owner.user_id, owner.token, {{"status", "deactivated"}}),
      403, "forbidden"));

  // Deactivation: the nurse's token is dead at once, the record says so,
  // and the audit log names the actor.
  const auto deactivated = Send("PATCH", target, owner.token, {{"status", "deactivated"}});
  ASSERT_EQ(deactivated.status, 200) << deactivated.body;
  EXPECT_EQ(Field(Parse(deactivated), "status"), "deactivated");
  EXPECT_TRUE(IsError(Get("/api/v1/me", nurse.token), 401, "unauthenticated"));
  EXPECT_TRUE(IsError(Login(port(), kOrgA, nurse.username, kPassword), 401, "unauthenticated"));
  const auto events = Audit("action=user.deactivated&target=" + nurse.user_id);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(Field(events[0], "actor_id"), owner.user_id);
  EXPECT_EQ(Field(events[0], "outcome"), "success");
  const auto roles_changed = Audit("action=user.roles_changed&target=" + nurse.user_id);
  ASSERT_EQ(roles_changed.size(), 1u);
  EXPECT_EQ(roles_changed[0].at("details"),
            json::parse(R"({"from":["nurse"],"to":["nurse","front_desk"]})"));

  // Another organization's user is not found, like a made-up id; nothing
  // tells the two apart.
  for (const std::string& id : {bob().user_id, std::string("usr_000000000000000000000000")}) {
    const auto get = Get("/api/v1/users/" + id, owner.token);
    EXPECT_TRUE(IsError(get, 404, "not_found")) << id;
    EXPECT_TRUE(
        IsError(Send("PATCH", "/api/v1/users/" + id, owner.token, {{"status", "deactivated"}}), 404,
                "not_found"))
        << id;
    EXPECT_TRUE(
        IsError(Send("PATCH", "/api/v1/users/" + id, owner.token, change), 404, "not_found"))
        << id;
    EXPECT_EQ(Message(get), "not found");
  }
  EXPECT_EQ(Get("/api/v1/me", bob().token).status, 200) << "bob was touched";
}

// ---- live sockets ------------------------------------------------------------------------

TEST_F(IdentityApiTest, LogoutEverywhereAndDeactivationCloseTheLiveSocket) {
  TestAccount nurse = NewUser("wendy", {"nurse"});
  ASSERT_FALSE(nurse.token.empty());

  // How long a socket takes to close after `end` runs: 4401 within 5 s.
  auto closes_after = [&](const std::string& token, const std::function<void()>& end) {
    WebSocketClient ws(port(), "/api/v1/events");
    ws.SendText(Body({{"type", "auth"}, {"token", token}}));
    const auto ready = ws.ReadText();
    ASSERT_TRUE(ready.has_value());
    EXPECT_EQ(Field(json::parse(*ready).as_object(), "type"), "ready") << *ready;
    const auto start = std::chrono::steady_clock::now();
    end();
    const auto frame = ws.ReadText();  // the client's own timeout is 10 s
    const double took =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_FALSE(frame.has_value()) << *frame;
    EXPECT_EQ(ws.close_code(), 4401);
    EXPECT_LT(took, 5.0) << "the socket closed after " << took << " s";
    std::cout << "[ timing   ] socket closed after " << took << " s\n";
  };

  closes_after(nurse.token, [&] {
    EXPECT_EQ(Call(port(), "DELETE", "/api/v1/me/sessions", nurse.token).status, 204);
  });
  const std::string token = SignInFull(port(), nurse);
  ASSERT_FALSE(token.empty());
  closes_after(token, [&] {
    const auto r =
        Send("PATCH", "/api/v1/users/" + nurse.user_id, alice().token, {{"status", "deactivated"}});
    EXPECT_EQ(r.status, 200) << r.body;
  });
  // A dead token cannot open a stream.
  WebSocketClient ws(port(), "/api/v1/events");
  ws.SendText(Body({{"type", "auth"}, {"token", token}}));
  EXPECT_FALSE(ws.ReadText().has_value());
  EXPECT_EQ(ws.close_code(), 4401);
}

// ---- sessions --------------------------------------------------------------------------------

TEST_F(IdentityApiTest, SessionsAreListedAndRevoked) {
  TestAccount nurse = NewUser("sam", {"nurse"});
  TestAccount admin = NewUser("ada", {"admin"});
  ASSERT_FALSE(nurse.token.empty());
  ASSERT_FALSE(admin.token.empty());
  const std::string t1 = nurse.token;
  const std::string t2 = SignInFull(port(), nurse);
  ASSERT_FALSE(t2.empty());

  // The list shows both, the asking one as current.
  const auto listed = Get("/api/v1/me/sessions", t2);
  ASSERT_EQ(listed.status, 200) << listed.body;
  std::string id1, id2;
  const json::object listed_body = Parse(listed);
  for (const auto& s : listed_body.at("sessions").as_array()) {
    const json::object& o = s.as_object();
    EXPECT_EQ(Field(o, "scope"), "full");
    EXPECT_EQ(Field(o, "source_address"), "127.0.0.1");
    EXPECT_NO_THROW(ParseUtc(Field(o, "created_at")));
    EXPECT_NO_THROW(ParseUtc(Field(o, "expires_at")));
    if (o.at("current") == json::value(true)) {
      EXPECT_TRUE(id2.empty()) << "two current sessions";
      id2 = Field(o, "id");
    } else {
      id1 = Field(o, "id");
    }
  }
  ASSERT_EQ(Parse(listed).at("sessions").as_array().size(), 2u) << listed.body;
  ASSERT_FALSE(id1.empty());
  ASSERT_FALSE(id2.empty());
  EXPECT_EQ(CurrentSessionId(port(), t1), id1);

  // Revoking one's other session kills that token only.
  EXPECT_EQ(Call(port(), "DELETE", "/api/v1/me/sessions/" + id1, t2).status, 204);
  EXPECT_TRUE(IsError(Get("/api/v1/me", t1), 401, "unauthenticated"));
  EXPECT_EQ(Get("/api/v1/me", t2).status, 200);
  // That route reaches only one's own sessions.
  const std::string admin_session = CurrentSessionId(port(), admin.token);
  EXPECT_TRUE(IsError(Call(port(), "DELETE", "/api/v1/me/sessions/" + admin_session, t2), 404,
                      "not_found"));
  EXPECT_TRUE(IsError(Call(port(), "DELETE", "/api/v1/me/sessions/" + admin_session, alice().token),
                      404, "not_found"))
      << "even for someone who may revoke others' sessions";
  EXPECT_EQ(Get("/api/v1/me", admin.token).status, 200);

  // Signing out everywhere ends them all.
  const std::string t3 = SignInFull(port(), nurse);
  ASSERT_FALSE(t3.empty());
  EXPECT_EQ(Call(port(), "DELETE", "/api/v1/me/sessions", t2).status, 204);
  EXPECT_TRUE(IsError(Get("/api/v1/me", t2), 401, "unauthenticated"));
  EXPECT_TRUE(IsError(Get("/api/v1/me", t3), 401, "unauthenticated"));

  // An admin (sessions.manage) sees and revokes the nurse's sessions.
  const std::string t4 = SignInFull(port(), nurse);
  ASSERT_FALSE(t4.empty());
  const auto theirs = Get("/api/v1/users/" + nurse.user_id + "/sessions", admin.token);
  ASSERT_EQ(theirs.status, 200) << theirs.body;
  const json::object theirs_body = Parse(theirs);
  const json::array& their_list = theirs_body.at("sessions").as_array();
  ASSERT_EQ(their_list.size(), 1u) << theirs.body;
  EXPECT_EQ(their_list[0].at("current"), json::value(false));
  const std::string id4 = Field(their_list[0].as_object(), "id");
  EXPECT_EQ(Call(port(), "DELETE", "/api/v1/sessions/" + id4, admin.token).status, 204);
  EXPECT_TRUE(IsError(Get("/api/v1/me", t4), 401, "unauthenticated"));
  const auto revoked = Audit("action=session.revoked&target=" + nurse.user_id);
  EXPECT_TRUE(std::any_of(revoked.begin(), revoked.end(), [&](const json::object& e) {
    return Field(e, "actor_id") == admin.user_id;
  }));

  // A nurse may do neither to others.
  const std::string t5 = SignInFull(port(), nurse);
  ASSERT_FALSE(t5.empty());
  EXPECT_TRUE(IsError(Get("/api/v1/users/" + admin.user_id + "/sessions", t5), 403, "forbidden"));
  EXPECT_TRUE(
      IsError(Call(port(), "DELETE", "/api/v1/sessions/" + admin_session, t5), 403, "forbidden"));
  EXPECT_EQ(Get("/api/v1/me", admin.token).status, 200);

  // Another organization's user and sessions are not found.
  const std::string bob_session = CurrentSessionId(port(), bob().token);
  EXPECT_TRUE(
      IsError(Get("/api/v1/users/" + bob().user_id + "/sessions", admin.token), 404, "not_found"));
  EXPECT_TRUE(IsError(Call(port(), "DELETE", "/api/v1/sessions/" + bob_session, admin.token), 404,
                      "not_found"));
  EXPECT_TRUE(
      IsError(Call(port(), "DELETE", "/api/v1/sessions/ses_000000000000000000000000", admin.token),
              404, "not_found"));
  EXPECT_EQ(Get("/api/v1/me", bob().token).status, 200);
}

// ---- organization settings --------------------------------------------------------------------

// The audit export through the API: the caller's organization only, as
// JSON lines or CSV, recorded as audit.exported before it goes out.
TEST_F(IdentityApiTest, TheAuditExportHoldsOnlyTheOrganizationsEventsAndIsRecorded) {
  TestAccount& owner = FreshAlice();
  const std::string window = "from=2000-01-01&to=2100-01-01";
  const auto before = Audit("action=audit.exported").size();
  const auto lines = Get("/api/v1/audit/export?format=jsonl&" + window, owner.token);
  ASSERT_EQ(lines.status, 200) << lines.body;
  EXPECT_EQ(lines.Header("content-type"), "application/x-ndjson");
  EXPECT_NE(lines.Header("content-disposition").find("attachment"), std::string::npos);
  std::istringstream in(lines.body);
  std::string line;
  std::set<std::string> orgs;
  int events = 0;
  while (std::getline(in, line)) {
    const json::object e = json::parse(line).as_object();
    orgs.insert(e.at("org_id").is_string() ? std::string(e.at("org_id").as_string()) : "");
    ++events;
  }
  EXPECT_GT(events, 5);
  EXPECT_EQ(orgs.size(), 1u) << "events of more than one organization";
  EXPECT_EQ(lines.body.find(kOrgB), std::string::npos);
  EXPECT_EQ(lines.body.find(bob().user_id), std::string::npos);
  EXPECT_EQ(Audit("action=audit.exported").size(), before + 1);

  const auto csv = Get("/api/v1/audit/export?format=csv&" + window, owner.token);
  ASSERT_EQ(csv.status, 200) << csv.body;
  EXPECT_EQ(csv.body.rfind("seq,occurred_at,org_id,", 0), 0u) << csv.body.substr(0, 80);

  for (const std::string& bad :
       {std::string("format=xml&") + window, std::string("format=jsonl"),
        std::string("format=jsonl&from=yesterday&to=2100-01-01"), "format=jsonl&" + window + "&x=1"}) {
    EXPECT_TRUE(IsError(Get("/api/v1/audit/export?" + bad, owner.token), 400, "bad_request"))
        << bad;
  }
  EXPECT_EQ(Audit("action=audit.exported").size(), before + 2);
}

TEST_F(IdentityApiTest, OrgSettingsAreValidatedAndAudited) {
  TestAccount& owner = FreshAlice();
  const auto got = Get("/api/v1/org", owner.token);
  ASSERT_EQ(got.status, 200) << got.body;
  const json::object org = Parse(got);
  EXPECT_EQ(Field(org, "slug"), kOrgA);
  EXPECT_FALSE(Field(org, "id").empty());
  EXPECT_FALSE(Field(org, "name").empty());
  const json::object settings = org.at("settings").as_object();
  for (const char* key : {"mfa_required", "idle_timeout_minutes", "absolute_timeout_hours",
                          "message_lifespan_days", "dormant_after_days", "break_glass_minutes"}) {
    EXPECT_TRUE(settings.contains(key)) << key << " in " << got.body;
  }
  EXPECT_EQ(settings.at("mfa_required"), json::value(true));
  const std::string org_id = Field(org, "id");
  const auto changes_before = Audit("action=org.settings_changed").size();

  // Out of range: 400 naming the field.
  struct Bad {
    const char* field;
    json::value value;
  };
  for (const Bad& b : std::vector<Bad>{{"idle_timeout_minutes", 0},
                                       {"idle_timeout_minutes", 241},
                                       {"idle_timeout_minutes", -15},
                                       {"absolute_timeout_hours", 0},
                                       {"absolute_timeout_hours", 73},
                                       {"message_lifespan_days", 0},
                                       {"message_lifespan_days", 36501},
                                       {"dormant_after_days", -1},
                                       {"dormant_after_days", 3651},
                                       {"break_glass_minutes", 4},
                                       {"break_glass_minutes", 481}}) {
    const auto r = Send("PATCH", "/api/v1/org", owner.token, {{"settings", {{b.field, b.value}}}});
    EXPECT_TRUE(IsError(r, 400, "bad_request")) << b.field << " " << json::serialize(b.value);
    EXPECT_NE(Message(r).find(b.field), std::string::npos) << r.body;
  }
  // A valid value beside an invalid one changes nothing either.
  EXPECT_TRUE(
      IsError(Send("PATCH", "/api/v1/org", owner.token,
                   {{"settings", {{"dormant_after_days", 120}, {"idle_timeout_minutes", 0}}}}),
              400, "bad_request"));
  // Unknown settings and shapes.
  for (const json::object& body :
       {json::object{{"settings", {{"colour", "blue"}}}},
        json::object{{"settings", {{"mfa_required", true}, {"colour", "blue"}}}},
        json::object{{"settings", json::object{}}}, json::object{{"mfa_required", false}},
        json::object{{"settings", {{"mfa_required", true}}}, {"name", "Renamed"}}}) {
    EXPECT_TRUE(IsError(Send("PATCH", "/api/v1/org", owner.token, body), 400, "bad_request"))
        << json::serialize(body);
  }
  EXPECT_EQ(Get("/api/v1/org", owner.token).body, got.body) << "a refused change changed it";
  EXPECT_EQ(Audit("action=org.settings_changed").size(), changes_before);

  // A valid change answers the new settings and is audited with from and to.
  const auto changed =
      Send("PATCH", "/api/v1/org", owner.token,
           {{"settings", {{"message_lifespan_days", 30}, {"dormant_after_days", 120}}}});
  ASSERT_EQ(changed.status, 200) << changed.body;
  EXPECT_EQ(Parse(changed).at("settings").at("message_lifespan_days"), json::value(30));
  EXPECT_EQ(Parse(changed).at("settings").at("dormant_after_days"), json::value(120));
  EXPECT_EQ(Parse(Get("/api/v1/org", owner.token)).at("settings"), Parse(changed).at("settings"));
  const auto events = Audit("action=org.settings_changed");
  ASSERT_EQ(events.size(), changes_before + 1);
  EXPECT_EQ(Field(events[0], "actor_id"), owner.user_id);
  EXPECT_EQ(Field(events[0], "target_id"), org_id);
  EXPECT_EQ(Field(events[0], "request_id"), changed.Header("x-request-id"));
  EXPECT_EQ(events[0].at("details"),
            json::parse(R"({"message_lifespan_days":{"from":)" +
                        json::serialize(settings.at("message_lifespan_days")) +
                        R"(,"to":30},"dormant_after_days":{"from":)" +
                        json::serialize(settings.at("dormant_after_days")) + R"(,"to":120}})"));
  // The same values again change nothing and add no event.
  EXPECT_EQ(
      Send("PATCH", "/api/v1/org", owner.token, {{"settings", {{"message_lifespan_days", 30}}}})
          .status,
      200);
  EXPECT_EQ(Audit("action=org.settings_changed").size(), changes_before + 1);

  // A stale re-authentication refuses the change.
  {
    Sql db(database(), true);
    db.Column("UPDATE sessions SET reauthenticated_at = ? WHERE id = ?",
              {StoredTime(std::time(nullptr) - 3600), CurrentSessionId(port(), owner.token)});
  }
  EXPECT_TRUE(IsError(
      Send("PATCH", "/api/v1/org", owner.token, {{"settings", {{"message_lifespan_days", 31}}}}),
      401, "reauth_required"));
  shared_->alice_checked = SteadyTime{};  // FreshAlice re-authenticates next time
  TestAccount& fresh = FreshAlice();

  // Back as it was (null: messages are kept).
  const auto restored = Send("PATCH", "/api/v1/org", fresh.token,
                             {{"settings",
                               {{"message_lifespan_days", settings.at("message_lifespan_days")},
                                {"dormant_after_days", settings.at("dormant_after_days")}}}});
  ASSERT_EQ(restored.status, 200) << restored.body;
  EXPECT_EQ(Parse(restored).at("settings"), json::value(settings));
}

// ---- custom roles -------------------------------------------------------------------------------

TEST_F(IdentityApiTest, CustomRolesGrantExactlyTheirPermissions) {
  TestAccount& owner = FreshAlice();
  const std::string role = Unique("scheduler");
  const std::string path = "/api/v1/roles/" + role;
  const auto put = Send("PUT", path, owner.token,
                        {{"description", "front office scheduling"},
                         {"permissions", {"users.read", "messages.read"}}});
  ASSERT_EQ(put.status, 200) << put.body;
  EXPECT_EQ(Field(Parse(put), "name"), role);
  EXPECT_EQ(Parse(put).at("built_in"), json::value(false));
  EXPECT_EQ(Parse(put).at("permissions"), json::parse(R"(["messages.read","users.read"])"));
  const auto listed = Get("/api/v1/roles", owner.token);
  ASSERT_EQ(listed.status, 200);
  EXPECT_NE(listed.body.find("\"" + role + "\""), std::string::npos);

  // A user holding it has exactly those permissions.
  TestAccount user = NewUser("rosa", {role});
  ASSERT_FALSE(user.token.empty());
  const auto me = Get("/api/v1/me", user.token);
  ASSERT_EQ(me.status, 200) << me.body;
  EXPECT_EQ(Parse(me).at("roles"), json::value(json::array{role.c_str()}));
  EXPECT_EQ(Parse(me).at("permissions"), json::parse(R"(["messages.read","users.read"])"));
  EXPECT_EQ(Get("/api/v1/users", user.token).status, 200);
  EXPECT_TRUE(IsError(Get("/api/v1/audit", user.token), 403, "forbidden"));
  EXPECT_TRUE(IsError(
      Send("POST", "/api/v1/break-glass", user.token, {{"reason", "a patient needs it now"}}), 403,
      "forbidden"));

  // It cannot be removed while held.
  EXPECT_TRUE(IsError(Call(port(), "DELETE", path, owner.token), 409, "conflict"));
  // Redefining it applies at once.
  ASSERT_EQ(Send("PUT", path, owner.token,
                 {{"permissions", {"users.read", "messages.read", "messages.send"}}})
                .status,
            200);
  EXPECT_EQ(Parse(Get("/api/v1/me", user.token)).at("permissions"),
            json::parse(R"(["messages.send","messages.read","users.read"])"));
  // Once no one holds it, it goes.
  ASSERT_EQ(
      Send("PATCH", "/api/v1/users/" + user.user_id, owner.token, {{"roles", {"billing"}}}).status,
      200);
  EXPECT_EQ(Call(port(), "DELETE", path, owner.token).status, 204);
  EXPECT_EQ(Get("/api/v1/roles", owner.token).body.find("\"" + role + "\""), std::string::npos);
  EXPECT_TRUE(IsError(Call(port(), "DELETE", path, owner.token), 404, "not_found"));
  const auto defined = Audit("action=role.defined&target=" + role);
  EXPECT_EQ(defined.size(), 2u);
  EXPECT_EQ(Audit("action=role.deleted&target=" + role).size(), 1u);
  // Built-in roles cannot be redefined.
  EXPECT_TRUE(
      IsError(Send("PUT", "/api/v1/roles/nurse", owner.token, {{"permissions", {"messages.read"}}}),
              400, "bad_request"));
}

// ---- break-glass ------------------------------------------------------------------------------

TEST_F(IdentityApiTest, BreakGlassIsAlertedAndItsReasonSealed) {
  // The privacy officer must exist when the access opens: that is when the
  // alerts go out.
  TestAccount officer = NewUser("pat", {"privacy_officer"});
  TestAccount nurse = NewUser("bree", {"nurse"});
  TestAccount desk = NewUser("fran", {"front_desk"});
  ASSERT_FALSE(officer.token.empty());
  ASSERT_FALSE(nurse.token.empty());
  ASSERT_FALSE(desk.token.empty());
  const std::string reason =
      "CANARY-" + Unique("breakglass") + " Jane Roe unresponsive in bay 4, chart needed now";

  const std::time_t now = std::time(nullptr);
  const auto opened = Send("POST", "/api/v1/break-glass", nurse.token, {{"reason", reason}});
  ASSERT_EQ(opened.status, 201) << opened.body;
  const json::object grant = Parse(opened);
  const std::string grant_id = Field(grant, "id");
  EXPECT_FALSE(grant_id.empty());
  EXPECT_EQ(Field(grant, "user_id"), nurse.user_id);
  EXPECT_TRUE(grant.at("ended_at").is_null());
  const std::time_t expires = ParseUtc(Field(grant, "expires_at"));
  EXPECT_NEAR(static_cast<double>(expires - now), 3600.0, 120.0) << Field(grant, "expires_at");
  EXPECT_EQ(opened.body.find(reason), std::string::npos) << "the reason was echoed";
  EXPECT_TRUE(IsError(Send("POST", "/api/v1/break-glass", nurse.token, {{"reason", reason}}), 409,
                      "conflict"));

  const auto me = Get("/api/v1/me", nurse.token);
  ASSERT_EQ(me.status, 200);
  const json::object me_body = Parse(me);
  ASSERT_TRUE(me_body.contains("break_glass")) << me.body;
  EXPECT_EQ(Field(me_body.at("break_glass").as_object(), "id"), grant_id);
  EXPECT_EQ(Field(me_body.at("break_glass").as_object(), "until"), Field(grant, "expires_at"));

  // The privacy officer is alerted, and acknowledges.
  const auto alerts = Get("/api/v1/alerts", officer.token);
  ASSERT_EQ(alerts.status, 200) << alerts.body;
  std::string alert_id;
  const json::object alerts_body = Parse(alerts);
  for (const auto& a : alerts_body.at("alerts").as_array()) {
    const json::object& o = a.as_object();
    if (Field(o, "target_id") != grant_id) continue;
    alert_id = Field(o, "id");
    EXPECT_EQ(Field(o, "kind"), "break_glass.started");
    EXPECT_EQ(Field(o, "user_id"), nurse.user_id);
    EXPECT_EQ(Field(o, "target_type"), "break_glass");
    EXPECT_TRUE(o.at("acknowledged_at").is_null());
  }
  ASSERT_FALSE(alert_id.empty()) << alerts.body;
  EXPECT_EQ(alerts.body.find(reason), std::string::npos);
  EXPECT_EQ(
      Call(port(), "POST", "/api/v1/alerts/" + alert_id + "/acknowledge", officer.token).status,
      204);
  EXPECT_EQ(Get("/api/v1/alerts?unacknowledged=true", officer.token).body.find(alert_id),
            std::string::npos);
  const json::object all_alerts = Parse(Get("/api/v1/alerts", officer.token));
  for (const auto& a : all_alerts.at("alerts").as_array()) {
    if (Field(a.as_object(), "id") == alert_id) {
      EXPECT_NO_THROW(ParseUtc(Field(a.as_object(), "acknowledged_at")));
    }
  }
  // Alerts are the officer's own: others cannot acknowledge them.
  EXPECT_TRUE(
      IsError(Call(port(), "POST", "/api/v1/alerts/" + alert_id + "/acknowledge", alice().token),
              404, "not_found"));

  // The officer reads the reason.
  const auto grants = Get("/api/v1/break-glass", officer.token);
  ASSERT_EQ(grants.status, 200) << grants.body;
  bool found = false;
  const json::object grants_body = Parse(grants);
  for (const auto& g : grants_body.at("grants").as_array()) {
    if (Field(g.as_object(), "id") != grant_id) continue;
    found = true;
    EXPECT_EQ(Field(g.as_object(), "reason"), reason);
    EXPECT_EQ(Field(g.as_object(), "user_id"), nurse.user_id);
  }
  EXPECT_TRUE(found) << grants.body;
  // Nobody else does.
  EXPECT_TRUE(IsError(Get("/api/v1/break-glass", nurse.token), 403, "forbidden"));

  // Without the permission, no emergency access.
  EXPECT_TRUE(IsError(
      Send("POST", "/api/v1/break-glass", desk.token, {{"reason", "I would like to see a chart"}}),
      403, "forbidden"));

  // The reason is sealed at rest and kept out of logs and the audit trail.
  const std::string stem = reason.substr(0, 20);  // the canary part
  for (const char* file : {"carewire.db", "carewire.db-wal", "carewire.db-shm"}) {
    const fs::path path = shared_->deployment->data() / file;
    if (!fs::exists(path)) continue;
    EXPECT_EQ(ReadFile(path).find(stem), std::string::npos) << file;
  }
  EXPECT_EQ(server().Stderr().find(stem), std::string::npos);
  const auto started = Audit("action=break_glass.started&target=" + grant_id);
  ASSERT_EQ(started.size(), 1u);
  EXPECT_EQ(Field(started[0], "actor_id"), nurse.user_id);
  EXPECT_EQ(json::serialize(started[0]).find(stem), std::string::npos);

  // Ending it early clears it from the nurse's principal.
  EXPECT_EQ(Call(port(), "POST", "/api/v1/break-glass/" + grant_id + "/end", nurse.token).status,
            204);
  EXPECT_FALSE(Parse(Get("/api/v1/me", nurse.token)).contains("break_glass"));
}

// ---- bad inputs --------------------------------------------------------------------------------

std::string Nested(int depth) {
  return std::string(static_cast<std::size_t>(depth), '[') +
         std::string(static_cast<std::size_t>(depth), ']');
}

// QUALITY.md's bad inputs against the identity routes that take a body or
// an id: each answers a 4xx error in the envelope and changes nothing. What
// "nothing" means is counted in the tables these routes write (users,
// org_roles, break_glass, sessions, mfa_factors, alerts, audit_events); a
// few inputs are well-formed wrong credentials, which are recorded as
// failures by design, and are counted as such.
TEST_F(IdentityApiTest, BadInputsOnIdentityRoutesChangeNothing) {
  TestAccount& owner = FreshAlice();
  // A user to patch, who is also a caller without users.manage.
  TestAccount nurse = NewUser("bert", {"nurse"});
  ASSERT_FALSE(nurse.token.empty());
  const std::string nurse_path = "/api/v1/users/" + nurse.user_id;
  const std::string role_path = "/api/v1/roles/" + Unique("night_shift");
  const std::string canary = "PHI-CANARY-John-Q-1955";
  const std::string big(900'000, 'a');  // under the 1 MiB body limit, over every field's
  const std::string nul = std::string(1, '\0');

  struct Route {
    std::string method;
    std::string target;
    json::object valid;  // a body that would be accepted, to vary
  };
  const std::vector<Route> routes = {
      {"POST",
       "/api/v1/users",
       {{"username", "valid-name"}, {"display_name", "Valid Name"}, {"roles", {"nurse"}}}},
      {"PATCH", nurse_path, {{"display_name", "Renamed Nurse"}}},
      {"PATCH", "/api/v1/org", {{"settings", {{"idle_timeout_minutes", 20}}}}},
      {"PUT", role_path, {{"description", "nights"}, {"permissions", {"messages.read"}}}},
      {"POST", "/api/v1/break-glass", {{"reason", "a patient in bay 2 needs it"}}},
      {"POST",
       "/api/v1/auth/mfa",
       {{"mfa_token", "cwm_" + std::string(64, '0')}, {"code", "123456"}}},
      {"POST", "/api/v1/auth/reauth", {{"password", kPassword}, {"code", "123456"}}},
      {"POST", "/api/v1/me/mfa/totp", {{"password", kPassword}}},
      {"POST", "/api/v1/me/mfa/totp/confirm", {{"code", "123456"}}},
  };

  struct Case {
    std::string what;
    std::string method, target, body;
    std::string content_type = "application/json";
    int status = 0;      // 0: any 4xx
    int audit_rows = 0;  // rows the refusal adds to audit_events, by design
    std::string token;   // empty: the owner's
  };
  std::vector<Case> cases;
  for (const Route& r : routes) {
    const std::string valid = Body(r.valid);
    const std::string first_key = r.valid.begin()->key();
    const std::string first_value = json::serialize(r.valid.begin()->value());
    const std::string rest = valid.substr(1);  // the valid body after its '{'
    json::object others = r.valid;
    others.erase(first_key);
    // The valid body with the first field's value replaced by `text`.
    const std::string tail = others.empty() ? "}" : "," + Body(others).substr(1);
    auto with_first = [&](const std::string& text) {
      return "{\"" + first_key + "\":" + text + tail;
    };
    auto add = [&](std::string what, std::string body, int status = 400,
                   std::string content_type = "application/json") {
      cases.push_back(Case{r.method + " " + r.target + ": " + what, r.method, r.target,
                           std::move(body), std::move(content_type), status});
    };
    // 1. missing, empty, null, not an object
    add("empty body", "");
    add("null", "null");
    add("array", "[" + valid + "]");
    add("string", "\"x\"");
    add("empty object", "{}");
    // malformed JSON
    add("truncated", valid.substr(0, valid.size() - 2));
    add("trailing comma", valid.substr(0, valid.size() - 1) + ",}");
    add("trailing garbage", valid + "x");
    add("single quotes", "{'" + first_key + "':" + first_value + tail);
    add("comment", "{/*" + canary + "*/" + rest);
    // 5. duplicate keys
    add("duplicate key", "{\"" + first_key + "\":" + first_value + "," + rest);
    // unknown fields
    add("unknown field", "{\"" + canary + "\":\"x\"," + rest);
    add("unknown field __proto__", "{\"__proto__\":{\"admin\":true}," + rest);
    // 2. wrong types
    for (const char* v : {"true", "null", "12", "{}", "[[]]"}) {
      add(std::string("first field ") + v, with_first(v));
    }
    // 3. deep nesting and huge strings; 4. numeric edges
    add("nested 10,000 deep", with_first(Nested(10'000)));
    add("huge string", with_first("\"" + big + "\""));
    for (const char* n : {"NaN", "Infinity", "1e999", "-1", "0", "9223372036854775808",
                          "9007199254740993", "2147483648", "1.5", "1e2"}) {
      add(std::string("number ") + n, with_first(n));
    }
    // 6. invalid UTF-8, lone surrogates, raw NUL and control characters
    add("invalid UTF-8", with_first("\"ab\xc3\x28"
                                    "cd\""));
    add("overlong UTF-8", with_first("\"\xc0\xaf\""));
    add("invalid UTF-8 key", "{\"\xff\":1," + rest);
    add("lone surrogate", with_first("\"\\ud800abc\""));
    add("raw NUL", with_first("\"a" + nul + "b\""));
    add("raw newline", with_first("\"a\nb\""));
    add("raw escape", with_first("\"a\x1b[2Jb\""));
    // 15. wrong content types
    add("text/plain", valid, 415, "text/plain");
    add("form", first_key + "=x", 415, "application/x-www-form-urlencoded");
    add("latin-1", valid, 415, "application/json; charset=latin1");
    add("no content type", valid, 415, "");
  }

  // Route-specific values: well-formed JSON, wrong for the field.
  auto add_body = [&](const std::string& what, const std::string& method, const std::string& target,
                      const json::object& body, int status = 400, int audit_rows = 0,
                      const std::string& token = "") {
    cases.push_back(Case{method + " " + target + ": " + what, method, target, Body(body),
                         "application/json", status, audit_rows, token});
  };
  // POST /users
  for (const json::object& b : std::vector<json::object>{
           {{"username", "ok-name"}, {"roles", "nurse"}},
           {{"username", "ok-name"}, {"roles", json::array{}}},
           {{"username", "ok-name"}, {"roles", {1}}},
           {{"username", "ok-name"}, {"roles", {"nurse", "nurse"}}},
           {{"username", "ok-name"}, {"roles", {"../owner"}}},
           {{"username", "ok-name"}, {"roles", {"no_such_role"}}},
           {{"username", "ok-name"}, {"roles", {"nurse"}}, {"display_name", 5}},
           {{"username", "ok-name"}, {"roles", {"nurse"}}, {"display_name", ""}},
           {{"username", "ok-name"}, {"roles", {"nurse"}}, {"display_name", "Nina\u0007"}},
           {{"username", "ok-name"}, {"roles", {"nurse"}}, {"display_name", "Nina\r\nX-Admin: 1"}},
           {{"username", "ok-name"}, {"roles", {"nurse"}}, {"display_name", "Ni" + nul + "na"}},
           {{"username", "ok-name"}, {"roles", {"nurse"}}, {"display_name", std::string(201, 'd')}},
           {{"username", ""}, {"roles", {"nurse"}}},
           {{"username", "ali" + nul + "ce"}, {"roles", {"nurse"}}},
           {{"username", "../../etc/passwd"}, {"roles", {"nurse"}}},
           {{"username", "/absolute"}, {"roles", {"nurse"}}},
           {{"username", "\u202enina"}, {"roles", {"nurse"}}},
           {{"username", "ni\u200bna"}, {"roles", {"nurse"}}},
           {{"username", "nina' OR '1'='1"}, {"roles", {"nurse"}}},
           {{"username", "<script>x</script>"}, {"roles", {"nurse"}}},
           {{"username", std::string(65, 'u')}, {"roles", {"nurse"}}},
           {{"username", kOwnerA}, {"roles", {"nurse"}}},  // taken
           {{"roles", {"nurse"}}},
       }) {
    add_body(json::serialize(b).substr(0, 60), "POST", "/api/v1/users", b, 0);
  }
  // PATCH /users/{id}
  for (const json::object& b : std::vector<json::object>{
           {{"status", "gone"}},
           {{"status", 1}},
           {{"status", ""}},
           {{"roles", "owner"}},
           {{"roles", json::array{}}},
           {{"roles", {"no_such_role"}}},
           {{"display_name", 7}},
           {{"display_name", "x" + nul + "y"}},
           {{"display_name", "bad\u001b[31m"}},
           {{"display_name", ""}},
           {{"id", "usr_000000000000000000000000"}},
           {{"username", "renamed"}},
       }) {
    add_body(json::serialize(b).substr(0, 60), "PATCH", nurse_path, b, 0);
  }
  // 11, 12. path traversal and ids that are not the organization's
  for (const std::string& id :
       {std::string(".."), std::string("%2e%2e"), std::string("..%2f..%2fusers"),
        std::string("..%5cusers"), std::string("%00"), std::string("usr_x%00"),
        std::string("%2fetc%2fpasswd"), std::string("..;"), bob().user_id,
        std::string("usr_000000000000000000000000"), std::string("ses_" + std::string(24, '0')),
        std::string(300, 'u')}) {
    add_body("id " + id.substr(0, 30), "PATCH", "/api/v1/users/" + id,
             {{"display_name", "Renamed"}}, 0);
  }
  for (const std::string& name :
       {std::string(".."), std::string("%2e%2e"), std::string("..%2f..%2froles"),
        std::string("..%5croles"), std::string("%00"), std::string("night%00"),
        std::string("%2fetc%2fpasswd"), std::string("..;"), std::string("night%2fshift")}) {
    add_body("name " + name, "PUT", "/api/v1/roles/" + name, {{"permissions", {"messages.read"}}},
             0);
  }
  for (const std::string& name :
       {std::string("owner"), std::string("a"), std::string("Night"), std::string("night%20shift"),
        std::string("%E2%80%AEnight"), std::string("night-shift"), std::string(41, 'n'),
        std::string("1night")}) {
    add_body("name " + name.substr(0, 30), "PUT", "/api/v1/roles/" + name,
             {{"permissions", {"messages.read"}}}, 400);
  }
  // PATCH /org
  for (const json::object& b : std::vector<json::object>{
           {{"settings", nullptr}},
           {{"settings", json::array{}}},
           {{"settings", "mfa_required=false"}},
           {{"settings", {{"mfa_required", 1}}}},
           {{"settings", {{"mfa_required", "false"}}}},
           {{"settings", {{"mfa_required", nullptr}}}},
           {{"settings", {{"idle_timeout_minutes", "20"}}}},
           {{"settings", {{"idle_timeout_minutes", 20.5}}}},
           {{"settings", {{"idle_timeout_minutes", 1e2}}}},
           {{"settings", {{"idle_timeout_minutes", 2147483648LL}}}},
           {{"settings", {{"idle_timeout_minutes", -2147483649LL}}}},
           {{"settings", {{"idle_timeout_minutes", 9007199254740993LL}}}},
           {{"settings", {{"idle_timeout_minutes", 18446744073709551615ULL}}}},
           {{"settings", {{"break_glass_minutes", json::array{60}}}}},
       }) {
    add_body(json::serialize(b).substr(0, 60), "PATCH", "/api/v1/org", b, 400);
  }
  // PUT /roles/{name}
  for (const json::object& b : std::vector<json::object>{
           {{"permissions", "messages.read"}},
           {{"permissions", json::array{}}},
           {{"permissions", {"no.such"}}},
           {{"permissions", {"messages.read", "messages.read"}}},
           {{"permissions", {"MESSAGES.READ"}}},
           {{"permissions", {"messages.read "}}},
           {{"permissions", {1}}},
           {{"permissions", {"messages.read"}}, {"description", 1}},
           {{"permissions", {"messages.read"}}, {"description", std::string(501, 'd')}},
           {{"permissions", {"messages.read"}}, {"description", "nights" + nul}},
           {{"permissions", {"messages.read"}}, {"description", "nights\u001b[2J"}},
           {{"permissions", {"messages.read"}}, {"built_in", true}},
           {{"description", "no permissions"}},
       }) {
    add_body(json::serialize(b).substr(0, 60), "PUT", role_path, b, 400);
  }
  // POST /break-glass
  for (const json::object& b : std::vector<json::object>{
           {{"reason", 1}},
           {{"reason", nullptr}},
           {{"reason", ""}},
           {{"reason", "too short"}},
           {{"reason", std::string(10, ' ')}},
           {{"reason", std::string(2001, 'r')}},
           {{"reason", "chart needed" + nul + " for bay 4"}},
           {{"reason", "chart needed \u001b[2J for bay 4"}},
           {{"reason", "chart needed for bay 4"}, {"patient_id", "pat_1"}},
           {{"reason", "chart needed for bay 4"}, {"minutes", 480}},
       }) {
    add_body(json::serialize(b).substr(0, 60), "POST", "/api/v1/break-glass", b, 400);
  }
  // POST /auth/mfa: malformed bodies, then well-formed answers to challenges
  // that do not exist (401, no audit: there is no account to record against).
  for (const json::object& b : std::vector<json::object>{
           {{"mfa_token", 1}, {"code", "123456"}},
           {{"mfa_token", "cwm_x"}, {"code", 123456}},
           {{"mfa_token", "cwm_x"}},
           {{"code", "123456"}},
           {{"mfa_token", "cwm_x"}, {"code", ""}},
           {{"mfa_token", "cwm_x"}, {"code", std::string(2000, '1')}},
       }) {
    add_body(json::serialize(b).substr(0, 60), "POST", "/api/v1/auth/mfa", b, 400);
  }
  for (const json::object& b : std::vector<json::object>{
           {{"mfa_token", "../../etc/passwd"}, {"code", "123456"}},
           {{"mfa_token", "cwm_" + std::string(64, 'g')}, {"code", "123456"}},
           {{"mfa_token", owner.token}, {"code", "123456"}},
           {{"mfa_token", "cwm_" + std::string(64, '0')}, {"code", "12" + nul + "3456"}},
           {{"mfa_token", "cwm_" + std::string(64, '0')}, {"code", "' OR 1=1;--"}},
       }) {
    add_body(json::serialize(b).substr(0, 60), "POST", "/api/v1/auth/mfa", b, 401);
  }
  // POST /auth/reauth: malformed bodies; then a well-formed wrong password,
  // which is a failed re-authentication and recorded as one.
  for (const json::object& b : std::vector<json::object>{
           {{"password", 1}},
           {{"password", ""}},
           {{"code", "123456"}},
           {{"password", kPassword}, {"code", 123456}},
           {{"password", std::string(1025, 'p')}},
       }) {
    add_body(json::serialize(b).substr(0, 60), "POST", "/api/v1/auth/reauth", b, 400);
  }
  add_body("wrong password with SQL", "POST", "/api/v1/auth/reauth",
           {{"password", "' OR '1'='1' --"}, {"code", "123456"}}, 401, 1);
  add_body("wrong password with NUL", "POST", "/api/v1/auth/reauth",
           {{"password", kPassword + nul}, {"code", "123456"}}, 401, 1);
  // POST /me/mfa/totp and /confirm: malformed bodies; a wrong password is a
  // failed enrolment step, recorded; a confirmation with nothing pending is
  // a conflict.
  for (const json::object& b : std::vector<json::object>{
           {{"password", 1}}, {{"password", ""}}, {{"secret", "JBSWY3DPEHPK3PXP"}}}) {
    add_body(json::serialize(b).substr(0, 60), "POST", "/api/v1/me/mfa/totp", b, 400);
  }
  add_body("wrong password", "POST", "/api/v1/me/mfa/totp", {{"password", "${jndi:ldap://x}"}}, 401,
           1);
  for (const json::object& b :
       std::vector<json::object>{{{"code", 123456}}, {{"code", ""}}, {{"code", "1"}, {"x", 1}}}) {
    add_body(json::serialize(b).substr(0, 60), "POST", "/api/v1/me/mfa/totp/confirm", b, 400);
  }
  add_body("nothing pending", "POST", "/api/v1/me/mfa/totp/confirm", {{"code", "../../"}}, 409);
  // 12. a caller without the permission, whatever the body: refused before
  // the body is read, and recorded as access.denied.
  for (const std::string& body : {std::string("{"), Body({{"username", "x"}}), big}) {
    cases.push_back(Case{"POST /api/v1/users by a nurse, body " + body.substr(0, 10), "POST",
                         "/api/v1/users", body, "application/json", 403, 1, nurse.token});
  }
  cases.push_back(Case{"PATCH /api/v1/org by a nurse", "PATCH", "/api/v1/org", "null",
                       "application/json", 403, 1, nurse.token});

  // The state that must not change.
  const char* tables[] = {"users",  "org_roles",   "break_glass", "sessions",
                          "alerts", "mfa_factors", "audit_events"};
  auto counts = [&] {
    Sql db(database(), false);
    std::map<std::string, std::int64_t> out;
    for (const char* t : tables) out[t] = db.Count(t);
    return out;
  };
  const std::string org_before = Get("/api/v1/org", owner.token).body;
  const std::string nurse_before = Get(nurse_path, owner.token).body;
  const std::string roles_before = Get("/api/v1/roles", owner.token).body;
  auto before = counts();

  int checked = 0;
  for (const Case& c : cases) {
    const std::string bearer = "Bearer " + (c.token.empty() ? owner.token : c.token);
    HttpResponse r;
    if (c.content_type.empty()) {
      // Written by hand: the client adds application/json to any body.
      HttpsConnection connection(port());
      connection.WriteRaw(
          c.method + " " + c.target + " HTTP/1.1\r\nHost: x\r\nAuthorization: " + bearer +
          "\r\nContent-Length: " + std::to_string(c.body.size()) + "\r\n\r\n" + c.body);
      r = connection.ReadResponse();
    } else {
      r = Fetch(port(), c.method, c.target, c.body,
                {{"content-type", c.content_type}, {"authorization", bearer}});
    }
    ++checked;
    if (c.status != 0) {
      EXPECT_EQ(r.status, c.status) << c.what << ": " << r.body.substr(0, 300);
    }
    EXPECT_TRUE(IsClientError(r)) << c.what;
    EXPECT_EQ(r.body.find(canary), std::string::npos) << c.what;
    // Nothing stored; audit rows only where the refusal is itself on record.
    auto expected = before;
    expected["audit_events"] += c.audit_rows;
    std::map<std::string, std::int64_t> now;
    Eventually([&] { return (now = counts()) == expected; }, c.audit_rows > 0 ? 5s : 0s);
    EXPECT_EQ(now, expected) << c.what << ": answered " << r.status << " " << r.body.substr(0, 200);
    if (r.status == 201 && c.target == "/api/v1/break-glass") {
      // Accepted (a failure above): end it, so the next inputs are not
      // refused merely as a second open access.
      Call(port(), "POST", "/api/v1/break-glass/" + Field(Parse(r), "id") + "/end", owner.token);
      now = counts();
    }
    before = now;
  }
  // 3. a 10 MB body on each route.
  for (const Route& route : routes) {
    const auto r = Fetch(port(), route.method, route.target,
                         "{\"" + std::string(route.valid.begin()->key()) + "\":\"" +
                             std::string(10 << 20, 'a') + "\"}",
                         BearerHeader(owner.token));
    EXPECT_TRUE(IsError(r, 413, "payload_too_large")) << route.target;
  }
  EXPECT_EQ(counts(), before);
  EXPECT_EQ(Get("/api/v1/org", owner.token).body, org_before);
  EXPECT_EQ(Get(nurse_path, owner.token).body, nurse_before);
  EXPECT_EQ(Get("/api/v1/roles", owner.token).body, roles_before);
  EXPECT_EQ(server().Stderr().find(canary), std::string::npos);
  std::cout << "[ info     ] " << checked << " bad inputs\n";
  // The owner's own session survived it all.
  EXPECT_EQ(Get("/api/v1/me", owner.token).status, 200);
}

}  // namespace
}  // namespace cw::testing
