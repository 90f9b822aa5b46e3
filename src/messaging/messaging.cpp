#include "messaging/messaging.hpp"

#include <sodium.h>

#include <algorithm>
#include <boost/json/serialize.hpp>
#include <future>
#include <map>
#include <memory>
#include <set>

#include "audit/audit_log.hpp"
#include "core/error.hpp"
#include "core/random.hpp"
#include "core/time.hpp"
#include "core/utf8.hpp"
#include "identity/events.hpp"
#include "identity/organizations.hpp"
#include "messaging/internal.hpp"
#include "messaging/render.hpp"

namespace cw::messaging {
namespace internal {

using storage::Row;
using storage::Transaction;
using storage::Value;


Value Nullable(const std::string& s) {
  if (s.empty()) return nullptr;
  return s;
}

// Message text: valid UTF-8 of 1 to kMaxBodyCodePoints code points, without
// NUL or control characters other than tab, line feed and carriage return,
// and without bidirectional overrides (which make text read differently
// from what was stored). Anything else, markup included, is inert text.
bool IsValidBody(std::string_view body) {
  if (body.empty() || !core::IsValidUtf8(body) || core::HasBidiControl(body)) return false;
  for (const char c : body) {
    const auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && u != '\t' && u != '\n' && u != '\r') || u == 0x7F) return false;
  }
  return core::CodePointCount(body) <= kMaxBodyCodePoints;
}

std::string Details(boost::json::object facts) { return boost::json::serialize(facts); }

audit::Event AuditFor(const Principal& caller, const RequestOrigin& origin, std::string_view action,
                      std::string_view target_type, std::string_view target_id,
                      std::string details) {
  audit::Event e = identity::ActorEvent(caller, action, target_type, target_id, origin);
  e.details = std::move(details);
  return e;
}

Result<std::optional<Conversation>> LoadConversation(Transaction& tx, const std::string& org_id,
                                                     const std::string& id) {
  auto row = tx.QueryOne(
      "SELECT id, kind, coalesce(title, ''), created_by, created_at, last_seq, legal_hold, "
      "coalesce(message_lifespan_days, 0) FROM conversations WHERE id = ? AND org_id = ?",
      {id, org_id});
  if (!row) return row.error();
  if (!*row) return std::optional<Conversation>();
  const Row& r = **row;
  Conversation c;
  c.id = r.Text(0);
  c.kind = r.Text(1);
  c.title = r.Text(2);
  c.created_by = r.Text(3);
  c.created_at = r.Text(4);
  c.last_seq = r.Int(5);
  c.legal_hold = r.Int(6) != 0;
  c.message_lifespan_days = static_cast<int>(r.Int(7));
  auto members = tx.QueryAll(
      "SELECT user_id, role FROM conversation_members WHERE conversation_id = ? ORDER BY user_id",
      {id});
  if (!members) return members.error();
  for (const Row& m : *members) c.members.push_back({m.Text(0), m.Text(1)});
  return std::optional<Conversation>(std::move(c));
}

// The conversation, when the caller belongs to it; kNotFound otherwise.
Result<Conversation> LoadVisible(Transaction& tx, const Principal& caller, const std::string& id) {
  if (!IsConversationId(id)) return core::Error::kNotFound;
  auto c = LoadConversation(tx, caller.org_id, id);
  if (!c) return c.error();
  if (!*c) return core::Error::kNotFound;
  for (const Member& m : (*c)->members) {
    if (m.user_id == caller.user_id) return std::move(**c);
  }
  return core::Error::kNotFound;
}

std::string RoleOf(const Conversation& c, const std::string& user_id) {
  for (const Member& m : c.members) {
    if (m.user_id == user_id) return m.role;
  }
  return {};
}

std::vector<std::string> Audience(const Conversation& c) {
  std::vector<std::string> out;
  out.reserve(c.members.size());
  for (const Member& m : c.members) out.push_back(m.user_id);
  return out;
}

// The audit event of something a job did.
audit::Event SystemEvent(const std::string& org_id, std::string_view job, std::string action,
                         std::string target_type, std::string target_id, std::string details) {
  audit::Event e;
  e.org_id = org_id;
  e.actor_type = audit::ActorType::kSystem;
  e.actor_id = std::string(job);
  e.action = std::move(action);
  e.target_type = std::move(target_type);
  e.target_id = std::move(target_id);
  e.details = std::move(details);
  return e;
}

Status RequireMember(Transaction& tx, const Principal& caller, const std::string& conversation_id) {
  auto member = tx.QueryOne(
      "SELECT 1 FROM conversation_members cm JOIN conversations c ON c.id = cm.conversation_id "
      "WHERE cm.conversation_id = ? AND cm.user_id = ? AND c.org_id = ?",
      {conversation_id, caller.user_id, caller.org_id});
  if (!member) return member.error();
  if (!*member) return core::Error::kNotFound;
  return Ok();
}

// 1 when `user_id` is an active user of the organization, else 0.
Result<int> IsActiveUser(Transaction& tx, const std::string& org_id, const std::string& user_id) {
  auto row = tx.QueryOne("SELECT 1 FROM users WHERE id = ? AND org_id = ? AND status = 'active'",
                         {user_id, org_id});
  if (!row) return row.error();
  return row->has_value() ? 1 : 0;
}


Result<std::int64_t> AppendEvent(Transaction& tx, const EventRow& e, const std::string& now) {
  return tx.Insert(
      "INSERT INTO conversation_events (org_id, conversation_id, type, message_id, user_id, "
      "status, recipient_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
      {e.org_id, e.conversation_id, std::string(e.type), Nullable(e.message_id),
       Nullable(e.user_id), Nullable(e.status), Nullable(e.recipient_id), now});
}

// The live form of a conversation.updated event, for every member.
LiveEvent ConversationLive(std::int64_t cursor, const std::string& org_id, const Conversation& c) {
  LiveEvent live;
  live.cursor = cursor;
  live.org_id = org_id;
  live.audience = Audience(c);
  live.frame = std::make_shared<const std::string>(render::ConversationUpdated(cursor, c));
  return live;
}

// A conversation.updated event for every member, made and rendered in `tx`.
Status AnnounceConversation(Transaction& tx, const Conversation& c, const std::string& org_id,
                            const std::string& now, std::vector<LiveEvent>& out,
                            std::int64_t* cursor = nullptr) {
  auto id = AppendEvent(tx, {org_id, c.id, "conversation.updated", {}, {}, {}, {}}, now);
  if (!id) return id.error();
  if (cursor != nullptr) *cursor = *id;
  out.push_back(ConversationLive(*id, org_id, c));
  return Ok();
}



