#pragma once

// Sign-in, second factors and sessions.
//
// A session is a 256-bit random bearer token, of which only the SHA-256 is
// stored. It ends when revoked (logout, sign-out everywhere, password change,
// an administrator, deactivation), after the organization's idle timeout
// without use, or its absolute lifetime after sign-in, whichever comes first.
//
// Sign-in is a password, then, for a user with a second factor, a TOTP code
// (or a recovery code) against a short-lived MFA challenge. A user whose
// password is a one-time password gets a session that may only set a new
// password; a user of an organization that requires MFA and who has none
// gets a session that may only enrol one. Confirming the enrolment turns that
// session into a full one.
//
// Unknown organization, unknown user, a deactivated user and a wrong password
// all fail alike, after the same Argon2id work, so answers and timing do not
// tell which accounts exist. Failures are throttled by the claimed account
// and by source address (SignInThrottle). Every sign-in, failure, lockout,
// MFA change, logout and revocation is an audit event in the same
// transaction as its effect.
//
// Calls that check a password run Argon2id and block for a good fraction of a
// second: call them from a worker thread, never from an I/O thread.

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.hpp"
#include "core/time.hpp"
#include "identity/principal.hpp"
#include "identity/throttle.hpp"
#include "keys/key_store.hpp"
#include "storage/database.hpp"

namespace cw::identity {

// Defaults of the per-organization settings (organizations table).
inline constexpr std::chrono::minutes kDefaultIdleTimeout{15};
inline constexpr std::chrono::hours kDefaultAbsoluteLifetime{12};
// The idle clock is moved forward at most this often per session, so using
// a session costs a write only once a minute, not on every request.
inline constexpr std::chrono::seconds kTouchInterval{60};
// The second sign-in step must follow the first within this time and tries.
inline constexpr std::chrono::minutes kMfaChallengeLifetime{5};
inline constexpr int kMfaChallengeAttempts = 5;
// A TOTP enrolment must be confirmed, by the session that started it, within
// this time.
inline constexpr std::chrono::minutes kTotpEnrollmentLifetime{10};

struct SessionOptions {
  ThrottleOptions throttle;
  core::Clock clock = core::SystemClock();
};

// Where a request came from, for the audit trail and the session list.
struct RequestOrigin {
  std::string request_id;
  std::string source_address;
  std::string user_agent;  // trimmed, for the user's list of their sessions
};

// What a correct password (or code) leads to.
struct SignIn {
  std::string token;           // a session token, or an MFA challenge token
  bool mfa_challenge = false;  // true: `token` is for POST /api/v1/auth/mfa
  Principal user;              // the session's, when !mfa_challenge
};

// Why a sign-in step was refused, beyond the error code.
struct Refusal {
  std::chrono::seconds retry_after{0};  // with core::Error::kResourceExhausted
  std::string problem;                  // with kInvalidArgument: a fixed reason
};

struct SessionInfo {
  std::string id;
  std::string scope;
  std::string created_at;
  std::string last_used_at;
  std::string expires_at;
  std::string source_address;
  std::string user_agent;
  bool current = false;
};

// A TOTP enrolment in progress: shown once to the user.
struct TotpEnrollment {
  std::string secret_base32;
  std::string otpauth_uri;
  std::string qr_svg;
};

class Sessions {
 public:
  Sessions(storage::Database& db, keys::KeyStore& keys, SessionOptions options = {});

  // The password step. core::Error::kUnauthenticated for any wrong
  // credential; kResourceExhausted (with refusal->retry_after) when throttled.
  Result<SignIn> Login(std::string_view org_slug, std::string_view username,
                       std::string_view password, const RequestOrigin& origin, Refusal* refusal);

  // The second step: a TOTP code or a recovery code against the challenge.
  // kUnauthenticated for a wrong, replayed or late code or an unknown
  // challenge; kResourceExhausted when throttled.
  Result<SignIn> CompleteMfa(std::string_view mfa_token, std::string_view code,
                             const RequestOrigin& origin, Refusal* refusal);

