#pragma once

// Accounts as a client activates and uses them: the first sign-in with a
// one-time password, the forced password change, TOTP enrolment (MFA is
// required by default) and later sign-ins with a code. TOTP codes come from
// an implementation of RFC 6238 separate from the server's (OpenSSL's
// HMAC-SHA1 and a base32 decoder written here), so a shared mistake cannot
// hide.

#include <cstdint>
#include <ctime>
#include <string>
#include <vector>

#include "support/https_client.hpp"

namespace cw::testing {

// The 6-digit RFC 6238 code (SHA-1, 30 s) of a base32 secret for a Unix time.
std::string TotpAt(const std::string& base32_secret, std::int64_t unix_time);
// The same for a 30-second step.
std::string TotpForStep(const std::string& base32_secret, std::int64_t step);
std::int64_t CurrentTotpStep();

struct TestAccount {
  std::string org;
  std::string username;
  std::string password;
  std::string token;  // the current full session
  std::string user_id;
  std::string totp_secret;  // empty when the account has no second factor
  std::vector<std::string> recovery_codes;
  std::int64_t last_step = -1;  // the last TOTP step the server accepted

  // A code for a step the server has not accepted yet (waiting for the
  // next step when the three it accepts are used up); records it as used.
  std::string NextCode();
};

// A second-factor code for the account: the next TOTP code when one is
// available without waiting for the next 30-second step, else one of its
// recovery codes (used up). For tests that need several codes in quick
// succession.
std::string CodeFor(TestAccount& account);

// First sign-in: one-time password, password change, sign-in, and, when the
// organization requires MFA, TOTP enrolment and confirmation (which turns
// the session into a full one). Fails the current test (ADD_FAILURE) on any
// unexpected answer.
TestAccount ActivateAccount(std::uint16_t port, const std::string& org,
                            const std::string& username, const std::string& one_time_password,
                            const std::string& new_password);

// A later sign-in: password, then a TOTP code when the account has one.
// Updates account.token. Returns false (after ADD_FAILURE) on failure.
bool SignInAgain(std::uint16_t port, TestAccount& account);

// Authorization header for a token.
std::vector<std::pair<std::string, std::string>> BearerHeader(const std::string& token);

}  // namespace cw::testing
