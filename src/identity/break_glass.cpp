#include "identity/break_glass.hpp"

#include <sodium.h>

#include "audit/audit_log.hpp"
#include "core/error.hpp"
#include "core/random.hpp"
#include "identity/events.hpp"
#include "identity/organizations.hpp"
#include "identity/users.hpp"

namespace cw::identity {
namespace {

audit::Event GrantEvent(const Principal& user, std::string_view action, std::string_view grant,
                        const RequestOrigin& origin) {
  return ActorEvent(user, action, "break_glass", grant, origin);
}

}  // namespace

BreakGlass::BreakGlass(storage::Database& db, keys::KeyStore& keys, core::Clock clock)
    : db_(db), keys_(keys), clock_(std::move(clock)) {}

Result<BreakGlassGrant> BreakGlass::Start(const Principal& user, std::string_view reason,
                                          const RequestOrigin& origin, std::string* problem) {
  std::size_t letters = 0;  // characters other than spaces
  for (const char c : reason) letters += c != ' ' && (static_cast<unsigned char>(c) & 0xc0) != 0x80;
  if (!IsPlainText(reason, kMaxReasonBytes) || letters < kMinReasonChars) {
    *problem =
        "reason must say why access is needed: 10 or more characters besides spaces, at most "
        "2000 bytes of UTF-8, no control characters";
    return core::Error::kInvalidArgument;
  }
  BreakGlassGrant grant;
  grant.id = "brg_" + core::RandomHex(12);
  grant.user_id = user.user_id;
  grant.reason = std::string(reason);
  auto sealed = keys_.Seal({user.org_id, "break_glass", "reason", grant.id}, reason);
  if (!sealed) return sealed.error();
  bool conflict = false;
  auto written = db_.Write([&](storage::Transaction& tx) -> Status {
    const auto now_point = clock_();
    const std::string now = core::FormatRfc3339(now_point);
    auto open = tx.QueryOne(
        "SELECT 1 FROM break_glass WHERE user_id = ? AND ended_at IS NULL AND expires_at > ?",
        {user.user_id, now});
    if (!open) return open.error();
    if (*open) {
      conflict = true;
      return Ok();
    }
    auto minutes =
        tx.QueryOne("SELECT break_glass_minutes FROM organizations WHERE id = ?", {user.org_id});
    if (!minutes) return minutes.error();
    if (!*minutes) return core::Error::kNotFound;
    grant.started_at = now;
    grant.expires_at = core::FormatRfc3339(now_point + std::chrono::minutes((*minutes)->Int(0)));
    auto r = tx.Execute(
        "INSERT INTO break_glass (id, org_id, user_id, reason, started_at, expires_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        {grant.id, user.org_id, user.user_id, storage::Blob(sealed->begin(), sealed->end()), now,
         grant.expires_at});
    if (!r) return r.error();
    // Everyone who receives security alerts (alerts.read: privacy officers,
    // and by default owners and admins) is alerted, whatever role grants it.
    auto staff = tx.QueryAll(
        "SELECT id, roles FROM users WHERE org_id = ? AND status = 'active' AND id != ?",
        {user.org_id, user.user_id});
    if (!staff) return staff.error();
    std::size_t alerted = 0;
    for (const storage::Row& member : *staff) {
      std::string ignored;
      auto held = ResolveRoles(tx, user.org_id, ParseRolesJson(member.Text(1)), &ignored);
      if (!held || !Has(*held, Permission::kAlertsRead)) continue;
      r = tx.Execute(
          "INSERT INTO alerts (id, org_id, recipient_id, kind, user_id, target_type, target_id, "
          "created_at) VALUES (?, ?, ?, 'break_glass.started', ?, 'break_glass', ?, ?)",
          {"alr_" + core::RandomHex(12), user.org_id, member.Text(0), user.user_id, grant.id,
           now});
      if (!r) return r.error();
      ++alerted;
    }
    audit::Event e = GrantEvent(user, "break_glass.started", grant.id, origin);
    e.details = "{\"expires_at\":\"" + grant.expires_at +
                "\",\"reviewers_alerted\":" + std::to_string(alerted) + "}";
    return audit::Record(tx, e, now);
  });
  if (!written) return written.error();
  if (conflict) return core::Error::kConflict;
  return grant;
}

Status BreakGlass::End(const Principal& user, std::string_view grant_id,
                       const RequestOrigin& origin) {
  bool found = false;
  auto written = db_.Write([&](storage::Transaction& tx) -> Status {
    const std::string now = core::FormatRfc3339(clock_());
    auto r = tx.Execute(
        "UPDATE break_glass SET ended_at = ? WHERE id = ? AND user_id = ? AND org_id = ? "
        "AND ended_at IS NULL AND expires_at > ?",
        {now, std::string(grant_id), user.user_id, user.org_id, now});
    if (!r) return r.error();
    found = *r == 1;
    if (!found) return Ok();
    return audit::Record(tx, GrantEvent(user, "break_glass.ended", grant_id, origin), now);
  });
  if (!written) return written;
  if (!found) return core::Error::kNotFound;
  return Ok();
}

