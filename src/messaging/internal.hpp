#pragma once

// What messaging.cpp and jobs.cpp share: the stored forms. Internal to
// messaging/.

#include <boost/json/value.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "audit/audit_log.hpp"
#include "messaging/messaging.hpp"
#include "storage/database.hpp"

namespace cw::messaging::internal {

// Where message bodies are sealed: the table and column in the associated
// data of every sealed body.
constexpr std::string_view kTable = "messages";
constexpr std::string_view kColumn = "body";

storage::Value Nullable(const std::string& s);
std::string Details(boost::json::object facts);

// The audit event of something the caller did, with facts in `details`.
audit::Event AuditFor(const Principal& caller, const RequestOrigin& origin, std::string_view action,
                      std::string_view target_type, std::string_view target_id,
                      std::string details = {});

// The audit event of something a job (`job`, a system actor) did.
audit::Event SystemEvent(const std::string& org_id, std::string_view job, std::string action,
                         std::string target_type, std::string target_id, std::string details);

// kNotFound unless the caller belongs to the conversation, in their
// organization.
Status RequireMember(storage::Transaction& tx, const Principal& caller,
                     const std::string& conversation_id);

// One row of conversation_events.
struct EventRow {
  std::string org_id;
  std::string conversation_id;
  std::string_view type;
  std::string message_id;
  std::string user_id;
  std::string status;
  std::string recipient_id;
};
// Appends the event and returns its id, the stream's cursor.
Result<std::int64_t> AppendEvent(storage::Transaction& tx, const EventRow& e,
                                 const std::string& now);

Result<std::vector<std::string>> MemberIds(storage::Transaction& tx,
                                           const std::string& conversation_id);

// Message rows as selected by kMessageColumns, body still sealed.
constexpr std::string_view kMessageColumns =
    "id, conversation_id, seq, sender_id, body, priority, coalesce(reply_to, ''), created_at, "
    "coalesce(recalled_at, ''), do_not_forward, coalesce(forwarded_from, ''), "
    "coalesce(purged_at, '')";

struct SealedMessage {
  Message message;
  storage::Blob sealed;  // empty once recalled or purged
};
SealedMessage MessageFromRow(const storage::Row& r);

// The attachments a message carries (none once destroyed).
Result<std::vector<Attachment>> AttachmentsOf(storage::Transaction& tx,
                                              const std::string& message_id);
// Destroys a message's attachments: their sealed bytes go, a row stays.
Status DestroyAttachments(storage::Transaction& tx, const std::string& message_id,
                          const std::string& now);
// Destroys uploads never sent, made before `cutoff`, and uploads never
// finished (cut off by a crash), begun before `incomplete_cutoff`; returns
// how many.
Result<int> DestroyUnsentAttachments(storage::Transaction& tx, const std::string& cutoff,
                                     const std::string& incomplete_cutoff,
                                     const std::string& now);

}  // namespace cw::messaging::internal
