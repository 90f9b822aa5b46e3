#include "identity/sessions.hpp"

#include <sodium.h>

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include "audit/audit_log.hpp"
#include "core/error.hpp"
#include "core/random.hpp"
#include "core/time.hpp"
#include "core/utf8.hpp"
#include "identity/organizations.hpp"
#include "identity/password.hpp"

namespace cw::identity {
namespace {

using storage::Blob;

constexpr std::size_t kTokenBytes = 32;
constexpr std::size_t kMaxPasswordInput = 1024;  // longer input is refused unhashed

Blob TokenHash(std::string_view token) {
  Blob out(crypto_hash_sha256_BYTES);
  crypto_hash_sha256(out.data(), reinterpret_cast<const unsigned char*>(token.data()),
                     token.size());
  return out;
}

std::string NewToken() {
  unsigned char raw[kTokenBytes];
  core::RandomBytes(raw);
  char hex[kTokenBytes * 2 + 1];
  sodium_bin2hex(hex, sizeof hex, raw, sizeof raw);
  sodium_memzero(raw, sizeof raw);
  std::string token = "cwt_";
  token.append(hex);
  sodium_memzero(hex, sizeof hex);
  return token;
}

std::vector<std::string> ParseRoles(const std::string& json) {
  std::vector<std::string> roles;
  boost::system::error_code ec;
  const boost::json::value v = boost::json::parse(json, ec);
  if (ec || !v.is_array()) return roles;
  for (const auto& r : v.as_array()) {
    if (r.is_string()) roles.emplace_back(r.as_string());
  }
  return roles;
}

std::size_t CodePoints(std::string_view s) {
  std::size_t n = 0;
  for (const char c : s) {
    if ((static_cast<unsigned char>(c) & 0xc0) != 0x80) ++n;
  }
  return n;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

audit::Event AuthEvent(std::string_view action, const std::string& org_id,
                       const std::string& user_id, const RequestOrigin& origin) {
  audit::Event e;
  e.org_id = org_id;
  e.actor_type = user_id.empty() ? audit::ActorType::kSystem : audit::ActorType::kUser;
  e.actor_id = user_id;
  e.action = std::string(action);
  e.target_type = user_id.empty() ? "" : "user";
  e.target_id = user_id;
  e.request_id = origin.request_id;
  e.source_address = origin.source_address;
  return e;
}

struct Account {
  std::string user_id;
  std::string org_id;
  std::string username;
  std::string display_name;
  std::string roles_json;
  std::string password_hash;
  bool temporary = false;
  bool active = false;
};

}  // namespace

std::string PasswordProblem(std::string_view username, std::string_view password) {
  if (!core::IsValidUtf8(password)) return "the new password is not valid UTF-8";
  const std::size_t n = CodePoints(password);
  if (n < 12) return "the new password must have at least 12 characters";
  if (n > 128) return "the new password must have at most 128 characters";
  if (!username.empty() && Lower(password).find(Lower(username)) != std::string::npos) {
    return "the new password must not contain the username";
  }
  return "";
}

Sessions::Sessions(storage::Database& db)
    : db_(db), dummy_hash_(HashPassword(core::RandomHex(16))) {}

Result<NewSession> Sessions::Login(std::string_view org_slug, std::string_view username,
                                   std::string_view password, const RequestOrigin& origin) {
  std::optional<Account> account;
  const std::string normalized = NormalizeUsername(username);
  auto read = db_.Read([&](storage::Transaction& tx) -> Status {
    auto row = tx.QueryOne(
        "SELECT u.id, u.org_id, u.username, u.display_name, u.roles, u.password_hash, "
        "u.password_temporary, u.status = 'active' AND o.status = 'active' "
        "FROM users u JOIN organizations o ON o.id = u.org_id "
        "WHERE o.slug = ? AND u.username = ?",
        {std::string(org_slug), normalized});
    if (!row) return row.error();
    if (!*row) return Ok();
    const storage::Row& r = **row;
    account = Account{r.Text(0), r.Text(1), r.Text(2),     r.Text(3),
                      r.Text(4), r.Text(5), r.Int(6) != 0, r.Int(7) != 0};
    return Ok();
  });
  if (!read) return read.error();

  // The same Argon2id work whether or not the account exists.
  const bool password_ok = password.size() <= kMaxPasswordInput &&
                           VerifyPassword(account ? account->password_hash : dummy_hash_, password);
  const bool ok = account && account->active && password_ok;

  NewSession session;
  bool still_valid = ok;
  Status written = db_.Write([&](storage::Transaction& tx) -> Status {
    const std::string now = core::NowRfc3339();
    if (ok) {
      // The password was checked outside this transaction: a password
      // change or a deactivation may have committed since. The session is
      // opened only if the verified hash is still the account's.
      auto current = tx.QueryOne(
          "SELECT 1 FROM users u JOIN organizations o ON o.id = u.org_id "
          "WHERE u.id = ? AND u.password_hash = ? AND u.status = 'active' "
          "AND o.status = 'active'",
          {account->user_id, account->password_hash});
      if (!current) return current.error();
      still_valid = current->has_value();
    }
    if (!still_valid) {
      // The failure is recorded against the account when it exists (so a
      // privacy officer sees attacks on it), without the password tried.
      audit::Event e = AuthEvent("auth.login_failed", account ? account->org_id : "",
                                 account ? account->user_id : "", origin);
      e.actor_type = audit::ActorType::kSystem;
      e.actor_id.clear();
      e.outcome = audit::Outcome::kFailure;
      return audit::Record(tx, e, now);
    }
    session.token = NewToken();
    Principal& u = session.user;
    u.session_id = "ses_" + core::RandomHex(12);
    u.user_id = account->user_id;
    u.org_id = account->org_id;
    u.org_slug = std::string(org_slug);
    u.username = account->username;
    u.display_name = account->display_name;
    u.roles = ParseRoles(account->roles_json);
    u.password_change_only = account->temporary;
    u.expires_at = core::FormatRfc3339(std::chrono::system_clock::now() + kAbsoluteLifetime);
    auto inserted = tx.Execute(
        "INSERT INTO sessions (id, token_hash, user_id, org_id, scope, created_at, "
        "last_used_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        {u.session_id, TokenHash(session.token), u.user_id, u.org_id,
         std::string(u.password_change_only ? "password_change" : "full"), now, now, u.expires_at});
    if (!inserted) return inserted.error();
    audit::Event e = AuthEvent("auth.login", u.org_id, u.user_id, origin);
    e.details = std::string("{\"session\":\"") + u.session_id + "\",\"scope\":\"" +
                (u.password_change_only ? "password_change" : "full") + "\"}";
    return audit::Record(tx, e, now);
  });
  if (!written) return written.error();
  if (!still_valid) return core::Error::kUnauthenticated;
  return session;
}

Result<Principal> Sessions::Authenticate(std::string_view token) {
  if (token.size() != 4 + kTokenBytes * 2 || token.substr(0, 4) != "cwt_") {
    return core::Error::kUnauthenticated;
  }
  const auto now_point = std::chrono::system_clock::now();
  const std::string now = core::FormatRfc3339(now_point);
  const std::string idle_cutoff = core::FormatRfc3339(now_point - kIdleTimeout);
  std::optional<Principal> user;
  std::string last_used;
  auto read = db_.Read([&](storage::Transaction& tx) -> Status {
    auto row = tx.QueryOne(
        "SELECT s.id, s.user_id, s.org_id, o.slug, u.username, u.display_name, u.roles, "
        "s.scope, s.expires_at, s.last_used_at "
        "FROM sessions s JOIN users u ON u.id = s.user_id "
        "JOIN organizations o ON o.id = s.org_id "
        "WHERE s.token_hash = ? AND s.revoked_at IS NULL AND s.expires_at > ? "
        "AND s.last_used_at > ? AND u.status = 'active' AND o.status = 'active'",
        {TokenHash(token), now, idle_cutoff});
    if (!row) return row.error();
    if (!*row) return Ok();
    const storage::Row& r = **row;
    user = Principal{r.Text(0),
                     r.Text(1),
                     r.Text(2),
                     r.Text(3),
                     r.Text(4),
                     r.Text(5),
                     ParseRoles(r.Text(6)),
                     r.Text(7) == "password_change",
                     r.Text(8)};
    last_used = r.Text(9);
    return Ok();
  });
  if (!read) return read.error();
  if (!user) return core::Error::kUnauthenticated;
  if (last_used < core::FormatRfc3339(now_point - kTouchInterval)) {
    // Moves the idle clock; the request does not wait for it.
    db_.SubmitWrite(
        [id = user->session_id, now](storage::Transaction& tx) -> Status {
          auto r = tx.Execute("UPDATE sessions SET last_used_at = ? WHERE id = ?", {now, id});
          if (!r) return r.error();
          return Ok();
        },
        [](Status) {});
  }
  return *user;
}

Status Sessions::Logout(const Principal& user, const RequestOrigin& origin) {
  return db_.Write([&](storage::Transaction& tx) -> Status {
    const std::string now = core::NowRfc3339();
    auto r = tx.Execute("UPDATE sessions SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                        {now, user.session_id});
    if (!r) return r.error();
    audit::Event e = AuthEvent("auth.logout", user.org_id, user.user_id, origin);
    e.details = "{\"session\":\"" + user.session_id + "\"}";
    return audit::Record(tx, e, now);
  });
}

Status Sessions::ChangePassword(const Principal& user, std::string_view current_password,
                                std::string_view new_password, const RequestOrigin& origin,
                                std::string* problem) {
  std::string hash;
  auto read = db_.Read([&](storage::Transaction& tx) -> Status {
    auto row = tx.QueryOne("SELECT password_hash FROM users WHERE id = ?", {user.user_id});
    if (!row) return row.error();
    if (*row) hash = (*row)->Text(0);
    return Ok();
  });
  if (!read) return read.error();
  const bool current_ok = current_password.size() <= kMaxPasswordInput && !hash.empty() &&
                          VerifyPassword(hash, current_password);
  std::string reason;
  if (current_ok) {
    reason = PasswordProblem(user.username, new_password);
    if (reason.empty() && new_password == current_password) {
      reason = "the new password must differ from the current one";
    }
  }
  const std::string new_hash = current_ok && reason.empty() ? HashPassword(new_password) : "";
  bool still_current = current_ok;
  auto written = db_.Write([&](storage::Transaction& tx) -> Status {
    const std::string now = core::NowRfc3339();
    audit::Event e = AuthEvent("user.password_changed", user.org_id, user.user_id, origin);
    if (current_ok && reason.empty()) {
      // Checked outside this transaction: another change (or a logout) may
      // have committed since. Only the password that was verified, through
      // a session still open, is replaced.
      auto live = tx.QueryOne("SELECT 1 FROM sessions WHERE id = ? AND revoked_at IS NULL",
                              {user.session_id});
      if (!live) return live.error();
      if (*live) {
        auto r = tx.Execute(
            "UPDATE users SET password_hash = ?, password_temporary = 0 "
            "WHERE id = ? AND password_hash = ?",
            {new_hash, user.user_id, hash});
        if (!r) return r.error();
        still_current = *r == 1;
      } else {
        still_current = false;
      }
    }
    if (!still_current || !reason.empty()) {
      e.outcome = audit::Outcome::kFailure;
      e.details =
          still_current ? R"({"reason":"policy"})" : R"({"reason":"wrong_current_password"})";
      return audit::Record(tx, e, now);
    }
    // Every session, this one included, ends: the client signs in again.
    auto r =
        tx.Execute("UPDATE sessions SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL",
                   {now, user.user_id});
    if (!r) return r.error();
    return audit::Record(tx, e, now);
  });
  if (!written) return written.error();
  if (!still_current) return core::Error::kUnauthenticated;
  if (!reason.empty()) {
    *problem = reason;
    return core::Error::kInvalidArgument;
  }
  return Ok();
}

}  // namespace cw::identity
