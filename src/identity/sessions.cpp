#include "identity/sessions.hpp"

#include <sodium.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <set>

#include "audit/audit_log.hpp"
#include "audit/timestamp.hpp"
#include "core/error.hpp"
#include "core/random.hpp"
#include "core/utf8.hpp"
#include "identity/organizations.hpp"
#include "identity/password.hpp"
#include "identity/password_strength.hpp"
#include "identity/totp.hpp"
#include "identity/users.hpp"

namespace cw::identity {
namespace {

using storage::Blob;
using TimePoint = std::chrono::system_clock::time_point;

constexpr std::size_t kTokenBytes = 32;
constexpr std::size_t kMaxPasswordInput = 1024;  // longer input is refused unhashed
constexpr std::size_t kMaxUserAgent = 200;

std::string NewToken(std::string_view prefix) {
  unsigned char raw[kTokenBytes];
  core::RandomBytes(raw);
  char hex[kTokenBytes * 2 + 1];
  sodium_bin2hex(hex, sizeof hex, raw, sizeof raw);
  sodium_memzero(raw, sizeof raw);
  std::string token(prefix);
  token.append(hex);
  sodium_memzero(hex, sizeof hex);
  return token;
}

bool LooksLikeToken(std::string_view token, std::string_view prefix) {
  if (token.size() != prefix.size() + kTokenBytes * 2 || token.substr(0, prefix.size()) != prefix) {
    return false;
  }
  for (const char c : token.substr(prefix.size())) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
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

std::string_view ScopeName(SessionScope scope) {
  switch (scope) {
    case SessionScope::kFull:
      return "full";
    case SessionScope::kPasswordChange:
      return "password_change";
    case SessionScope::kMfaEnrollment:
      return "mfa_enrollment";
  }
  return "full";
}

SessionScope ScopeFromName(std::string_view name) {
  if (name == "password_change") return SessionScope::kPasswordChange;
  if (name == "mfa_enrollment") return SessionScope::kMfaEnrollment;
  return SessionScope::kFull;
}

TimePoint ParseTime(std::string_view text) {
  auto t = audit::ParseRfc3339(text);
  return t ? TimePoint(std::chrono::duration_cast<TimePoint::duration>(t->time_since_epoch()))
           : TimePoint{};
}

// A user agent as the session list shows it: printable ASCII, trimmed.
std::string CleanUserAgent(std::string_view ua) {
  std::string out;
  for (const char c : ua.substr(0, kMaxUserAgent)) {
    if (c >= 0x20 && c < 0x7f) out += c;
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

// A failed step, recorded against the account when it exists (so a privacy
// officer sees attacks on it), by the system rather than the user (the
// caller is not known to be them), without anything that was tried.
audit::Event FailureEvent(std::string_view action, const std::string& org_id,
                          const std::string& user_id, const RequestOrigin& origin) {
  audit::Event e = AuthEvent(action, org_id, user_id, origin);
  e.actor_type = audit::ActorType::kSystem;
  e.actor_id.clear();
  e.outcome = audit::Outcome::kFailure;
  return e;
}

}  // namespace

struct Sessions::Account {
  std::string user_id;
  std::string org_id;
  std::string org_slug;
  std::string username;
  std::string display_name;
  std::string roles_json;
  std::string password_hash;
  bool temporary = false;
  bool active = false;
  bool mfa_enabled = false;
  bool mfa_required = false;
  int absolute_hours = 12;
};

Blob TokenHash(std::string_view token) {
  Blob out(crypto_hash_sha256_BYTES);
  crypto_hash_sha256(out.data(), reinterpret_cast<const unsigned char*>(token.data()),
                     token.size());
  return out;
}

std::string PasswordProblem(std::string_view username, std::string_view password,
                            const std::vector<std::string>& user_words) {
  if (!core::IsValidUtf8(password)) return "the new password is not valid UTF-8";
  const std::size_t n = CodePoints(password);
  if (n < 12) return "the new password must have at least 12 characters";
  if (n > 128) return "the new password must have at most 128 characters";
  if (!username.empty() && Lower(password).find(Lower(username)) != std::string::npos) {
    return "the new password must not contain the username";
  }
  std::vector<std::string> words = user_words;
  words.emplace_back(username);
  return GuessabilityProblem(password, words);
}

Sessions::Sessions(storage::Database& db, keys::KeyStore& keys, SessionOptions options)
    : db_(db),
      keys_(keys),
      options_(std::move(options)),
      throttle_(options_.throttle, options_.clock),
      dummy_hash_(HashPassword(core::RandomHex(16))) {}

namespace {

constexpr std::string_view kAccountColumns =
    "u.id, u.org_id, o.slug, u.username, u.display_name, u.roles, u.password_hash, "
    "u.password_temporary, u.status = 'active' AND o.status = 'active', "
    "EXISTS (SELECT 1 FROM mfa_factors f WHERE f.user_id = u.id AND f.status = 'active'), "
    "o.mfa_required, o.absolute_timeout_hours "
    "FROM users u JOIN organizations o ON o.id = u.org_id ";

}  // namespace

Status Sessions::OpenSession(storage::Transaction& tx, const Account& account, SessionScope scope,
                             const RequestOrigin& origin, std::string_view via, SignIn* out) {
  const TimePoint now_point = Now();
  const std::string now = core::FormatRfc3339(now_point);
  out->mfa_challenge = false;
  out->token = NewToken("cwt_");
  Principal& u = out->user;
  u.session_id = "ses_" + core::RandomHex(12);
  u.user_id = account.user_id;
  u.org_id = account.org_id;
  u.org_slug = account.org_slug;
  u.username = account.username;
  u.display_name = account.display_name;
  u.roles = ParseRolesJson(account.roles_json);
  u.scope = scope;
  u.mfa_enabled = account.mfa_enabled;
  u.reauthenticated_at = now_point;
  u.expires_at = core::FormatRfc3339(now_point + std::chrono::hours(account.absolute_hours));
  auto inserted = tx.Execute(
      "INSERT INTO sessions (id, token_hash, user_id, org_id, scope, created_at, last_used_at, "
      "expires_at, reauthenticated_at, source_address, user_agent) "
      "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
      {u.session_id, TokenHash(out->token), u.user_id, u.org_id, std::string(ScopeName(scope)),
       now, now, u.expires_at, now, origin.source_address, CleanUserAgent(origin.user_agent)});
  if (!inserted) return inserted.error();
  if (scope == SessionScope::kFull) {
    auto seen = tx.Execute("UPDATE users SET last_sign_in_at = ? WHERE id = ?", {now, u.user_id});
    if (!seen) return seen.error();
    // What the sign-in answer shows, as Authenticate will compute it.
    u.permissions = BuiltInPermissions(u.roles);
    auto custom = tx.QueryOne(
        "SELECT group_concat(permissions, ' ') FROM org_roles "
        "WHERE org_id = ? AND name IN (SELECT value FROM json_each(?))",
        {u.org_id, account.roles_json});
    if (!custom) return custom.error();
    if (*custom && !(*custom)->IsNull(0)) u.permissions |= ParsePermissionList((*custom)->Text(0));
  }
  audit::Event e = AuthEvent("auth.login", u.org_id, u.user_id, origin);
  e.details = std::string("{\"session\":\"") + u.session_id + "\",\"scope\":\"" +
              std::string(ScopeName(scope)) + "\",\"via\":\"" + std::string(via) + "\"}";
  return audit::Record(tx, e, now);
}

Result<SignIn> Sessions::Login(std::string_view org_slug, std::string_view username,
                               std::string_view password, const RequestOrigin& origin,
                               Refusal* refusal) {
  const std::string normalized = NormalizeUsername(username);
  const std::string key = AccountKey(org_slug, normalized);
  if (const auto wait = throttle_.Check(key, origin.source_address); wait.count() > 0) {
    refusal->retry_after = RetryAfter(wait);
    return core::Error::kResourceExhausted;
  }
  std::optional<Account> account;
  auto read = db_.Read([&](storage::Transaction& tx) -> Status {
    auto row = tx.QueryOne(std::string("SELECT ") + std::string(kAccountColumns) +
                               "WHERE o.slug = ? AND u.username = ?",
                           {std::string(org_slug), normalized});
    if (!row) return row.error();
    if (!*row) return Ok();
    const storage::Row& r = **row;
    account = Account{r.Text(0),       r.Text(1),       r.Text(2),       r.Text(3),
                      r.Text(4),       r.Text(5),       r.Text(6),       r.Int(7) != 0,
                      r.Int(8) != 0,   r.Int(9) != 0,   r.Int(10) != 0,  static_cast<int>(r.Int(11))};
    return Ok();
  });
  if (!read) return read.error();

  // The same Argon2id work whether or not the account exists.
  const bool password_ok = password.size() <= kMaxPasswordInput &&
                           VerifyPassword(account ? account->password_hash : dummy_hash_, password);
  const bool ok = account && account->active && password_ok;
  bool locked_out = false;
  if (!ok) {
    locked_out = throttle_.RecordFailure(key, origin.source_address);
  } else if (!account->mfa_enabled) {
    // With a second factor the sign-in succeeds only at the code: a right
    // password must not wipe the failed codes that came before it.
    throttle_.RecordSuccess(key, origin.source_address);
  }
  // Hashes made with older, weaker parameters are replaced while the
  // password is at hand.
  const std::string rehash =
      ok && PasswordNeedsRehash(account->password_hash) ? HashPassword(password) : "";

  SignIn result;
  bool still_valid = ok;
  Status written = db_.Write([&](storage::Transaction& tx) -> Status {
    const std::string now = core::FormatRfc3339(Now());
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
      const std::string org_id = account ? account->org_id : "";
      const std::string user_id = account ? account->user_id : "";
      if (auto r = audit::Record(tx, FailureEvent("auth.login_failed", org_id, user_id, origin),
                                 now);
          !r) {
        return r;
      }
      if (!locked_out) return Ok();
      return audit::Record(tx, FailureEvent("auth.locked_out", org_id, user_id, origin), now);
    }
    if (!rehash.empty()) {
      auto r = tx.Execute("UPDATE users SET password_hash = ? WHERE id = ? AND password_hash = ?",
                          {rehash, account->user_id, account->password_hash});
      if (!r) return r.error();
    }
    if (account->temporary) {
      return OpenSession(tx, *account, SessionScope::kPasswordChange, origin, "password", &result);
    }
    if (account->mfa_enabled) {
      result.mfa_challenge = true;
      result.token = NewToken("cwm_");
      const std::string id = "mfc_" + core::RandomHex(12);
      auto inserted = tx.Execute(
          "INSERT INTO mfa_challenges (id, token_hash, user_id, org_id, created_at, expires_at, "
          "source_address, user_agent) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
          {id, TokenHash(result.token), account->user_id, account->org_id, now,
           core::FormatRfc3339(Now() + kMfaChallengeLifetime), origin.source_address,
           CleanUserAgent(origin.user_agent)});
      if (!inserted) return inserted.error();
      audit::Event e = AuthEvent("auth.password_verified", account->org_id, account->user_id,
                                 origin);
      e.details = R"({"next":"mfa"})";
      return audit::Record(tx, e, now);
    }
    const SessionScope scope =
        account->mfa_required ? SessionScope::kMfaEnrollment : SessionScope::kFull;
    return OpenSession(tx, *account, scope, origin, "password", &result);
  });
  if (!written) return written.error();
  if (!still_valid) return core::Error::kUnauthenticated;
  return result;
}

Result<bool> Sessions::ConsumeCode(storage::Transaction& tx, const std::string& org_id,
                                   const std::string& user_id, std::string_view code,
                                   std::string* via) {
  auto factor = tx.QueryOne(
      "SELECT id, secret, last_step FROM mfa_factors "
      "WHERE user_id = ? AND status = 'active' ORDER BY created_at DESC LIMIT 1",
      {user_id});
  if (!factor) return Fail(factor.error());
  if (!*factor) return false;
  const std::string factor_id = (*factor)->Text(0);
  if (code.size() == kTotpDigits) {
    auto secret = keys_.Open({org_id, "mfa_factors", "secret", factor_id}, (*factor)->Bytes(1));
    if (!secret) return Fail(secret.error());
    const auto now_step = TotpStep(std::chrono::duration_cast<std::chrono::seconds>(
                                       Now().time_since_epoch())
                                       .count());
    auto step = MatchTotp(*secret, code, now_step, (*factor)->Int(2));
    sodium_memzero(secret->data(), secret->size());
    if (!step) return false;
    // Compare-and-set: two concurrent uses of one code cannot both win.
    auto used = tx.Execute("UPDATE mfa_factors SET last_step = ? WHERE id = ? AND last_step < ?",
                           {*step, factor_id, *step});
    if (!used) return Fail(used.error());
    *via = "totp";
    return *used == 1;
  }
  auto used = tx.Execute(
      "UPDATE recovery_codes SET used_at = ? "
      "WHERE user_id = ? AND code_hash = ? AND used_at IS NULL",
      {core::FormatRfc3339(Now()), user_id, RecoveryCodeHash(code)});
  if (!used) return Fail(used.error());
  *via = "recovery_code";
  return *used == 1;
}

Result<SignIn> Sessions::CompleteMfa(std::string_view mfa_token, std::string_view code,
                                     const RequestOrigin& origin, Refusal* refusal) {
  if (!LooksLikeToken(mfa_token, "cwm_")) return core::Error::kUnauthenticated;
  // The challenge's account, for the throttle (read first, outside the write).
  std::optional<Account> account;
  std::string challenge_id;
  auto read = db_.Read([&](storage::Transaction& tx) -> Status {
    auto row = tx.QueryOne(std::string("SELECT c.id, ") + std::string(kAccountColumns) +
                               "JOIN mfa_challenges c ON c.user_id = u.id "
                               "WHERE c.token_hash = ? AND c.used_at IS NULL AND c.expires_at > ? "
                               "AND c.attempts < ?",
                           {TokenHash(mfa_token), core::FormatRfc3339(Now()),
                            std::int64_t{kMfaChallengeAttempts}});
    if (!row) return row.error();
    if (!*row) return Ok();
    const storage::Row& r = **row;
    challenge_id = r.Text(0);
    account = Account{r.Text(1),      r.Text(2),       r.Text(3),       r.Text(4),
                      r.Text(5),      r.Text(6),       r.Text(7),       r.Int(8) != 0,
                      r.Int(9) != 0,  r.Int(10) != 0,  r.Int(11) != 0,  static_cast<int>(r.Int(12))};
    return Ok();
  });
  if (!read) return read.error();
  if (!account || !account->active) return core::Error::kUnauthenticated;
  const std::string key = AccountKey(account->org_slug, account->username);
  if (const auto wait = throttle_.Check(key, origin.source_address); wait.count() > 0) {
    refusal->retry_after = RetryAfter(wait);
    return core::Error::kResourceExhausted;
  }

  SignIn result;
  bool accepted = false;
  Status written = db_.Write([&](storage::Transaction& tx) -> Status {
    const std::string now = core::FormatRfc3339(Now());
    // Claimed in this transaction: one challenge opens at most one session.
    auto claimed = tx.Execute(
        "UPDATE mfa_challenges SET attempts = attempts + 1 "
        "WHERE id = ? AND used_at IS NULL AND expires_at > ? AND attempts < ?",
        {challenge_id, now, std::int64_t{kMfaChallengeAttempts}});
    if (!claimed) return claimed.error();
    if (*claimed == 0) return Ok();
    std::string via;
    auto ok = ConsumeCode(tx, account->org_id, account->user_id, code, &via);
    if (!ok) return ok.error();
    if (!*ok) {
      audit::Event e = FailureEvent("auth.mfa_failed", account->org_id, account->user_id, origin);
      return audit::Record(tx, e, now);
    }
    accepted = true;
    auto used = tx.Execute("UPDATE mfa_challenges SET used_at = ? WHERE id = ?",
                           {now, challenge_id});
    if (!used) return used.error();
    if (via == "recovery_code") {
      audit::Event e = AuthEvent("mfa.recovery_code_used", account->org_id, account->user_id,
                                 origin);
      if (auto r = audit::Record(tx, e, now); !r) return r;
    }
    return OpenSession(tx, *account, SessionScope::kFull, origin, via, &result);
  });
  if (!written) return written.error();
  if (!accepted) {
    if (throttle_.RecordFailure(key, origin.source_address)) {
      (void)db_.Write([&](storage::Transaction& tx) -> Status {
        return audit::Record(
            tx, FailureEvent("auth.locked_out", account->org_id, account->user_id, origin),
            core::FormatRfc3339(Now()));
      });
    }
    return core::Error::kUnauthenticated;
  }
  throttle_.RecordSuccess(key, origin.source_address);
  return result;
}

Result<Principal> Sessions::Authenticate(std::string_view token) {
  if (!LooksLikeToken(token, "cwt_")) return core::Error::kUnauthenticated;
  const TimePoint now_point = Now();
  const std::string now = core::FormatRfc3339(now_point);
  std::optional<Principal> user;
  std::string last_used;
  std::string created;
  int idle_minutes = 15;
  int absolute_hours = 12;
  auto read = db_.Read([&](storage::Transaction& tx) -> Status {
    auto row = tx.QueryOne(
        "SELECT s.id, s.user_id, s.org_id, o.slug, u.username, u.display_name, u.roles, "
        "s.scope, s.expires_at, s.last_used_at, s.created_at, s.reauthenticated_at, "
        "o.idle_timeout_minutes, o.absolute_timeout_hours, "
        "EXISTS (SELECT 1 FROM mfa_factors f WHERE f.user_id = u.id AND f.status = 'active'), "
        "(SELECT group_concat(r.permissions, ' ') FROM org_roles r "
        " WHERE r.org_id = s.org_id AND r.name IN (SELECT value FROM json_each(u.roles))), "
        "(SELECT b.id || ' ' || b.expires_at FROM break_glass b WHERE b.user_id = s.user_id "
        " AND b.ended_at IS NULL AND b.expires_at > ? ORDER BY b.expires_at DESC LIMIT 1) "
        "FROM sessions s JOIN users u ON u.id = s.user_id "
        "JOIN organizations o ON o.id = s.org_id "
        "WHERE s.token_hash = ? AND s.revoked_at IS NULL AND s.expires_at > ? "
        "AND u.status = 'active' AND o.status = 'active'",
        {now, TokenHash(token), now});
    if (!row) return row.error();
    if (!*row) return Ok();
    const storage::Row& r = **row;
    Principal p;
    p.session_id = r.Text(0);
    p.user_id = r.Text(1);
    p.org_id = r.Text(2);
    p.org_slug = r.Text(3);
    p.username = r.Text(4);
    p.display_name = r.Text(5);
    p.roles = ParseRolesJson(r.Text(6));
    p.scope = ScopeFromName(r.Text(7));
    p.expires_at = r.Text(8);
    last_used = r.Text(9);
    created = r.Text(10);
    p.reauthenticated_at = ParseTime(r.Text(11));
    idle_minutes = static_cast<int>(r.Int(12));
    absolute_hours = static_cast<int>(r.Int(13));
    p.mfa_enabled = r.Int(14) != 0;
    p.permissions = BuiltInPermissions(p.roles);
    if (!r.IsNull(15)) p.permissions |= ParsePermissionList(r.Text(15));
    if (!r.IsNull(16)) {
      const std::string grant = r.Text(16);
      const std::size_t space = grant.find(' ');
      p.break_glass_id = grant.substr(0, space);
      p.break_glass_until = space == std::string::npos ? "" : grant.substr(space + 1);
    }
    user = std::move(p);
    return Ok();
  });
  if (!read) return read.error();
  if (!user) return core::Error::kUnauthenticated;
  // The organization's current settings apply to sessions already open.
  if (ParseTime(last_used) + std::chrono::minutes(idle_minutes) <= now_point ||
      ParseTime(created) + std::chrono::hours(absolute_hours) <= now_point) {
    return core::Error::kUnauthenticated;
  }
  if (user->scope != SessionScope::kFull) user->permissions.reset();
  if (ParseTime(last_used) + kTouchInterval < now_point) {
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
    const std::string now = core::FormatRfc3339(Now());
    auto r = tx.Execute(
        "UPDATE sessions SET revoked_at = ?, revoked_reason = 'logout' "
        "WHERE id = ? AND revoked_at IS NULL",
        {now, user.session_id});
    if (!r) return r.error();
    audit::Event e = AuthEvent("auth.logout", user.org_id, user.user_id, origin);
    e.details = "{\"session\":\"" + user.session_id + "\"}";
    return audit::Record(tx, e, now);
  });
}

Status Sessions::LogoutEverywhere(const Principal& user, const RequestOrigin& origin) {
  return db_.Write([&](storage::Transaction& tx) -> Status {
    const std::string now = core::FormatRfc3339(Now());
    auto r = tx.Execute(
        "UPDATE sessions SET revoked_at = ?, revoked_reason = 'logout_everywhere' "
        "WHERE user_id = ? AND revoked_at IS NULL",
        {now, user.user_id});
    if (!r) return r.error();
    auto challenges = tx.Execute(
        "UPDATE mfa_challenges SET used_at = ? WHERE user_id = ? AND used_at IS NULL",
        {now, user.user_id});
    if (!challenges) return challenges.error();
    audit::Event e = AuthEvent("auth.logout_everywhere", user.org_id, user.user_id, origin);
    e.details = "{\"sessions\":" + std::to_string(*r) + "}";
    return audit::Record(tx, e, now);
  });
}

Result<std::vector<SessionInfo>> Sessions::ListSessions(const Principal& viewer,
                                                        std::string_view user_id) {
  std::vector<SessionInfo> out;
  const TimePoint now_point = Now();
  const std::string now = core::FormatRfc3339(now_point);
  auto read = db_.Read([&](storage::Transaction& tx) -> Status {
    return tx.Query(
        "SELECT s.id, s.scope, s.created_at, s.last_used_at, s.expires_at, s.source_address, "
        "s.user_agent, o.idle_timeout_minutes FROM sessions s "
        "JOIN organizations o ON o.id = s.org_id "
        "WHERE s.user_id = ? AND s.org_id = ? AND s.revoked_at IS NULL AND s.expires_at > ? "
        "ORDER BY s.created_at DESC LIMIT 200",
        {std::string(user_id), viewer.org_id, now}, [&](const storage::Row& r) -> Status {
          if (ParseTime(r.Text(3)) + std::chrono::minutes(r.Int(7)) <= now_point) return Ok();
          out.push_back({r.Text(0), r.Text(1), r.Text(2), r.Text(3), r.Text(4), r.Text(5),
                         r.Text(6), r.Text(0) == viewer.session_id});
          return Ok();
        });
  });
  if (!read) return read.error();
  return out;
}

Status Sessions::RevokeSession(const Principal& actor, std::string_view session_id,
                               const RequestOrigin& origin) {
  bool found = false;
  auto written = db_.Write([&](storage::Transaction& tx) -> Status {
    const std::string now = core::FormatRfc3339(Now());
    auto row = tx.QueryOne(
        "SELECT user_id FROM sessions WHERE id = ? AND org_id = ? AND revoked_at IS NULL",
        {std::string(session_id), actor.org_id});
    if (!row) return row.error();
    if (!*row) return Ok();
    const std::string owner = (*row)->Text(0);
    if (owner != actor.user_id && !actor.Can(Permission::kSessionsManage)) return Ok();
    found = true;
    auto r = tx.Execute(
        "UPDATE sessions SET revoked_at = ?, revoked_reason = ? WHERE id = ?",
        {now, std::string(owner == actor.user_id ? "logout" : "admin"), std::string(session_id)});
    if (!r) return r.error();
    audit::Event e = AuthEvent("session.revoked", actor.org_id, actor.user_id, origin);
    e.target_type = "user";
    e.target_id = owner;
    e.details = "{\"session\":\"" + std::string(session_id) + "\"}";
    return audit::Record(tx, e, now);
  });
  if (!written) return written;
  if (!found) return core::Error::kNotFound;
  return Ok();
}

Result<Sessions::PasswordCheck> Sessions::CheckPassword(const Principal& user,
                                                        std::string_view password,
                                                        const RequestOrigin& origin,
                                                        Refusal* refusal) {
  const std::string key = AccountKey(user.org_slug, user.username);
  if (const auto wait = throttle_.Check(key, origin.source_address); wait.count() > 0) {
    refusal->retry_after = RetryAfter(wait);
    return core::Error::kResourceExhausted;
  }
  PasswordCheck out;
  auto read = db_.Read([&](storage::Transaction& tx) -> Status {
    auto row = tx.QueryOne("SELECT password_hash FROM users WHERE id = ?", {user.user_id});
    if (!row) return row.error();
    if (*row) out.hash = (*row)->Text(0);
    return Ok();
  });
  if (!read) return read.error();
  out.ok = password.size() <= kMaxPasswordInput && !out.hash.empty() &&
           VerifyPassword(out.hash, password);
  return out;
}

Status Sessions::Reauthenticate(const Principal& user, std::string_view password,
                                std::string_view code, const RequestOrigin& origin,
                                Refusal* refusal) {
  const std::string key = AccountKey(user.org_slug, user.username);
  auto checked = CheckPassword(user, password, origin, refusal);
  if (!checked) return checked.error();
  const bool password_ok = checked->ok;
  bool accepted = false;
  auto written = db_.Write([&](storage::Transaction& tx) -> Status {
    const std::string now = core::FormatRfc3339(Now());
    bool code_ok = !user.mfa_enabled;
    std::string via = "password";
    if (password_ok && user.mfa_enabled) {
      auto ok = ConsumeCode(tx, user.org_id, user.user_id, code, &via);
      if (!ok) return ok.error();
      code_ok = *ok;
    }
    if (!password_ok || !code_ok) {
      return audit::Record(tx, FailureEvent("auth.reauth_failed", user.org_id, user.user_id, origin),
                           now);
    }
    auto r = tx.Execute(
        "UPDATE sessions SET reauthenticated_at = ? WHERE id = ? AND revoked_at IS NULL",
        {now, user.session_id});
    if (!r) return r.error();
    accepted = *r == 1;
    if (!accepted) return Ok();
    audit::Event e = AuthEvent("auth.reauthenticated", user.org_id, user.user_id, origin);
    e.details = "{\"session\":\"" + user.session_id + "\",\"via\":\"" + via + "\"}";
    return audit::Record(tx, e, now);
  });
  if (!written) return written;
  if (!accepted) {
    throttle_.RecordFailure(key, origin.source_address);
    return core::Error::kUnauthenticated;
  }
  throttle_.RecordSuccess(key, origin.source_address);
  return Ok();
}

Status Sessions::ChangePassword(const Principal& user, std::string_view current_password,
                                std::string_view new_password, const RequestOrigin& origin,
                                Refusal* refusal) {
  // Guessing the current password here is guessing the account's password:
  // throttled like sign-in.
  const std::string key = AccountKey(user.org_slug, user.username);
  auto checked = CheckPassword(user, current_password, origin, refusal);
  if (!checked) return checked.error();
  const bool current_ok = checked->ok;
  const std::string& hash = checked->hash;
  if (current_ok) {
    throttle_.RecordSuccess(key, origin.source_address);
  } else {
    throttle_.RecordFailure(key, origin.source_address);
  }
  std::string reason;
  if (current_ok) {
    reason = PasswordProblem(user.username, new_password,
                             {user.display_name, user.org_slug, "carewire"});
    if (reason.empty() && new_password == current_password) {
      reason = "the new password must differ from the current one";
    }
  }
  const std::string new_hash = current_ok && reason.empty() ? HashPassword(new_password) : "";
  bool still_current = current_ok;
  auto written = db_.Write([&](storage::Transaction& tx) -> Status {
    const std::string now = core::FormatRfc3339(Now());
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
            "UPDATE users SET password_hash = ?, password_temporary = 0, "
            "password_changed_at = ? WHERE id = ? AND password_hash = ?",
            {new_hash, now, user.user_id, hash});
        if (!r) return r.error();
        still_current = *r == 1;
      } else {
        still_current = false;
      }
    }
    if (!still_current || !reason.empty()) {
      e.outcome = audit::Outcome::kFailure;
      e.details = !current_ok      ? R"({"reason":"wrong_current_password"})"
                  : still_current ? R"({"reason":"policy"})"
                                  : R"({"reason":"session_ended_or_password_changed"})";
      return audit::Record(tx, e, now);
    }
    // Every session, this one included, ends: the client signs in again.
    // So does any sign-in half done with the old password.
    auto r = tx.Execute(
        "UPDATE sessions SET revoked_at = ?, revoked_reason = 'password_changed' "
        "WHERE user_id = ? AND revoked_at IS NULL",
        {now, user.user_id});
    if (!r) return r.error();
    r = tx.Execute("UPDATE mfa_challenges SET used_at = ? WHERE user_id = ? AND used_at IS NULL",
                   {now, user.user_id});
    if (!r) return r.error();
    return audit::Record(tx, e, now);
  });
  if (!written) return written.error();
  if (!still_current) return core::Error::kUnauthenticated;
  if (!reason.empty()) {
    refusal->problem = reason;
    return core::Error::kInvalidArgument;
  }
  return Ok();
}