  // kUnauthenticated for an unknown, revoked or expired token.
  Result<Principal> Authenticate(std::string_view token);

  Status Logout(const Principal& user, const RequestOrigin& origin);
  // Ends every session of the user, this one included.
  Status LogoutEverywhere(const Principal& user, const RequestOrigin& origin);
  Result<std::vector<SessionInfo>> ListSessions(const Principal& viewer, std::string_view user_id);
  // Revokes one session: the caller's own, or (with sessions.manage) any of
  // the organization's. kNotFound for anything else.
  Status RevokeSession(const Principal& actor, std::string_view session_id,
                       const RequestOrigin& origin);

  // Checks the password (and, for a user with MFA, a code) again and marks
  // the session as recently authenticated for sensitive actions.
  Status Reauthenticate(const Principal& user, std::string_view password, std::string_view code,
                        const RequestOrigin& origin, Refusal* refusal);

  // Checks the current password and the new one against the policy; on
  // success stores the new hash and ends every session of the user.
  // kUnauthenticated for a wrong current password; kInvalidArgument with
  // refusal->problem when the new one is refused.
  Status ChangePassword(const Principal& user, std::string_view current_password,
                        std::string_view new_password, const RequestOrigin& origin,
                        Refusal* refusal);

  // TOTP enrolment: after the password, a new pending secret (replacing any
  // earlier pending one). kConflict when the user already has a factor.
  Result<TotpEnrollment> BeginTotp(const Principal& user, std::string_view password,
                                   const RequestOrigin& origin, Refusal* refusal);
  // A first code makes the pending secret the user's factor, if this session
  // started the enrolment within kTotpEnrollmentLifetime (else kNotFound);
  // answers the ten recovery codes (shown once). An enrolment-only session
  // becomes full.
  Result<std::vector<std::string>> ConfirmTotp(const Principal& user, std::string_view code,
                                               const RequestOrigin& origin, Refusal* refusal);

  // Session ids revoked at or after `since` (for closing live sockets).
  Result<std::vector<std::string>> RevokedSince(std::string_view since);
  // Those of `session_ids` that no longer authenticate: revoked, idle or
  // past their lifetime under their organization's current settings, or of
  // a deactivated user or organization (for closing live sockets, which do
  // not count as use).
  Result<std::vector<std::string>> EndedAmong(const std::vector<std::string>& session_ids);

  core::Clock& clock() { return options_.clock; }

 private:
  struct Account;
  std::chrono::system_clock::time_point Now() const { return options_.clock(); }
  // The shared end of a successful sign-in: a session row and its event.
  Status OpenSession(storage::Transaction& tx, const Account& account, SessionScope scope,
                     const RequestOrigin& origin, std::string_view via, SignIn* out);
  // For a signed-in user acting on their own account: the throttle, then
  // the password against the stored hash (Argon2id). kResourceExhausted
  // (with refusal->retry_after) when throttled. Records nothing.
  struct PasswordCheck {
    bool ok = false;
    std::string hash;  // the hash checked against
  };
  Result<PasswordCheck> CheckPassword(const Principal& user, std::string_view password,
                                      const RequestOrigin& origin, Refusal* refusal);
  // Checks a TOTP or recovery code for the user inside a write; true when
  // accepted (and consumed).
  Result<bool> ConsumeCode(storage::Transaction& tx, const std::string& org_id,
                           const std::string& user_id, std::string_view code, std::string* via);

  storage::Database& db_;
  keys::KeyStore& keys_;
  SessionOptions options_;
  SignInThrottle throttle_;
  const std::string dummy_hash_;  // verified against when the user is unknown
};

// The password policy (NIST SP 800-63B): 12 to 128 characters (code
// points), anything allowed, no composition rules; not containing the
// username; not easily guessed (zxcvbn, with the user's own words). Returns
// an empty string when acceptable, else a fixed reason.
std::string PasswordProblem(std::string_view username, std::string_view password,
                            const std::vector<std::string>& user_words = {});

// The stored form of a bearer token or challenge token: its SHA-256.
storage::Blob TokenHash(std::string_view token);

}  // namespace cw::identity
