#include "keys/reencrypt.hpp"

#include <sodium.h>

#include <optional>
#include <vector>

#include "audit/audit_log.hpp"
#include "core/log.hpp"
#include "core/time.hpp"
#include "crypto/sealed_stream.hpp"

namespace cw::keys {
namespace {

using storage::Blob;
using storage::Row;

constexpr SealedColumn kSealedColumns[] = {
    {"sealed_probes", "value"},
    {"mfa_factors", "secret"},
    {"break_glass", "reason"},
    {"messages", "body"},  // NULL once recalled or purged
    {"attachments", "name"},
};

// After the columns, the content of attachments: one chunked sealed stream
// (crypto/sealed_stream.hpp) per attachment, split across the `data` of its
// attachment_chunks rows by `n`, sealed for (org, "attachments", "content",
// id). This is the cursor_table of that last stage.
constexpr std::string_view kStreamStage = "attachment_chunks";
// Sealed bytes re-sealed per batch at most (always at least one attachment).
constexpr std::size_t kStreamBatchBytes = 8 << 20;
constexpr std::int64_t kStreamBatchRows = 64;
// A stream's format byte, key version and secretstream header: new with every
// sealing, so it tells whether a stream is still the one that was read.
constexpr std::size_t kStreamHeadBytes = 29;

struct Pending {
  std::string org_id;
  std::uint32_t version = 0;
  std::size_t table_index = 0;
  std::string cursor_id;
};

struct Update {
  std::string id;
  Blob old_value;
  Blob new_value;
};

std::optional<std::size_t> TableIndex(std::string_view table) {
  if (table == kStreamStage) return std::size(kSealedColumns);
  for (std::size_t i = 0; i < std::size(kSealedColumns); ++i) {
    if (kSealedColumns[i].table == table) return i;
  }
  return std::nullopt;
}


audit::Event JobEvent(const std::string& org_id, std::string action, std::string target_type,
                      std::string target_id) {
  audit::Event event;
  event.org_id = org_id;
  event.actor_id = "reencryption-job";
  event.action = std::move(action);
  event.target_type = std::move(target_type);
  event.target_id = std::move(target_id);
  return event;
}

Status FinishRotation(storage::Transaction& tx, const Pending& pending, const std::string& now) {
  // Older pending rotations of the organization are covered by this pass.
  auto finished = tx.Execute(
      "UPDATE key_rotations SET finished_at = ? "
      "WHERE org_id = ? AND version <= ? AND finished_at IS NULL",
      {now, pending.org_id, static_cast<std::int64_t>(pending.version)});
  if (!finished) return finished.error();
  return audit::Record(tx,
                       JobEvent(pending.org_id, "keys.rotation_finished", "data_key",
                                std::to_string(pending.version)),
                       now);
}

// An attachment's stream, opened and sealed again under the target key, in
// rows of the same sizes as before (the sealed length depends on the
// plaintext's alone).
struct Resealed {
  std::string id;
  Blob old_head;  // the old stream's header: the compare-and-set
  std::vector<Blob> rows;
};

// The last stage: attachments' content streams, a batch of whole streams.
Result<bool> StepStreams(storage::Database& db, const Pending& pending,
                         const crypto::KeyRing& ring, const crypto::DataKey& target);

}  // namespace

std::span<const SealedColumn> SealedColumns() { return kSealedColumns; }

Reencryptor::Reencryptor(storage::Database& db, KeyStore& keys, Options options)
    : db_(db), keys_(keys), options_(options) {}

Reencryptor::~Reencryptor() { Stop(); }

void Reencryptor::Start() {
  thread_ = std::thread([this] { Run(); });
}

void Reencryptor::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Reencryptor::Run() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    lock.unlock();
    bool busy = false;
    auto step = Step();
    if (!step) {
      log::Warn("keys.reencrypt_failed",
                {{log::Key::kError, SafeText::Trusted(step.error().message())}});
    } else {
      busy = *step;
    }
    lock.lock();
    // While a rotation is in progress, batches follow each other without a
    // pause; the writer interleaves them with the application's writes.
    if (!busy) wake_.wait_for(lock, options_.poll, [this] { return stopping_; });
  }
}

