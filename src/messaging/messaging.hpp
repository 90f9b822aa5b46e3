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
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <boost/json/value.hpp>

#include "core/result.hpp"
#include "core/safe_text.hpp"
#include "crypto/sealed_stream.hpp"
#include "identity/principal.hpp"
#include "identity/sessions.hpp"
#include "keys/key_store.hpp"
#include "messaging/live_hub.hpp"
#include "messaging/push.hpp"
#include "storage/database.hpp"

namespace cw::messaging {

// The longest message body, in Unicode code points.
inline constexpr std::size_t kMaxBodyCodePoints = 10000;
// The most members a group conversation has, its creator included.
inline constexpr std::size_t kMaxMembers = 256;
inline constexpr std::size_t kMaxTitleBytes = 200;
inline constexpr std::size_t kMaxClientTxnIdBytes = 64;
// Deliveries waiting for their batch write, at most.
inline constexpr std::size_t kMaxPendingDeliveries = 100000;

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

// A file sent with a message: its sniffed type and size. Its name is sealed
// and shown only when it is downloaded.
struct Attachment {
  std::string id;
  std::string conversation_id;
  std::string message_id;  // empty until a message carries it
  std::string content_type;
  std::int64_t size = 0;
};

struct Message {
  std::string id;
  std::string conversation_id;
  std::int64_t seq = 0;
  std::string sender_id;
  std::optional<std::string> body;  // nullopt once recalled or expired
  std::string priority;             // "routine" or "urgent"
  std::string reply_to;
  bool do_not_forward = false;
  std::string forwarded_from;  // the message this one copies
  std::string created_at;
  std::string recalled_at;
  std::string expired_at;  // its lifespan ended and the job purged it
  std::vector<Attachment> attachments;  // none once recalled or expired
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
  std::optional<bool> do_not_forward;  // absent: the organization's default
  std::string forwarded_from;          // set by Forward
  std::vector<std::string> attachment_ids;  // uploaded by the sender to this conversation
};

inline constexpr std::size_t kMaxAttachmentsPerMessage = 10;

// A downloaded attachment: its bytes and its name, opened.
struct AttachmentContent {
  Attachment info;
  std::string name;
  std::string bytes;
};

class Messaging;

// An attachment being uploaded, stored chunk by chunk as its bytes arrive
// (Messaging::BeginUpload), so memory stays flat whatever its size. It is
// seen by no one until Finish; destroyed unfinished, what it stored is
// removed. Each call may wait on storage: call it from a worker, never an
// I/O thread. One thread at a time.
class AttachmentUpload {
 public:
  ~AttachmentUpload();
  AttachmentUpload(const AttachmentUpload&) = delete;
  AttachmentUpload& operator=(const AttachmentUpload&) = delete;

  // Seals and stores the next bytes. The first ones name the type, sniffed
  // against the allow-list; kInvalidArgument (with `problem`) for a type not
  // allowed, or for a plain-text file with a NUL byte anywhere in it.
  Status Append(std::string_view bytes, std::string* problem);
  // Stores the rest and hands the upload to its uploader to send, audited.
  // kInvalidArgument for an empty file; kNotFound when the uploader left the
  // conversation meanwhile.
  Result<Attachment> Finish(std::string* problem);

 private:
  friend class Messaging;
  AttachmentUpload(Messaging& messaging, Principal caller, RequestOrigin origin,
                   std::string conversation_id, storage::Value sealed_name,
                   std::shared_ptr<const keys::OrgKeys> keys);
  void Keep(std::span<const std::uint8_t> sealed);
  Status WriteRows(bool last);
  void Abandon();

  Messaging& messaging_;
  const Principal caller_;
  const RequestOrigin origin_;
  Attachment info_;
  std::string copied_from_;  // set for a forwarded copy, for the audit trail
  storage::Value sealed_name_;
  std::shared_ptr<const keys::OrgKeys> keys_;
  std::unique_ptr<crypto::StreamSealer> sealer_;
  // Sealed bytes not yet stored: full rows are written as they fill.
  std::vector<storage::Blob> rows_;
  std::int64_t rows_written_ = 0;
  bool row_inserted_ = false;  // the incomplete attachments row exists
  bool finished_ = false;
  bool failed_ = false;
};

// An attachment being downloaded (Messaging::OpenDownload): what it is and
// its name, then its bytes piece by piece, opened one stored chunk at a
// time. Each call may wait on storage. One thread at a time.
class AttachmentDownload {
 public:
  ~AttachmentDownload();
  AttachmentDownload(const AttachmentDownload&) = delete;
  AttachmentDownload& operator=(const AttachmentDownload&) = delete;

  const Attachment& info() const { return info_; }
  const std::string& name() const { return name_; }
  // The next bytes (up to a stored chunk's worth); empty at the end. An error
  // when the content does not open, or was destroyed (recalled, expired)
  // while it was being read.
  Result<std::string> Next();

 private:
  friend class Messaging;
  AttachmentDownload(Messaging& messaging, std::string org_id, Attachment info, std::string name,
                     std::shared_ptr<const keys::OrgKeys> keys);