Result<TotpEnrollment> Sessions::BeginTotp(const Principal& user, std::string_view password,
                                           const RequestOrigin& origin, Refusal* refusal) {
  const std::string key = AccountKey(user.org_slug, user.username);
  auto checked = CheckPassword(user, password, origin, refusal);
  if (!checked) return checked.error();
  if (!checked->ok) {
    throttle_.RecordFailure(key, origin.source_address);
    auto w = db_.Write([&](storage::Transaction& tx) -> Status {
      audit::Event e = FailureEvent("mfa.enrollment_started", user.org_id, user.user_id, origin);
      e.details = R"({"reason":"wrong_password"})";
      return audit::Record(tx, e, core::FormatRfc3339(Now()));
    });
    if (!w) return w.error();
    return core::Error::kUnauthenticated;
  }
  std::vector<unsigned char> secret = NewTotpSecret();
  const std::string factor_id = "mfa_" + core::RandomHex(12);
  auto sealed = keys_.Seal({user.org_id, "mfa_factors", "secret", factor_id},
                           std::span<const std::uint8_t>(secret.data(), secret.size()));
  if (!sealed) return sealed.error();
  TotpEnrollment out;
  out.secret_base32 = Base32Encode(secret);
  sodium_memzero(secret.data(), secret.size());
  out.otpauth_uri = OtpAuthUri("Carewire " + user.org_slug, user.username, out.secret_base32);
  out.qr_svg = QrCodeSvg(out.otpauth_uri);
  bool conflict = false;
  auto written = db_.Write([&](storage::Transaction& tx) -> Status {
    const std::string now = core::FormatRfc3339(Now());
    auto active = tx.QueryOne(
        "SELECT 1 FROM mfa_factors WHERE user_id = ? AND status = 'active'", {user.user_id});
    if (!active) return active.error();
    if (*active) {
      conflict = true;
      return Ok();
    }
    auto r = tx.Execute(
        "UPDATE mfa_factors SET status = 'removed' WHERE user_id = ? AND status = 'pending'",
        {user.user_id});
    if (!r) return r.error();
    r = tx.Execute(
        "INSERT INTO mfa_factors (id, org_id, user_id, session_id, kind, status, secret, "
        "created_at) VALUES (?, ?, ?, ?, 'totp', 'pending', ?, ?)",
        {factor_id, user.org_id, user.user_id, user.session_id,
         Blob(sealed->begin(), sealed->end()), now});
    if (!r) return r.error();
    audit::Event e = AuthEvent("mfa.enrollment_started", user.org_id, user.user_id, origin);
    e.details = R"({"kind":"totp"})";
    return audit::Record(tx, e, now);
  });
  if (!written) return written.error();
  if (conflict) return core::Error::kConflict;
  return out;
}

