#include "messaging/attachments.hpp"

#include <magic.h>
#include <sodium.h>

#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

#include <array>
#include <memory>

#include "audit/audit_log.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "core/random.hpp"
#include "core/time.hpp"
#include "core/utf8.hpp"
#include "crypto/sealed_stream.hpp"
#include "messaging/internal.hpp"
#include "messaging/messaging.hpp"

namespace cw::messaging {
namespace {

using namespace internal;
using storage::Row;
using storage::Transaction;

constexpr std::string_view kAttachmentTable = "attachments";
// The sealed stream is stored in rows of this many bytes.
constexpr std::size_t kStoredChunkBytes = 1 << 20;
// libmagic needs no more than the start of a file to name its type.
constexpr std::size_t kSniffBytes = 64 << 10;

struct Allowed {
  std::string_view type;
  std::string_view extension;
};
constexpr std::array<Allowed, 7> kAllowed = {{
    {"image/jpeg", "jpg"},
    {"image/png", "png"},
    {"image/gif", "gif"},
    {"image/webp", "webp"},
    {"image/heic", "heic"},
    {"application/pdf", "pdf"},
    {"text/plain", "txt"},
}};

struct MagicCloser {
  void operator()(magic_set* m) const { magic_close(m); }
};

// libmagic's handles are not thread-safe: one per thread, loaded once.
magic_t ThreadMagic() {
  thread_local std::unique_ptr<magic_set, MagicCloser> cookie = [] {
    std::unique_ptr<magic_set, MagicCloser> m(magic_open(MAGIC_MIME_TYPE | MAGIC_ERROR));
    if (m && magic_load(m.get(), nullptr) != 0) m.reset();
    return m;
  }();
  return cookie.get();
}

crypto::SealContext ContentContext(const std::string& org_id, const std::string& id) {
  return {org_id, kAttachmentTable, "content", id};
}
crypto::SealContext NameContext(const std::string& org_id, const std::string& id) {
  return {org_id, kAttachmentTable, "name", id};
}

bool IsAttachmentId(std::string_view id) {
  if (id.size() != 36 || id.substr(0, 4) != "att_") return false;
  for (const char c : id.substr(4)) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

}  // namespace

std::string SniffContentType(std::string_view bytes) {
  magic_t m = ThreadMagic();
  if (m == nullptr || bytes.empty()) return "application/octet-stream";
  const char* type = magic_buffer(m, bytes.data(), std::min(bytes.size(), kSniffBytes));
  if (type == nullptr) return "application/octet-stream";
  return type;
}

bool IsAllowedContentType(std::string_view type) {
  for (const Allowed& a : kAllowed) {
    if (a.type == type) return true;
  }
  return false;
}

std::string_view ExtensionFor(std::string_view type) {
  for (const Allowed& a : kAllowed) {
    if (a.type == type) return a.extension;
  }
  return "bin";
}

bool IsValidAttachmentName(std::string_view name) {
  if (name.size() > 255 || !core::IsValidUtf8(name) || core::HasBidiControl(name)) return false;
  for (const char c : name) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7F || c == '/' || c == '\\') return false;
  }
  return true;
}

namespace internal {

Result<std::vector<Attachment>> AttachmentsOf(Transaction& tx, const std::string& message_id) {
  auto rows = tx.QueryAll(
      "SELECT id, conversation_id, content_type, size_bytes FROM attachments WHERE message_id = ? "
      "AND destroyed_at IS NULL ORDER BY id",
      {message_id});
  if (!rows) return rows.error();
  std::vector<Attachment> out;
  for (const Row& r : *rows) out.push_back({r.Text(0), r.Text(1), message_id, r.Text(2), r.Int(3)});
  return out;
}

Status DestroyAttachments(Transaction& tx, const std::string& message_id, const std::string& now) {
  auto chunks = tx.Execute(
      "DELETE FROM attachment_chunks WHERE attachment_id IN "
      "(SELECT id FROM attachments WHERE message_id = ?)",
      {message_id});
  if (!chunks) return chunks.error();
  auto rows = tx.Execute(
      "UPDATE attachments SET destroyed_at = ?, name = NULL WHERE message_id = ? AND "
      "destroyed_at IS NULL",
      {now, message_id});
  if (!rows) return rows.error();
  return Ok();
}

Result<int> DestroyUnsentAttachments(Transaction& tx, const std::string& cutoff,
                                     const std::string& incomplete_cutoff,
                                     const std::string& now) {
  auto ids = tx.QueryAll(
      "SELECT id, org_id, complete FROM attachments WHERE message_id IS NULL AND "
      "destroyed_at IS NULL AND (created_at < ? OR (complete = 0 AND created_at < ?)) LIMIT 500",
      {cutoff, incomplete_cutoff});
  if (!ids) return ids.error();
  for (const Row& r : *ids) {
    auto chunks = tx.Execute("DELETE FROM attachment_chunks WHERE attachment_id = ?", {r.Text(0)});
    if (!chunks) return chunks.error();
    auto row = tx.Execute("UPDATE attachments SET destroyed_at = ?, name = NULL WHERE id = ?",
                          {now, r.Text(0)});
    if (!row) return row.error();
    if (auto s = audit::Record(tx,
                               SystemEvent(r.Text(1), "message-lifespan", "attachment.purged",
                                           "attachment", r.Text(0),
                                           Details({{"reason", r.Int(2) == 1 ? "never_sent"
                                                                             : "never_finished"}})),
                               now);
        !s) {
      return s.error();
    }
  }
  return static_cast<int>(ids->size());
}

}  // namespace internal

