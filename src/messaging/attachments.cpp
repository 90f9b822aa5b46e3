#include "messaging/attachments.hpp"

#include <magic.h>
#include <sodium.h>

#include <array>
#include <memory>

#include "audit/audit_log.hpp"
#include "core/error.hpp"
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

// Reads `data` from `*offset` on, for the stream sealer and opener.
crypto::StreamReader BufferReader(std::string_view data, std::size_t* offset) {
  return [data, offset](std::span<std::uint8_t> out) {
    const std::size_t n = std::min(out.size(), data.size() - *offset);
    std::memcpy(out.data(), data.data() + *offset, n);
    *offset += n;
    return n;
  };
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
                                     const std::string& now) {
  auto ids = tx.QueryAll(
      "SELECT id, org_id FROM attachments WHERE message_id IS NULL AND destroyed_at IS NULL AND "
      "created_at < ? LIMIT 500",
      {cutoff});
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
                                           Details({{"reason", "never_sent"}})),
                               now);
        !s) {
      return s.error();
    }
  }
  return static_cast<int>(ids->size());
}

}  // namespace internal

Result<Attachment> Messaging::UploadAttachment(const Principal& caller,
                                               const std::string& conversation_id,
                                               const std::string& name, std::string bytes,
                                               const RequestOrigin& origin,
                                               std::string* problem) {
  struct Wipe {
    std::string& s;
    ~Wipe() { sodium_memzero(s.data(), s.size()); }
  } wipe{bytes};
  if (!IsConversationId(conversation_id)) return core::Error::kNotFound;
  if (bytes.empty()) {
    *problem = "an attachment needs at least one byte";
    return core::Error::kInvalidArgument;
  }
  if (!IsValidAttachmentName(name)) {
    *problem = "the name is at most 255 bytes of UTF-8, without control characters or slashes";
    return core::Error::kInvalidArgument;
  }
  const std::string type = SniffContentType(bytes);
  if (!IsAllowedContentType(type)) {
    *problem = "attachments may be images (JPEG, PNG, GIF, WebP, HEIC), PDF or plain text";
    return core::Error::kInvalidArgument;
  }
  // Membership first, so nothing is sealed for a conversation the caller
  // cannot see; the write checks it again.
  auto visible =
      db_.Read([&](Transaction& tx) { return RequireMember(tx, caller, conversation_id); });
  if (!visible) return visible.error();

  Attachment a;
  a.id = "att_" + core::RandomHex(16);
  a.conversation_id = conversation_id;
  a.content_type = type;
  a.size = static_cast<std::int64_t>(bytes.size());

  auto keys = keys_.ForOrg(caller.org_id);
  if (!keys) return keys.error();
  const crypto::DataKey* key = (*keys)->data.Current();
  if (key == nullptr) return core::Error::kInternal;
  // Sealed chunk by chunk into rows of kStoredChunkBytes.
  std::vector<storage::Blob> rows(1);
  std::size_t offset = 0;
  crypto::SealStream(
      *key, ContentContext(caller.org_id, a.id), BufferReader(bytes, &offset),
      [&](std::span<const std::uint8_t> sealed) {
        while (!sealed.empty()) {
          if (rows.back().size() == kStoredChunkBytes) rows.emplace_back();
          const std::size_t room = kStoredChunkBytes - rows.back().size();
          const std::size_t n = std::min(room, sealed.size());
          rows.back().insert(rows.back().end(), sealed.begin(), sealed.begin() + n);
          sealed = sealed.subspan(n);
        }
      });
  storage::Value sealed_name = nullptr;
  if (!name.empty()) {
    auto sealed = keys_.Seal(NameContext(caller.org_id, a.id), name);
    if (!sealed) return sealed.error();
    sealed_name = storage::Blob(sealed->begin(), sealed->end());
  }

  auto written = db_.Write([&](Transaction& tx) -> Status {
    if (auto member = RequireMember(tx, caller, conversation_id); !member) return member;
    const std::string now = core::NowRfc3339();
    auto inserted = tx.Execute(
        "INSERT INTO attachments (id, org_id, conversation_id, uploader_id, content_type, "
        "size_bytes, name, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        {a.id, caller.org_id, conversation_id, caller.user_id, a.content_type, a.size,
         sealed_name, now});
    if (!inserted) return inserted.error();
    for (std::size_t i = 0; i < rows.size(); ++i) {
      auto chunk =
          tx.Execute("INSERT INTO attachment_chunks (attachment_id, n, data) VALUES (?, ?, ?)",
                     {a.id, static_cast<std::int64_t>(i), rows[i]});
      if (!chunk) return chunk.error();
    }
    return audit::Record(tx,
                         AuditFor(caller, origin, "attachment.uploaded", "attachment", a.id,
                                  Details({{"conversation_id", conversation_id},
                                           {"mime_type", a.content_type},
                                           {"size", a.size}})),
                         now);
  });
  if (!written) return written.error();
  return a;
}

