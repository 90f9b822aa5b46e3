#pragma once

// An organization's settings and its own roles.
//
// Settings (MFA required, session timeouts, message lifespan, dormant
// accounts, break-glass duration) apply from the next request on: sessions
// read their organization's timeouts when they are checked. Custom roles
// are named sets of permissions; no one defines a role granting
// administrative permissions they lack (MayGrant), and a role still held by a
// user cannot be removed.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.hpp"
#include "core/time.hpp"
#include "identity/principal.hpp"
#include "identity/sessions.hpp"
#include "storage/database.hpp"

namespace cw::identity {

struct OrgSettings {
  bool mfa_required = true;
  int idle_timeout_minutes = 15;     // 1 to 240
  int absolute_timeout_hours = 12;   // 1 to 72
  std::optional<int> message_lifespan_days;  // 1 to 36500; none: kept
  int dormant_after_days = 90;       // 0 (never) to 3650
  int break_glass_minutes = 60;      // 5 to 480
  bool do_not_forward_default = false;  // new messages are marked "do not forward"
};

struct OrgRecord {
  std::string id;
  std::string slug;
  std::string name;
  std::string created_at;
  OrgSettings settings;
};

// A change to some settings; absent fields stay. `clear_message_lifespan`
// sets it back to "kept".
struct OrgSettingsChange {
  std::optional<bool> mfa_required;
  std::optional<int> idle_timeout_minutes;
  std::optional<int> absolute_timeout_hours;
  std::optional<int> message_lifespan_days;
  bool clear_message_lifespan = false;
  std::optional<int> dormant_after_days;
  std::optional<int> break_glass_minutes;
  std::optional<bool> do_not_forward_default;
};

struct RoleRecord {
  std::string name;
  std::string description;
  bool built_in = false;
  std::vector<std::string> permissions;
};

class OrgSettingsStore {
 public:
  OrgSettingsStore(storage::Database& db, core::Clock clock = core::SystemClock());

  Result<OrgRecord> Get(const Principal& viewer);
  // kInvalidArgument (with `problem`) for a value out of range.
  Result<OrgRecord> Update(const Principal& actor, const OrgSettingsChange& change,
                           const RequestOrigin& origin, std::string* problem);

  // The built-in roles, then the organization's own.
  Result<std::vector<RoleRecord>> ListRoles(const Principal& viewer);
  // Creates or replaces a role of the organization. kInvalidArgument for a
  // bad name (or a built-in one) or an unknown permission; kPermissionDenied
  // for administrative permissions the actor lacks.
  Result<RoleRecord> PutRole(const Principal& actor, std::string_view name,
                             std::string_view description,
                             const std::vector<std::string>& permissions,
                             const RequestOrigin& origin, std::string* problem);
  // kNotFound for no such role; kConflict while a user holds it.
  Status DeleteRole(const Principal& actor, std::string_view name, const RequestOrigin& origin);

 private:
  storage::Database& db_;
  core::Clock clock_;
};

}  // namespace cw::identity
