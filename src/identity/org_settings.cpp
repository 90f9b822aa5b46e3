#include "identity/org_settings.hpp"

#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <boost/json/value_from.hpp>

#include "audit/audit_log.hpp"
#include "core/error.hpp"
#include "identity/events.hpp"
#include "identity/organizations.hpp"
#include "identity/users.hpp"

namespace cw::identity {
namespace {

Result<std::optional<OrgRecord>> ReadOrg(storage::Transaction& tx, const std::string& org_id) {
  auto row = tx.QueryOne(
      "SELECT id, slug, name, created_at, mfa_required, idle_timeout_minutes, "
      "absolute_timeout_hours, message_lifespan_days, dormant_after_days, break_glass_minutes, "
      "do_not_forward_default FROM organizations WHERE id = ?",
      {org_id});
  if (!row) return row.error();
  if (!*row) return std::optional<OrgRecord>();
  const storage::Row& r = **row;
  OrgRecord o{r.Text(0), r.Text(1), r.Text(2), r.Text(3), {}};
  o.settings.mfa_required = r.Int(4) != 0;
  o.settings.idle_timeout_minutes = static_cast<int>(r.Int(5));
  o.settings.absolute_timeout_hours = static_cast<int>(r.Int(6));
  if (!r.IsNull(7)) o.settings.message_lifespan_days = static_cast<int>(r.Int(7));
  o.settings.dormant_after_days = static_cast<int>(r.Int(8));
  o.settings.break_glass_minutes = static_cast<int>(r.Int(9));
  o.settings.do_not_forward_default = r.Int(10) != 0;
  return std::optional<OrgRecord>(std::move(o));
}

bool InRange(const std::optional<int>& v, int lo, int hi) { return !v || (*v >= lo && *v <= hi); }

}  // namespace

OrgSettingsStore::OrgSettingsStore(storage::Database& db, core::Clock clock)
    : db_(db), clock_(std::move(clock)) {}

Result<OrgRecord> OrgSettingsStore::Get(const Principal& viewer) {
  std::optional<OrgRecord> out;
  auto read = db_.Read([&](storage::Transaction& tx) -> Status {
    auto o = ReadOrg(tx, viewer.org_id);
    if (!o) return o.error();
    out = std::move(*o);
    return Ok();
  });
  if (!read) return read.error();
  if (!out) return core::Error::kNotFound;
  return *out;
}

Result<OrgRecord> OrgSettingsStore::Update(const Principal& actor, const OrgSettingsChange& change,
                                           const RequestOrigin& origin, std::string* problem) {
  problem->clear();
  if (!InRange(change.idle_timeout_minutes, 1, 240)) {
    *problem = "idle_timeout_minutes must be 1 to 240";
  } else if (!InRange(change.absolute_timeout_hours, 1, 72)) {
    *problem = "absolute_timeout_hours must be 1 to 72";
  } else if (!InRange(change.message_lifespan_days, 1, 36500)) {
    *problem = "message_lifespan_days must be 1 to 36500, or null";
  } else if (!InRange(change.dormant_after_days, 0, 3650)) {
    *problem = "dormant_after_days must be 0 (never) to 3650";
  } else if (!InRange(change.break_glass_minutes, 5, 480)) {
    *problem = "break_glass_minutes must be 5 to 480";
  }
  if (!problem->empty()) return core::Error::kInvalidArgument;
  std::optional<OrgRecord> out;
  auto written = db_.Write([&](storage::Transaction& tx) -> Status {
    const std::string now = core::FormatRfc3339(clock_());
    auto before = ReadOrg(tx, actor.org_id);
    if (!before) return before.error();
    if (!*before) return core::Error::kNotFound;
    OrgSettings s = (*before)->settings;
    boost::json::object changed;
    auto set_int = [&](const char* name, const std::optional<int>& v, int& field) {
      if (v && *v != field) {
        changed[name] = {{"from", field}, {"to", *v}};
        field = *v;
      }
    };
    if (change.mfa_required && *change.mfa_required != s.mfa_required) {
      changed["mfa_required"] = {{"from", s.mfa_required}, {"to", *change.mfa_required}};
      s.mfa_required = *change.mfa_required;
    }
    if (change.do_not_forward_default &&
        *change.do_not_forward_default != s.do_not_forward_default) {
      changed["do_not_forward_default"] = {{"from", s.do_not_forward_default},
                                           {"to", *change.do_not_forward_default}};
      s.do_not_forward_default = *change.do_not_forward_default;
    }
    set_int("idle_timeout_minutes", change.idle_timeout_minutes, s.idle_timeout_minutes);
    set_int("absolute_timeout_hours", change.absolute_timeout_hours, s.absolute_timeout_hours);
    set_int("dormant_after_days", change.dormant_after_days, s.dormant_after_days);
    set_int("break_glass_minutes", change.break_glass_minutes, s.break_glass_minutes);
    const std::optional<int> lifespan =
        change.clear_message_lifespan ? std::nullopt
                                      : (change.message_lifespan_days ? change.message_lifespan_days
                                                                      : s.message_lifespan_days);
    if (lifespan != s.message_lifespan_days) {
      boost::json::value from = nullptr, to = nullptr;
      if (s.message_lifespan_days) from = *s.message_lifespan_days;
      if (lifespan) to = *lifespan;
      changed["message_lifespan_days"] = {{"from", from}, {"to", to}};
      s.message_lifespan_days = lifespan;
    }
    storage::Value lifespan_value = nullptr;
    if (s.message_lifespan_days) lifespan_value = std::int64_t{*s.message_lifespan_days};
    auto r = tx.Execute(
        "UPDATE organizations SET mfa_required = ?, idle_timeout_minutes = ?, "
        "absolute_timeout_hours = ?, message_lifespan_days = ?, dormant_after_days = ?, "
        "break_glass_minutes = ?, do_not_forward_default = ? WHERE id = ?",
        {std::int64_t{s.mfa_required}, std::int64_t{s.idle_timeout_minutes},
         std::int64_t{s.absolute_timeout_hours}, lifespan_value, std::int64_t{s.dormant_after_days},
         std::int64_t{s.break_glass_minutes}, std::int64_t{s.do_not_forward_default},
         actor.org_id});
    if (!r) return r.error();
    out = **before;
    out->settings = s;
    if (changed.empty()) return Ok();
    audit::Event e =
        ActorEvent(actor, "org.settings_changed", "organization", actor.org_id, origin);
    e.details = boost::json::serialize(changed);
    return audit::Record(tx, e, now);
  });
  if (!written) return written.error();
  return *out;
}

Result<std::vector<RoleRecord>> OrgSettingsStore::ListRoles(const Principal& viewer) {
  std::vector<RoleRecord> out;
  for (const BuiltInRole& r : BuiltInRoles()) {
    out.push_back({std::string(r.name), std::string(r.summary), true,
                   PermissionNames(r.permissions)});
  }
  auto read = db_.Read([&](storage::Transaction& tx) -> Status {
    return tx.Query(
        "SELECT name, description, permissions FROM org_roles WHERE org_id = ? ORDER BY name",
        {viewer.org_id}, [&](const storage::Row& r) -> Status {
          out.push_back(
              {r.Text(0), r.Text(1), false, PermissionNames(ParsePermissionList(r.Text(2)))});
          return Ok();
        });
  });
  if (!read) return read.error();
  return out;
}

Result<RoleRecord> OrgSettingsStore::PutRole(const Principal& actor, std::string_view name,
                                             std::string_view description,
                                             const std::vector<std::string>& permissions,
                                             const RequestOrigin& origin, std::string* problem) {
  if (!IsValidCustomRoleName(name)) {
    *problem =
        "a role name is 2 to 40 characters of a-z, 0-9 and '_', starting with a letter, and not "
        "a built-in role's";
    return core::Error::kInvalidArgument;
  }
  if (!description.empty() && !IsPlainText(description, 500)) {
    *problem = "description must be at most 500 bytes of UTF-8 without control characters";
    return core::Error::kInvalidArgument;
  }
  PermissionSet set;
  for (const std::string& p : permissions) {
    auto known = PermissionFromName(p);
    if (!known) {
      *problem = "permissions names a permission that does not exist";
      return core::Error::kInvalidArgument;
    }
    Grant(set, *known);
  }
  if (set.none()) {
    *problem = "a role needs at least one permission";
    return core::Error::kInvalidArgument;
  }
  bool denied = false;
  auto written = db_.Write([&](storage::Transaction& tx) -> Status {
    const std::string now = core::FormatRfc3339(clock_());
    audit::Event e = ActorEvent(actor, "role.defined", "role", name, origin);
    auto deny = [&](std::string_view reason) {
      denied = true;
      e.outcome = audit::Outcome::kDenied;
      e.details = "{\"reason\":\"" + std::string(reason) + "\"}";
      return audit::Record(tx, e, now);
    };
    if (!MayGrant(actor.permissions, set)) return deny("permissions_beyond_actor");
    // Redefining a role changes what its holders may do: the same rules as
    // changing their roles. Not one's own role, not a role granting (before
    // or after) administrative power the actor lacks, and not a role held by
    // someone with administrative power the actor lacks.
    PermissionSet before;
    auto existing = tx.QueryOne("SELECT permissions FROM org_roles WHERE org_id = ? AND name = ?",
                                {actor.org_id, std::string(name)});
    if (!existing) return existing.error();
    if (*existing) {
      before = ParsePermissionList((*existing)->Text(0));
      if (actor.HasRole(name)) return deny("own_role");
      if (!MayGrant(actor.permissions, before)) return deny("permissions_beyond_actor");
      auto holders = tx.QueryAll(
          "SELECT u.roles FROM users u, json_each(u.roles) j "
          "WHERE u.org_id = ? AND j.value = ?",
          {actor.org_id, std::string(name)});
      if (!holders) return holders.error();
      for (const storage::Row& h : *holders) {
        std::string ignored;
        auto held = ResolveRoles(tx, actor.org_id, ParseRolesJson(h.Text(0)), &ignored);
        if (!held && held.error() != core::Error::kInvalidArgument) return held.error();
        if (!held || !MayGrant(actor.permissions, *held)) return deny("holder_beyond_actor");
      }
    }
    auto r = tx.Execute(
        "INSERT INTO org_roles (org_id, name, description, permissions, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (org_id, name) DO UPDATE SET "
        "description = excluded.description, permissions = excluded.permissions, "
        "updated_at = excluded.updated_at",
        {actor.org_id, std::string(name), std::string(description), FormatPermissionList(set),
         now, now});
    if (!r) return r.error();
    boost::json::object details{{"permissions", boost::json::value_from(PermissionNames(set))}};
    if (*existing) details["before"] = boost::json::value_from(PermissionNames(before));
    e.details = boost::json::serialize(details);
    return audit::Record(tx, e, now);
  });
  if (!written) return written.error();
  if (denied) return core::Error::kPermissionDenied;
  return RoleRecord{std::string(name), std::string(description), false, PermissionNames(set)};
}

Status OrgSettingsStore::DeleteRole(const Principal& actor, std::string_view name,
                                    const RequestOrigin& origin) {
  core::Error refused = core::Error::kOk;
  auto written = db_.Write([&](storage::Transaction& tx) -> Status {
    const std::string now = core::FormatRfc3339(clock_());
    auto role = tx.QueryOne("SELECT permissions FROM org_roles WHERE org_id = ? AND name = ?",
                            {actor.org_id, std::string(name)});
    if (!role) return role.error();
    if (!*role) {
      refused = core::Error::kNotFound;
      return Ok();
    }
    auto held = tx.QueryOne(
        "SELECT 1 FROM users u, json_each(u.roles) j WHERE u.org_id = ? AND j.value = ? LIMIT 1",
        {actor.org_id, std::string(name)});
    if (!held) return held.error();
    if (*held) {
      refused = core::Error::kConflict;
      return Ok();
    }
    if (!MayGrant(actor.permissions, ParsePermissionList((*role)->Text(0)))) {
      refused = core::Error::kPermissionDenied;
      audit::Event e = ActorEvent(actor, "role.deleted", "role", name, origin);
      e.outcome = audit::Outcome::kDenied;
      return audit::Record(tx, e, now);
    }
    auto r = tx.Execute("DELETE FROM org_roles WHERE org_id = ? AND name = ?",
                        {actor.org_id, std::string(name)});
    if (!r) return r.error();
    return audit::Record(tx, ActorEvent(actor, "role.deleted", "role", name, origin), now);
  });
  if (!written) return written;
  if (refused != core::Error::kOk) return refused;
  return Ok();
}

}  // namespace cw::identity