Result<std::vector<BreakGlassGrant>> BreakGlass::List(const Principal& viewer, int limit,
                                                      const RequestOrigin& origin) {
  std::vector<BreakGlassGrant> out;
  std::vector<storage::Blob> sealed;
  auto read = db_.Read([&](storage::Transaction& tx) -> Status {
    return tx.Query(
        "SELECT id, user_id, reason, started_at, expires_at, coalesce(ended_at, '') "
        "FROM break_glass WHERE org_id = ? ORDER BY started_at DESC LIMIT ?",
        {viewer.org_id, std::int64_t{limit}}, [&](const storage::Row& r) -> Status {
          out.push_back({r.Text(0), r.Text(1), "", r.Text(3), r.Text(4), r.Text(5)});
          sealed.push_back(r.Bytes(2));
          return Ok();
        });
  });
  if (!read) return read.error();
  for (std::size_t i = 0; i < out.size(); ++i) {
    auto plain = keys_.Open({viewer.org_id, "break_glass", "reason", out[i].id}, sealed[i]);
    if (!plain) return plain.error();
    out[i].reason.assign(plain->begin(), plain->end());
    sodium_memzero(plain->data(), plain->size());
  }
  // The reasons were opened for this viewer: recorded before they go out.
  auto written = db_.Write([&](storage::Transaction& tx) -> Status {
    audit::Event e = GrantEvent(viewer, "break_glass.listed", "", origin);
    e.target_type = "organization";
    e.target_id = viewer.org_id;
    e.details = "{\"grants\":" + std::to_string(out.size()) + "}";
    return audit::Record(tx, e, core::FormatRfc3339(clock_()));
  });
  if (!written) return written.error();
  return out;
}

Result<std::vector<Alert>> BreakGlass::Alerts(const Principal& viewer, bool unacknowledged_only,
                                              int limit) {
  std::vector<Alert> out;
  auto read = db_.Read([&](storage::Transaction& tx) -> Status {
    return tx.Query(
        std::string("SELECT id, kind, coalesce(user_id, ''), coalesce(target_type, ''), "
                    "coalesce(target_id, ''), created_at, coalesce(acknowledged_at, '') "
                    "FROM alerts WHERE recipient_id = ? AND org_id = ? ") +
            (unacknowledged_only ? "AND acknowledged_at IS NULL " : "") +
            "ORDER BY created_at DESC LIMIT ?",
        {viewer.user_id, viewer.org_id, std::int64_t{limit}}, [&](const storage::Row& r) -> Status {
          out.push_back({r.Text(0), r.Text(1), r.Text(2), r.Text(3), r.Text(4), r.Text(5),
                         r.Text(6)});
          return Ok();
        });
  });
  if (!read) return read.error();
  return out;
}

Status BreakGlass::Acknowledge(const Principal& viewer, std::string_view alert_id,
                               const RequestOrigin& origin) {
  bool found = false;
  auto written = db_.Write([&](storage::Transaction& tx) -> Status {
    const std::string now = core::FormatRfc3339(clock_());
    auto r = tx.Execute(
        "UPDATE alerts SET acknowledged_at = coalesce(acknowledged_at, ?), acknowledged_by = "
        "coalesce(acknowledged_by, ?) WHERE id = ? AND recipient_id = ? AND org_id = ?",
        {now, viewer.user_id, std::string(alert_id), viewer.user_id, viewer.org_id});
    if (!r) return r.error();
    found = *r == 1;
    if (!found) return Ok();
    audit::Event e = GrantEvent(viewer, "alert.acknowledged", alert_id, origin);
    e.target_type = "alert";
    return audit::Record(tx, e, now);
  });
  if (!written) return written;
  if (!found) return core::Error::kNotFound;
  return Ok();
}

Result<int> BreakGlass::ExpireGrants() {
  int count = 0;
  auto written = db_.Write([&](storage::Transaction& tx) -> Status {
    const std::string now = core::FormatRfc3339(clock_());
    auto due = tx.QueryAll(
        "SELECT id, org_id, user_id, expires_at FROM break_glass "
        "WHERE ended_at IS NULL AND expires_at <= ? LIMIT 1000",
        {now});
    if (!due) return due.error();
    for (const storage::Row& g : *due) {
      auto r = tx.Execute("UPDATE break_glass SET ended_at = expires_at WHERE id = ?",
                          {g.Text(0)});
      if (!r) return r.error();
      audit::Event e;
      e.org_id = g.Text(1);
      e.actor_type = audit::ActorType::kSystem;
      e.actor_id = "break-glass-expiry";
      e.action = "break_glass.expired";
      e.target_type = "break_glass";
      e.target_id = g.Text(0);
      e.details = "{\"user\":\"" + g.Text(2) + "\"}";
      if (auto a = audit::Record(tx, e, now); !a) return a;
    }
    count = static_cast<int>(due->size());
    return Ok();
  });
  if (!written) return written.error();
  return count;
}

}  // namespace cw::identity