  Messaging& messaging_;
  const std::string org_id_;
  Attachment info_;
  std::string name_;
  std::shared_ptr<const keys::OrgKeys> keys_;
  std::unique_ptr<crypto::StreamOpener> opener_;
  std::int64_t next_row_ = 0;
  bool done_ = false;
};

// A change to a conversation; absent fields stay.
struct ConversationChange {
  std::optional<std::string> title;
  // Set to nullopt-inside to clear (follow the organization's).
  std::optional<std::optional<int>> message_lifespan_days;
};

// What the follow-up jobs did in one pass.
struct JobCounts {
  int messages = 0;       // purged, or reminded / escalated
  int conversations = 0;  // touched
};

bool IsConversationId(std::string_view id);
bool IsMessageId(std::string_view id);
bool IsClientTxnId(std::string_view id);

// As the API shows them to members. A legal hold is not shown: it may be
// confidential (the legal-hold route answers it to administrators).
boost::json::object ConversationJson(const Conversation& c);
boost::json::object MessageJson(const Message& m);

// One frame of the event stream and its cursor.
// A message that reached a member's socket, with what the receipt needs, so
// recording it looks nothing up.
struct Delivery {
  std::string org_id;
  std::string user_id;  // the member it reached
  std::string message_id;
  std::string conversation_id;
  std::string sender_id;
};

struct Frame {
  std::int64_t cursor = 0;
  std::string text;
  // For message.created from someone else, with a body: what to mark
  // delivered once the frame is sent (message_id empty otherwise).
  std::string message_id;
  std::string conversation_id;
  std::string sender_id;
};

class Messaging {
 public:
  // `push` may be null: no notifications.
  Messaging(storage::Database& db, keys::KeyStore& keys, LiveHub& hub,
            PushDispatcher* push = nullptr);
  ~Messaging();

  // Creates a conversation. A direct one that exists for the pair already is
  // answered as it is, with `created` false.
  Result<Conversation> CreateConversation(const Principal& caller, const NewConversation& request,
                                          const RequestOrigin& origin, bool* created,
                                          std::string* problem);
  Result<std::vector<Conversation>> ListConversations(const Principal& caller);
  Result<Conversation> GetConversation(const Principal& caller, const std::string& id);
  // A group's title (conversation admins) and the conversation's own
  // message lifespan, which may only be shorter than the organization's.
  Result<Conversation> Update(const Principal& caller, const std::string& id,
                              const ConversationChange& change, const RequestOrigin& origin,
                              std::string* problem);
  // Legal hold, set by the organization's administrators (no membership
  // needed): while on, nothing in the conversation is recalled or purged.
  Result<Conversation> SetLegalHold(const Principal& actor, const std::string& id, bool on,
                                    const RequestOrigin& origin);
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

  // Copies a message the caller can read into another conversation of
  // theirs, unless it is marked "do not forward" (kPermissionDenied). Its
  // attachments are copied too, re-sealed, as the caller's uploads.
  void Forward(const Principal& caller, const std::string& message_id,
               const std::string& to_conversation, const std::string& client_txn_id,
               const RequestOrigin& origin, SendDone done);

  // Attachments. An upload is checked (type sniffed from its first bytes
  // against the allow-list), sealed in chunks and stored as it arrives, for
  // the uploader, who then sends it with a message of the same conversation;
  // one never sent is destroyed after a day. BeginUpload checks the name and
  // the caller's membership and stores nothing yet.
  Result<std::unique_ptr<AttachmentUpload>> BeginUpload(const Principal& caller,
                                                        const std::string& conversation_id,
                                                        const std::string& name,
                                                        const RequestOrigin& origin,
                                                        std::string* problem);
  // For members of its conversation (before it is sent, its uploader only);
  // the download is audited before this returns, so before any byte goes.
  Result<std::unique_ptr<AttachmentDownload>> OpenDownload(const Principal& caller,
                                                           const std::string& id,
                                                           const RequestOrigin& origin);
  // The same two for a value held whole (tests, tools).
  Result<Attachment> UploadAttachment(const Principal& caller, const std::string& conversation_id,
                                      const std::string& name, std::string bytes,
                                      const RequestOrigin& origin, std::string* problem);
  Result<AttachmentContent> DownloadAttachment(const Principal& caller, const std::string& id,
                                               const RequestOrigin& origin);

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

  // Jobs. Destroys the bodies of messages older than their conversation's
  // (or else organization's) lifespan, except under legal hold, a batch at
  // a time; audited per conversation, and members get message.expired.
  Result<JobCounts> PurgeExpired(std::chrono::system_clock::time_point now, int batch = 500);
  // Urgent messages still unread: after `remind_after`, their unread members
  // are notified again; after `escalate_after`, the conversation's admins.
  // Each step once per message, audited.
  Result<JobCounts> FollowUpUrgent(std::chrono::system_clock::time_point now,
                                   std::chrono::milliseconds remind_after,
                                   std::chrono::milliseconds escalate_after);

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
  void NoteDelivered(Delivery delivery);

 private:
  friend class AttachmentUpload;
  friend class AttachmentDownload;

  Status WriteAndPublish(const std::function<Status(storage::Transaction&,
                                                    std::vector<LiveEvent>&)>& work);
  Status FlushDeliveries(storage::Transaction& tx, std::vector<LiveEvent>& out);
  // Destroys the caller's unsent uploads `ids`, without waiting (the copies
  // of a forward that failed), audited as attachment.discarded.
  void DiscardUploads(const Principal& caller, const RequestOrigin& origin,
                      const std::vector<std::string>& ids);
  // Copies an attachment's content and name, stream to stream, into an
  // upload of the caller's to `to_conversation`; returns the copy's id.
  Result<std::string> CopyAttachment(const Principal& caller, const std::string& attachment_id,
                                     const std::string& to_conversation,
                                     const RequestOrigin& origin, std::string* problem);

  storage::Database& db_;
  keys::KeyStore& keys_;
  LiveHub& hub_;
  PushDispatcher* push_;
  std::mutex deliveries_mu_;
  std::vector<Delivery> deliveries_;
  bool flush_queued_ = false;
};

}  // namespace cw::messaging
