// The isolation matrix: every route the server registers, called by every
// caller that must be refused and by one that must succeed, against the real
// binary serving two organizations.
//
// The list of routes comes from the router itself, built in-process the way
// docs_test builds it, so a route cannot ship without a row here: a route
// without a row fails the test, and so does a row without a route. Each row
// says how to exercise its route: organization A's objects in the path, a
// valid body, the expected success status, and who may call it. The callers:
//
//   no token       401 unauthenticated
//   expired        401 unauthenticated (a session idle for an hour)
//   revoked        401 unauthenticated (a session after POST /auth/logout)
//   other org      owner of B: 404 not_found with A's ids in the path; on a
//                  route without a path parameter, a 2xx that names nothing of A
//   no perm        403 forbidden: a user whose one role, from the built-in
//                  table, lacks the route's permission (n/a for own-account routes);
//                  where every built-in role has it, one of A's own roles
//                  (the courier lacks users.read, the clerk messaging)
//   stale          401 reauth_required on Sensitive routes: a valid session
//                  whose last password check was an hour ago
//   allowed        the row's success status
//
// The callers run in that order, over every row, so refusals run while every
// object is still in place; the allowed calls come last and use fresh
// objects or sessions wherever they use one up (a logout, a deactivation, a
// revocation). What B does is checked to leave A's users, roles, settings,
// emergency accesses, conversations and messages as they were. The matrix is
// printed when anything fails.
//
// Sign-in costs Argon2id hashes and each TOTP step can be used once per
// account, so extra sessions are opened with recovery codes and the owners'
// sessions are reused.

#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>

#include <algorithm>
#include <array>
#include <boost/json.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <iomanip>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "core/time.hpp"
#include "keys/key_store.hpp"
#include "server/serve.hpp"
#include "storage/sqlite/sqlite_database.hpp"
#include "support/accounts.hpp"
#include "support/api.hpp"
#include "support/deployment.hpp"
#include "support/https_client.hpp"
#include "support/server_process.hpp"