Result<std::vector<std::string>> Sessions::ConfirmTotp(const Principal& user,
                                                       std::string_view code,
                                                       const RequestOrigin& origin,
                                                       Refusal* refusal) {
  const std::string key = AccountKey(user.org_slug, user.username);
  if (const auto wait = throttle_.Check(key, origin.source_address); wait.count() > 0) {
    refusal->retry_after = RetryAfter(wait);
    return core::Error::kResourceExhausted;
  }
  std::vector<std::string> codes = NewRecoveryCodes();
  bool pending = false;
  bool accepted = false;
  auto written = db_.Write([&](storage::Transaction& tx) -> Status {
    const std::string now = core::FormatRfc3339(Now());
    // Only an enrolment this session started, and a recent one: a secret
    // shown on another device, or long ago, is not confirmed here.
    auto factor = tx.QueryOne(
        "SELECT id, secret FROM mfa_factors WHERE user_id = ? AND status = 'pending' "
        "AND session_id = ? AND created_at > ? ORDER BY created_at DESC LIMIT 1",
        {user.user_id, user.session_id, core::FormatRfc3339(Now() - kTotpEnrollmentLifetime)});
    if (!factor) return Fail(factor.error());
    if (!*factor) return Ok();
    pending = true;
    const std::string factor_id = (*factor)->Text(0);
    auto secret =
        keys_.Open({user.org_id, "mfa_factors", "secret", factor_id}, (*factor)->Bytes(1));
    if (!secret) return secret.error();
    const auto now_step = TotpStep(
        std::chrono::duration_cast<std::chrono::seconds>(Now().time_since_epoch()).count());
    const auto step = MatchTotp(*secret, code, now_step, -1);
    sodium_memzero(secret->data(), secret->size());
    if (!step) {
      return audit::Record(tx, FailureEvent("mfa.enabled", user.org_id, user.user_id, origin),
                           now);
    }
    accepted = true;
    auto r = tx.Execute(
        "UPDATE mfa_factors SET status = 'active', last_step = ?, confirmed_at = ? WHERE id = ?",
        {*step, now, factor_id});
    if (!r) return r.error();
    r = tx.Execute("DELETE FROM recovery_codes WHERE user_id = ?", {user.user_id});
    if (!r) return r.error();
    for (const std::string& c : codes) {
      r = tx.Execute(
          "INSERT INTO recovery_codes (user_id, code_hash, created_at) VALUES (?, ?, ?)",
          {user.user_id, RecoveryCodeHash(c), now});
      if (!r) return r.error();
    }
    // The user has just shown the password (to start) and the new factor:
    // an enrolment-only session becomes a full, freshly authenticated one.
    r = tx.Execute(
        "UPDATE sessions SET scope = 'full', reauthenticated_at = ? "
        "WHERE id = ? AND scope = 'mfa_enrollment'",
        {now, user.session_id});
    if (!r) return r.error();
    const bool upgraded = *r == 1;
    // Other enrolment-only sessions (opened with the password alone) end:
    // from now on the account needs the factor.
    r = tx.Execute(
        "UPDATE sessions SET revoked_at = ?, revoked_reason = 'mfa_enabled' "
        "WHERE user_id = ? AND id != ? AND scope = 'mfa_enrollment' AND revoked_at IS NULL",
        {now, user.user_id, user.session_id});
    if (!r) return r.error();
    if (upgraded) {
      auto seen =
          tx.Execute("UPDATE users SET last_sign_in_at = ? WHERE id = ?", {now, user.user_id});
      if (!seen) return seen.error();
    }
    audit::Event e = AuthEvent("mfa.enabled", user.org_id, user.user_id, origin);
    e.details = R"({"kind":"totp","recovery_codes":10})";
    return audit::Record(tx, e, now);
  });
  if (!written) return written.error();
  if (!pending) return core::Error::kNotFound;
  if (!accepted) {
    throttle_.RecordFailure(key, origin.source_address);
    return core::Error::kUnauthenticated;
  }
  return codes;
}

