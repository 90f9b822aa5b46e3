// The messaging jobs the server runs periodically: purging messages past
// their lifespan, and following up urgent messages nobody has read.

#include <sodium.h>

#include "audit/audit_log.hpp"
#include "core/error.hpp"
#include "core/time.hpp"
#include "messaging/internal.hpp"
#include "messaging/messaging.hpp"
#include "messaging/render.hpp"

namespace cw::messaging {
namespace {

using namespace internal;
using storage::Row;
using storage::Transaction;

// Members who have not read a message (members still, not those who left).
Result<std::vector<std::string>> UnreadBy(Transaction& tx, const std::string& conversation_id,
                                          const std::string& message_id) {
  auto rows = tx.QueryAll(
      "SELECT r.user_id FROM message_receipts r JOIN conversation_members cm ON "
      "cm.conversation_id = ? AND cm.user_id = r.user_id WHERE r.message_id = ? AND "
      "r.read_at IS NULL ORDER BY r.user_id",
      {conversation_id, message_id});
  if (!rows) return rows.error();
  std::vector<std::string> out;
  for (const Row& r : *rows) out.push_back(r.Text(0));
  return out;
}

}  // namespace

Result<JobCounts> Messaging::PurgeExpired(std::chrono::system_clock::time_point now, int batch) {
  struct Target {
    std::string conversation_id;
    std::string org_id;
    std::int64_t days = 0;
  };
  std::vector<Target> targets;
  auto read = db_.Read([&](Transaction& tx) -> Status {
    return tx.Query(
        "SELECT c.id, c.org_id, coalesce(c.message_lifespan_days, o.message_lifespan_days) "
        "FROM conversations c JOIN organizations o ON o.id = c.org_id WHERE c.legal_hold = 0 "
        "AND coalesce(c.message_lifespan_days, o.message_lifespan_days) IS NOT NULL",
        {}, [&](const Row& r) -> Status {
          targets.push_back({r.Text(0), r.Text(1), r.Int(2)});
          return Ok();
        });
  });
  if (!read) return read.error();

  JobCounts counts;
  const std::string stamp = core::FormatRfc3339(now);
  for (const Target& t : targets) {
    const std::string cutoff = core::FormatRfc3339(now - std::chrono::hours(24) * t.days);
    bool touched = false;
    for (;;) {
      int purged = 0;
      auto written = WriteAndPublish([&](Transaction& tx, std::vector<LiveEvent>& out) -> Status {
        purged = 0;
        // The hold is read again here: one set since the list was read wins.
        auto hold = tx.QueryOne("SELECT legal_hold FROM conversations WHERE id = ?",
                                {t.conversation_id});
        if (!hold) return hold.error();
        if (!*hold || (*hold)->Int(0) != 0) return Ok();
        auto ids = tx.QueryAll(
            "SELECT id FROM messages WHERE conversation_id = ? AND created_at < ? AND "
            "purged_at IS NULL AND recalled_at IS NULL ORDER BY seq LIMIT ?",
            {t.conversation_id, cutoff, static_cast<std::int64_t>(batch)});
        if (!ids) return ids.error();
        if (ids->empty()) return Ok();
        auto audience = MemberIds(tx, t.conversation_id);
        if (!audience) return audience.error();
        for (const Row& r : *ids) {
          const std::string id = r.Text(0);
          auto changed = tx.Execute(
              "UPDATE messages SET body = NULL, purged_at = ? WHERE id = ? AND purged_at IS NULL",
              {stamp, id});
          if (!changed) return changed.error();
          if (auto s = DestroyAttachments(tx, id, stamp); !s) return s;
          auto cursor = AppendEvent(
              tx, {t.org_id, t.conversation_id, "message.expired", id, {}, {}, {}}, stamp);
          if (!cursor) return cursor.error();
          LiveEvent live;
          live.cursor = *cursor;
          live.org_id = t.org_id;
          live.audience = *audience;
          live.frame = std::make_shared<const std::string>(
              render::MessageExpired(*cursor, t.conversation_id, id));
          out.push_back(std::move(live));
          ++purged;
        }
        return audit::Record(
            tx,
            SystemEvent(t.org_id, "message-lifespan", "message.purged", "conversation",
                        t.conversation_id,
                        Details({{"count", purged}, {"created_before", cutoff},
                                 {"lifespan_days", t.days}})),
            stamp);
      });
      if (!written) return written.error();
      counts.messages += purged;
      touched = touched || purged > 0;
      if (purged < batch) break;
    }
    if (touched) ++counts.conversations;
  }
  // Uploads never sent within a day, and uploads never finished within an
  // hour (an upload in progress sends a piece at least every
  // limits.body_timeout_ms, so a 25 MiB one takes minutes at most).
  const std::string unsent_cutoff = core::FormatRfc3339(now - std::chrono::hours(24));
  const std::string incomplete_cutoff = core::FormatRfc3339(now - std::chrono::hours(1));
  for (;;) {
    int destroyed = 0;
    auto written = WriteAndPublish([&](Transaction& tx, std::vector<LiveEvent>&) -> Status {
      auto n = DestroyUnsentAttachments(tx, unsent_cutoff, incomplete_cutoff, stamp);
      if (!n) return n.error();
      destroyed = *n;
      return Ok();
    });
    if (!written) return written.error();
    if (destroyed < 500) break;
  }
  return counts;
}

Result<JobCounts> Messaging::FollowUpUrgent(std::chrono::system_clock::time_point now,
                                            std::chrono::milliseconds remind_after,
                                            std::chrono::milliseconds escalate_after) {
  const std::string stamp = core::FormatRfc3339(now);
  JobCounts counts;
  std::vector<PushNotification> pushes;

  // One step for a batch of messages: `escalate` false reminds the unread
  // members, true tells the conversation's admins.
  auto step = [&](bool escalate) -> Result<int> {
    const std::string cutoff =
        core::FormatRfc3339(now - (escalate ? escalate_after : remind_after));
    int done = 0;
    auto written = WriteAndPublish([&](Transaction& tx, std::vector<LiveEvent>&) -> Status {
      done = 0;
      pushes.clear();
      auto due = tx.QueryAll(
          std::string("SELECT id, org_id, conversation_id, sender_id FROM messages WHERE "
                      "priority = "
                      "'urgent' AND escalated_at IS NULL AND body IS NOT NULL AND "
                      "created_at <= ?") +
              (escalate ? "" : " AND reminded_at IS NULL") + " ORDER BY created_at LIMIT 200",
          {cutoff});
      if (!due) return due.error();
      for (const Row& r : *due) {
        const std::string id = r.Text(0), org_id = r.Text(1), conversation_id = r.Text(2),
                          sender_id = r.Text(3);
        auto unread = UnreadBy(tx, conversation_id, id);
        if (!unread) return unread.error();
        // Read by everyone: nothing more to follow up.
        const char* mark = (escalate || unread->empty())
                               ? "UPDATE messages SET reminded_at = coalesce(reminded_at, ?), "
                                 "escalated_at = ? WHERE id = ?"
                               : "UPDATE messages SET reminded_at = ?, escalated_at = NULL "
                                 "WHERE id = ?";
        auto changed = (escalate || unread->empty()) ? tx.Execute(mark, {stamp, stamp, id})
                                                     : tx.Execute(mark, {stamp, id});
        if (!changed) return changed.error();
        ++done;
        if (unread->empty()) continue;
        std::vector<std::string> recipients;
        if (escalate) {
          auto admins = tx.QueryAll(
              "SELECT user_id FROM conversation_members WHERE conversation_id = ? AND role = "
              "'admin' ORDER BY user_id",
              {conversation_id});
          if (!admins) return admins.error();
          for (const Row& a : *admins) recipients.push_back(a.Text(0));
        } else {
          recipients = *unread;
        }
        // A conversation without admins (a direct one) escalates to the
        // sender, who can then reach the other person another way.
        const bool to_sender = escalate && recipients.empty();
        if (to_sender) recipients.push_back(sender_id);
        for (const std::string& user : recipients) {
          pushes.push_back({user, conversation_id,
                            to_sender  ? PushKind::kUrgentUnreadToSender
                            : escalate ? PushKind::kUrgentEscalation
                                       : PushKind::kUrgentReminder});
        }
        auto recorded = audit::Record(
            tx,
            SystemEvent(org_id, "urgent-follow-up",
                        escalate ? "message.urgent_escalated" : "message.urgent_reminded",
                        "message", id,
                        Details({{"conversation_id", conversation_id},
                                 {"unread", static_cast<std::int64_t>(unread->size())},
                                 {"notified", static_cast<std::int64_t>(recipients.size())},
                                 {"to", escalate ? (to_sender ? "sender" : "admins")
                                                 : "unread_members"}})),
            stamp);
        if (!recorded) return recorded;
      }
      return Ok();
    });
    if (!written) return written.error();
    if (push_ != nullptr) {
      for (auto& p : pushes) push_->Enqueue(std::move(p));
    }
    return done;
  };

  for (const bool escalate : {false, true}) {
    for (;;) {
      auto n = step(escalate);
      if (!n) return n.error();
      counts.messages += *n;
      if (*n < 200) break;
    }
  }
  return counts;
}

}  // namespace cw::messaging