SealedMessage MessageFromRow(const Row& r) {
  SealedMessage out;
  Message& m = out.message;
  m.id = r.Text(0);
  m.conversation_id = r.Text(1);
  m.seq = r.Int(2);
  m.sender_id = r.Text(3);
  if (!r.IsNull(4)) out.sealed = r.Bytes(4);
  m.priority = r.Text(5);
  m.reply_to = r.Text(6);
  m.created_at = r.Text(7);
  m.recalled_at = r.Text(8);
  m.do_not_forward = r.Int(9) != 0;
  m.forwarded_from = r.Text(10);
  m.expired_at = r.Text(11);
  return out;
}

// A message the caller can see: its conversation, the caller's role there.
struct VisibleMessage {
  std::string conversation_id;
  std::string sender_id;
  std::string recalled_at;
  bool legal_hold = false;
  std::string role;
};

Result<VisibleMessage> FindVisibleMessage(Transaction& tx, const Principal& caller,
                                          const std::string& message_id) {
  if (!IsMessageId(message_id)) return core::Error::kNotFound;
  auto row = tx.QueryOne(
      "SELECT m.conversation_id, m.sender_id, coalesce(m.recalled_at, m.purged_at, ''), "
      "c.legal_hold, cm.role "
      "FROM messages m JOIN conversations c ON c.id = m.conversation_id "
      "JOIN conversation_members cm ON cm.conversation_id = m.conversation_id AND cm.user_id = ? "
      "WHERE m.id = ? AND c.org_id = ?",
      {caller.user_id, message_id, caller.org_id});
  if (!row) return row.error();
  if (!*row) return core::Error::kNotFound;
  const Row& r = **row;
  return VisibleMessage{r.Text(0), r.Text(1), r.Text(2), r.Int(3) != 0, r.Text(4)};
}

Result<std::vector<std::string>> MemberIds(Transaction& tx, const std::string& conversation_id) {
  auto rows = tx.QueryAll("SELECT user_id FROM conversation_members WHERE conversation_id = ?",
                          {conversation_id});
  if (!rows) return rows.error();
  std::vector<std::string> out;
  out.reserve(rows->size());
  for (const Row& r : *rows) out.push_back(r.Text(0));
  return out;
}

// A receipt event for the message's sender.
Status TellSender(Transaction& tx, const std::string& org_id, const std::string& conversation_id,
                  const std::string& message_id, const std::string& sender_id,
                  const std::string& member_id, const std::string& status, const std::string& now,
                  std::vector<LiveEvent>& out) {
  auto id = AppendEvent(
      tx, {org_id, conversation_id, "receipt", message_id, member_id, status, sender_id}, now);
  if (!id) return id.error();
  LiveEvent live;
  live.cursor = *id;
  live.org_id = org_id;
  live.audience = {sender_id};
  live.frame = std::make_shared<const std::string>(
      render::ReceiptFrame(*id, conversation_id, message_id, member_id, status));
  out.push_back(std::move(live));
  return Ok();
}

}  // namespace internal

using namespace internal;

Messaging::Messaging(storage::Database& db, keys::KeyStore& keys, LiveHub& hub,
                     PushDispatcher* push)
    : db_(db), keys_(keys), hub_(hub), push_(push) {}

Messaging::~Messaging() = default;

Status Messaging::WriteAndPublish(
    const std::function<Status(Transaction&, std::vector<LiveEvent>&)>& work) {
  auto events = std::make_shared<std::vector<LiveEvent>>();
  std::promise<Status> promise;
  auto outcome = promise.get_future();
  db_.SubmitWrite(
      [&work, events](Transaction& tx) -> Status {
        events->clear();
        return work(tx, *events);
      },
      // In commit order, on the writer thread: live subscribers see cursors
      // in the order they were made.
      [this, events, &promise](Status status) {
        if (status) hub_.Publish(*events);
        promise.set_value(status);
      });
  return outcome.get();
}

Result<Conversation> Messaging::CreateConversation(const Principal& caller,
                                                   const NewConversation& request,
                                                   const RequestOrigin& origin, bool* created,
                                                   std::string* problem) {
  *created = false;
  const bool direct = request.kind == "direct";
  if (!direct && request.kind != "group") {
    *problem = "kind must be \"direct\" or \"group\"";
    return core::Error::kInvalidArgument;
  }
  std::set<std::string> others(request.members.begin(), request.members.end());
  others.erase(caller.user_id);
  if (direct) {
    if (others.size() != 1) {
      *problem = "a direct conversation has exactly one other member";
      return core::Error::kInvalidArgument;
    }
    if (!request.title.empty()) {
      *problem = "a direct conversation has no title";
      return core::Error::kInvalidArgument;
    }
  } else {
    if (!identity::IsPlainText(request.title, kMaxTitleBytes) ||
        core::HasBidiControl(request.title)) {
      *problem = "a group needs a title of 1 to 200 bytes of plain text";
      return core::Error::kInvalidArgument;
    }
    if (others.size() + 1 > kMaxMembers) {
      *problem = "a group has at most 256 members";
      return core::Error::kInvalidArgument;
    }
  }

  Conversation result;
  auto written = WriteAndPublish([&](Transaction& tx, std::vector<LiveEvent>& out) -> Status {
    for (const std::string& other : others) {
      auto active = IsActiveUser(tx, caller.org_id, other);
      if (!active) return active.error();
      if (!*active) {
        *problem = "every member must be an active user of your organization";
        return core::Error::kInvalidArgument;
      }
    }
    std::string direct_key;
    if (direct) {
      const std::string& other = *others.begin();
      direct_key = std::min(caller.user_id, other) + ":" + std::max(caller.user_id, other);
      auto existing = tx.QueryOne("SELECT id FROM conversations WHERE org_id = ? AND direct_key = ?",
                                  {caller.org_id, direct_key});
      if (!existing) return existing.error();
      if (*existing) {
        auto c = LoadConversation(tx, caller.org_id, (*existing)->Text(0));
        if (!c) return c.error();
        if (!*c) return core::Error::kInternal;
        result = std::move(**c);
        *created = false;
        return Ok();
      }
    }
    const std::string now = core::NowRfc3339();
    const std::string id = "cnv_" + core::RandomHex(16);
    auto inserted = tx.Execute(
        "INSERT INTO conversations (id, org_id, kind, title, direct_key, created_by, created_at, "
        "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        {id, caller.org_id, request.kind, Nullable(direct ? std::string() : request.title),
         Nullable(direct_key), caller.user_id, now, now});
    if (!inserted) return inserted.error();
    auto event = AppendEvent(tx, {caller.org_id, id, "conversation.updated", {}, {}, {}, {}}, now);
    if (!event) return event.error();
    auto add = [&](const std::string& user, const char* role) -> Status {
      auto r = tx.Execute(
          "INSERT INTO conversation_members (conversation_id, user_id, role, added_at, "
          "joined_event) VALUES (?, ?, ?, ?, ?)",
          {id, user, std::string(role), now, *event});
      if (!r) return r.error();
      return Ok();
    };
    if (auto s = add(caller.user_id, direct ? "member" : "admin"); !s) return s;
    for (const std::string& other : others) {
      if (auto s = add(other, "member"); !s) return s;
    }
    auto c = LoadConversation(tx, caller.org_id, id);
    if (!c) return c.error();
    if (!*c) return core::Error::kInternal;
    result = std::move(**c);
    *created = true;
    out.push_back(ConversationLive(*event, caller.org_id, result));
    return audit::Record(
        tx,
        AuditFor(caller, origin, "conversation.created", "conversation", id,
                 Details({{"kind", request.kind},
                          {"members", static_cast<std::int64_t>(result.members.size())}})),
        now);
  });
  if (!written) return written.error();
  return result;
}