Result<std::vector<std::string>> Sessions::RevokedSince(std::string_view since) {
  std::vector<std::string> out;
  auto read = db_.Read([&](storage::Transaction& tx) -> Status {
    return tx.Query("SELECT id FROM sessions WHERE revoked_at >= ?", {std::string(since)},
                    [&](const storage::Row& r) -> Status {
                      out.push_back(r.Text(0));
                      return Ok();
                    });
  });
  if (!read) return read.error();
  return out;
}

Result<std::vector<std::string>> Sessions::EndedAmong(
    const std::vector<std::string>& session_ids) {
  std::vector<std::string> out;
  if (session_ids.empty()) return out;
  boost::json::array ids;
  for (const auto& id : session_ids) ids.emplace_back(id);
  const TimePoint now_point = Now();
  std::set<std::string> alive;
  auto read = db_.Read([&](storage::Transaction& tx) -> Status {
    return tx.Query(
        "SELECT s.id, s.last_used_at, s.created_at, o.idle_timeout_minutes, "
        "o.absolute_timeout_hours FROM sessions s JOIN users u ON u.id = s.user_id "
        "JOIN organizations o ON o.id = s.org_id "
        "WHERE s.id IN (SELECT value FROM json_each(?)) AND s.revoked_at IS NULL "
        "AND s.expires_at > ? AND u.status = 'active' AND o.status = 'active'",
        {boost::json::serialize(ids), core::FormatRfc3339(now_point)},
        [&](const storage::Row& r) -> Status {
          if (ParseTime(r.Text(1)) + std::chrono::minutes(r.Int(3)) > now_point &&
              ParseTime(r.Text(2)) + std::chrono::hours(r.Int(4)) > now_point) {
            alive.insert(r.Text(0));
          }
          return Ok();
        });
  });
  if (!read) return read.error();
  for (const auto& id : session_ids) {
    if (!alive.count(id)) out.push_back(id);
  }
  return out;
}

}  // namespace cw::identity