AttachmentUpload::AttachmentUpload(Messaging& messaging, Principal caller, RequestOrigin origin,
                                   std::string conversation_id, storage::Value sealed_name,
                                   std::shared_ptr<const keys::OrgKeys> keys)
    : messaging_(messaging),
      caller_(std::move(caller)),
      origin_(std::move(origin)),
      sealed_name_(std::move(sealed_name)),
      keys_(std::move(keys)) {
  info_.id = "att_" + core::RandomHex(16);
  info_.conversation_id = std::move(conversation_id);
  sealer_ = std::make_unique<crypto::StreamSealer>(*keys_->data.Current(),
                                                   ContentContext(caller_.org_id, info_.id));
  rows_.emplace_back();
}

AttachmentUpload::~AttachmentUpload() {
  if (!finished_) Abandon();
}

Status AttachmentUpload::Append(std::string_view bytes, std::string* problem) {
  if (failed_ || finished_) return core::Error::kInvalidArgument;
  if (bytes.empty()) return Ok();
  if (info_.content_type.empty()) {
    info_.content_type = SniffContentType(bytes);
    if (!IsAllowedContentType(info_.content_type)) {
      failed_ = true;
      *problem = "attachments may be images (JPEG, PNG, GIF, WebP, HEIC), PDF or plain text";
      return core::Error::kInvalidArgument;
    }
  }
  // The type was named from the first bytes; a file that starts as text is
  // text to its end, not a binary behind a text prologue.
  if (info_.content_type == "text/plain" && bytes.find('\0') != std::string_view::npos) {
    failed_ = true;
    *problem = "a plain-text attachment may not contain NUL bytes";
    return core::Error::kInvalidArgument;
  }
  info_.size += static_cast<std::int64_t>(bytes.size());
  sealer_->Write({reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()},
                 [this](std::span<const std::uint8_t> sealed) { Keep(sealed); });
  if (rows_.front().size() < kStoredChunkBytes) return Ok();
  if (auto s = WriteRows(false); !s) {
    failed_ = true;
    return s;
  }
  return Ok();
}

Result<Attachment> AttachmentUpload::Finish(std::string* problem) {
  if (failed_ || finished_) return core::Error::kInvalidArgument;
  if (info_.size == 0) {
    failed_ = true;
    *problem = "an attachment needs at least one byte";
    return core::Error::kInvalidArgument;
  }
  sealer_->Finish([this](std::span<const std::uint8_t> sealed) { Keep(sealed); });
  if (auto s = WriteRows(true); !s) {
    failed_ = true;
    return s.error();
  }
  finished_ = true;
  return info_;
}

// Adds sealed bytes to the rows waiting to be stored, kStoredChunkBytes each.
void AttachmentUpload::Keep(std::span<const std::uint8_t> sealed) {
  while (!sealed.empty()) {
    if (rows_.back().size() == kStoredChunkBytes) rows_.emplace_back();
    storage::Blob& row = rows_.back();
    if (row.capacity() < kStoredChunkBytes) row.reserve(kStoredChunkBytes);
    const std::size_t n = std::min(kStoredChunkBytes - row.size(), sealed.size());
    row.insert(row.end(), sealed.begin(), sealed.begin() + n);
    sealed = sealed.subspan(n);
  }
}