Result<std::vector<Conversation>> Messaging::ListConversations(const Principal& caller) {
  std::vector<Conversation> out;
  auto read = db_.Read([&](Transaction& tx) -> Status {
    auto ids = tx.QueryAll(
        "SELECT c.id FROM conversations c JOIN conversation_members m ON m.conversation_id = c.id "
        "WHERE m.user_id = ? AND c.org_id = ? ORDER BY c.updated_at DESC, c.id LIMIT 1000",
        {caller.user_id, caller.org_id});
    if (!ids) return ids.error();
    for (const Row& r : *ids) {
      auto c = LoadConversation(tx, caller.org_id, r.Text(0));
      if (!c) return c.error();
      if (*c) out.push_back(std::move(**c));
    }
    return Ok();
  });
  if (!read) return read.error();
  return out;
}

Result<Conversation> Messaging::GetConversation(const Principal& caller, const std::string& id) {
  Conversation out;
  auto read = db_.Read([&](Transaction& tx) -> Status {
    auto c = LoadVisible(tx, caller, id);
    if (!c) return c.error();
    out = std::move(*c);
    return Ok();
  });
  if (!read) return read.error();
  return out;
}

Result<Conversation> Messaging::Update(const Principal& caller, const std::string& id,
                                       const ConversationChange& change,
                                       const RequestOrigin& origin, std::string* problem) {
  if (change.title && (!identity::IsPlainText(*change.title, kMaxTitleBytes) ||
                       core::HasBidiControl(*change.title))) {
    *problem = "a title is 1 to 200 bytes of plain text";
    return core::Error::kInvalidArgument;
  }
  if (change.message_lifespan_days && *change.message_lifespan_days &&
      (**change.message_lifespan_days < 1 || **change.message_lifespan_days > 36500)) {
    *problem = "message_lifespan_days must be 1 to 36500, or null";
    return core::Error::kInvalidArgument;
  }
  Conversation result;
  auto written = WriteAndPublish([&](Transaction& tx, std::vector<LiveEvent>& out) -> Status {
    auto c = LoadVisible(tx, caller, id);
    if (!c) return c.error();
    if (change.title && c->kind != "group") {
      *problem = "a direct conversation has no title";
      return core::Error::kInvalidArgument;
    }
    // A group is changed by its admins; a direct conversation by either
    // of its two members.
    if (c->kind == "group" && RoleOf(*c, caller.user_id) != "admin") {
      return core::Error::kPermissionDenied;
    }
    boost::json::object changed;
    if (change.title && *change.title != c->title) {
      c->title = *change.title;
      changed["title"] = true;  // the fact of the change; the title itself may name a patient
    }
    if (change.message_lifespan_days) {
      const int days = change.message_lifespan_days->value_or(0);
      if (days > 0) {
        auto org = tx.QueryOne("SELECT message_lifespan_days FROM organizations WHERE id = ?",
                               {caller.org_id});
        if (!org) return org.error();
        if (*org && !(*org)->IsNull(0) && days > (*org)->Int(0)) {
          *problem = "a conversation's message lifespan may only be shorter than the "
                     "organization's";
          return core::Error::kInvalidArgument;
        }
      }
      if (days != c->message_lifespan_days) {
        boost::json::value from = nullptr, to = nullptr;
        if (c->message_lifespan_days > 0) from = c->message_lifespan_days;
        if (days > 0) to = days;
        changed["message_lifespan_days"] = {{"from", from}, {"to", to}};
        c->message_lifespan_days = days;
      }
    }
    result = *c;
    if (changed.empty()) return Ok();
    const std::string now = core::NowRfc3339();
    storage::Value lifespan = nullptr;
    if (c->message_lifespan_days > 0) lifespan = std::int64_t{c->message_lifespan_days};
    auto updated = tx.Execute(
        "UPDATE conversations SET title = ?, message_lifespan_days = ?, updated_at = ? "
        "WHERE id = ?",
        {Nullable(c->title), lifespan, now, id});
    if (!updated) return updated.error();
    if (auto s = AnnounceConversation(tx, result, caller.org_id, now, out); !s) return s;
    return audit::Record(tx,
                         AuditFor(caller, origin, "conversation.updated", "conversation", id,
                                  Details(std::move(changed))),
                         now);
  });
  if (!written) return written.error();
  return result;
}

Result<Conversation> Messaging::SetLegalHold(const Principal& actor, const std::string& id,
                                             bool on, const RequestOrigin& origin) {
  if (!IsConversationId(id)) return core::Error::kNotFound;
  Conversation result;
  auto written = WriteAndPublish([&](Transaction& tx, std::vector<LiveEvent>&) -> Status {
    auto c = LoadConversation(tx, actor.org_id, id);
    if (!c) return c.error();
    if (!*c) return core::Error::kNotFound;
    result = std::move(**c);
    if (result.legal_hold == on) return Ok();
    const std::string now = core::NowRfc3339();
    auto updated = tx.Execute("UPDATE conversations SET legal_hold = ? WHERE id = ?",
                              {std::int64_t{on}, id});
    if (!updated) return updated.error();
    result.legal_hold = on;
    // Members are not told: a hold may be confidential. Recall and purge
    // simply stop.
    return audit::Record(tx,
                         AuditFor(actor, origin,
                                  on ? "conversation.legal_hold_set"
                                     : "conversation.legal_hold_released",
                                  "conversation", id),
                         now);
  });
  if (!written) return written.error();
  return result;
}

