#pragma once

// Sign-in and sessions.
//
// A session is a 256-bit random bearer token, of which only the SHA-256 is
// stored. It ends when revoked (logout, password change), after
// kIdleTimeout without use, or kAbsoluteLifetime after sign-in, whichever
// comes first. A user whose password is a one-time password gets a session
// that may only set a new password; setting it ends every session of the user.
//
// Unknown organization, unknown user, a deactivated user and a wrong password
// all fail alike, after the same Argon2id work, so answers and timing do not
// tell which accounts exist. Every sign-in, failure, logout and password
// change is an audit event in the same transaction as its effect.
//
// Login and ChangePassword run Argon2id and block for a good fraction of a
// second: call them from a worker thread, never from an I/O thread.

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.hpp"
#include "identity/principal.hpp"
#include "storage/database.hpp"

namespace cw::identity {

inline constexpr std::chrono::minutes kIdleTimeout{15};
inline constexpr std::chrono::hours kAbsoluteLifetime{12};
// The idle clock is moved forward at most this often per session, so using
// a session costs a write only once a minute, not on every request.
inline constexpr std::chrono::seconds kTouchInterval{60};

struct NewSession {
  std::string token;  // shown once to the client, never stored
  Principal user;
};

// Where a request came from, for the audit trail.
struct RequestOrigin {
  std::string request_id;
  std::string source_address;
};

class Sessions {
 public:
  explicit Sessions(storage::Database& db);

  // core::Error::kUnauthenticated for any wrong credential.
  Result<NewSession> Login(std::string_view org_slug, std::string_view username,
                           std::string_view password, const RequestOrigin& origin);

  // core::Error::kUnauthenticated for an unknown, revoked or expired token.
  Result<Principal> Authenticate(std::string_view token);

  Status Logout(const Principal& user, const RequestOrigin& origin);

  // Checks the current password and the new one against the policy; on
  // success stores the new hash and ends every session of the user.
  // core::Error::kUnauthenticated for a wrong current password;
  // kInvalidArgument with `problem` set when the new one is refused.
  Status ChangePassword(const Principal& user, std::string_view current_password,
                        std::string_view new_password, const RequestOrigin& origin,
                        std::string* problem);

 private:
  storage::Database& db_;
  const std::string dummy_hash_;  // verified against when the user is unknown
};

// The password policy (NIST SP 800-63B): 12 to 128 characters (code
// points), anything allowed, no composition rules; not containing the
// username. Returns an empty string when acceptable, else a fixed reason.
std::string PasswordProblem(std::string_view username, std::string_view password);

}  // namespace cw::identity
