#pragma once

// Who a signed-in request is from: the session, its user and what they may
// do. Made by the session store on every authenticated request, so a role
// change or a revocation applies from the next request on. Header-only and
// free of storage, so HTTP types can hold one.

#include <algorithm>
#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "identity/permissions.hpp"

namespace cw::identity {

// Sensitive actions (changing roles, exporting audit data, break-glass,
// rotating keys) need a password check this recent.
inline constexpr std::chrono::minutes kReauthWindow{5};

// What a session may be used for.
enum class SessionScope {
  kFull,            // everything the user's permissions allow
  kPasswordChange,  // from a one-time password: only setting a new password
  kMfaEnrollment,   // MFA required but not set up: only enrolling a second factor
};

struct Principal {
  std::string session_id;
  std::string user_id;
  std::string org_id;
  std::string org_slug;
  std::string username;
  std::string display_name;
  std::vector<std::string> roles;
  SessionScope scope = SessionScope::kFull;
  std::string expires_at;
  PermissionSet permissions;
  bool mfa_enabled = false;
  // When the password (and second factor) were last checked in this
  // session: at sign-in and at each re-authentication.
  std::chrono::system_clock::time_point reauthenticated_at{};
  // While an emergency (break-glass) access is open: its id and end.
  std::string break_glass_id;
  std::string break_glass_until;

  bool HasRole(std::string_view role) const {
    return std::find(roles.begin(), roles.end(), role) != roles.end();
  }
  bool Can(Permission p) const { return Has(permissions, p); }
};

}  // namespace cw::identity
