#pragma once

// Secure messaging between staff: conversations (direct, one per pair of
// users; group, with a title and conversation admins), messages sealed at
// rest with gap-free sequence numbers per conversation, delivered and read
// receipts, recall, and the event log the live stream replays.
//
// Every change commits together with its audit event and its stream events,
// and those stream events are published to the live hub from the writer's
// completion callback, so live subscribers see them in commit order.
//
// Every lookup is scoped to the caller's organization and to the
// conversations the caller belongs to: anything else is kNotFound, exactly
// like an id that does not exist, so nothing reveals that a conversation
// exists. Errors: kNotFound; kPermissionDenied (a member without the right,
// such as a plain member adding members); kInvalidArgument with `problem`
// set to a text for the client; kConflict (a client_txn_id reused for a
// different message, recall under legal hold); storage errors.

#include <array>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <boost/json/value.hpp>

#include "core/result.hpp"
#include "core/safe_text.hpp"
#include "identity/principal.hpp"
#include "identity/sessions.hpp"
#include "keys/key_store.hpp"
#include "messaging/live_hub.hpp"
#include "storage/database.hpp"

namespace cw::messaging {

// The longest message body, in Unicode code points.
inline constexpr std::size_t kMaxBodyCodePoints = 10000;
// The most members a group conversation has, its creator included.
inline constexpr std::size_t kMaxMembers = 256;
inline constexpr std::size_t kMaxTitleBytes = 200;
inline constexpr std::size_t kMaxClientTxnIdBytes = 64;

using identity::Principal;
using identity::RequestOrigin;

struct Member {
  std::string user_id;
  std::string role;  // "admin" or "member"
};

struct Conversation {
  std::string id;
  std::string kind;   // "direct" or "group"
  std::string title;  // empty for direct conversations
  std::vector<Member> members;
  std::string created_by;
  std::string created_at;
  std::int64_t last_seq = 0;
  bool legal_hold = false;
  int message_lifespan_days = 0;  // 0: the organization's
};

struct Message {
  std::string id;
  std::string conversation_id;
  std::int64_t seq = 0;
  std::string sender_id;
  std::optional<std::string> body;  // nullopt once recalled
  std::string priority;             // "routine" or "urgent"
  std::string reply_to;
  std::string created_at;
  std::string recalled_at;
};

struct Receipt {
  std::string user_id;
  std::string delivered_at;
  std::string read_at;
};

struct NewConversation {
  std::string kind;
  std::string title;
  std::vector<std::string> members;
};

struct NewMessage {
  std::string client_txn_id;
  std::string body;
  std::string priority = "routine";
  std::string reply_to;
};

bool IsConversationId(std::string_view id);
bool IsMessageId(std::string_view id);
bool IsClientTxnId(std::string_view id);

// As the API shows them.
boost::json::object ConversationJson(const Conversation& c);
boost::json::object MessageJson(const Message& m);

// One frame of the event stream and its cursor.
struct Frame {
  std::int64_t cursor = 0;
  std::string text;
  std::string message_id;  // for message.created from someone else: to mark delivered
};

class Messaging {
 public:
  Messaging(storage::Database& db, keys::KeyStore& keys, LiveHub& hub);
  ~Messaging();

  // Creates a conversation. A direct one that exists for the pair already is
  // answered as it is, with `created` false.
  Result<Conversation> CreateConversation(const Principal& caller, const NewConversation& request,
                                          const RequestOrigin& origin, bool* created,
                                          std::string* problem);
  Result<std::vector<Conversation>> ListConversations(const Principal& caller);
  Result<Conversation> GetConversation(const Principal& caller, const std::string& id);
  Result<Conversation> Rename(const Principal& caller, const std::string& id,
                              const std::string& title, const RequestOrigin& origin,
                              std::string* problem);
  Result<Conversation> AddMember(const Principal& caller, const std::string& id,
                                 const std::string& user_id, const RequestOrigin& origin,
                                 std::string* problem);
  // A conversation admin removes anyone; a member removes themself.
  Status RemoveMember(const Principal& caller, const std::string& id, const std::string& user_id,
                      const RequestOrigin& origin, std::string* problem);

  // Sends a message; `done` is told once it is durable (or refused), on the
  // storage writer thread, so it must be quick. The same client_txn_id from
  // the same sender answers the message it first made.
  using SendDone = std::function<void(Result<Message>, SafeText problem)>;
  void Send(const Principal& caller, const std::string& conversation_id, NewMessage request,
            const RequestOrigin& origin, SendDone done);

  // Messages after `after_seq`, oldest first; they count as delivered to the
  // caller, and the fetch is audited, before they are answered.
  Result<std::vector<Message>> ListMessages(const Principal& caller,
                                            const std::string& conversation_id,
                                            std::int64_t after_seq, int limit,
                                            const RequestOrigin& origin);
  Status MarkRead(const Principal& caller, const std::string& message_id,
                  const RequestOrigin& origin);
  // The sender or a conversation admin destroys the body; a tombstone stays.
  Status Recall(const Principal& caller, const std::string& message_id,
                const RequestOrigin& origin);
  // For the sender or a conversation admin.
  Result<std::vector<Receipt>> Receipts(const Principal& caller, const std::string& message_id);

  // The event stream. The newest cursor of the whole log.
  Result<std::int64_t> LatestCursor();
  // The frames for `user_id` among the next `limit` events after `cursor`,
  // oldest first. Bodies are opened here; recalled messages show as
  // tombstones. `through` is the last event looked at: the next page starts
  // after it; `complete` says the log held no more.
  struct ReplayPage {
    std::vector<Frame> frames;
    std::int64_t through = 0;
    bool complete = false;
  };
  Result<ReplayPage> Replay(const std::string& org_id, const std::string& user_id,
                            std::int64_t cursor, int limit);
  // Records that messages reached a member's live socket. Deliveries are
  // gathered and written in batches; each new one tells the sender.
  void NoteDelivered(const std::string& org_id, const std::string& user_id,
                     const std::string& message_id);

 private:
  Status WriteAndPublish(const std::function<Status(storage::Transaction&,
                                                    std::vector<LiveEvent>&)>& work);
  Status FlushDeliveries(storage::Transaction& tx, std::vector<LiveEvent>& out);

  storage::Database& db_;
  keys::KeyStore& keys_;
  LiveHub& hub_;
  std::mutex deliveries_mu_;
  std::vector<std::array<std::string, 3>> deliveries_;  // org, user, message
  bool flush_queued_ = false;
};

}  // namespace cw::messaging