// Stores the full rows (all of them when `last`), the first time together
// with the attachment's own row, marked incomplete; the last time marks it
// complete and audits the upload.
Status AttachmentUpload::WriteRows(bool last) {
  std::size_t count = rows_.size();
  if (!last) {
    while (count > 0 && rows_[count - 1].size() < kStoredChunkBytes) --count;
  }
  auto written = messaging_.db_.Write([&](Transaction& tx) -> Status {
    const std::string now = core::NowRfc3339();
    if (!row_inserted_ || last) {
      if (auto member = RequireMember(tx, caller_, info_.conversation_id); !member) return member;
    }
    if (!row_inserted_) {
      auto inserted = tx.Execute(
          "INSERT INTO attachments (id, org_id, conversation_id, uploader_id, content_type, "
          "size_bytes, name, created_at, complete) VALUES (?, ?, ?, ?, ?, 0, ?, ?, 0)",
          {info_.id, caller_.org_id, info_.conversation_id, caller_.user_id, info_.content_type,
           sealed_name_, now});
      if (!inserted) return inserted.error();
    }
    for (std::size_t i = 0; i < count; ++i) {
      auto chunk =
          tx.Execute("INSERT INTO attachment_chunks (attachment_id, n, data) VALUES (?, ?, ?)",
                     {info_.id, rows_written_ + static_cast<std::int64_t>(i), rows_[i]});
      if (!chunk) return chunk.error();
    }
    if (!last) return Ok();
    auto completed = tx.Execute(
        "UPDATE attachments SET complete = 1, size_bytes = ? WHERE id = ? AND complete = 0 AND "
        "destroyed_at IS NULL",
        {info_.size, info_.id});
    if (!completed) return completed.error();
    if (*completed != 1) return core::Error::kNotFound;  // swept meanwhile
    boost::json::object details{{"conversation_id", info_.conversation_id},
                                {"mime_type", info_.content_type},
                                {"size", info_.size}};
    if (!copied_from_.empty()) details["copied_from"] = copied_from_;
    return audit::Record(tx,
                         AuditFor(caller_, origin_, "attachment.uploaded", "attachment", info_.id,
                                  boost::json::serialize(details)),
                         now);
  });
  if (!written) return written;
  row_inserted_ = true;
  rows_written_ += static_cast<std::int64_t>(count);
  rows_.erase(rows_.begin(), rows_.begin() + static_cast<std::ptrdiff_t>(count));
  if (rows_.empty()) rows_.emplace_back();
  return Ok();
}

// Removes what an unfinished upload stored, without waiting (it may be
// destroyed on any thread). Should this fail, the messaging jobs sweep the
// incomplete row later.
void AttachmentUpload::Abandon() {
  if (!row_inserted_) return;
  messaging_.db_.SubmitWrite(
      [id = info_.id, event = AuditFor(caller_, origin_, "attachment.upload_abandoned",
                                       "attachment", info_.id,
                                       Details({{"conversation_id", info_.conversation_id},
                                                {"stored_bytes", info_.size}}))](
          Transaction& tx) -> Status {
        auto chunks = tx.Execute("DELETE FROM attachment_chunks WHERE attachment_id = ?", {id});
        if (!chunks) return chunks.error();
        auto row = tx.Execute("DELETE FROM attachments WHERE id = ? AND complete = 0", {id});
        if (!row) return row.error();
        return audit::Record(tx, event, core::NowRfc3339());
      },
      [](Status s) {
        if (!s) log::Warn("messaging.upload_cleanup_failed");
      });
}

Result<std::unique_ptr<AttachmentUpload>> Messaging::BeginUpload(
    const Principal& caller, const std::string& conversation_id, const std::string& name,
    const RequestOrigin& origin, std::string* problem) {
  if (!IsConversationId(conversation_id)) return core::Error::kNotFound;
  if (!IsValidAttachmentName(name)) {
    *problem = "the name is at most 255 bytes of UTF-8, without control characters or slashes";
    return core::Error::kInvalidArgument;
  }
  // Membership first, so nothing is sealed for a conversation the caller
  // cannot see; every write checks it again.
  auto visible =
      db_.Read([&](Transaction& tx) { return RequireMember(tx, caller, conversation_id); });
  if (!visible) return visible.error();
  auto keys = keys_.ForOrg(caller.org_id);
  if (!keys) return keys.error();
  if ((*keys)->data.Current() == nullptr) return core::Error::kInternal;
  std::unique_ptr<AttachmentUpload> upload(
      new AttachmentUpload(*this, caller, origin, conversation_id, nullptr, *keys));
  if (!name.empty()) {
    auto sealed = keys_.Seal(NameContext(caller.org_id, upload->info_.id), name);
    if (!sealed) return sealed.error();
    upload->sealed_name_ = storage::Blob(sealed->begin(), sealed->end());
  }
  return upload;
}