Result<Conversation> Messaging::AddMember(const Principal& caller, const std::string& id,
                                          const std::string& user_id, const RequestOrigin& origin,
                                          std::string* problem) {
  Conversation result;
  auto written = WriteAndPublish([&](Transaction& tx, std::vector<LiveEvent>& out) -> Status {
    auto c = LoadVisible(tx, caller, id);
    if (!c) return c.error();
    if (c->kind != "group") {
      *problem = "the members of a direct conversation do not change";
      return core::Error::kInvalidArgument;
    }
    if (RoleOf(*c, caller.user_id) != "admin") return core::Error::kPermissionDenied;
    if (!RoleOf(*c, user_id).empty()) {
      result = std::move(*c);
      return Ok();
    }
    if (c->members.size() >= kMaxMembers) {
      *problem = "a group has at most 256 members";
      return core::Error::kInvalidArgument;
    }
    auto active = IsActiveUser(tx, caller.org_id, user_id);
    if (!active) return active.error();
    if (!*active) {
      *problem = "every member must be an active user of your organization";
      return core::Error::kInvalidArgument;
    }
    const std::string now = core::NowRfc3339();
    auto event = AppendEvent(tx, {caller.org_id, id, "conversation.updated", {}, {}, {}, {}}, now);
    if (!event) return event.error();
    auto added = tx.Execute(
        "INSERT INTO conversation_members (conversation_id, user_id, role, added_at, "
        "joined_event) VALUES (?, ?, 'member', ?, ?)",
        {id, user_id, now, *event});
    if (!added) return added.error();
    auto touched =
        tx.Execute("UPDATE conversations SET updated_at = ? WHERE id = ?", {now, id});
    if (!touched) return touched.error();
    auto fresh = LoadConversation(tx, caller.org_id, id);
    if (!fresh) return fresh.error();
    if (!*fresh) return core::Error::kInternal;
    result = std::move(**fresh);
    out.push_back(ConversationLive(*event, caller.org_id, result));
    return audit::Record(tx,
                         AuditFor(caller, origin, "conversation.member_added", "conversation", id,
                                  Details({{"member", user_id}})),
                         now);
  });
  if (!written) return written.error();
  return result;
}

Status Messaging::RemoveMember(const Principal& caller, const std::string& id,
                               const std::string& user_id, const RequestOrigin& origin,
                               std::string* problem) {
  return WriteAndPublish([&](Transaction& tx, std::vector<LiveEvent>& out) -> Status {
    auto c = LoadVisible(tx, caller, id);
    if (!c) return c.error();
    if (c->kind != "group") {
      *problem = "the members of a direct conversation do not change";
      return core::Error::kInvalidArgument;
    }
    if (RoleOf(*c, user_id).empty()) return core::Error::kNotFound;
    if (user_id != caller.user_id && RoleOf(*c, caller.user_id) != "admin") {
      return core::Error::kPermissionDenied;
    }
    const std::string now = core::NowRfc3339();
    auto removed = tx.Execute(
        "DELETE FROM conversation_members WHERE conversation_id = ? AND user_id = ?", {id, user_id});
    if (!removed) return removed.error();
    // A group keeps an admin while it has members: the longest-standing
    // member takes over from the last one who leaves.
    auto promoted = tx.Execute(
        "UPDATE conversation_members SET role = 'admin' WHERE conversation_id = ? AND user_id = "
        "(SELECT user_id FROM conversation_members WHERE conversation_id = ? "
        "ORDER BY joined_event, user_id LIMIT 1) AND NOT EXISTS "
        "(SELECT 1 FROM conversation_members WHERE conversation_id = ? AND role = 'admin')",
        {id, id, id});
    if (!promoted) return promoted.error();
    auto touched = tx.Execute("UPDATE conversations SET updated_at = ? WHERE id = ?", {now, id});
    if (!touched) return touched.error();
    auto fresh = LoadConversation(tx, caller.org_id, id);
    if (!fresh) return fresh.error();
    if (!*fresh) return core::Error::kInternal;
    if (auto s = AnnounceConversation(tx, **fresh, caller.org_id, now, out); !s) return s;
    // The removed member hears once that the conversation is gone for them.
    auto gone = AppendEvent(
        tx, {caller.org_id, id, "conversation.removed", {}, user_id, {}, user_id}, now);
    if (!gone) return gone.error();
    LiveEvent live;
    live.cursor = *gone;
    live.org_id = caller.org_id;
    live.audience = {user_id};
    live.frame = std::make_shared<const std::string>(render::ConversationRemoved(*gone, id));
    out.push_back(std::move(live));
    return audit::Record(tx,
                         AuditFor(caller, origin, "conversation.member_removed", "conversation",
                                  id, Details({{"member", user_id}})),
                         now);
  });
}