Result<AttachmentContent> Messaging::DownloadAttachment(const Principal& caller,
                                                        const std::string& id,
                                                        const RequestOrigin& origin) {
  if (!IsAttachmentId(id)) return core::Error::kNotFound;
  AttachmentContent out;
  storage::Blob sealed_name;
  storage::Blob sealed;
  auto read = db_.Read([&](Transaction& tx) -> Status {
    auto row = tx.QueryOne(
        "SELECT a.conversation_id, coalesce(a.message_id, ''), a.uploader_id, a.content_type, "
        "a.size_bytes, a.name FROM attachments a JOIN conversation_members cm ON "
        "cm.conversation_id = a.conversation_id AND cm.user_id = ? "
        "WHERE a.id = ? AND a.org_id = ? AND a.destroyed_at IS NULL",
        {caller.user_id, id, caller.org_id});
    if (!row) return row.error();
    if (!*row) return core::Error::kNotFound;
    const Row& r = **row;
    out.info = {id, r.Text(0), r.Text(1), r.Text(3), r.Int(4)};
    // Before it is sent, an upload is its uploader's alone.
    if (out.info.message_id.empty() && r.Text(2) != caller.user_id) return core::Error::kNotFound;
    if (!r.IsNull(5)) sealed_name = r.Bytes(5);
    sealed.reserve(static_cast<std::size_t>(out.info.size) + 64 * 1024);
    return tx.Query("SELECT data FROM attachment_chunks WHERE attachment_id = ? ORDER BY n", {id},
                    [&](const Row& c) -> Status {
                      const auto& data = c.Bytes(0);
                      sealed.insert(sealed.end(), data.begin(), data.end());
                      return Ok();
                    });
  });
  if (!read) return read.error();

  auto keys = keys_.ForOrg(caller.org_id);
  if (!keys) return keys.error();
  std::size_t offset = 0;
  out.bytes.reserve(static_cast<std::size_t>(out.info.size));
  auto opened = crypto::OpenStream(
      (*keys)->data, ContentContext(caller.org_id, id),
      BufferReader(std::string_view(reinterpret_cast<const char*>(sealed.data()), sealed.size()),
                   &offset),
      [&](std::span<const std::uint8_t> plain) {
        out.bytes.append(reinterpret_cast<const char*>(plain.data()), plain.size());
      });
  if (!opened) {
    sodium_memzero(out.bytes.data(), out.bytes.size());
    return opened.error();
  }
  if (!sealed_name.empty()) {
    auto name = keys_.Open(NameContext(caller.org_id, id), sealed_name);
    if (!name) return name.error();
    out.name.assign(reinterpret_cast<const char*>(name->data()), name->size());
  }

  auto written = db_.Write([&](Transaction& tx) -> Status {
    return audit::Record(tx,
                         AuditFor(caller, origin, "attachment.downloaded", "attachment", id,
                                  Details({{"conversation_id", out.info.conversation_id},
                                           {"message_id", out.info.message_id}})),
                         core::NowRfc3339());
  });
  if (!written) {
    sodium_memzero(out.bytes.data(), out.bytes.size());
    return written.error();
  }
  return out;
}

}  // namespace cw::messaging