Result<bool> Reencryptor::Step() {
  // Processes that cache keys seal with a new version within the cache's
  // lifetime; only after that can a pass be sure no older seal follows it.
  const auto settled = core::FormatRfc3339(std::chrono::system_clock::now() - keys_.cache_ttl() -
                                           std::chrono::seconds(1));
  std::optional<Pending> pending;
  auto found = db_.Read([&](storage::Transaction& tx) -> Status {
    auto row = tx.QueryOne(
        "SELECT org_id, max(version) FROM key_rotations "
        "WHERE finished_at IS NULL AND started_at <= ? "
        "GROUP BY org_id ORDER BY min(started_at) LIMIT 1",
        {settled});
    if (!row) return row.error();
    if (!*row) return Ok();
    Pending p;
    p.org_id = (*row)->Text(0);
    p.version = static_cast<std::uint32_t>((*row)->Int(1));
    auto cursor = tx.QueryOne(
        "SELECT cursor_table, cursor_id FROM key_rotations WHERE org_id = ? AND version = ?",
        {p.org_id, static_cast<std::int64_t>(p.version)});
    if (!cursor) return cursor.error();
    if (*cursor && !(*cursor)->IsNull(0)) {
      p.table_index = TableIndex((*cursor)->Text(0)).value_or(0);
      if (!(*cursor)->IsNull(1)) p.cursor_id = (*cursor)->Text(1);
    }
    pending = std::move(p);
    return Ok();
  });
  if (!found) return Fail(found.error());
  if (!pending) return false;

  auto keys = keys_.ForOrg(pending->org_id);
  if (keys && (*keys)->data.Find(pending->version) == nullptr) keys = keys_.Reload(pending->org_id);
  if (!keys) return Fail(keys.error());
  const crypto::DataKey* target = (*keys)->data.Find(pending->version);
  if (target == nullptr) return Fail(crypto::Error::kUnknownKeyVersion);

  if (pending->table_index == std::size(kSealedColumns)) {
    return StepStreams(db_, *pending, (*keys)->data, *target);
  }
  const SealedColumn& column = kSealedColumns[pending->table_index];
  const std::string select = "SELECT id, " + std::string(column.column) + " FROM " +
                             std::string(column.table) +
                             " WHERE org_id = ? AND id > ? AND " + std::string(column.column) +
                             " IS NOT NULL ORDER BY id LIMIT ?";
  std::vector<Update> updates;
  std::string last_id = pending->cursor_id;
  std::int64_t rows = 0;
  std::vector<std::string> unopenable;
  auto read = db_.Read([&](storage::Transaction& tx) -> Status {
    return tx.Query(
        select, {pending->org_id, pending->cursor_id, static_cast<std::int64_t>(options_.batch)},
        [&](const Row& row) -> Status {
          ++rows;
          last_id = row.Text(0);
          const Blob& value = row.Bytes(1);
          auto version = crypto::SealedKeyVersion(value);
          if (!version) return version.error();
          if (*version >= pending->version) return Ok();
          const crypto::SealContext context{pending->org_id, column.table, column.column, last_id};
          auto plain = crypto::Open((*keys)->data, context, value);
          if (!plain) {
            // Damaged or moved here from elsewhere: it stays as it is (it
            // did not open before either), is reported, and the pass goes on.
            unopenable.push_back(last_id);
            return Ok();
          }
          updates.push_back({last_id, value, Blob()});
          crypto::Bytes sealed = crypto::Seal(*target, context, *plain);
          updates.back().new_value.assign(sealed.begin(), sealed.end());
          sodium_memzero(plain->data(), plain->size());
          return Ok();
        });
  });
  if (!read) return Fail(read.error());

  const bool table_done = rows < options_.batch;
  const bool last_table = pending->table_index + 1 == std::size(kSealedColumns);
  const std::string update = "UPDATE " + std::string(column.table) + " SET " +
                             std::string(column.column) + " = ? WHERE id = ? AND org_id = ? AND " +
                             std::string(column.column) + " = ?";
  auto written = db_.Write([&](storage::Transaction& tx) -> Status {
    const std::string now = core::NowRfc3339();
    std::int64_t resealed = 0;
    for (const Update& u : updates) {
      auto changed = tx.Execute(update, {u.new_value, u.id, pending->org_id, u.old_value});
      if (!changed) return changed.error();
      resealed += *changed;
    }
    // A row the application changed since the batch was read kept its new
    // value; the batch is read again so that row is re-sealed too.
    const bool whole_batch = resealed == static_cast<std::int64_t>(updates.size());
    std::string next_table(column.table);
    std::string next_id = whole_batch ? last_id : pending->cursor_id;
    if (whole_batch && table_done) {
      next_table = last_table ? kStreamStage : kSealedColumns[pending->table_index + 1].table;
      next_id.clear();
    }
    auto progress = tx.Execute(
        "UPDATE key_rotations SET cursor_table = ?, cursor_id = ?, resealed = resealed + ? "
        "WHERE org_id = ? AND version = ?",
        {next_table, next_id, resealed, pending->org_id,
         static_cast<std::int64_t>(pending->version)});
    if (!progress) return progress.error();
    for (const std::string& id : unopenable) {
      audit::Event event;
      event.org_id = pending->org_id;
      event.actor_id = "reencryption-job";
      event.action = "keys.value_unopenable";
      event.target_type = std::string(column.table);
      event.target_id = id;
      event.outcome = audit::Outcome::kFailure;
      if (auto appended = audit::Record(tx, event, now); !appended) return appended.error();
    }
    if (resealed > 0) {
      audit::Event event;
      event.org_id = pending->org_id;
      event.actor_id = "reencryption-job";
      event.action = "keys.values_resealed";
      event.target_type = "table";
      event.target_id = std::string(column.table);
      event.details = "{\"key_version\":" + std::to_string(pending->version) +
                      ",\"rows\":" + std::to_string(resealed) + "}";
      if (auto appended = audit::Record(tx, event, now); !appended) return appended.error();
    }
    return Ok();
  });
  if (!written) return Fail(written.error());
  return true;
}