void Messaging::Send(const Principal& caller, const std::string& conversation_id,
                     NewMessage request, const RequestOrigin& origin, SendDone done) {
  if (!IsConversationId(conversation_id)) {
    done(core::Error::kNotFound, "");
    return;
  }
  if (!IsClientTxnId(request.client_txn_id)) {
    done(core::Error::kInvalidArgument,
         "client_txn_id is 1 to 64 characters of letters, digits and . _ : -");
    return;
  }
  if (request.attachment_ids.size() > kMaxAttachmentsPerMessage) {
    done(core::Error::kInvalidArgument, "a message carries at most 10 attachments");
    return;
  }
  // A message with attachments may have no text.
  if (!(request.body.empty() && !request.attachment_ids.empty()) && !IsValidBody(request.body)) {
    done(core::Error::kInvalidArgument,
         "body is 1 to 10000 characters of UTF-8 text without control characters or "
         "bidirectional overrides");
    return;
  }
  if (request.priority != "routine" && request.priority != "urgent") {
    done(core::Error::kInvalidArgument, "priority is \"routine\" or \"urgent\"");
    return;
  }
  if (!request.reply_to.empty() && !IsMessageId(request.reply_to)) {
    done(core::Error::kInvalidArgument, "reply_to is a message id of this conversation");
    return;
  }

  struct State {
    Principal caller;
    RequestOrigin origin;
    NewMessage request;
    Message message;
    std::vector<std::string> audience;
    std::int64_t cursor = 0;
    bool replay = false;
    storage::Blob replay_sealed;
    SafeText problem = "";
    ~State() { sodium_memzero(request.body.data(), request.body.size()); }
  };
  auto state = std::make_shared<State>();
  state->caller = caller;
  state->origin = origin;
  state->request = std::move(request);
  Message& m = state->message;
  m.id = "msg_" + core::RandomHex(16);
  m.conversation_id = conversation_id;
  m.sender_id = caller.user_id;
  m.priority = state->request.priority;
  m.reply_to = state->request.reply_to;
  m.forwarded_from = state->request.forwarded_from;

  // Sealed here, off the single writer thread; a retry that turns out to
  // repeat an earlier send discards it.
  auto sealed = keys_.Seal({caller.org_id, kTable, kColumn, m.id}, state->request.body);
  if (!sealed) {
    done(sealed.error(), "");
    return;
  }
  db_.SubmitWrite(
      [state, blob = storage::Blob(sealed->begin(), sealed->end())](Transaction& tx) -> Status {
        const Principal& who = state->caller;
        Message& msg = state->message;
        state->replay = false;
        if (auto member = RequireMember(tx, who, msg.conversation_id); !member) return member;

        auto existing = tx.QueryOne(
            "SELECT " + std::string(kMessageColumns) +
                " FROM messages WHERE sender_id = ? AND client_txn_id = ?",
            {who.user_id, state->request.client_txn_id});
        if (!existing) return existing.error();
        if (*existing) {
          SealedMessage earlier = MessageFromRow(**existing);
          if (earlier.message.conversation_id != msg.conversation_id) {
            state->problem = "client_txn_id was used for another message";
            return core::Error::kConflict;
          }
          state->replay = true;
          state->replay_sealed = std::move(earlier.sealed);
          msg = std::move(earlier.message);
          auto attached = AttachmentsOf(tx, msg.id);
          if (!attached) return attached.error();
          msg.attachments = std::move(*attached);
          return Ok();
        }
        if (!msg.reply_to.empty()) {
          auto target = tx.QueryOne("SELECT 1 FROM messages WHERE id = ? AND conversation_id = ?",
                                    {msg.reply_to, msg.conversation_id});
          if (!target) return target.error();
          if (!*target) {
            state->problem = "reply_to is a message id of this conversation";
            return core::Error::kInvalidArgument;
          }
        }
        if (!msg.forwarded_from.empty()) {
          // Checked again here, where it cannot change underneath: the
          // source may have been marked, recalled or left since it was read.
          auto source = tx.QueryOne(
              "SELECT m.do_not_forward, m.body IS NULL FROM messages m JOIN conversations c ON "
              "c.id = m.conversation_id JOIN conversation_members cm ON cm.conversation_id = "
              "m.conversation_id AND cm.user_id = ? WHERE m.id = ? AND c.org_id = ?",
              {who.user_id, msg.forwarded_from, who.org_id});
          if (!source) return source.error();
          if (!*source || (*source)->Int(1) != 0) return core::Error::kNotFound;
          if ((*source)->Int(0) != 0) {
            state->problem = "this message is marked do not forward";
            return core::Error::kPermissionDenied;
          }
        }
        if (state->request.do_not_forward) {
          msg.do_not_forward = *state->request.do_not_forward;
        } else {
          auto org = tx.QueryOne("SELECT do_not_forward_default FROM organizations WHERE id = ?",
                                 {who.org_id});
          if (!org) return org.error();
          msg.do_not_forward = *org && (*org)->Int(0) != 0;
        }
        const std::string now = core::NowRfc3339();
        auto bumped = tx.Execute(
            "UPDATE conversations SET last_seq = last_seq + 1, updated_at = ? WHERE id = ?",
            {now, msg.conversation_id});
        if (!bumped) return bumped.error();
        if (*bumped != 1) return core::Error::kNotFound;
        auto seq = tx.QueryOne("SELECT last_seq FROM conversations WHERE id = ?",
                               {msg.conversation_id});
        if (!seq) return seq.error();
        if (!*seq) return core::Error::kNotFound;
        msg.seq = (*seq)->Int(0);
        msg.created_at = now;
        auto inserted = tx.Execute(
            "INSERT INTO messages (id, org_id, conversation_id, seq, sender_id, client_txn_id, "
            "body, priority, reply_to, do_not_forward, forwarded_from, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            {msg.id, who.org_id, msg.conversation_id, msg.seq, who.user_id,
             state->request.client_txn_id, blob, msg.priority, Nullable(msg.reply_to),
             std::int64_t{msg.do_not_forward}, Nullable(msg.forwarded_from), now});
        if (!inserted) return inserted.error();
        for (const std::string& attachment : state->request.attachment_ids) {
          auto attached = tx.Execute(
              "UPDATE attachments SET message_id = ? WHERE id = ? AND org_id = ? AND "
              "conversation_id = ? AND uploader_id = ? AND message_id IS NULL AND "
              "destroyed_at IS NULL AND complete = 1",
              {msg.id, attachment, who.org_id, msg.conversation_id, who.user_id});
          if (!attached) return attached.error();
          if (*attached != 1) {
            state->problem = "attachments must be your own unsent uploads to this conversation";
            return core::Error::kInvalidArgument;
          }
        }
        if (!state->request.attachment_ids.empty()) {
          auto attached = AttachmentsOf(tx, msg.id);
          if (!attached) return attached.error();
          msg.attachments = std::move(*attached);
        }
        auto receipts = tx.Execute(
            "INSERT INTO message_receipts (message_id, user_id) SELECT ?, user_id FROM "
            "conversation_members WHERE conversation_id = ? AND user_id != ?",
            {msg.id, msg.conversation_id, who.user_id});
        if (!receipts) return receipts.error();
        auto cursor = AppendEvent(
            tx, {who.org_id, msg.conversation_id, "message.created", msg.id, {}, {}, {}}, now);
        if (!cursor) return cursor.error();
        state->cursor = *cursor;
        auto audience = MemberIds(tx, msg.conversation_id);
        if (!audience) return audience.error();
        state->audience = std::move(*audience);
        return audit::Record(
            tx,
            AuditFor(who, state->origin,
                     msg.forwarded_from.empty() ? "message.sent" : "message.forwarded", "message",
                     msg.id,
                     Details({{"conversation_id", msg.conversation_id},
                              {"seq", msg.seq},
                              {"priority", msg.priority},
                              {"forwarded_from", msg.forwarded_from}})),
            now);
      },
      [this, state, done = std::move(done)](Status status) {
        if (!status) {
          done(status.error(), state->problem);
          return;
        }
        Message& msg = state->message;
        if (state->replay) {
          // The same client_txn_id must mean the same message: a different
          // body or priority is a client bug, not a retry.
          if (!state->replay_sealed.empty()) {
            auto plain = keys_.Open({state->caller.org_id, kTable, kColumn, msg.id},
                                    state->replay_sealed);
            if (!plain) {
              done(plain.error(), "");
              return;
            }
            const bool same = std::string_view(reinterpret_cast<const char*>(plain->data()),
                                               plain->size()) == state->request.body;
            sodium_memzero(plain->data(), plain->size());
            std::vector<std::string> attached;
            for (const Attachment& a : msg.attachments) attached.push_back(a.id);
            std::vector<std::string> asked = state->request.attachment_ids;
            std::sort(attached.begin(), attached.end());
            std::sort(asked.begin(), asked.end());
            const bool same_marking = !state->request.do_not_forward ||
                                      *state->request.do_not_forward == msg.do_not_forward;
            if (!same || msg.priority != state->request.priority ||
                msg.forwarded_from != state->request.forwarded_from || !same_marking ||
                (msg.recalled_at.empty() && msg.expired_at.empty() && attached != asked)) {
              done(core::Error::kConflict, "client_txn_id was used for another message");
              return;
            }
            msg.body = state->request.body;
          }
          done(msg, "");
          return;
        }
        msg.body = state->request.body;
        LiveEvent live;
        live.cursor = state->cursor;
        live.org_id = state->caller.org_id;
        live.audience = std::move(state->audience);
        live.frame = std::make_shared<const std::string>(render::MessageCreated(state->cursor, msg));
        live.message_id = msg.id;
        live.conversation_id = msg.conversation_id;
        live.sender_id = msg.sender_id;
        if (push_ != nullptr) {
          const PushKind kind = msg.priority == "urgent" ? PushKind::kUrgent : PushKind::kMessage;
          for (const std::string& member : live.audience) {
            if (member != msg.sender_id) push_->Enqueue({member, msg.conversation_id, kind});
          }
        }
        hub_.Publish({std::move(live)});
        done(msg, "");
      });
}