namespace cw::testing {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using identity::Permission;
using Scope = api::Access::Scope;

constexpr const char* kOrgA = "clinic-a";
constexpr const char* kOwnerA = "alice";  // every username of A starts with "alice"
constexpr const char* kOrgB = "clinic-b";
constexpr const char* kOwnerB = "bob";
const std::string kPasswordA = "violet-lantern-orbit-97";
const std::string kPasswordB = "copper-meadow-tundra-43";
const std::string kNewPassword = "saffron-glacier-pivot-58";
// A role of A's own holding only messaging permissions: the no-permission
// caller for routes that every built-in role may call (users.read), and the
// allowed caller of own-account routes, which need no permission at all.
constexpr const char* kCustomRole = "courier";
const std::vector<std::string> kCustomRolePermissions = {"messages.send", "messages.read"};
constexpr const char* kSpareRole = "spare_role";  // held by no one, for DELETE /roles/{name}
// A role of A's own without the messaging permissions, which every built-in
// role holds: the no-permission caller of the messaging routes.
constexpr const char* kClerkRole = "clerk";
const std::vector<std::string> kClerkRolePermissions = {"users.read"};

// ---- the route table --------------------------------------------------------

struct RegisteredRoute {
  std::string key;  // "METHOD pattern"
  api::Access access;
  bool has_param = false;
  bool websocket = false;
};

// Every route AddRoutes registers, as the server registers them.
std::vector<RegisteredRoute> RegisteredRoutes() {
  std::vector<RegisteredRoute> out;
  TempDir dir;
  storage::SqliteOptions options;
  options.path = (dir.path() / "db").string();
  auto db = storage::OpenSqlite(options);
  if (!db) {
    ADD_FAILURE() << "cannot open a scratch database";
    return out;
  }
  core::Config config;
  // The operator's diagnostics routes (write_probe, sealed_probe) stay off,
  // as they are by default: they are public probes an operator turns on to
  // check storage and sealing, not part of the API any organization's users
  // reach, and they touch no organization's data.
  config.diagnostics.write_probe = false;
  config.diagnostics.sealed_probe = false;
  api::Router router;
  metrics::Registry metrics;
  // Routes are only registered here, never called, so the key store needs no keys.
  keys::KeyStore keys(**db, nullptr, std::chrono::milliseconds(1000));
  identity::Sessions sessions(**db, keys);
  identity::Users users(**db);
  identity::OrgSettingsStore orgs(**db);
  identity::BreakGlass break_glass(**db, keys);
  api::LiveSockets live;
  core::WorkerPool pool(1, 1);
  messaging::LiveHub hub;
  messaging::Messaging messaging(**db, keys, hub);
  server::AddRoutes(router, config,
                    {**db, keys, sessions, users, orgs, break_glass, live, pool, metrics,
                     messaging, hub, pool});
  for (const auto& r : router.routes()) {
    RegisteredRoute route;
    route.key = std::string(api::MethodName(r->method).view()) + " " + r->pattern;
    route.access = r->access;
    for (const auto& s : r->segments) route.has_param = route.has_param || s.param;
    route.websocket = static_cast<bool>(r->websocket);
    out.push_back(std::move(route));
  }
  (*db)->Close();
  return out;
}

// Routes the matrix does not call, with the reason. Each must be public.
const std::map<std::string, std::string>& Exempt() {
  static const std::map<std::string, std::string> exempt = {
      {"GET /healthz", "public liveness probe; names no organization"},
      {"GET /readyz", "public readiness probe; names no organization"},
      {"GET /metrics", "public Prometheus metrics; labels carry no organization data"},
      {"GET /api/v1/events",
       "WebSocket: the token arrives in the first frame, not the Authorization header, and a "
       "refused token closes with 4401 (covered by the live-events tests)"},
  };
  return exempt;
}

// The permissions of one of A's own roles.
identity::PermissionSet CustomPermissions(const std::vector<std::string>& names) {
  std::string list;
  for (const std::string& n : names) list += (list.empty() ? "" : " ") + n;
  return identity::ParsePermissionList(list);
}

// The first built-in role, in the table's order, that lacks `p`; when every
// built-in role has it, the first of A's own roles that lacks it (the
// courier, else the clerk).
std::string RoleLacking(Permission p) {
  for (const identity::BuiltInRole& r : identity::BuiltInRoles()) {
    if (!identity::Has(r.permissions, p)) return std::string(r.name);
  }
  if (!identity::Has(CustomPermissions(kCustomRolePermissions), p)) return kCustomRole;
  return kClerkRole;
}

// ---- small helpers ----------------------------------------------------------

std::string ErrorCodeOf(const HttpResponse& r) {
  const json::object o = Parse(r.body);
  const auto* e = o.if_contains("error");
  return e != nullptr && e->is_object() ? Str(e->as_object().if_contains("code")) : "";
}

using Headers = std::vector<std::pair<std::string, std::string>>;

HttpResponse Send(std::uint16_t port, const std::string& method, const std::string& path,
                  const std::string& token, const std::string& body = "",
                  const Headers& extra = {}) {
  Headers headers = token.empty() ? Headers{} : BearerHeader(token);
  headers.insert(headers.end(), extra.begin(), extra.end());
  return Fetch(port, method, path, body, headers);
}

// Sets a column of one session to an hour ago, through a writable
// connection while the server runs.
void AgeSession(const fs::path& database, const std::string& session_id,
                const std::string& column) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(database.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
    ADD_FAILURE() << "cannot open " << database << ": " << (db ? sqlite3_errmsg(db) : "no memory");
    sqlite3_close(db);
    return;
  }
  sqlite3_busy_timeout(db, 10'000);
  const std::string sql = "UPDATE sessions SET " + column + " = ? WHERE id = ?";
  const std::string hour_ago =
      core::FormatRfc3339(std::chrono::system_clock::now() - std::chrono::hours(1));
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) {
    ADD_FAILURE() << sql << ": " << sqlite3_errmsg(db);
  } else {
    sqlite3_bind_text(st, 1, hour_ago.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, session_id.c_str(), -1, SQLITE_TRANSIENT);
    EXPECT_EQ(sqlite3_step(st), SQLITE_DONE) << sql << ": " << sqlite3_errmsg(db);
    EXPECT_EQ(sqlite3_changes(db), 1) << "no session " << session_id;
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
}

// ---- accounts and objects ---------------------------------------------------

struct NewUser {
  std::string id;
  std::string username;
  std::string one_time_password;
};

// POST /api/v1/users as `creator`.
NewUser CreateUser(std::uint16_t port, const std::string& creator, const std::string& username,
                   const std::string& role) {
  const auto r = Send(port, "POST", "/api/v1/users", creator,
                      Body({{"username", username}, {"roles", json::array{json::string(role)}}}));
  if (r.status != 201) {
    ADD_FAILURE() << "creating " << username << ": " << r.status << " " << r.body;
    return {};
  }
  return {Field(Parse(r), "id"), username, Field(Parse(r), "one_time_password")};
}

// Signs in with a one-time password: a session that may only set a password.
std::string OneTimeSession(std::uint16_t port, const std::string& org, const NewUser& u) {
  const auto r =
      Send(port, "POST", "/api/v1/auth/login", "", LoginBody(org, u.username, u.one_time_password));
  EXPECT_EQ(r.status, 200) << u.username << ": " << r.body;
  return Field(Parse(r), "token");
}

// A user who has set a password but has no second factor: in an
// organization that requires MFA (the default), signing in gives a session
// that may only enrol one, and needs no TOTP code, so such sessions are cheap.
TestAccount SetPassword(std::uint16_t port, const std::string& org, const NewUser& u,
                        const std::string& password) {
  TestAccount a;
  a.org = org;
  a.username = u.username;
  a.password = password;
  const std::string once = OneTimeSession(port, org, u);
  const auto changed =
      Send(port, "POST", "/api/v1/me/password", once,
           Body({{"current_password", u.one_time_password}, {"new_password", password}}));
  EXPECT_EQ(changed.status, 204) << u.username << ": " << changed.body;
  const auto r = Send(port, "POST", "/api/v1/auth/login", "", LoginBody(org, u.username, password));
  EXPECT_EQ(r.status, 200) << u.username << ": " << r.body;
  const json::object o = Parse(r.body);
  EXPECT_TRUE(o.contains("mfa_enrollment_required")) << r.body;
  a.token = Str(o.if_contains("token"));
  if (const auto* user = o.if_contains("user"); user && user->is_object()) {
    a.user_id = Str(user->as_object().if_contains("id"));
  }
  return a;
}

TestAccount PendingAccount(std::uint16_t port, const std::string& org, const std::string& creator,
                           const std::string& username, const std::string& password) {
  return SetPassword(port, org, CreateUser(port, creator, username, "nurse"), password);
}

// The first sign-in (support/accounts.hpp): one-time password, password
// change, sign-in, TOTP enrolment and confirmation, which makes the session
// full.
TestAccount Activate(std::uint16_t port, const std::string& org, const NewUser& u,
                     const std::string& password) {
  TestAccount a = ActivateAccount(port, org, u.username, u.one_time_password, password);
  EXPECT_EQ(a.recovery_codes.size(), 10u) << u.username;
  return a;
}

// The MFA challenge of a password sign-in.
std::string MfaChallenge(std::uint16_t port, const TestAccount& a) {
  const auto r =
      Send(port, "POST", "/api/v1/auth/login", "", LoginBody(a.org, a.username, a.password));
  EXPECT_EQ(r.status, 200) << a.username << ": " << r.body;
  EXPECT_TRUE(Parse(r.body).contains("mfa_required")) << r.body;
  return Field(Parse(r), "mfa_token");
}

// One of the account's unused recovery codes. TOTP codes allow about one
// sign-in per 30-second step per account, which would dominate the run.
std::string TakeRecoveryCode(TestAccount& a) {
  if (a.recovery_codes.empty()) {
    ADD_FAILURE() << a.username << " has no recovery codes left";
    return "";
  }
  std::string code = a.recovery_codes.back();
  a.recovery_codes.pop_back();
  return code;
}

// A new full session of `a`.
std::string FreshSession(std::uint16_t port, TestAccount& a) {
  const std::string challenge = MfaChallenge(port, a);
  const auto r = Send(port, "POST", "/api/v1/auth/mfa", "",
                      Body({{"mfa_token", challenge}, {"code", TakeRecoveryCode(a)}}));
  EXPECT_EQ(r.status, 200) << a.username << ": " << r.body;
  return Field(Parse(r), "token");
}

// The id of the session a token belongs to.
std::string SessionIdOf(std::uint16_t port, const std::string& token) {
  const auto r = Send(port, "GET", "/api/v1/me/sessions", token);
  EXPECT_EQ(r.status, 200) << r.body;
  const json::object o = Parse(r.body);
  if (const auto* list = o.if_contains("sessions"); list != nullptr && list->is_array()) {
    for (const auto& s : list->as_array()) {
      if (s.is_object() && s.as_object().if_contains("current") != nullptr &&
          s.as_object().at("current") == json::value(true)) {
        return Str(s.as_object().if_contains("id"));
      }
    }
  }
  ADD_FAILURE() << "no current session in " << r.body;
  return "";
}

std::string Staff(const std::string& role) {
  std::string name = std::string(kOwnerA) + "-" + role;
  for (char& c : name) c = c == '_' ? '-' : c;
  return name;
}

// Everything the rows refer to.
struct World {
  std::uint16_t port = 0;
  fs::path database;
  TestAccount owner_a;
  TestAccount owner_b;
  std::map<std::string, TestAccount> staff;  // users of A with one role each, by role
  TestAccount pending_a;                     // a password and no second factor yet
  TestAccount pending_b;
  std::string expired_token;  // owner A's, idle for an hour
  std::string revoked_token;  // owner A's, logged out
  std::string stale_token;    // owner A's, last password check an hour ago
  std::string org_a_id;
  std::string target_user_id;        // a user of A who never signed in
  std::string holder_user_id;        // a user of A with one session, ...
  std::string held_session_id;       // ... this one
  std::string grant_id;              // owner A's emergency access
  std::string alert_id;              // the privacy officer's alert about it
  std::string conversation_id;       // owner A's group, with the courier as a member ...
  std::string message_id;            // ... and owner A's message in it
  std::string attachment_id;         // owner A's upload to it, not yet sent
  std::vector<std::string> markers;  // what B must never see: A's ids, usernames and slug
  int serial = 0;                    // for unique names

