#pragma once

// Who a signed-in request is from: the session and its user. Made by the
// session store, carried on every authenticated request. Header-only and
// free of storage, so HTTP types can hold one.

#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

namespace cw::identity {

struct Principal {
  std::string session_id;
  std::string user_id;
  std::string org_id;
  std::string org_slug;
  std::string username;
  std::string display_name;
  std::vector<std::string> roles;
  bool password_change_only = false;  // a one-time-password session
  std::string expires_at;

  bool HasRole(std::string_view role) const {
    return std::find(roles.begin(), roles.end(), role) != roles.end();
  }
};

}  // namespace cw::identity