Result<Attachment> Messaging::UploadAttachment(const Principal& caller,
                                               const std::string& conversation_id,
                                               const std::string& name, std::string bytes,
                                               const RequestOrigin& origin,
                                               std::string* problem) {
  struct Wipe {
    std::string& s;
    ~Wipe() { sodium_memzero(s.data(), s.size()); }
  } wipe{bytes};
  auto upload = BeginUpload(caller, conversation_id, name, origin, problem);
  if (!upload) return upload.error();
  for (std::size_t at = 0; at < bytes.size(); at += kStoredChunkBytes) {
    const std::string_view piece = std::string_view(bytes).substr(at, kStoredChunkBytes);
    if (auto s = (*upload)->Append(piece, problem); !s) return s.error();
  }
  return (*upload)->Finish(problem);
}

AttachmentDownload::AttachmentDownload(Messaging& messaging, std::string org_id, Attachment info,
                                       std::string name,
                                       std::shared_ptr<const keys::OrgKeys> keys)
    : messaging_(messaging),
      org_id_(std::move(org_id)),
      info_(std::move(info)),
      name_(std::move(name)),
      keys_(std::move(keys)) {
  opener_ = std::make_unique<crypto::StreamOpener>(keys_->data, ContentContext(org_id_, info_.id));
}

AttachmentDownload::~AttachmentDownload() { sodium_memzero(name_.data(), name_.size()); }

Result<std::string> AttachmentDownload::Next() {
  if (done_) return std::string();
  storage::Blob sealed;
  bool found = false;
  auto read = messaging_.db_.Read([&](Transaction& tx) -> Status {
    // The attachment must still be there: a recall or purge between two
    // chunks ends the download rather than serving what is left.
    auto row = tx.QueryOne(
        "SELECT c.data FROM attachment_chunks c JOIN attachments a ON a.id = c.attachment_id "
        "WHERE c.attachment_id = ? AND c.n = ? AND a.destroyed_at IS NULL AND a.complete = 1",
        {info_.id, next_row_});
    if (!row) return row.error();
    if (*row) {
      found = true;
      sealed = (**row).Bytes(0);
    }
    return Ok();
  });
  if (!read) return read.error();
  std::string plain;
  const auto into = [&plain](std::span<const std::uint8_t> bytes) {
    plain.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  };
  if (!found) {
    // The end: the stream must have ended with its FINAL chunk.
    done_ = true;
    if (auto s = opener_->Finish(into); !s) return s.error();
    return plain;
  }
  ++next_row_;
  plain.reserve(sealed.size());
  if (auto s = opener_->Write(sealed, into); !s) {
    sodium_memzero(plain.data(), plain.size());
    done_ = true;
    return s.error();
  }
  // A row that completes no chunk yields nothing yet; the next one will.
  if (plain.empty()) return Next();
  return plain;
}

void Messaging::DiscardUploads(const Principal& caller, const RequestOrigin& origin,
                               const std::vector<std::string>& ids) {
  if (ids.empty()) return;
  std::vector<audit::Event> events;
  for (const std::string& id : ids) {
    events.push_back(AuditFor(caller, origin, "attachment.discarded", "attachment", id,
                              Details({{"reason", "forward_failed"}})));
  }
  db_.SubmitWrite(
      [ids, events = std::move(events), uploader = caller.user_id](Transaction& tx) -> Status {
        const std::string now = core::NowRfc3339();
        for (std::size_t i = 0; i < ids.size(); ++i) {
          auto row = tx.Execute(
              "UPDATE attachments SET destroyed_at = ?, name = NULL WHERE id = ? AND "
              "uploader_id = ? AND message_id IS NULL AND destroyed_at IS NULL",
              {now, ids[i], uploader});
          if (!row) return row.error();
          if (*row == 0) continue;
          auto chunks =
              tx.Execute("DELETE FROM attachment_chunks WHERE attachment_id = ?", {ids[i]});
          if (!chunks) return chunks.error();
          if (auto s = audit::Record(tx, events[i], now); !s) return s;
        }
        return Ok();
      },
      [](Status s) {
        if (!s) log::Warn("messaging.upload_cleanup_failed");
      });
}