  TestAccount& courier() { return staff.at(kCustomRole); }
  std::string Unique(const std::string& prefix) { return prefix + "-" + std::to_string(++serial); }
};

// ---- the rows ---------------------------------------------------------------

struct Call {
  std::string token;  // empty: no Authorization header
  std::string path;
  std::string body;
  TestAccount* resign = nullptr;  // the call ends every session of this account: sign in again
  Headers headers;                // besides Authorization (JSON bodies need none)
};

struct Row {
  std::string key;  // "METHOD pattern", as the router names the route
  int success = 200;
  // A's objects in the path and a valid body: what the refused callers send
  // (each with its own token).
  Call target;
  // The caller that may, with fresh objects or sessions where the call uses
  // one up. Rows run in the order listed.
  std::function<Call()> allowed;
  // A caller of B. Unset: owner B sends `target`, expecting 404 on a route
  // with a path parameter and `success` on one without.
  std::function<Call()> other_org;
  int other_org_status = 0;  // with other_org; 0: `success`
};

std::vector<Row> MatrixRows(World& w) {
  const std::uint16_t port = w.port;
  auto owner_a = [&w](const std::string& path, const std::string& body = "") {
    return [&w, path, body] { return Call{w.owner_a.token, path, body}; };
  };
  auto courier = [&w](const std::string& path, const std::string& body = "") {
    return [&w, path, body] { return Call{w.courier().token, path, body}; };
  };
  auto owner_b = [&w](const std::string& path, const std::string& body = "") {
    return [&w, path, body] { return Call{w.owner_b.token, path, body}; };
  };
  const std::string reauth_body = Body({{"password", "not-checked-here"}, {"code", "000000"}});
  const std::string role_body = Body({{"description", "messaging only"},
                                      {"permissions", json::value_from(kCustomRolePermissions)}});
  const std::string settings_body = R"({"settings":{"idle_timeout_minutes":15}})";
  const std::string reason_body =
      Body({{"reason", "isolation matrix: the patient is in the emergency room"}});
  const std::string users = "/api/v1/users/";
  // Secure messaging: A's group conversation and its message (set up in
  // Prepare; empty on the first call, which only lists the keys).
  const std::string courier_id = w.staff.count(kCustomRole) ? w.courier().user_id : "";
  const std::string conversation = "/api/v1/conversations/" + w.conversation_id;
  const std::string message = "/api/v1/messages/" + w.message_id;
  const std::string group_body = Body(
      {{"kind", "group"}, {"title", "isolation matrix"}, {"members", json::array{courier_id}}});
  const std::string title_body = Body({{"title", "isolation matrix, renamed"}});
  const std::string member_body = Body({{"user_id", w.target_user_id}});
  const std::string forward_body =
      Body({{"conversation_id", w.conversation_id}, {"client_txn_id", "isolation-forward"}});
  // An upload is its bytes, named in a header; its type is sniffed from them.
  const std::string upload = "Isolation matrix: a plain text attachment.\n";
  const Headers upload_headers = {{"content-type", "text/plain"},
                                  {"x-attachment-name", "isolation-matrix.txt"}};

  return {
      // Public sign-in steps: only the allowed call runs.
      {.key = "POST /api/v1/auth/login",
       .allowed =
           [&w] {
             return Call{"", "/api/v1/auth/login", LoginBody(kOrgA, kOwnerA, w.owner_a.password)};
           }},
      {.key = "POST /api/v1/auth/mfa",
       .allowed =
           [&w, port] {
             return Call{"", "/api/v1/auth/mfa",
                         Body({{"mfa_token", MfaChallenge(port, w.courier())},
                               {"code", TakeRecoveryCode(w.courier())}})};
           }},

      // One's own account.
      {.key = "POST /api/v1/auth/logout",
       .success = 204,
       .target = {"", "/api/v1/auth/logout", ""},
       .allowed =
           [&w, port] {
             return Call{FreshSession(port, w.courier()), "/api/v1/auth/logout"};
           },
       .other_org =
           [&w, port] {
             return Call{FreshSession(port, w.owner_b), "/api/v1/auth/logout"};
           }},
      {.key = "POST /api/v1/auth/reauth",
       .success = 204,
       .target = {"", "/api/v1/auth/reauth", reauth_body},
       .allowed =
           [&w] {
             return Call{w.courier().token, "/api/v1/auth/reauth",
                         Body({{"password", w.courier().password},
                               {"code", TakeRecoveryCode(w.courier())}})};
           },
       .other_org =
           [&w] {
             return Call{
                 w.owner_b.token, "/api/v1/auth/reauth",
                 Body({{"password", w.owner_b.password}, {"code", TakeRecoveryCode(w.owner_b)}})};
           }},
      {.key = "GET /api/v1/me", .target = {"", "/api/v1/me", ""}, .allowed = courier("/api/v1/me")},
      // A one-time password's session, the case the route is for: a new user each time.
      {.key = "POST /api/v1/me/password",
       .success = 204,
       .target = {"", "/api/v1/me/password",
                  Body({{"current_password", "not-checked-here"}, {"new_password", kNewPassword}})},
       .allowed =
           [&w, port] {
             const NewUser u =
                 CreateUser(port, w.owner_a.token, w.Unique("alice-newcomer"), "nurse");
             return Call{
                 OneTimeSession(port, kOrgA, u), "/api/v1/me/password",
                 Body({{"current_password", u.one_time_password}, {"new_password", kNewPassword}})};
           },
       .other_org =
           [&w, port] {
             const NewUser u = CreateUser(port, w.owner_b.token, w.Unique("bob-newcomer"), "nurse");
             return Call{
                 OneTimeSession(port, kOrgB, u), "/api/v1/me/password",
                 Body({{"current_password", u.one_time_password}, {"new_password", kNewPassword}})};
           }},
      // Enrolment: a user with a password and no second factor yet. The
      // confirmation (next row) completes it, so it must come after this row.
      {.key = "POST /api/v1/me/mfa/totp",
       .target = {"", "/api/v1/me/mfa/totp", Body({{"password", "not-checked-here"}})},
       .allowed =
           [&w] {
             return Call{w.pending_a.token, "/api/v1/me/mfa/totp",
                         Body({{"password", w.pending_a.password}})};
           },
       .other_org =
           [&w] {
             return Call{w.pending_b.token, "/api/v1/me/mfa/totp",
                         Body({{"password", w.pending_b.password}})};
           }},
      {.key = "POST /api/v1/me/mfa/totp/confirm",
       .target = {"", "/api/v1/me/mfa/totp/confirm", Body({{"code", "000000"}})},
       .allowed =
           [&w, port] {
             // A fresh enrolment, then its first code.
             const auto r = Send(port, "POST", "/api/v1/me/mfa/totp", w.pending_a.token,
                                 Body({{"password", w.pending_a.password}}));
             EXPECT_EQ(r.status, 200) << r.body;
             w.pending_a.totp_secret = Field(Parse(r), "secret");
             return Call{w.pending_a.token, "/api/v1/me/mfa/totp/confirm",
                         Body({{"code", w.pending_a.NextCode()}})};
           },
       .other_org =
           [&w, port] {
             const auto r = Send(port, "POST", "/api/v1/me/mfa/totp", w.pending_b.token,
                                 Body({{"password", w.pending_b.password}}));
             EXPECT_EQ(r.status, 200) << r.body;
             w.pending_b.totp_secret = Field(Parse(r), "secret");
             return Call{w.pending_b.token, "/api/v1/me/mfa/totp/confirm",
                         Body({{"code", w.pending_b.NextCode()}})};
           }},
      {.key = "GET /api/v1/me/sessions",
       .target = {"", "/api/v1/me/sessions", ""},
       .allowed = courier("/api/v1/me/sessions")},
      // Ends every session of the caller: sign in again afterwards.
      {.key = "DELETE /api/v1/me/sessions",
       .success = 204,
       .target = {"", "/api/v1/me/sessions", ""},
       .allowed =
           [&w] {
             return Call{w.courier().token, "/api/v1/me/sessions", "", &w.courier()};
           },
       .other_org =
           [&w] {
             return Call{w.owner_b.token, "/api/v1/me/sessions", "", &w.owner_b};
           }},
      // The caller's own second session.
      {.key = "DELETE /api/v1/me/sessions/{id}",
       .success = 204,
       .target = {"", "/api/v1/me/sessions/" + w.held_session_id, ""},
       .allowed =
           [&w, port] {
             const std::string second = SessionIdOf(port, FreshSession(port, w.courier()));
             return Call{w.courier().token, "/api/v1/me/sessions/" + second};
           }},
      {.key = "GET /api/v1/org",
       .target = {"", "/api/v1/org", ""},
       .allowed = courier("/api/v1/org")},

      // The organization's staff.
      {.key = "GET /api/v1/users",
       .target = {"", "/api/v1/users", ""},
       .allowed = owner_a("/api/v1/users")},
      {.key = "POST /api/v1/users",
       .success = 201,
       .target = {"", "/api/v1/users",
                  Body({{"username", "alice-never-created"}, {"roles", json::array{"nurse"}}})},
       .allowed =
           [&w] {
             return Call{
                 w.owner_a.token, "/api/v1/users",
                 Body({{"username", w.Unique("alice-hire")}, {"roles", json::array{"nurse"}}})};
           },
       .other_org =
           [&w] {
             return Call{
                 w.owner_b.token, "/api/v1/users",
                 Body({{"username", w.Unique("bob-hire")}, {"roles", json::array{"nurse"}}})};
           }},
      {.key = "GET /api/v1/users/{id}",
       .target = {"", users + w.target_user_id, ""},
       .allowed = owner_a(users + w.target_user_id)},
      // Deactivation uses the user up: a new one.
      {.key = "PATCH /api/v1/users/{id}",
       .target = {"", users + w.target_user_id, R"({"status":"deactivated"})"},
       .allowed =
           [&w, port] {
             const NewUser u = CreateUser(port, w.owner_a.token, w.Unique("alice-leaver"), "nurse");
             return Call{w.owner_a.token, "/api/v1/users/" + u.id, R"({"status":"deactivated"})"};
           }},
      // The enrolled user of the confirmation row above: a real factor to remove.
      {.key = "DELETE /api/v1/users/{id}/mfa",
       .success = 204,
       .target = {"", users + w.target_user_id + "/mfa", ""},
       .allowed =
           [&w] {
             return Call{w.owner_a.token, "/api/v1/users/" + w.pending_a.user_id + "/mfa"};
           }},
      {.key = "GET /api/v1/users/{id}/sessions",
       .target = {"", users + w.holder_user_id + "/sessions", ""},
       .allowed = owner_a(users + w.holder_user_id + "/sessions")},
      {.key = "DELETE /api/v1/sessions/{id}",
       .success = 204,
       .target = {"", "/api/v1/sessions/" + w.held_session_id, ""},
       .allowed = owner_a("/api/v1/sessions/" + w.held_session_id)},

      // The organization.
      {.key = "PATCH /api/v1/org",
       .target = {"", "/api/v1/org", settings_body},
       .allowed = owner_a("/api/v1/org", settings_body)},
      {.key = "GET /api/v1/roles",
       .target = {"", "/api/v1/roles", ""},
       .allowed = owner_a("/api/v1/roles")},
      // A role name is the organization's own namespace, not an id: B's PUT
      // of the same name defines B's role (200), and must leave A's alone.
      {.key = "PUT /api/v1/roles/{name}",
       .target = {"", std::string("/api/v1/roles/") + kCustomRole, role_body},
       .allowed = owner_a(std::string("/api/v1/roles/") + kCustomRole, role_body),
       .other_org = owner_b(std::string("/api/v1/roles/") + kCustomRole,
                            Body({{"description", "organization B's own"},
                                  {"permissions", json::array{"audit.read"}}})),
       .other_org_status = 200},
      {.key = "DELETE /api/v1/roles/{name}",
       .success = 204,
       .target = {"", std::string("/api/v1/roles/") + kSpareRole, ""},
       .allowed = owner_a(std::string("/api/v1/roles/") + kSpareRole)},
      {.key = "POST /api/v1/org/keys/rotate",
       .target = {"", "/api/v1/org/keys/rotate", ""},
       .allowed = owner_a("/api/v1/org/keys/rotate")},

      // Emergency access and alerts. Owner A's grant is open, so the
      // physician opens one; only the grant's holder may end it, and only an
      // alert's recipient (the privacy officer) may acknowledge it.
      {.key = "POST /api/v1/break-glass",
       .success = 201,
       .target = {"", "/api/v1/break-glass", reason_body},
       .allowed =
           [&w, reason_body] {
             return Call{w.staff.at("physician").token, "/api/v1/break-glass", reason_body};
           }},
      {.key = "GET /api/v1/break-glass",
       .target = {"", "/api/v1/break-glass", ""},
       .allowed = owner_a("/api/v1/break-glass")},
      {.key = "POST /api/v1/break-glass/{id}/end",
       .success = 204,
       .target = {"", "/api/v1/break-glass/" + w.grant_id + "/end", ""},
       .allowed = owner_a("/api/v1/break-glass/" + w.grant_id + "/end")},
      {.key = "GET /api/v1/alerts",
       .target = {"", "/api/v1/alerts", ""},
       .allowed =
           [&w] {
             return Call{w.staff.at("privacy_officer").token, "/api/v1/alerts"};
           }},
      {.key = "POST /api/v1/alerts/{id}/acknowledge",
       .success = 204,
       .target = {"", "/api/v1/alerts/" + w.alert_id + "/acknowledge", ""},
       .allowed =
           [&w] {
             return Call{w.staff.at("privacy_officer").token,
                         "/api/v1/alerts/" + w.alert_id + "/acknowledge"};
           }},

      {.key = "GET /api/v1/audit",
       .target = {"", "/api/v1/audit", ""},
       .allowed = owner_a("/api/v1/audit")},

      {.key = "GET /api/v1/audit/export",
       .target = {"", "/api/v1/audit/export?format=jsonl&from=2000-01-01&to=2100-01-01", ""},
       .allowed = owner_a("/api/v1/audit/export?format=jsonl&from=2000-01-01&to=2100-01-01")},

      // Secure messaging: owner A's group, where owner A is the admin and
      // the courier a plain member, and owner A's message in it. B naming
      // A's courier as a member is refused like a user who does not exist
      // (400), and B's own list names nothing of A. The rows run in this
      // order: the user added by the members row is the one the next row
      // removes, and the message is read before it is recalled.
      {.key = "POST /api/v1/conversations",
       .success = 201,
       .target = {"", "/api/v1/conversations", group_body},
       .allowed =
           [&w] {
             return Call{w.owner_a.token, "/api/v1/conversations",
                         Body({{"kind", "group"},
                               {"title", w.Unique("isolation matrix")},
                               {"members", json::array{w.courier().user_id}}})};
           },
       .other_org = owner_b("/api/v1/conversations", group_body),
       .other_org_status = 400},
      {.key = "GET /api/v1/conversations",
       .target = {"", "/api/v1/conversations", ""},
       .allowed = courier("/api/v1/conversations")},
      {.key = "GET /api/v1/conversations/{id}",
       .target = {"", conversation, ""},
       .allowed = courier(conversation)},
      {.key = "PATCH /api/v1/conversations/{id}",
       .target = {"", conversation, title_body},
       .allowed = owner_a(conversation, title_body)},
      {.key = "POST /api/v1/conversations/{id}/members",
       .target = {"", conversation + "/members", member_body},
       .allowed = owner_a(conversation + "/members", member_body)},
      {.key = "DELETE /api/v1/conversations/{id}/members/{user_id}",
       .success = 204,
       .target = {"", conversation + "/members/" + w.target_user_id, ""},
       .allowed = owner_a(conversation + "/members/" + w.target_user_id)},
      {.key = "POST /api/v1/conversations/{id}/messages",
       .success = 201,
       .target = {"", conversation + "/messages",
                  Body({{"client_txn_id", "isolation-matrix-refused"},
                        {"body", "isolation matrix: never stored"}})},
       .allowed =
           [&w, conversation] {
             return Call{w.courier().token, conversation + "/messages",
                         Body({{"client_txn_id", w.Unique("isolation-matrix")},
                               {"body", "isolation matrix: the courier's message"}})};
           }},
      {.key = "GET /api/v1/conversations/{id}/messages",
       .target = {"", conversation + "/messages", ""},
       .allowed = courier(conversation + "/messages")},
      {.key = "POST /api/v1/messages/{id}/read",
       .success = 204,
       .target = {"", message + "/read", ""},
       .allowed = courier(message + "/read")},
      {.key = "GET /api/v1/messages/{id}/receipts",
       .target = {"", message + "/receipts", ""},
       .allowed = owner_a(message + "/receipts")},
      // The courier forwards owner A's message into the same conversation
      // (before the recall below, which leaves nothing to forward).
      {.key = "POST /api/v1/messages/{id}/forward",
       .success = 201,
       .target = {"", message + "/forward", forward_body},
       .allowed =
           [&w, message] {
             return Call{w.courier().token, message + "/forward",
                         Body({{"conversation_id", w.conversation_id},
                               {"client_txn_id", w.Unique("isolation-forward")}})};
           }},
      {.key = "POST /api/v1/messages/{id}/recall",
       .success = 204,
       .target = {"", message + "/recall", ""},
       .allowed = owner_a(message + "/recall")},
      {.key = "POST /api/v1/conversations/{id}/attachments",
       .success = 201,
       .target = {"", conversation + "/attachments", upload, nullptr, upload_headers},
       .allowed =
           [&w, conversation, upload, upload_headers] {
             return Call{w.owner_a.token, conversation + "/attachments", upload, nullptr,
                         upload_headers};
           }},
      // Until it is sent, an upload is its uploader's alone.
      {.key = "GET /api/v1/attachments/{id}",
       .target = {"", "/api/v1/attachments/" + w.attachment_id, ""},
       .allowed = owner_a("/api/v1/attachments/" + w.attachment_id)},
      // Legal hold is the organization's (org.manage), whether or not the
      // caller belongs to the conversation; last, since a hold stops recall.
      {.key = "PUT /api/v1/conversations/{id}/legal-hold",
       .target = {"", conversation + "/legal-hold", R"({"legal_hold":true})"},
       .allowed = owner_a(conversation + "/legal-hold", R"({"legal_hold":true})")},
  };
}

// ---- set-up -----------------------------------------------------------------

// Activates the owners and one user per role the rows need, creates A's
// objects and the tokens of the refused callers. False when that failed.
bool Prepare(World& w, const std::string& otp_a, const std::string& otp_b,
             const std::vector<RegisteredRoute>& routes) {
  const std::uint16_t port = w.port;
  w.owner_a = Activate(port, kOrgA, {"", kOwnerA, otp_a}, kPasswordA);
  w.owner_b = Activate(port, kOrgB, {"", kOwnerB, otp_b}, kPasswordB);
  if (w.owner_a.token.empty() || w.owner_b.token.empty()) return false;

  for (const auto& [name, permissions] :
       std::vector<std::pair<std::string, std::vector<std::string>>>{
           {kCustomRole, kCustomRolePermissions},
           {kSpareRole, {"messages.read"}},
           {kClerkRole, kClerkRolePermissions}}) {
    const auto r = Send(port, "PUT", "/api/v1/roles/" + name, w.owner_a.token,
                        Body({{"description", "isolation matrix"},
                              {"permissions", json::value_from(permissions)}}));
    if (r.status != 200) {
      ADD_FAILURE() << "PUT role " << name << ": " << r.status << " " << r.body;
      return false;
    }
  }

  // The privacy officer receives break-glass alerts; the physician opens
  // emergency access; the rest refuse permissions they lack.
  std::set<std::string> roles = {"privacy_officer", "physician", kCustomRole};
  for (const RegisteredRoute& r : routes) {
    if (r.access.scope == Scope::kSignedIn && !r.access.own_account) {
      roles.insert(RoleLacking(r.access.permission));
    }
  }
  for (const std::string& role : roles) {
    const NewUser u = CreateUser(port, w.owner_a.token, Staff(role), role);
    if (u.id.empty()) return false;
    w.staff[role] = Activate(port, kOrgA, u, kPasswordA);
    if (w.staff[role].token.empty()) return false;
  }

  w.target_user_id = CreateUser(port, w.owner_a.token, "alice-target", "nurse").id;
  const NewUser holder = CreateUser(port, w.owner_a.token, "alice-holder", "nurse");
  w.holder_user_id = holder.id;
  OneTimeSession(port, kOrgA, holder);
  {
    const auto r = Send(port, "GET", "/api/v1/users/" + holder.id + "/sessions", w.owner_a.token);
    const json::object o = Parse(r.body);
    if (const auto* s = o.if_contains("sessions");
        s && s->is_array() && s->as_array().size() == 1) {
      w.held_session_id = Str(s->as_array()[0].as_object().if_contains("id"));
    }
    EXPECT_FALSE(w.held_session_id.empty()) << r.status << " " << r.body;
  }
  w.pending_a = PendingAccount(port, kOrgA, w.owner_a.token, "alice-pending", kPasswordA);
  w.pending_b = PendingAccount(port, kOrgB, w.owner_b.token, "bob-pending", kPasswordB);

  {
    const auto r = Send(port, "POST", "/api/v1/break-glass", w.owner_a.token,
                        Body({{"reason", "isolation matrix: owner's emergency access"}}));
    EXPECT_EQ(r.status, 201) << r.body;
    w.grant_id = Field(Parse(r), "id");
    const auto alerts = Send(port, "GET", "/api/v1/alerts", w.staff.at("privacy_officer").token);
    const json::object o = Parse(alerts.body);
    if (const auto* list = o.if_contains("alerts"); list && list->is_array()) {
      for (const auto& a : list->as_array()) {
        if (Str(a.as_object().if_contains("target_id")) == w.grant_id) {
          w.alert_id = Str(a.as_object().if_contains("id"));
        }
      }
    }
    EXPECT_FALSE(w.alert_id.empty()) << "no alert about " << w.grant_id << ": " << alerts.body;
  }

  // Owner A's group conversation with the courier, and a message in it, once
  // the router has messaging.
  const bool messaging = std::any_of(routes.begin(), routes.end(), [](const RegisteredRoute& r) {
    return r.key == "POST /api/v1/conversations";
  });
  if (messaging) {
    const auto created = Send(port, "POST", "/api/v1/conversations", w.owner_a.token,
                              Body({{"kind", "group"},
                                    {"title", "isolation matrix: A's conversation"},
                                    {"members", json::array{w.courier().user_id}}}));
    EXPECT_EQ(created.status, 201) << created.body;
    w.conversation_id = Field(Parse(created), "id");
    const auto sent = Send(port, "POST", "/api/v1/conversations/" + w.conversation_id + "/messages",
                           w.owner_a.token,
                           Body({{"client_txn_id", "isolation-matrix-1"},
                                 {"body", "isolation matrix: owner A's message"}}));
    EXPECT_EQ(sent.status, 201) << sent.body;
    w.message_id = Field(Parse(sent), "id");
    if (w.conversation_id.empty() || w.message_id.empty()) return false;
  }
  if (std::any_of(routes.begin(), routes.end(), [](const RegisteredRoute& r) {
        return r.key == "GET /api/v1/attachments/{id}";
      })) {
    const auto uploaded =
        Send(port, "POST", "/api/v1/conversations/" + w.conversation_id + "/attachments",
             w.owner_a.token, "Isolation matrix: owner A's attachment.\n",
             {{"content-type", "text/plain"}, {"x-attachment-name", "owner-a.txt"}});
    EXPECT_EQ(uploaded.status, 201) << uploaded.body;
    w.attachment_id = Field(Parse(uploaded), "id");
    if (w.attachment_id.empty()) return false;
  }

  // The refused callers' tokens, all owner A's: whatever they are refused,
  // it is not for a missing permission.
  w.expired_token = FreshSession(port, w.owner_a);
  w.revoked_token = FreshSession(port, w.owner_a);
  w.stale_token = FreshSession(port, w.owner_a);
  const std::string expired_id = SessionIdOf(port, w.expired_token);
  const std::string revoked_id = SessionIdOf(port, w.revoked_token);
  const std::string stale_id = SessionIdOf(port, w.stale_token);
  AgeSession(w.database, expired_id, "last_used_at");
  AgeSession(w.database, stale_id, "reauthenticated_at");
  EXPECT_EQ(Send(port, "POST", "/api/v1/auth/logout", w.revoked_token).status, 204);

  // What B must never see.
  w.org_a_id = Field(Parse(Send(port, "GET", "/api/v1/org", w.owner_a.token)), "id");
  w.markers = {kOwnerA,           kOrgA,
               w.org_a_id,        expired_id,
               revoked_id,        stale_id,
               w.held_session_id, w.grant_id,
               w.alert_id,        SessionIdOf(port, w.owner_a.token)};
  if (messaging) {
    w.markers.push_back(w.conversation_id);
    w.markers.push_back(w.message_id);
  }
  if (!w.attachment_id.empty()) w.markers.push_back(w.attachment_id);
  const json::object listed =
      Parse(Send(port, "GET", "/api/v1/users?limit=500", w.owner_a.token).body);
  if (const auto* list = listed.if_contains("users"); list && list->is_array()) {
    for (const auto& u : list->as_array())
      w.markers.push_back(Str(u.as_object().if_contains("id")));
  }
  for (const std::string& m : w.markers) {
    if (m.empty()) {
      ADD_FAILURE() << "an object of A is missing";
      return false;
    }
  }
  return !w.target_user_id.empty() && !w.pending_a.token.empty() && !w.pending_b.token.empty();
}

// ---- the matrix -------------------------------------------------------------

enum Caller { kNoToken, kExpired, kRevoked, kOtherOrg, kNoPermission, kStale, kAllowed, kCallers };
constexpr std::array<const char*, kCallers> kCallerNames = {
    "no token", "expired", "revoked", "other org", "no perm", "stale", "allowed"};

// route × caller → what was seen ("401", "n/a", or "200!404" for got!expected).
using Matrix = std::map<std::string, std::array<std::string, kCallers>>;

// How a route's access reads in the printed matrix.
std::string AccessText(const api::Access& a) {
  std::string text;
  switch (a.scope) {
    case Scope::kPublic:
      text = "public";
      break;
    case Scope::kPasswordChange:
      text = "password-change";
      break;
    case Scope::kMfaEnrollment:
      text = "mfa-enrolment";
      break;
    case Scope::kSignedIn:
      text = a.own_account ? "own account" : std::string(identity::PermissionName(a.permission));
      break;
  }
  return a.recent_reauth ? text + " +reauth" : text;
}

void PrintMatrix(const Matrix& m, const std::vector<std::string>& order,
                 const std::map<std::string, std::string>& access) {
  std::size_t width = 5;
  for (const auto& key : order) width = std::max(width, key.size());
  std::ostringstream out;
  out << "\nisolation matrix (got!expected where they differ)\n"
      << std::left << std::setw(static_cast<int>(width)) << "route"
      << " | " << std::setw(25) << "access";
  for (const char* c : kCallerNames) out << " | " << std::setw(9) << c;
  out << "\n";
  for (const auto& key : order) {
    out << std::setw(static_cast<int>(width)) << key << " | " << std::setw(25) << access.at(key);
    for (const std::string& cell : m.at(key)) out << " | " << std::setw(9) << cell;
    out << "\n";
  }
  std::cout << out.str() << std::flush;
}

class Runner {
 public:
  Runner(World& w, Matrix& m) : w_(w), m_(m) {}