void Messaging::Forward(const Principal& caller, const std::string& message_id,
                        const std::string& to_conversation, const std::string& client_txn_id,
                        const RequestOrigin& origin, SendDone done) {
  if (!IsMessageId(message_id)) {
    done(core::Error::kNotFound, "");
    return;
  }
  // Checked before anything is copied, so a bad request stores nothing.
  if (!IsClientTxnId(client_txn_id)) {
    done(core::Error::kInvalidArgument,
         "client_txn_id is 1 to 64 characters of letters, digits and . _ : -");
    return;
  }
  std::optional<SealedMessage> source;
  // A retry of this forward (the same client_txn_id) carries the copies the
  // first one made, so it is answered as the same message.
  std::optional<std::vector<std::string>> earlier_copies;
  auto read = db_.Read([&](Transaction& tx) -> Status {
    auto visible = FindVisibleMessage(tx, caller, message_id);
    if (!visible) return visible.error();
    auto row = tx.QueryOne("SELECT " + std::string(kMessageColumns) + " FROM messages WHERE id = ?",
                           {message_id});
    if (!row) return row.error();
    if (!*row) return core::Error::kNotFound;
    source = MessageFromRow(**row);
    auto attached = AttachmentsOf(tx, message_id);
    if (!attached) return attached.error();
    source->message.attachments = std::move(*attached);
    auto earlier = tx.QueryOne(
        "SELECT id FROM messages WHERE sender_id = ? AND client_txn_id = ?",
        {caller.user_id, client_txn_id});
    if (!earlier) return earlier.error();
    if (*earlier) {
      auto copies = AttachmentsOf(tx, (**earlier).Text(0));
      if (!copies) return copies.error();
      earlier_copies.emplace();
      for (const Attachment& a : *copies) earlier_copies->push_back(a.id);
    }
    return Ok();
  });
  if (!read) {
    done(read.error(), "");
    return;
  }
  if (source->message.do_not_forward) {
    done(core::Error::kPermissionDenied, "this message is marked do not forward");
    return;
  }
  if (source->sealed.empty()) {
    done(core::Error::kNotFound, "");
    return;
  }
  auto plain = keys_.Open({caller.org_id, kTable, kColumn, message_id}, source->sealed);
  if (!plain) {
    done(plain.error(), "");
    return;
  }
  NewMessage copy;
  copy.client_txn_id = client_txn_id;
  copy.body.assign(reinterpret_cast<const char*>(plain->data()), plain->size());
  sodium_memzero(plain->data(), plain->size());
  copy.priority = "routine";
  copy.forwarded_from = message_id;
  if (earlier_copies) {
    copy.attachment_ids = std::move(*earlier_copies);
  } else {
    // The files go too, each re-sealed for its copy (a sealed stream is bound
    // to its attachment's id) as the forwarder's upload to the other
    // conversation, which the send then carries.
    for (const Attachment& a : source->message.attachments) {
      std::string problem;
      auto copied = CopyAttachment(caller, a.id, to_conversation, origin, &problem);
      if (!copied) {
        DiscardUploads(caller, origin, copy.attachment_ids);
        done(copied.error(), SafeText::Trusted(problem));
        return;
      }
      copy.attachment_ids.push_back(std::move(*copied));
    }
    if (!copy.attachment_ids.empty()) {
      // A forward refused after all keeps no copies.
      done = [this, caller, origin, copies = copy.attachment_ids, done = std::move(done)](
                 Result<Message> result, SafeText problem) {
        if (!result) DiscardUploads(caller, origin, copies);
        done(std::move(result), problem);
      };
    }
  }
  Send(caller, to_conversation, std::move(copy), origin, std::move(done));
}