Result<std::string> Messaging::CopyAttachment(const Principal& caller,
                                              const std::string& attachment_id,
                                              const std::string& to_conversation,
                                              const RequestOrigin& origin,
                                              std::string* problem) {
  auto keys = keys_.ForOrg(caller.org_id);
  if (!keys) return keys.error();
  std::string name;
  auto named = db_.Read([&](Transaction& tx) -> Status {
    auto row = tx.QueryOne("SELECT name FROM attachments WHERE id = ? AND org_id = ?",
                           {attachment_id, caller.org_id});
    if (!row) return row.error();
    if (!*row) return core::Error::kNotFound;
    if ((**row).IsNull(0)) return Ok();
    auto opened = keys_.Open(NameContext(caller.org_id, attachment_id), (**row).Bytes(0));
    if (!opened) return opened.error();
    name.assign(reinterpret_cast<const char*>(opened->data()), opened->size());
    sodium_memzero(opened->data(), opened->size());
    return Ok();
  });
  if (!named) return named.error();
  auto upload = BeginUpload(caller, to_conversation, name, origin, problem);
  sodium_memzero(name.data(), name.size());
  if (!upload) return upload.error();
  (*upload)->copied_from_ = attachment_id;
  // Read row by row as a download is, without counting as one: the forward
  // is audited, and the copy as an upload.
  AttachmentDownload source(*this, caller.org_id, {attachment_id, "", "", "", 0}, "", *keys);
  for (;;) {
    auto piece = source.Next();
    if (!piece) return piece.error();
    if (piece->empty()) break;
    auto appended = (*upload)->Append(*piece, problem);
    sodium_memzero(piece->data(), piece->size());
    if (!appended) return appended.error();
  }
  auto copied = (*upload)->Finish(problem);
  if (!copied) return copied.error();
  return copied->id;
}

Result<std::unique_ptr<AttachmentDownload>> Messaging::OpenDownload(const Principal& caller,
                                                                    const std::string& id,
                                                                    const RequestOrigin& origin) {
  if (!IsAttachmentId(id)) return core::Error::kNotFound;
  Attachment info;
  storage::Blob sealed_name;
  auto written = db_.Write([&](Transaction& tx) -> Status {
    auto row = tx.QueryOne(
        "SELECT a.conversation_id, coalesce(a.message_id, ''), a.uploader_id, a.content_type, "
        "a.size_bytes, a.name FROM attachments a JOIN conversation_members cm ON "
        "cm.conversation_id = a.conversation_id AND cm.user_id = ? "
        "WHERE a.id = ? AND a.org_id = ? AND a.destroyed_at IS NULL AND a.complete = 1",
        {caller.user_id, id, caller.org_id});
    if (!row) return row.error();
    if (!*row) return core::Error::kNotFound;
    const Row& r = **row;
    info = {id, r.Text(0), r.Text(1), r.Text(3), r.Int(4)};
    // Before it is sent, an upload is its uploader's alone.
    if (info.message_id.empty() && r.Text(2) != caller.user_id) return core::Error::kNotFound;
    if (!r.IsNull(5)) sealed_name = r.Bytes(5);
    // Recorded before any byte is read for the caller.
    return audit::Record(tx,
                         AuditFor(caller, origin, "attachment.downloaded", "attachment", id,
                                  Details({{"conversation_id", info.conversation_id},
                                           {"message_id", info.message_id}})),
                         core::NowRfc3339());
  });
  if (!written) return written.error();
  auto keys = keys_.ForOrg(caller.org_id);
  if (!keys) return keys.error();
  std::string name;
  if (!sealed_name.empty()) {
    auto opened = keys_.Open(NameContext(caller.org_id, id), sealed_name);
    if (!opened) return opened.error();
    name.assign(reinterpret_cast<const char*>(opened->data()), opened->size());
    sodium_memzero(opened->data(), opened->size());
  }
  return std::unique_ptr<AttachmentDownload>(
      new AttachmentDownload(*this, caller.org_id, std::move(info), std::move(name), *keys));
}

Result<AttachmentContent> Messaging::DownloadAttachment(const Principal& caller,
                                                        const std::string& id,
                                                        const RequestOrigin& origin) {
  auto download = OpenDownload(caller, id, origin);
  if (!download) return download.error();
  AttachmentContent out;
  out.info = (*download)->info();
  out.name = (*download)->name();
  for (;;) {
    auto piece = (*download)->Next();
    if (!piece) {
      sodium_memzero(out.bytes.data(), out.bytes.size());
      return piece.error();
    }
    if (piece->empty()) break;
    out.bytes += *piece;
    sodium_memzero(piece->data(), piece->size());
  }
  return out;
}

}  // namespace cw::messaging