namespace {

Result<bool> StepStreams(storage::Database& db, const Pending& pending,
                         const crypto::KeyRing& ring, const crypto::DataKey& target) {
  // The next attachments after the cursor, each with the key version its
  // stream starts with.
  std::vector<std::pair<std::string, std::uint32_t>> candidates;
  auto listed = db.Read([&](storage::Transaction& tx) -> Status {
    return tx.Query(
        "SELECT a.id, c.data FROM attachments a JOIN attachment_chunks c "
        "ON c.attachment_id = a.id AND c.n = 0 WHERE a.org_id = ? AND a.id > ? AND "
        "a.complete = 1 AND a.destroyed_at IS NULL ORDER BY a.id LIMIT ?",
        {pending.org_id, pending.cursor_id, kStreamBatchRows}, [&](const Row& row) -> Status {
          candidates.emplace_back(row.Text(0), crypto::StreamKeyVersion(row.Bytes(1)));
          return Ok();
        });
  });
  if (!listed) return Fail(listed.error());

  // The last batch of the pass waits while an upload is in progress: it may
  // have begun sealing with the old key. Looked at again after the poll
  // interval.
  if (candidates.size() < static_cast<std::size_t>(kStreamBatchRows)) {
    bool uploading = false;
    auto open = db.Read([&](storage::Transaction& tx) -> Status {
      auto row = tx.QueryOne(
          "SELECT 1 FROM attachments WHERE org_id = ? AND complete = 0 AND destroyed_at IS NULL "
          "LIMIT 1",
          {pending.org_id});
      if (!row) return row.error();
      uploading = row->has_value();
      return Ok();
    });
    if (!open) return Fail(open.error());
    if (uploading) return false;
  }

  std::vector<Resealed> batch;
  std::vector<std::string> unopenable;
  std::size_t batch_bytes = 0;
  std::string last_id = pending.cursor_id;
  for (const auto& [id, version] : candidates) {
    if (batch_bytes >= kStreamBatchBytes) break;
    last_id = id;
    if (version >= pending.version) continue;
    Resealed r{id, {}, {}};
    const crypto::SealContext context{pending.org_id, "attachments", "content", id};
    crypto::StreamOpener opener(ring, context);
    crypto::StreamSealer sealer(target, context);
    Blob sealed;
    const auto reseal = [&](std::span<const std::uint8_t> plain) {
      sealer.Write(plain, [&](std::span<const std::uint8_t> out) {
        sealed.insert(sealed.end(), out.begin(), out.end());
      });
    };
    std::vector<std::size_t> sizes;
    Status opened = Ok();
    auto read = db.Read([&](storage::Transaction& tx) -> Status {
      return tx.Query("SELECT data FROM attachment_chunks WHERE attachment_id = ? ORDER BY n",
                      {id}, [&](const Row& row) -> Status {
                        const Blob& data = row.Bytes(0);
                        if (sizes.empty() && data.size() >= kStreamHeadBytes) {
                          r.old_head.assign(data.begin(), data.begin() + kStreamHeadBytes);
                        }
                        sizes.push_back(data.size());
                        if (opened) opened = opener.Write(data, reseal);
                        return Ok();
                      });
    });
    if (!read) return Fail(read.error());
    if (opened) opened = opener.Finish(reseal);
    if (!opened || r.old_head.size() != kStreamHeadBytes) {
      // Damaged: it stays as it is (it did not open before either), is
      // reported, and the pass goes on.
      unopenable.push_back(id);
      sodium_memzero(sealed.data(), sealed.size());
      continue;
    }
    sealer.Finish([&](std::span<const std::uint8_t> out) {
      sealed.insert(sealed.end(), out.begin(), out.end());
    });
    std::size_t at = 0;
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      const std::size_t n = i + 1 == sizes.size() ? sealed.size() - at : sizes[i];
      r.rows.emplace_back(sealed.begin() + static_cast<std::ptrdiff_t>(at),
                          sealed.begin() + static_cast<std::ptrdiff_t>(at + n));
      at += n;
    }
    batch_bytes += sealed.size();
    batch.push_back(std::move(r));
  }
  const bool stage_done = candidates.size() < static_cast<std::size_t>(kStreamBatchRows) &&
                          (candidates.empty() || last_id == candidates.back().first);
  // Before the rotation may finish, an upload finished after the pass went
  // by its id (its content, or its name, sealed when it began) is caught by
  // looking for any value still under an older key, which sends the pass
  // round again from that column.
  std::string restart_table;
  if (stage_done) {
    const Blob target_version{static_cast<std::uint8_t>(pending.version >> 24),
                              static_cast<std::uint8_t>(pending.version >> 16),
                              static_cast<std::uint8_t>(pending.version >> 8),
                              static_cast<std::uint8_t>(pending.version)};
    auto checked = db.Read([&](storage::Transaction& tx) -> Status {
      auto stale = tx.QueryOne(
          "SELECT coalesce(substr(a.name, 2, 4) < ?2, 0) FROM attachments a "
          "JOIN attachment_chunks c "
          "ON c.attachment_id = a.id AND c.n = 0 WHERE a.org_id = ?1 AND a.complete = 1 AND "
          "a.destroyed_at IS NULL AND (substr(c.data, 2, 4) < ?2 OR substr(a.name, 2, 4) < ?2) "
          "ORDER BY 1 DESC LIMIT 1",
          {pending.org_id, target_version});
      if (!stale) return stale.error();
      if (*stale) restart_table = (**stale).Int(0) == 1 ? "attachments" : kStreamStage;
      return Ok();
    });
    if (!checked) return Fail(checked.error());
  }