Result<std::vector<Message>> Messaging::ListMessages(const Principal& caller,
                                                     const std::string& conversation_id,
                                                     std::int64_t after_seq, int limit,
                                                     const RequestOrigin& origin) {
  std::vector<SealedMessage> rows;
  auto read = db_.Read([&](Transaction& tx) -> Status {
    auto c = LoadVisible(tx, caller, conversation_id);
    if (!c) return c.error();
    auto status = tx.Query("SELECT " + std::string(kMessageColumns) +
                        " FROM messages WHERE conversation_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                    {conversation_id, after_seq, static_cast<std::int64_t>(limit)},
                    [&](const Row& r) -> Status {
                      rows.push_back(MessageFromRow(r));
                      return Ok();
                    });
    if (!status) return status;
    for (SealedMessage& row : rows) {
      if (row.sealed.empty()) continue;
      auto attached = AttachmentsOf(tx, row.message.id);
      if (!attached) return attached.error();
      row.message.attachments = std::move(*attached);
    }
    return Ok();
  });
  if (!read) return read.error();
  std::vector<Message> out;
  out.reserve(rows.size());
  for (SealedMessage& row : rows) {
    if (!row.sealed.empty()) {
      auto plain = keys_.Open({caller.org_id, kTable, kColumn, row.message.id}, row.sealed);
      if (!plain) return plain.error();
      row.message.body.emplace(reinterpret_cast<const char*>(plain->data()), plain->size());
      sodium_memzero(plain->data(), plain->size());
    }
    out.push_back(std::move(row.message));
  }
  if (out.empty()) return out;
  // Shown to the caller: delivered to them, and audited, before the answer.
  auto written = WriteAndPublish([&](Transaction& tx, std::vector<LiveEvent>& events) -> Status {
    auto member = tx.QueryOne(
        "SELECT 1 FROM conversation_members WHERE conversation_id = ? AND user_id = ?",
        {conversation_id, caller.user_id});
    if (!member) return member.error();
    if (!*member) return core::Error::kNotFound;
    const std::string now = core::NowRfc3339();
    for (const Message& m : out) {
      if (m.sender_id == caller.user_id || !m.body) continue;
      auto changed = tx.Execute(
          "UPDATE message_receipts SET delivered_at = ? WHERE message_id = ? AND user_id = ? AND "
          "delivered_at IS NULL",
          {now, m.id, caller.user_id});
      if (!changed) return changed.error();
      if (*changed == 0) continue;
      if (auto s = TellSender(tx, caller.org_id, conversation_id, m.id, m.sender_id,
                              caller.user_id, "delivered", now, events);
          !s) {
        return s;
      }
    }
    return audit::Record(
        tx,
        AuditFor(caller, origin, "message.fetched", "conversation", conversation_id,
                 Details({{"count", static_cast<std::int64_t>(out.size())},
                          {"first_seq", out.front().seq},
                          {"last_seq", out.back().seq}})),
        now);
  });
  if (!written) {
    for (Message& m : out) {
      if (m.body) sodium_memzero(m.body->data(), m.body->size());
    }
    return written.error();
  }
  return out;
}

Status Messaging::MarkRead(const Principal& caller, const std::string& message_id,
                           const RequestOrigin& origin) {
  return WriteAndPublish([&](Transaction& tx, std::vector<LiveEvent>& out) -> Status {
    auto m = FindVisibleMessage(tx, caller, message_id);
    if (!m) return m.error();
    if (m->sender_id == caller.user_id) return Ok();
    const std::string now = core::NowRfc3339();
    auto changed = tx.Execute(
        "UPDATE message_receipts SET read_at = ?, delivered_at = coalesce(delivered_at, ?) "
        "WHERE message_id = ? AND user_id = ? AND read_at IS NULL",
        {now, now, message_id, caller.user_id});
    if (!changed) return changed.error();
    if (*changed == 0) return Ok();  // read already, or joined after it was sent
    if (auto s = TellSender(tx, caller.org_id, m->conversation_id, message_id, m->sender_id,
                            caller.user_id, "read", now, out);
        !s) {
      return s;
    }
    return audit::Record(tx,
                         AuditFor(caller, origin, "message.read", "message", message_id,
                                  Details({{"conversation_id", m->conversation_id}})),
                         now);
  });
}

Status Messaging::Recall(const Principal& caller, const std::string& message_id,
                         const RequestOrigin& origin) {
  return WriteAndPublish([&](Transaction& tx, std::vector<LiveEvent>& out) -> Status {
    auto m = FindVisibleMessage(tx, caller, message_id);
    if (!m) return m.error();
    if (m->sender_id != caller.user_id && m->role != "admin") return core::Error::kPermissionDenied;
    if (!m->recalled_at.empty()) return Ok();
    if (m->legal_hold) return core::Error::kConflict;
    const std::string now = core::NowRfc3339();
    auto changed = tx.Execute(
        "UPDATE messages SET body = NULL, recalled_at = ?, recalled_by = ? WHERE id = ?",
        {now, caller.user_id, message_id});
    if (!changed) return changed.error();
    if (auto s = DestroyAttachments(tx, message_id, now); !s) return s;
    auto cursor = AppendEvent(
        tx, {caller.org_id, m->conversation_id, "message.recalled", message_id, {}, {}, {}}, now);
    if (!cursor) return cursor.error();
    auto audience = MemberIds(tx, m->conversation_id);
    if (!audience) return audience.error();
    LiveEvent live;
    live.cursor = *cursor;
    live.org_id = caller.org_id;
    live.audience = std::move(*audience);
    live.frame = std::make_shared<const std::string>(
        render::MessageRecalled(*cursor, m->conversation_id, message_id));
    out.push_back(std::move(live));
    return audit::Record(tx,
                         AuditFor(caller, origin, "message.recalled", "message", message_id,
                                  Details({{"conversation_id", m->conversation_id}})),
                         now);
  });
}

Result<std::vector<Receipt>> Messaging::Receipts(const Principal& caller,
                                                 const std::string& message_id) {
  std::vector<Receipt> out;
  auto read = db_.Read([&](Transaction& tx) -> Status {
    auto m = FindVisibleMessage(tx, caller, message_id);
    if (!m) return m.error();
    if (m->sender_id != caller.user_id && m->role != "admin") return core::Error::kPermissionDenied;
    return tx.Query(
        "SELECT user_id, coalesce(delivered_at, ''), coalesce(read_at, '') FROM message_receipts "
        "WHERE message_id = ? ORDER BY user_id",
        {message_id}, [&](const Row& r) -> Status {
          out.push_back({r.Text(0), r.Text(1), r.Text(2)});
          return Ok();
        });
  });
  if (!read) return read.error();
  return out;
}

Result<std::int64_t> Messaging::LatestCursor() {
  std::int64_t cursor = 0;
  auto read = db_.Read([&](Transaction& tx) -> Status {
    auto row = tx.QueryOne("SELECT coalesce(max(id), 0) FROM conversation_events");
    if (!row) return row.error();
    if (*row) cursor = (*row)->Int(0);
    return Ok();
  });
  if (!read) return read.error();
  return cursor;
}

