#include "keys/reencrypt.hpp"

#include <sodium.h>

#include <optional>
#include <vector>

#include "audit/audit_log.hpp"
#include "core/log.hpp"
#include "core/time.hpp"

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
  for (std::size_t i = 0; i < std::size(kSealedColumns); ++i) {
    if (kSealedColumns[i].table == table) return i;
  }
  return std::nullopt;
}

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
    if (whole_batch && table_done && !last_table) {
      next_table = kSealedColumns[pending->table_index + 1].table;
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
    if (whole_batch && table_done && last_table) {
      // Older pending rotations of the organization are covered by this pass.
      auto finished = tx.Execute(
          "UPDATE key_rotations SET finished_at = ? "
          "WHERE org_id = ? AND version <= ? AND finished_at IS NULL",
          {now, pending->org_id, static_cast<std::int64_t>(pending->version)});
      if (!finished) return finished.error();
      audit::Event event;
      event.org_id = pending->org_id;
      event.actor_id = "reencryption-job";
      event.action = "keys.rotation_finished";
      event.target_type = "data_key";
      event.target_id = std::to_string(pending->version);
      if (auto appended = audit::Record(tx, event, now); !appended) return appended.error();
    }
    return Ok();
  });
  if (!written) return Fail(written.error());
  return true;
}

}  // namespace cw::keys