  auto written = db.Write([&](storage::Transaction& tx) -> Status {
    const std::string now = core::NowRfc3339();
    std::int64_t resealed = 0;
    for (const Resealed& r : batch) {
      // Attachment content never changes, but it may be destroyed (recall,
      // purge) meanwhile: then there is nothing left to re-seal.
      auto head = tx.QueryOne(
          "SELECT substr(c.data, 1, 29) FROM attachment_chunks c JOIN attachments a "
          "ON a.id = c.attachment_id WHERE c.attachment_id = ? AND c.n = 0 AND "
          "a.destroyed_at IS NULL",
          {r.id});
      if (!head) return head.error();
      if (!*head || (*head)->Bytes(0) != r.old_head) continue;
      for (std::size_t n = 0; n < r.rows.size(); ++n) {
        auto row = tx.Execute("UPDATE attachment_chunks SET data = ? WHERE attachment_id = ? AND n = ?",
                              {r.rows[n], r.id, static_cast<std::int64_t>(n)});
        if (!row) return row.error();
      }
      ++resealed;
    }
    const std::string next_table = restart_table.empty() ? std::string(kStreamStage)
                                                         : restart_table;
    auto progress = tx.Execute(
        "UPDATE key_rotations SET cursor_table = ?, cursor_id = ?, resealed = resealed + ? "
        "WHERE org_id = ? AND version = ?",
        {next_table, restart_table.empty() ? last_id : std::string(), resealed, pending.org_id,
         static_cast<std::int64_t>(pending.version)});
    if (!progress) return progress.error();
    for (const std::string& id : unopenable) {
      audit::Event event = JobEvent(pending.org_id, "keys.value_unopenable", "attachment", id);
      event.outcome = audit::Outcome::kFailure;
      if (auto appended = audit::Record(tx, event, now); !appended) return appended.error();
    }
    if (resealed > 0) {
      audit::Event event = JobEvent(pending.org_id, "keys.values_resealed", "table",
                                    std::string(kStreamStage));
      event.details = "{\"key_version\":" + std::to_string(pending.version) +
                      ",\"rows\":" + std::to_string(resealed) + "}";
      if (auto appended = audit::Record(tx, event, now); !appended) return appended.error();
    }
    if (stage_done && restart_table.empty()) return FinishRotation(tx, pending, now);
    return Ok();
  });
  for (Resealed& r : batch) {
    for (Blob& row : r.rows) sodium_memzero(row.data(), row.size());
  }
  if (!written) return Fail(written.error());
  return true;
}

}  // namespace

}  // namespace cw::keys