Result<Messaging::ReplayPage> Messaging::Replay(const std::string& org_id,
                                                const std::string& user_id, std::int64_t cursor,
                                                int limit) {
  struct Pending {
    std::int64_t cursor = 0;
    std::string type;
    std::string conversation_id;
    std::string message_id;
    std::string user_id;
    std::string status;
    std::optional<SealedMessage> message;
    std::optional<Conversation> conversation;
  };
  std::vector<Pending> pending;
  ReplayPage page;
  page.through = cursor;
  auto read = db_.Read([&](Transaction& tx) -> Status {
    // The newest event this page can see: a short page means there is no
    // more only when it reached it.
    auto newest = tx.QueryOne("SELECT coalesce(max(id), 0) FROM conversation_events");
    if (!newest) return newest.error();
    const std::int64_t newest_id = *newest ? (**newest).Int(0) : 0;
    // The events for this user: their conversations' events since they
    // joined, receipts addressed to them, and their own removals.
    auto status = tx.Query(
        "SELECT e.id, e.type, e.conversation_id, coalesce(e.message_id, ''), "
        "coalesce(e.user_id, ''), coalesce(e.status, '') FROM conversation_events e "
        "WHERE e.org_id = ? AND e.id > ? AND ("
        "(e.type = 'conversation.removed' AND e.recipient_id = ?) OR "
        "(e.type != 'conversation.removed' AND (e.recipient_id IS NULL OR e.recipient_id = ?) "
        "AND EXISTS (SELECT 1 FROM conversation_members m WHERE m.conversation_id = "
        "e.conversation_id AND m.user_id = ? AND m.joined_event <= e.id))) "
        "ORDER BY e.id LIMIT ?",
        {org_id, cursor, user_id, user_id, user_id, static_cast<std::int64_t>(limit)},
        [&](const Row& r) -> Status {
          pending.push_back({r.Int(0), r.Text(1), r.Text(2), r.Text(3), r.Text(4), r.Text(5), {},
                             {}});
          return Ok();
        });
    if (!status) return status;
    if (static_cast<int>(pending.size()) < limit) {
      page.through = std::max(cursor, newest_id);
      page.complete = true;
    } else {
      page.through = pending.back().cursor;
    }
    std::map<std::string, Conversation> conversations;
    for (Pending& p : pending) {
      if (p.type == "message.created") {
        auto row = tx.QueryOne(
            "SELECT " + std::string(kMessageColumns) + " FROM messages WHERE id = ?",
            {p.message_id});
        if (!row) return row.error();
        if (*row) {
          p.message = MessageFromRow(**row);
          if (!p.message->sealed.empty()) {
            auto attached = AttachmentsOf(tx, p.message_id);
            if (!attached) return attached.error();
            p.message->message.attachments = std::move(*attached);
          }
        }
      } else if (p.type == "conversation.updated") {
        auto it = conversations.find(p.conversation_id);
        if (it == conversations.end()) {
          auto c = LoadConversation(tx, org_id, p.conversation_id);
          if (!c) return c.error();
          if (!*c) continue;
          it = conversations.emplace(p.conversation_id, std::move(**c)).first;
        }
        p.conversation = it->second;
      }
    }
    return Ok();
  });
  if (!read) return read.error();

  std::vector<Frame>& out = page.frames;
  out.reserve(pending.size());
  for (Pending& p : pending) {
    Frame frame;
    frame.cursor = p.cursor;
    if (p.type == "message.created") {
      if (!p.message) continue;
      Message& m = p.message->message;
      if (!p.message->sealed.empty()) {
        auto plain = keys_.Open({org_id, kTable, kColumn, m.id}, p.message->sealed);
        if (!plain) return plain.error();
        m.body.emplace(reinterpret_cast<const char*>(plain->data()), plain->size());
        sodium_memzero(plain->data(), plain->size());
      }
      frame.text = render::MessageCreated(p.cursor, m);
      if (m.sender_id != user_id && m.body) {
        frame.message_id = m.id;
        frame.conversation_id = m.conversation_id;
        frame.sender_id = m.sender_id;
      }
      if (m.body) sodium_memzero(m.body->data(), m.body->size());
    } else if (p.type == "message.recalled") {
      frame.text = render::MessageRecalled(p.cursor, p.conversation_id, p.message_id);
    } else if (p.type == "message.expired") {
      frame.text = render::MessageExpired(p.cursor, p.conversation_id, p.message_id);
    } else if (p.type == "receipt") {
      frame.text =
          render::ReceiptFrame(p.cursor, p.conversation_id, p.message_id, p.user_id, p.status);
    } else if (p.type == "conversation.updated") {
      if (!p.conversation) continue;
      frame.text = render::ConversationUpdated(p.cursor, *p.conversation);
    } else if (p.type == "conversation.removed") {
      frame.text = render::ConversationRemoved(p.cursor, p.conversation_id);
    } else {
      continue;
    }
    out.push_back(std::move(frame));
  }
  return page;
}

void Messaging::NoteDelivered(Delivery delivery) {
  {
    std::lock_guard lock(deliveries_mu_);
    // A writer that cannot keep up (or a database that refuses writes)
    // must not grow this without bound; a member's next fetch records what
    // is dropped here.
    if (deliveries_.size() < kMaxPendingDeliveries) {
      deliveries_.push_back(std::move(delivery));
    }
    if (flush_queued_) return;
    flush_queued_ = true;
  }
  // One write takes every delivery gathered until it runs, so a busy
  // writer handles them in ever larger batches.
  auto events = std::make_shared<std::vector<LiveEvent>>();
  db_.SubmitWrite(
      [this, events](Transaction& tx) -> Status {
        events->clear();
        return FlushDeliveries(tx, *events);
      },
      [this, events](Status status) {
        if (status) {
          hub_.Publish(*events);
          return;
        }
        // The work may never have run (refused, or its batch failed): the
        // next delivery must be free to queue a flush again.
        std::lock_guard lock(deliveries_mu_);
        flush_queued_ = false;
      });
}

// A failed batch is dropped: those members' next fetch records it again.
Status Messaging::FlushDeliveries(Transaction& tx, std::vector<LiveEvent>& out) {
  std::vector<Delivery> batch;
  {
    std::lock_guard lock(deliveries_mu_);
    batch.swap(deliveries_);
    flush_queued_ = false;
  }
  const std::string now = core::NowRfc3339();
  // (org, user, conversation) -> how many messages reached that user.
  std::map<std::array<std::string, 3>, std::int64_t> counts;
  for (const Delivery& d : batch) {
    // Every body a socket was given is accounted for, a replay of messages
    // delivered long ago included; only the first delivery tells the sender.
    ++counts[{d.org_id, d.user_id, d.conversation_id}];
    auto changed = tx.Execute(
        "UPDATE message_receipts SET delivered_at = ? WHERE message_id = ? AND user_id = ? AND "
        "delivered_at IS NULL",
        {now, d.message_id, d.user_id});
    if (!changed) return changed.error();
    if (*changed == 0) continue;
    if (auto s = TellSender(tx, d.org_id, d.conversation_id, d.message_id, d.sender_id,
                            d.user_id, "delivered", now, out);
        !s) {
      return s;
    }
  }
  for (const auto& [key, count] : counts) {
    audit::Event e;
    e.org_id = key[0];
    e.actor_type = audit::ActorType::kUser;
    e.actor_id = key[1];
    e.action = "message.delivered";
    e.target_type = "conversation";
    e.target_id = key[2];
    e.details = Details({{"count", count}, {"through", "live_stream"}});
    if (auto s = audit::Record(tx, e, now); !s) return s;
  }
  return Ok();
}

}  // namespace cw::messaging
