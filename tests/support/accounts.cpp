#include "support/accounts.hpp"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <boost/json.hpp>
#include <chrono>
#include <thread>

#include "support/api.hpp"

namespace cw::testing {
namespace {

namespace json = boost::json;

std::vector<unsigned char> Base32Decode(const std::string& text) {
  std::vector<unsigned char> out;
  std::uint32_t buffer = 0;
  int bits = 0;
  for (const char c : text) {
    int v;
    if (c >= 'A' && c <= 'Z') {
      v = c - 'A';
    } else if (c >= '2' && c <= '7') {
      v = c - '2' + 26;
    } else {
      continue;  // padding or separators
    }
    buffer = (buffer << 5) | static_cast<std::uint32_t>(v);
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<unsigned char>((buffer >> bits) & 0xff));
    }
  }
  return out;
}

}  // namespace

std::vector<std::pair<std::string, std::string>> BearerHeader(const std::string& token) {
  return {{"authorization", "Bearer " + token}};
}

std::string TotpForStep(const std::string& base32_secret, std::int64_t step) {
  const std::vector<unsigned char> key = Base32Decode(base32_secret);
  unsigned char counter[8];
  for (int i = 7; i >= 0; --i) {
    counter[i] = static_cast<unsigned char>(step & 0xff);
    step >>= 8;
  }
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  HMAC(EVP_sha1(), key.data(), static_cast<int>(key.size()), counter, sizeof counter, mac,
       &mac_len);
  const int offset = mac[mac_len - 1] & 0x0f;
  const std::uint32_t binary = (static_cast<std::uint32_t>(mac[offset] & 0x7f) << 24) |
                               (static_cast<std::uint32_t>(mac[offset + 1]) << 16) |
                               (static_cast<std::uint32_t>(mac[offset + 2]) << 8) |
                               static_cast<std::uint32_t>(mac[offset + 3]);
  std::string code = std::to_string(binary % 1'000'000);
  return std::string(6 - code.size(), '0') + code;
}

std::string TotpAt(const std::string& base32_secret, std::int64_t unix_time) {
  return TotpForStep(base32_secret, unix_time / 30);
}

std::int64_t CurrentTotpStep() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
             .count() /
         30;
}

std::string TestAccount::NextCode() {
  std::int64_t now = CurrentTotpStep();
  // The server accepts now-1 .. now+1, each step once.
  std::int64_t step = std::max(now - 1, last_step + 1);
  while (step > now + 1) {
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
    now = CurrentTotpStep();
    step = std::max(now - 1, last_step + 1);
  }
  // Keep one step of margin from the edge of the window: a step about to
  // leave it could be late by the time the request arrives.
  if (step == now - 1 && last_step < now) step = now;
  last_step = step;
  return TotpForStep(totp_secret, step);
}

std::string CodeFor(TestAccount& account) {
  if (account.last_step <= CurrentTotpStep() || account.recovery_codes.empty()) {
    return account.NextCode();
  }
  std::string code = account.recovery_codes.back();
  account.recovery_codes.pop_back();
  return code;
}

TestAccount ActivateAccount(std::uint16_t port, const std::string& org,
                            const std::string& username, const std::string& one_time_password,
                            const std::string& new_password) {
  TestAccount a;
  a.org = org;
  a.username = username;
  a.password = new_password;
  auto first =
      Fetch(port, "POST", "/api/v1/auth/login", LoginBody(org, username, one_time_password));
  if (first.status != 200) {
    ADD_FAILURE() << "first sign-in of " << username << ": " << first.status << " " << first.body;
    return a;
  }
  const std::string once = Field(json::parse(first.body).as_object(), "token");
  auto changed = Fetch(port, "POST", "/api/v1/me/password",
                       Body({{"current_password", one_time_password}, {"new_password", new_password}}),
                       BearerHeader(once));
  if (changed.status != 204) {
    ADD_FAILURE() << "password change of " << username << ": " << changed.status << " "
                  << changed.body;
    return a;
  }
  auto second = Fetch(port, "POST", "/api/v1/auth/login", LoginBody(org, username, new_password));
  if (second.status != 200) {
    ADD_FAILURE() << "second sign-in of " << username << ": " << second.status << " "
                  << second.body;
    return a;
  }
  const json::object signed_in = json::parse(second.body).as_object();
  a.token = Field(signed_in, "token");
  if (const auto* user = signed_in.if_contains("user"); user && user->is_object()) {
    a.user_id = Field(user->as_object(), "id");
  }
  if (!signed_in.contains("mfa_enrollment_required")) return a;

  auto started = Fetch(port, "POST", "/api/v1/me/mfa/totp", Body({{"password", new_password}}),
                       BearerHeader(a.token));
  if (started.status != 200) {
    ADD_FAILURE() << "TOTP enrolment of " << username << ": " << started.status << " "
                  << started.body;
    return a;
  }
  a.totp_secret = Field(json::parse(started.body).as_object(), "secret");
  auto confirmed = Fetch(port, "POST", "/api/v1/me/mfa/totp/confirm",
                         Body({{"code", a.NextCode()}}), BearerHeader(a.token));
  if (confirmed.status != 200) {
    ADD_FAILURE() << "TOTP confirmation of " << username << ": " << confirmed.status << " "
                  << confirmed.body;
    return a;
  }
  const json::value codes = json::parse(confirmed.body);
  for (const auto& c : codes.at("recovery_codes").as_array()) {
    a.recovery_codes.emplace_back(c.as_string());
  }
  return a;
}

bool SignInAgain(std::uint16_t port, TestAccount& a) {
  auto r = Fetch(port, "POST", "/api/v1/auth/login", LoginBody(a.org, a.username, a.password));
  if (r.status != 200) {
    ADD_FAILURE() << "sign-in of " << a.username << ": " << r.status << " " << r.body;
    return false;
  }
  json::object o = json::parse(r.body).as_object();
  if (o.contains("mfa_required")) {
    r = Fetch(port, "POST", "/api/v1/auth/mfa",
              Body({{"mfa_token", Field(o, "mfa_token")}, {"code", a.NextCode()}}));
    if (r.status != 200) {
      ADD_FAILURE() << "MFA step of " << a.username << ": " << r.status << " " << r.body;
      return false;
    }
    o = json::parse(r.body).as_object();
  }
  a.token = Field(o, "token");
  return !a.token.empty();
}

}  // namespace cw::testing
