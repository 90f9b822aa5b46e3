#include "identity/permissions.hpp"

#include <initializer_list>

namespace cw::identity {
namespace {

using P = Permission;

constexpr std::array<std::pair<P, std::string_view>, kPermissionCount> kNames = {{
    {P::kMessagesSend, "messages.send"},
    {P::kMessagesRead, "messages.read"},
    {P::kPatientsRead, "patients.read"},
    {P::kPatientsWrite, "patients.write"},
    {P::kUsersRead, "users.read"},
    {P::kUsersManage, "users.manage"},
    {P::kRolesManage, "roles.manage"},
    {P::kOrgManage, "org.manage"},
    {P::kSessionsManage, "sessions.manage"},
    {P::kAuditRead, "audit.read"},
    {P::kAuditExport, "audit.export"},
    {P::kAlertsRead, "alerts.read"},
    {P::kDevicesWipe, "devices.wipe"},
    {P::kTemplatesApprove, "templates.approve"},
    {P::kKeysRotate, "keys.rotate"},
    {P::kBreakGlass, "break_glass"},
    {P::kBreakGlassReview, "break_glass.review"},
}};

constexpr bool NamesFollowTheEnum() {
  for (std::size_t i = 0; i < kNames.size(); ++i) {
    if (static_cast<std::size_t>(kNames[i].first) != i) return false;
  }
  return true;
}
static_assert(NamesFollowTheEnum(), "kNames must list every permission in enum order");

PermissionSet Set(std::initializer_list<P> ps) {
  PermissionSet s;
  for (P p : ps) Grant(s, p);
  return s;
}

// The one table of built-in roles. docs/roles.md documents it; a test
// fails when the two differ. Changing a row changes what every
// organization's staff may do at once: treat it as a security change.
const std::vector<BuiltInRole>& Table() {
  static const std::vector<BuiltInRole> table = {
      {"owner", "the organization's accountable owner: everything",
       PermissionSet().set()},
      {"admin", "runs the organization day to day: staff, roles, settings, devices",
       Set({P::kMessagesSend, P::kMessagesRead, P::kUsersRead, P::kUsersManage, P::kRolesManage,
            P::kOrgManage, P::kSessionsManage, P::kAuditRead, P::kAlertsRead, P::kDevicesWipe,
            P::kTemplatesApprove, P::kKeysRotate})},
      {"privacy_officer", "reviews access: the audit log, its export, alerts, emergency access",
       Set({P::kMessagesSend, P::kMessagesRead, P::kUsersRead, P::kSessionsManage, P::kAuditRead,
            P::kAuditExport, P::kAlertsRead, P::kBreakGlassReview})},
      {"physician", "clinical staff with emergency access",
       Set({P::kMessagesSend, P::kMessagesRead, P::kPatientsRead, P::kPatientsWrite,
            P::kUsersRead, P::kTemplatesApprove, P::kBreakGlass})},
      {"nurse", "clinical staff with emergency access",
       Set({P::kMessagesSend, P::kMessagesRead, P::kPatientsRead, P::kPatientsWrite,
            P::kUsersRead, P::kBreakGlass})},
      {"front_desk", "scheduling and patient contact",
       Set({P::kMessagesSend, P::kMessagesRead, P::kPatientsRead, P::kPatientsWrite,
            P::kUsersRead})},
      {"billing", "billing staff: patient records read-only",
       Set({P::kMessagesSend, P::kMessagesRead, P::kPatientsRead, P::kUsersRead})},
  };
  return table;
}

}  // namespace

std::string_view PermissionName(Permission p) {
  return kNames[static_cast<std::size_t>(p)].second;
}

std::optional<Permission> PermissionFromName(std::string_view name) {
  for (const auto& [p, n] : kNames) {
    if (n == name) return p;
  }
  return std::nullopt;
}

std::span<const Permission> AllPermissions() {
  static const std::array<Permission, kPermissionCount> all = [] {
    std::array<Permission, kPermissionCount> a{};
    for (std::size_t i = 0; i < a.size(); ++i) a[i] = kNames[i].first;
    return a;
  }();
  return all;
}

std::vector<std::string> PermissionNames(const PermissionSet& set) {
  std::vector<std::string> out;
  for (const auto& [p, n] : kNames) {
    if (Has(set, p)) out.emplace_back(n);
  }
  return out;
}

std::span<const BuiltInRole> BuiltInRoles() { return Table(); }

const BuiltInRole* FindBuiltInRole(std::string_view name) {
  for (const BuiltInRole& r : Table()) {
    if (r.name == name) return &r;
  }
  return nullptr;
}

PermissionSet BuiltInPermissions(std::span<const std::string> roles) {
  PermissionSet out;
  for (const std::string& name : roles) {
    if (const BuiltInRole* r = FindBuiltInRole(name)) out |= r->permissions;
  }
  return out;
}

PermissionSet ParsePermissionList(std::string_view spaced) {
  PermissionSet out;
  while (!spaced.empty()) {
    const std::size_t end = spaced.find(' ');
    const std::string_view word = spaced.substr(0, end);
    if (auto p = PermissionFromName(word)) Grant(out, *p);
    if (end == std::string_view::npos) break;
    spaced.remove_prefix(end + 1);
  }
  return out;
}

std::string FormatPermissionList(const PermissionSet& set) {
  std::string out;
  for (const std::string& name : PermissionNames(set)) {
    if (!out.empty()) out += ' ';
    out += name;
  }
  return out;
}

PermissionSet AdministrativePermissions() {
  return Set({P::kUsersManage, P::kRolesManage, P::kOrgManage, P::kSessionsManage, P::kAuditRead,
              P::kAuditExport, P::kAlertsRead, P::kDevicesWipe, P::kKeysRotate,
              P::kBreakGlassReview});
}

bool MayGrant(const PermissionSet& actor, const PermissionSet& granted) {
  return (granted & AdministrativePermissions() & ~actor).none();
}

bool IsValidCustomRoleName(std::string_view name) {
  if (name.size() < 2 || name.size() > 40 || name[0] < 'a' || name[0] > 'z') return false;
  for (const char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
  }
  return FindBuiltInRole(name) == nullptr;
}

}  // namespace cw::identity
