#include "messaging/render.hpp"

#include <boost/json/serialize.hpp>

namespace cw::messaging {
namespace {

boost::json::value OrNull(const std::string& s) {
  if (s.empty()) return nullptr;
  return boost::json::string(s);
}

bool IsHexId(std::string_view id, std::string_view prefix) {
  if (id.size() != prefix.size() + 32 || id.substr(0, prefix.size()) != prefix) return false;
  for (const char c : id.substr(prefix.size())) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

}  // namespace

bool IsConversationId(std::string_view id) { return IsHexId(id, "cnv_"); }
bool IsMessageId(std::string_view id) { return IsHexId(id, "msg_"); }

bool IsClientTxnId(std::string_view id) {
  if (id.empty() || id.size() > kMaxClientTxnIdBytes) return false;
  for (const char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == ':' || c == '-';
    if (!ok) return false;
  }
  return true;
}

boost::json::object ConversationJson(const Conversation& c) {
  boost::json::array members;
  for (const Member& m : c.members) members.push_back({{"user_id", m.user_id}, {"role", m.role}});
  boost::json::value lifespan = nullptr;
  if (c.message_lifespan_days > 0) lifespan = c.message_lifespan_days;
  return {{"id", c.id},
          {"kind", c.kind},
          {"title", OrNull(c.title)},
          {"members", std::move(members)},
          {"created_by", c.created_by},
          {"created_at", c.created_at},
          {"last_seq", c.last_seq},
          {"message_lifespan_days", lifespan}};
}

boost::json::object MessageJson(const Message& m) {
  boost::json::value body = nullptr;
  if (m.body) body = boost::json::string(*m.body);
  boost::json::array attachments;
  for (const Attachment& a : m.attachments) {
    attachments.push_back({{"id", a.id}, {"content_type", a.content_type}, {"size", a.size}});
  }
  return {{"id", m.id},
          {"conversation_id", m.conversation_id},
          {"seq", m.seq},
          {"sender", m.sender_id},
          {"body", std::move(body)},
          {"priority", m.priority},
          {"reply_to", OrNull(m.reply_to)},
          {"do_not_forward", m.do_not_forward},
          {"forwarded_from", OrNull(m.forwarded_from)},
          {"created_at", m.created_at},
          {"recalled", !m.recalled_at.empty()},
          {"recalled_at", OrNull(m.recalled_at)},
          {"expired", !m.expired_at.empty()},
          {"attachments", std::move(attachments)}};
}

namespace render {

std::string MessageCreated(std::int64_t cursor, const Message& m) {
  return boost::json::serialize(boost::json::object{{"type", "message.created"},
                                                    {"cursor", std::to_string(cursor)},
                                                    {"message", MessageJson(m)}});
}

std::string MessageRecalled(std::int64_t cursor, const std::string& conversation_id,
                            const std::string& message_id) {
  return boost::json::serialize(boost::json::object{{"type", "message.recalled"},
                                                    {"cursor", std::to_string(cursor)},
                                                    {"conversation_id", conversation_id},
                                                    {"message_id", message_id}});
}

std::string MessageExpired(std::int64_t cursor, const std::string& conversation_id,
                           const std::string& message_id) {
  return boost::json::serialize(boost::json::object{{"type", "message.expired"},
                                                    {"cursor", std::to_string(cursor)},
                                                    {"conversation_id", conversation_id},
                                                    {"message_id", message_id}});
}

std::string ReceiptFrame(std::int64_t cursor, const std::string& conversation_id,
                         const std::string& message_id, const std::string& user_id,
                         const std::string& status) {
  return boost::json::serialize(boost::json::object{{"type", "receipt"},
                                                    {"cursor", std::to_string(cursor)},
                                                    {"conversation_id", conversation_id},
                                                    {"message_id", message_id},
                                                    {"user_id", user_id},
                                                    {"status", status}});
}

std::string ConversationUpdated(std::int64_t cursor, const Conversation& c) {
  return boost::json::serialize(boost::json::object{{"type", "conversation.updated"},
                                                    {"cursor", std::to_string(cursor)},
                                                    {"conversation", ConversationJson(c)}});
}

std::string ConversationRemoved(std::int64_t cursor, const std::string& conversation_id) {
  return boost::json::serialize(boost::json::object{{"type", "conversation.removed"},
                                                    {"cursor", std::to_string(cursor)},
                                                    {"conversation_id", conversation_id}});
}

}  // namespace render
}  // namespace cw::messaging