  // Sends `call` for the route `key` as `caller`; records and checks the
  // answer: `want`, with error code `code` when one is given.
  HttpResponse Run(const std::string& key, Caller caller, const Call& call, int want,
                   const std::string& code = "") {
    const std::string method = key.substr(0, key.find(' '));
    const HttpResponse r = Send(w_.port, method, call.path, call.token, call.body, call.headers);
    const bool ok = r.status == want && (code.empty() || ErrorCodeOf(r) == code);
    m_[key][caller] =
        ok ? std::to_string(r.status) : std::to_string(r.status) + "!" + std::to_string(want);
    EXPECT_TRUE(ok) << key << " as " << kCallerNames[caller] << " (" << method << " " << call.path
                    << "): got " << r.status << " " << ErrorCodeOf(r) << ", expected " << want
                    << (code.empty() ? "" : " " + code) << "\n  " << r.body.substr(0, 300);
    if (call.resign != nullptr) call.resign->token = FreshSession(w_.port, *call.resign);
    return r;
  }

 private:
  World& w_;
  Matrix& m_;
};

TEST(IsolationMatrixTest, EveryRouteAnswersOnlyTheCallerItIsFor) {
  const auto started = std::chrono::steady_clock::now();
  const std::vector<RegisteredRoute> routes = RegisteredRoutes();
  ASSERT_FALSE(routes.empty());

  // ---- the table covers the router, and only the router ----
  std::map<std::string, const RegisteredRoute*> registered;
  for (const RegisteredRoute& r : routes) registered[r.key] = &r;
  World w;
  std::set<std::string> with_rows;
  for (const Row& row : MatrixRows(w)) {
    EXPECT_TRUE(with_rows.insert(row.key).second) << "two rows for " << row.key;
    EXPECT_TRUE(registered.count(row.key))
        << "the isolation matrix has a row for " << row.key
        << ", which the router does not register: remove the row";
  }
  for (const auto& [key, reason] : Exempt()) {
    const auto it = registered.find(key);
    if (it == registered.end()) {
      ADD_FAILURE() << "exempt route " << key << " is not registered: remove it from Exempt()";
      continue;
    }
    EXPECT_EQ(it->second->access.scope, Scope::kPublic)
        << key << " is exempt from the matrix (" << reason << ") only while it is public";
    EXPECT_FALSE(with_rows.count(key)) << key << " is both exempt and in the matrix";
  }
  if (registered.count("GET /api/v1/events")) {
    EXPECT_TRUE(registered.at("GET /api/v1/events")->websocket);
  }
  for (const RegisteredRoute& r : routes) {
    if (!with_rows.count(r.key) && !Exempt().count(r.key)) {
      ADD_FAILURE() << "route " << r.key
                    << " has no row: add a row to the isolation matrix "
                       "(tests/integration/isolation_matrix_test.cpp, MatrixRows)";
    }
  }

  // ---- the deployment: organizations A and B ----
  Deployment d;
  const std::string otp_a = d.AddOrg(kOrgA, kOwnerA);
  const std::string otp_b = d.AddOrg(kOrgB, kOwnerB);
  ASSERT_FALSE(otp_a.empty() || otp_b.empty());
  d.Start();
  w.port = d.port();
  w.database = d.database();
  ASSERT_TRUE(Prepare(w, otp_a, otp_b, routes)) << "set-up failed; the matrix did not run";
  const auto prepared = std::chrono::steady_clock::now();

  std::vector<Row> rows;
  for (Row& row : MatrixRows(w)) {
    if (registered.count(row.key)) rows.push_back(std::move(row));
  }
  Matrix matrix;
  std::vector<std::string> order;
  for (const Row& row : rows) {
    order.push_back(row.key);
    const api::Access& a = registered.at(row.key)->access;
    auto& cells = matrix[row.key];
    cells.fill("n/a");
    if (a.scope == Scope::kPublic) {
      for (int c = 0; c < kAllowed; ++c) cells[c] = "public";
    }
  }
  for (const RegisteredRoute& r : routes) {
    if (matrix.count(r.key)) continue;
    order.push_back(r.key);
    matrix[r.key].fill(Exempt().count(r.key) ? "exempt" : "NO ROW");
  }
  Runner runner(w, matrix);
  auto access = [&](const Row& row) -> const api::Access& {
    return registered.at(row.key)->access;
  };
  auto with_token = [](Call call, const std::string& token) {
    call.token = token;
    return call;
  };
  auto has_param = [&](const Row& row) { return registered.at(row.key)->has_param; };

  // 1. Missing, expired and revoked tokens.
  for (const Row& row : rows) {
    if (access(row).scope == Scope::kPublic) continue;
    runner.Run(row.key, kNoToken, row.target, 401, "unauthenticated");
    runner.Run(row.key, kExpired, with_token(row.target, w.expired_token), 401, "unauthenticated");
    runner.Run(row.key, kRevoked, with_token(row.target, w.revoked_token), 401, "unauthenticated");
  }
  // 2. A session whose last password check is an hour old, on sensitive routes.
  for (const Row& row : rows) {
    if (!access(row).recent_reauth) continue;
    runner.Run(row.key, kStale, with_token(row.target, w.stale_token), 401, "reauth_required");
  }
  // 3. A role without the permission.
  for (const Row& row : rows) {
    const api::Access& a = access(row);
    if (a.scope != Scope::kSignedIn || a.own_account) continue;
    const std::string role = RoleLacking(a.permission);
    if (role == kClerkRole) {
      ASSERT_FALSE(identity::Has(CustomPermissions(kClerkRolePermissions), a.permission))
          << "no role lacks " << identity::PermissionName(a.permission) << " (" << row.key
          << "): give the matrix a custom role without it";
    }
    runner.Run(row.key, kNoPermission, with_token(row.target, w.staff.at(role).token), 403,
               "forbidden");
  }

  // 4 and 5. Organization B. Nothing B does may change what A has.
  auto snapshot = [&] {
    std::string s;
    std::vector<std::string> paths = {"/api/v1/users?limit=500", "/api/v1/roles", "/api/v1/org",
                                      "/api/v1/break-glass"};
    if (!w.conversation_id.empty()) {
      paths.push_back("/api/v1/conversations");
      paths.push_back("/api/v1/conversations/" + w.conversation_id);
      paths.push_back("/api/v1/conversations/" + w.conversation_id + "/messages");
      paths.push_back("/api/v1/messages/" + w.message_id + "/receipts");
    }
    for (const std::string& path : paths) {
      const auto r = Send(w.port, "GET", path, w.owner_a.token);
      EXPECT_EQ(r.status, 200) << path << ": " << r.body;
      s += std::string(path) + " " + r.body + "\n";
    }
    return s;
  };
  const std::string before_b = snapshot();
  // 4. Routes without a path parameter (and PUT /roles/{name}) first, while B
  // has not yet sent any of A's ids anywhere: B's answers name nothing of A.
  for (const Row& row : rows) {
    if (access(row).scope == Scope::kPublic || (has_param(row) && !row.other_org)) continue;
    const Call call = row.other_org ? row.other_org() : with_token(row.target, w.owner_b.token);
    const int want =
        row.other_org && row.other_org_status != 0 ? row.other_org_status : row.success;
    const HttpResponse r = runner.Run(row.key, kOtherOrg, call, want);
    for (const std::string& marker : w.markers) {
      EXPECT_EQ(r.body.find(marker), std::string::npos)
          << row.key << " as other org: the answer names A's " << marker << ": " << r.body;
    }
  }
  // 5. A's ids in the path: not found.
  for (const Row& row : rows) {
    if (access(row).scope == Scope::kPublic || !has_param(row) || row.other_org) continue;
    runner.Run(row.key, kOtherOrg, with_token(row.target, w.owner_b.token), 404, "not_found");
  }
  EXPECT_EQ(snapshot(), before_b) << "organization B's calls changed organization A";

  // 6. The callers that may. Never 401, 403 or 404.
  for (const Row& row : rows) runner.Run(row.key, kAllowed, row.allowed(), row.success);

  const auto ran = std::chrono::steady_clock::now();
  d.StopAndVerifyAudit();

  // Printed on failure, or on request (CW_TEST_PRINT_MATRIX=1).
  if (HasFailure() || std::getenv("CW_TEST_PRINT_MATRIX") != nullptr) {  // NOLINT
    std::map<std::string, std::string> access_text;
    for (const RegisteredRoute& r : routes) access_text[r.key] = AccessText(r.access);
    PrintMatrix(matrix, order, access_text);
  }
  using std::chrono::duration_cast;
  using ms = std::chrono::milliseconds;
  std::cout << "isolation matrix: " << rows.size() << " rows; set-up "
            << duration_cast<ms>(prepared - started).count() << " ms, calls "
            << duration_cast<ms>(ran - prepared).count() << " ms\n";
}

}  // namespace
}  // namespace cw::testing
