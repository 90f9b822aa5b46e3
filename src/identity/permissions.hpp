#pragma once

// Named permissions and the built-in roles that grant them.
//
// A route needs one permission (or none beyond being signed in, for the
// caller's own account); a user holds the union of the permissions of their
// roles. The built-in roles are fixed here, in one table that
// docs/roles.md documents (a test compares the two); an organization may
// define roles of its own from the same permissions. Header-only apart from
// the tables, and free of storage, so HTTP types can use it.

#include <array>
#include <bitset>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace cw::identity {

enum class Permission : unsigned {
  kMessagesSend,      // send in conversations one belongs to
  kMessagesRead,      // read conversations one belongs to
  kPatientsRead,      // patient records and their threads
  kPatientsWrite,     // create and edit patient records
  kUsersRead,         // the organization's directory of staff
  kUsersManage,       // create users, change roles, deactivate, reset MFA
  kRolesManage,       // define the organization's own roles
  kOrgManage,         // the organization's settings
  kSessionsManage,    // see and revoke other users' sessions
  kAuditRead,         // read the audit log
  kAuditExport,       // export the audit log
  kAlertsRead,        // security alerts, such as break-glass use
  kDevicesWipe,       // wipe a lost device's data
  kTemplatesApprove,  // approve patient message templates
  kKeysRotate,        // rotate the organization's data key
  kBreakGlass,        // emergency access outside one's normal scope
  kBreakGlassReview,  // review emergency accesses with their reasons
};
inline constexpr std::size_t kPermissionCount = 17;

using PermissionSet = std::bitset<kPermissionCount>;

// "messages.send", …: the names clients and docs use.
std::string_view PermissionName(Permission p);
std::optional<Permission> PermissionFromName(std::string_view name);
std::span<const Permission> AllPermissions();

// Names of a set, in declaration order.
std::vector<std::string> PermissionNames(const PermissionSet& set);

struct BuiltInRole {
  std::string_view name;
  std::string_view summary;
  PermissionSet permissions;
};

// owner, admin, privacy_officer, physician, nurse, front_desk, billing.
std::span<const BuiltInRole> BuiltInRoles();
const BuiltInRole* FindBuiltInRole(std::string_view name);

inline bool Has(const PermissionSet& set, Permission p) {
  return set.test(static_cast<std::size_t>(p));
}
inline void Grant(PermissionSet& set, Permission p) { set.set(static_cast<std::size_t>(p)); }

// The permissions the built-in roles among `roles` grant (others ignored).
PermissionSet BuiltInPermissions(std::span<const std::string> roles);
// Space-separated permission names (as org_roles stores them); unknown
// names are ignored, so a permission removed from the code grants nothing.
PermissionSet ParsePermissionList(std::string_view spaced);
std::string FormatPermissionList(const PermissionSet& set);

// The permissions that administer the organization or oversee others
// (users, roles, settings, sessions, audit, alerts, devices, keys), as
// against those of everyday clinical work. Whoever manages users may grant
// any clinical permission, but an administrative one only if they hold it.
PermissionSet AdministrativePermissions();
// True when `actor` may grant (or change a holder of) `granted`: every
// administrative permission in it is one the actor holds.
bool MayGrant(const PermissionSet& actor, const PermissionSet& granted);

// A role name an organization may define: 2 to 40 of [a-z0-9_], starting
// with a letter, not a built-in name.
bool IsValidCustomRoleName(std::string_view name);

}  // namespace cw::identity
