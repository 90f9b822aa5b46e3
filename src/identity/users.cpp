#include "identity/users.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <boost/json/value_from.hpp>
#include <set>

#include "audit/audit_log.hpp"
#include "core/error.hpp"
#include "core/random.hpp"
#include "identity/events.hpp"
#include "identity/organizations.hpp"
#include "identity/password.hpp"

namespace cw::identity {
namespace {

constexpr std::size_t kMaxRoles = 10;

constexpr std::string_view kUserColumns =
    "SELECT u.id, u.username, u.display_name, u.roles, u.status, "
    "EXISTS (SELECT 1 FROM mfa_factors f WHERE f.user_id = u.id AND f.status = 'active'), "
    "u.password_temporary, u.created_at, coalesce(u.last_sign_in_at, ''), "
    "coalesce(u.deactivated_at, ''), coalesce(u.deactivation_reason, '') FROM users u ";

UserRecord ToRecord(const storage::Row& r) {
  return {r.Text(0), r.Text(1),     r.Text(2),     ParseRolesJson(r.Text(3)), r.Text(4),  r.Int(5) != 0,
          r.Int(6) != 0, r.Text(7), r.Text(8), r.Text(9), r.Text(10)};
}

Result<std::optional<UserRecord>> FindUser(storage::Transaction& tx, const std::string& org_id,
                                           std::string_view user_id) {
  auto row = tx.QueryOne(std::string(kUserColumns) + "WHERE u.id = ? AND u.org_id = ?",
                         {std::string(user_id), org_id});
  if (!row) return row.error();
  if (!*row) return std::optional<UserRecord>();
  return std::optional<UserRecord>(ToRecord(**row));
}

audit::Event UserEvent(const Principal& actor, std::string_view action, std::string_view target,
                       const RequestOrigin& origin) {
  return ActorEvent(actor, action, "user", target, origin);
}

Status RevokeAllSessions(storage::Transaction& tx, std::string_view user_id,
                         std::string_view reason, std::string_view now) {
  auto r = tx.Execute(
      "UPDATE sessions SET revoked_at = ?, revoked_reason = ? "
      "WHERE user_id = ? AND revoked_at IS NULL",
      {std::string(now), std::string(reason), std::string(user_id)});
  if (!r) return r.error();
  // A sign-in waiting for its second step ends too.
  r = tx.Execute("UPDATE mfa_challenges SET used_at = ? WHERE user_id = ? AND used_at IS NULL",
                 {std::string(now), std::string(user_id)});
  if (!r) return r.error();
  return Ok();
}

}  // namespace

std::vector<std::string> ParseRolesJson(std::string_view json) {
  std::vector<std::string> roles;
  boost::system::error_code ec;
  const boost::json::value v = boost::json::parse(json, ec);
  if (ec || !v.is_array()) return roles;
  for (const auto& r : v.as_array()) {
    if (r.is_string()) roles.emplace_back(r.as_string());
  }
  return roles;
}

std::string RolesJson(const std::vector<std::string>& roles) {
  boost::json::array a;
  for (const auto& r : roles) a.emplace_back(r);
  return boost::json::serialize(a);
}

Result<PermissionSet> ResolveRoles(storage::Transaction& tx, const std::string& org_id,
                                   const std::vector<std::string>& roles, std::string* problem) {
  if (roles.empty() || roles.size() > kMaxRoles) {
    *problem = "roles must list 1 to 10 role names";
    return core::Error::kInvalidArgument;
  }
  std::set<std::string> seen;
  PermissionSet out;
  for (const std::string& name : roles) {
    if (!seen.insert(name).second) {
      *problem = "roles must not repeat a name";
      return core::Error::kInvalidArgument;
    }
    if (const BuiltInRole* r = FindBuiltInRole(name)) {
      out |= r->permissions;
      continue;
    }
    auto row = tx.QueryOne("SELECT permissions FROM org_roles WHERE org_id = ? AND name = ?",
                           {org_id, name});
    if (!row) return row.error();
    if (!*row) {
      *problem = "roles names a role that does not exist";
      return core::Error::kInvalidArgument;
    }
    out |= ParsePermissionList((*row)->Text(0));
  }
  return out;
}

Users::Users(storage::Database& db, core::Clock clock) : db_(db), clock_(std::move(clock)) {}

Result<CreatedUser> Users::Create(const Principal& actor, std::string_view username,
                                  std::string_view display_name,
                                  const std::vector<std::string>& roles,
                                  const RequestOrigin& origin, std::string* problem) {
  problem->clear();
  const std::string normalized = NormalizeUsername(username);
  if (!IsValidUsername(normalized)) {
    *problem = "the username must be 1 to 64 characters of a-z, 0-9, '.', '_', '-' and '@'";
    return core::Error::kInvalidArgument;
  }
  if (!IsValidDisplayName(display_name)) {
    *problem = "display_name must be 1 to 200 bytes of UTF-8 without control characters";
    return core::Error::kInvalidArgument;
  }
  CreatedUser out;
  out.one_time_password = NewOneTimePassword();
  const std::string hash = HashPassword(out.one_time_password);
  out.user = {"usr_" + core::RandomHex(12), normalized, std::string(display_name), roles,
              "active", false, true, "", "", "", ""};
  bool denied = false;
  bool taken = false;
  auto written = db_.Write([&](storage::Transaction& tx) -> Status {
    const std::string now = core::FormatRfc3339(clock_());
    auto granted = ResolveRoles(tx, actor.org_id, roles, problem);
    if (!granted) return granted.error() == core::Error::kInvalidArgument ? Ok() : granted.error();
    if (!MayGrant(actor.permissions, *granted)) {
      denied = true;
      return audit::Record(tx, [&] {
        audit::Event e = UserEvent(actor, "user.created", "", origin);
        e.outcome = audit::Outcome::kDenied;
        e.details = R"({"reason":"roles_beyond_actor"})";
        return e;
      }(), now);
    }
    auto exists = tx.QueryOne("SELECT 1 FROM users WHERE org_id = ? AND username = ?",
                              {actor.org_id, normalized});
    if (!exists) return exists.error();
    if (*exists) {
      taken = true;
      return Ok();
    }
    out.user.created_at = now;
    auto r = tx.Execute(
        "INSERT INTO users (id, org_id, username, display_name, roles, password_hash, "
        "password_temporary, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?)",
        {out.user.id, actor.org_id, normalized, std::string(display_name), RolesJson(roles), hash,
         now, actor.user_id});
    if (!r) return r.error();
    audit::Event e = UserEvent(actor, "user.created", out.user.id, origin);
    boost::json::object details{{"roles", boost::json::value_from(roles)},
                                {"credential", "one-time"}};
    e.details = boost::json::serialize(details);
    return audit::Record(tx, e, now);
  });
  if (!written) return written.error();
  if (!problem->empty()) return core::Error::kInvalidArgument;
  if (denied) return core::Error::kPermissionDenied;
  if (taken) return core::Error::kConflict;
  return out;
}

Result<std::vector<UserRecord>> Users::List(const Principal& viewer, std::string_view after,
                                            int limit) {
  std::vector<UserRecord> out;
  auto read = db_.Read([&](storage::Transaction& tx) -> Status {
    return tx.Query(std::string(kUserColumns) +
                        "WHERE u.org_id = ? AND u.username > ? ORDER BY u.username LIMIT ?",
                    {viewer.org_id, std::string(after), std::int64_t{limit}},
                    [&](const storage::Row& r) -> Status {
                      out.push_back(ToRecord(r));
                      return Ok();
                    });
  });
  if (!read) return read.error();
  return out;
}

Result<UserRecord> Users::Get(const Principal& viewer, std::string_view user_id) {
  std::optional<UserRecord> out;
  auto read = db_.Read([&](storage::Transaction& tx) -> Status {
    auto found = FindUser(tx, viewer.org_id, user_id);
    if (!found) return found.error();
    out = std::move(*found);
    return Ok();
  });
  if (!read) return read.error();
  if (!out) return core::Error::kNotFound;
  return *out;
}

Result<UserRecord> Users::Update(const Principal& actor, std::string_view user_id,
                                 const UserChange& change, const RequestOrigin& origin,
                                 std::string* problem) {
  problem->clear();
  if (change.display_name && !IsValidDisplayName(*change.display_name)) {
    *problem = "display_name must be 1 to 200 bytes of UTF-8 without control characters";
    return core::Error::kInvalidArgument;
  }
  if (change.status && *change.status != "active" && *change.status != "deactivated") {
    *problem = "status must be \"active\" or \"deactivated\"";
    return core::Error::kInvalidArgument;
  }
  std::optional<UserRecord> result;
  core::Error refused = core::Error::kOk;
  auto written = db_.Write([&](storage::Transaction& tx) -> Status {
    const std::string now = core::FormatRfc3339(clock_());
    auto found = FindUser(tx, actor.org_id, user_id);
    if (!found) return found.error();
    if (!*found) {
      refused = core::Error::kNotFound;
      return Ok();
    }
    UserRecord user = std::move(**found);
    auto deny = [&](std::string_view reason) {
      refused = core::Error::kPermissionDenied;
      audit::Event e = UserEvent(actor, "user.updated", user.id, origin);
      e.outcome = audit::Outcome::kDenied;
      e.details = "{\"reason\":\"" + std::string(reason) + "\"}";
      return audit::Record(tx, e, now);
    };
    if (user.id == actor.user_id && (change.roles || change.status)) {
      return deny("own_roles_or_status");
    }
    // Fails closed: a user whose roles cannot be resolved is not changed.
    std::string ignored;
    auto held = ResolveRoles(tx, actor.org_id, user.roles, &ignored);
    if (!held && held.error() != core::Error::kInvalidArgument) return held.error();
    if (!held || !MayGrant(actor.permissions, *held)) return deny("target_beyond_actor");
    if (change.roles) {
      auto granted = ResolveRoles(tx, actor.org_id, *change.roles, problem);
      if (!granted) {
        if (granted.error() == core::Error::kInvalidArgument) {
          refused = core::Error::kInvalidArgument;
          return Ok();
        }
        return granted.error();
      }
      if (!MayGrant(actor.permissions, *granted)) return deny("roles_beyond_actor");
      auto r = tx.Execute("UPDATE users SET roles = ? WHERE id = ?",
                          {RolesJson(*change.roles), user.id});
      if (!r) return r.error();
      audit::Event e = UserEvent(actor, "user.roles_changed", user.id, origin);
      boost::json::object details{{"from", boost::json::value_from(user.roles)},
                                  {"to", boost::json::value_from(*change.roles)}};
      e.details = boost::json::serialize(details);
      if (auto a = audit::Record(tx, e, now); !a) return a;
      user.roles = *change.roles;
    }
    if (change.display_name && *change.display_name != user.display_name) {
      auto r = tx.Execute("UPDATE users SET display_name = ? WHERE id = ?",
                          {*change.display_name, user.id});
      if (!r) return r.error();
      if (auto a = audit::Record(tx, UserEvent(actor, "user.renamed", user.id, origin), now); !a) {
        return a;
      }
      user.display_name = *change.display_name;
    }
    if (change.status && *change.status != user.status) {
      const bool deactivate = *change.status == "deactivated";
      auto r = deactivate
                   ? tx.Execute(
                         "UPDATE users SET status = 'deactivated', deactivated_at = ?, "
                         "deactivation_reason = 'admin' WHERE id = ?",
                         {now, user.id})
                   : tx.Execute(
                         "UPDATE users SET status = 'active', deactivated_at = NULL, "
                         "deactivation_reason = NULL, reactivated_at = ? WHERE id = ?",
                         {now, user.id});
      if (!r) return r.error();
      if (deactivate) {
        if (auto s = RevokeAllSessions(tx, user.id, "deactivated", now); !s) return s;
        user.deactivated_at = now;
        user.deactivation_reason = "admin";
      } else {
        user.deactivated_at.clear();
        user.deactivation_reason.clear();
      }
      user.status = *change.status;
      audit::Event e = UserEvent(actor, deactivate ? "user.deactivated" : "user.reactivated",
                                 user.id, origin);
      if (deactivate) e.details = R"({"reason":"admin"})";
      if (auto a = audit::Record(tx, e, now); !a) return a;
    }
    result = std::move(user);
    return Ok();
  });
  if (!written) return written.error();
  if (refused != core::Error::kOk) return refused;
  return *result;
}

Status Users::ResetMfa(const Principal& actor, std::string_view user_id,
                       const RequestOrigin& origin) {
  core::Error refused = core::Error::kOk;
  auto written = db_.Write([&](storage::Transaction& tx) -> Status {
    const std::string now = core::FormatRfc3339(clock_());
    auto found = FindUser(tx, actor.org_id, user_id);
    if (!found) return found.error();
    if (!*found) {
      refused = core::Error::kNotFound;
      return Ok();
    }
    std::string ignored;
    auto held = ResolveRoles(tx, actor.org_id, (*found)->roles, &ignored);
    if (!held && held.error() != core::Error::kInvalidArgument) return held.error();
    if ((*found)->id == actor.user_id || !held || !MayGrant(actor.permissions, *held)) {
      refused = core::Error::kPermissionDenied;
      audit::Event e = UserEvent(actor, "mfa.reset", (*found)->id, origin);
      e.outcome = audit::Outcome::kDenied;
      return audit::Record(tx, e, now);
    }
    auto r = tx.Execute(
        "UPDATE mfa_factors SET status = 'removed' WHERE user_id = ? AND status != 'removed'",
        {(*found)->id});
    if (!r) return r.error();
    r = tx.Execute("DELETE FROM recovery_codes WHERE user_id = ?", {(*found)->id});
    if (!r) return r.error();
    if (auto s = RevokeAllSessions(tx, (*found)->id, "mfa_reset", now); !s) return s;
    return audit::Record(tx, UserEvent(actor, "mfa.reset", (*found)->id, origin), now);
  });
  if (!written) return written;
  if (refused != core::Error::kOk) return refused;
  return Ok();
}

Result<int> Users::DeactivateDormant() {
  int count = 0;
  const auto now_point = clock_();
  auto written = db_.Write([&](storage::Transaction& tx) -> Status {
    const std::string now = core::FormatRfc3339(now_point);
    std::vector<std::pair<std::string, std::string>> dormant;  // (user, org)
    auto orgs = tx.QueryAll(
        "SELECT id, dormant_after_days FROM organizations WHERE dormant_after_days > 0");
    if (!orgs) return orgs.error();
    for (const storage::Row& org : *orgs) {
      const std::string cutoff =
          core::FormatRfc3339(now_point - std::chrono::days(org.Int(1)));
      auto q = tx.Query(
          "SELECT id FROM users WHERE org_id = ? AND status = 'active' "
          "AND max(created_at, coalesce(last_sign_in_at, ''), coalesce(reactivated_at, '')) < ? "
          // Never an owner: the organization must keep a way in.
          "AND NOT EXISTS (SELECT 1 FROM json_each(users.roles) WHERE value = 'owner') "
          "LIMIT 1000",
          {org.Text(0), cutoff}, [&](const storage::Row& r) -> Status {
            dormant.emplace_back(r.Text(0), org.Text(0));
            return Ok();
          });
      if (!q) return q;
    }
    for (const auto& [user_id, org_id] : dormant) {
      auto r = tx.Execute(
          "UPDATE users SET status = 'deactivated', deactivated_at = ?, "
          "deactivation_reason = 'dormant' WHERE id = ?",
          {now, user_id});
      if (!r) return r.error();
      if (auto s = RevokeAllSessions(tx, user_id, "deactivated", now); !s) return s;
      audit::Event e;
      e.org_id = org_id;
      e.actor_type = audit::ActorType::kSystem;
      e.actor_id = "dormant-accounts-job";
      e.action = "user.deactivated";
      e.target_type = "user";
      e.target_id = user_id;
      e.details = R"({"reason":"dormant"})";
      if (auto a = audit::Record(tx, e, now); !a) return a;
    }
    count = static_cast<int>(dormant.size());
    return Ok();
  });
  if (!written) return written.error();
  return count;
}

}  // namespace cw::identity
