#include "keys/key_store.hpp"

#include <sodium.h>

#include "core/error.hpp"

namespace cw::keys {
namespace {

using storage::Blob;
using storage::Row;
using storage::Value;

std::span<const std::uint8_t> AsSpan(const Blob& b) { return {b.data(), b.size()}; }

Blob ToBlob(const crypto::Bytes& b) { return Blob(b.begin(), b.end()); }

}  // namespace

KeyStore::KeyStore(storage::Database& db, std::shared_ptr<const crypto::KeyEncryptionKey> kek,
                   std::chrono::milliseconds cache_ttl)
    : db_(db), kek_(std::move(kek)), cache_ttl_(cache_ttl) {}

Result<std::shared_ptr<const OrgKeys>> KeyStore::Reload(const std::string& org_id) {
  auto keys = std::make_shared<OrgKeys>();
  bool found = false;
  Status unwrapped = Ok();
  auto read = db_.Read([&](storage::Transaction& tx) -> Status {
    return tx.Query(
        "SELECT purpose, version, wrapped FROM org_keys WHERE org_id = ? ORDER BY version",
        {org_id}, [&](const Row& row) -> Status {
          const std::string& purpose = row.Text(0);
          const auto version = static_cast<std::uint32_t>(row.Int(1));
          auto key = kek_->Unwrap({org_id, purpose, version}, AsSpan(row.Bytes(2)));
          if (!key) {
            unwrapped = key.error();
            return key.error();
          }
          found = true;
          if (purpose == kDataPurpose) {
            keys->data.Add(std::move(*key));
          } else if (purpose == kBlindIndexPurpose) {
            keys->blind_index = std::move(*key);
          }
          return Ok();
        });
  });
  if (!unwrapped) return unwrapped.error();
  if (!read) return read.error();
  if (!found || keys->data.Current() == nullptr || keys->blind_index == nullptr) {
    return core::Error::kNotFound;
  }
  std::shared_ptr<const OrgKeys> result = std::move(keys);
  std::lock_guard lock(mu_);
  cache_[org_id] = Entry{result, std::chrono::steady_clock::now()};
  return result;
}

Result<std::shared_ptr<const OrgKeys>> KeyStore::ForOrg(const std::string& org_id) {
  {
    std::lock_guard lock(mu_);
    auto it = cache_.find(org_id);
    if (it != cache_.end() && std::chrono::steady_clock::now() - it->second.loaded < cache_ttl_) {
      return it->second.keys;
    }
  }
  return Reload(org_id);
}

Result<crypto::Bytes> KeyStore::Seal(const crypto::SealContext& context,
                                     std::span<const std::uint8_t> plaintext) {
  auto keys = ForOrg(std::string(context.org_id));
  if (!keys) return keys.error();
  return crypto::Seal(*(*keys)->data.Current(), context, plaintext);
}

Result<crypto::Bytes> KeyStore::Seal(const crypto::SealContext& context,
                                     std::string_view plaintext) {
  return Seal(context,
              std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(plaintext.data()),
                                            plaintext.size()));
}

Result<crypto::Bytes> KeyStore::Open(const crypto::SealContext& context,
                                     std::span<const std::uint8_t> sealed) {
  const std::string org_id(context.org_id);
  auto keys = ForOrg(org_id);
  if (!keys) return keys.error();
  auto opened = crypto::Open((*keys)->data, context, sealed);
  if (!opened && opened.error() == crypto::Error::kUnknownKeyVersion) {
    // Sealed by another process with a version added since the cache filled.
    keys = Reload(org_id);
    if (!keys) return keys.error();
    opened = crypto::Open((*keys)->data, context, sealed);
  }
  return opened;
}

Result<std::array<std::uint8_t, 32>> KeyStore::BlindIndex(const std::string& org_id,
                                                          std::string_view domain,
                                                          std::string_view normalized) {
  auto keys = ForOrg(org_id);
  if (!keys) return keys.error();
  return crypto::BlindIndex((*keys)->blind_index->bytes(), domain, normalized);
}

Status CreateOrgKeys(storage::Transaction& tx, const crypto::KeyEncryptionKey& kek,
                     std::string_view org_id, std::string_view now) {
  for (std::string_view purpose : {kDataPurpose, kBlindIndexPurpose}) {
    auto key = crypto::DataKey::Generate(1);
    const crypto::Bytes wrapped = kek.Wrap({org_id, purpose, 1}, *key);
    auto done = tx.Execute(
        "INSERT INTO org_keys (org_id, purpose, version, wrapped, kek_version, created_at) "
        "VALUES (?, ?, 1, ?, ?, ?)",
        {std::string(org_id), std::string(purpose), ToBlob(wrapped),
         static_cast<std::int64_t>(kek.version()), std::string(now)});
    if (!done) return done.error();
  }
  return Ok();
}

Result<std::uint32_t> AddDataKeyVersion(storage::Transaction& tx,
                                        const crypto::KeyEncryptionKey& kek,
                                        std::string_view org_id, std::string_view now) {
  auto last = tx.QueryOne("SELECT max(version) FROM org_keys WHERE org_id = ? AND purpose = 'data'",
                          {std::string(org_id)});
  if (!last) return last.error();
  if (!*last || (*last)->IsNull(0)) return core::Error::kNotFound;
  const auto version = static_cast<std::uint32_t>((*last)->Int(0) + 1);
  auto key = crypto::DataKey::Generate(version);
  const crypto::Bytes wrapped = kek.Wrap({org_id, kDataPurpose, version}, *key);
  auto inserted = tx.Execute(
      "INSERT INTO org_keys (org_id, purpose, version, wrapped, kek_version, created_at) "
      "VALUES (?, 'data', ?, ?, ?, ?)",
      {std::string(org_id), static_cast<std::int64_t>(version), ToBlob(wrapped),
       static_cast<std::int64_t>(kek.version()), std::string(now)});
  if (!inserted) return inserted.error();
  auto pending =
      tx.Execute("INSERT INTO key_rotations (org_id, version, started_at) VALUES (?, ?, ?)",
                 {std::string(org_id), static_cast<std::int64_t>(version), std::string(now)});
  if (!pending) return pending.error();
  return version;
}

Result<std::int64_t> RewrapAllKeys(storage::Transaction& tx, const crypto::KeyEncryptionKey& kek) {
  const auto current = static_cast<std::int64_t>(kek.version());
  auto rows = tx.QueryAll(
      "SELECT org_id, purpose, version, wrapped FROM org_keys WHERE kek_version <> ?", {current});
  if (!rows) return rows.error();
  std::int64_t count = 0;
  for (const Row& row : *rows) {
    const auto version = static_cast<std::uint32_t>(row.Int(2));
    const crypto::WrapLabel label{row.Text(0), row.Text(1), version};
    auto key = kek.Unwrap(label, AsSpan(row.Bytes(3)));
    if (!key) return key.error();
    auto updated = tx.Execute(
        "UPDATE org_keys SET wrapped = ?, kek_version = ? "
        "WHERE org_id = ? AND purpose = ? AND version = ?",
        {ToBlob(kek.Wrap(label, **key)), current, row.Text(0), row.Text(1),
         static_cast<std::int64_t>(version)});
    if (!updated) return updated.error();
    ++count;
  }
  auto deployment = tx.QueryOne("SELECT audit_signing_key_wrapped FROM deployment WHERE id = 1");
  if (!deployment) return deployment.error();
  if (*deployment) {
    const Blob& wrapped = (*deployment)->Bytes(0);
    auto version = crypto::KeyEncryptionKey::WrappedVersion(AsSpan(wrapped));
    if (!version) return version.error();
    if (*version != kek.version()) {
      const crypto::WrapLabel label{kDeploymentOwner, kAuditSigningPurpose, 1};
      auto seed = kek.Unwrap(label, AsSpan(wrapped));
      if (!seed) return seed.error();
      auto updated = tx.Execute("UPDATE deployment SET audit_signing_key_wrapped = ? WHERE id = 1",
                                {ToBlob(kek.Wrap(label, **seed))});
      if (!updated) return updated.error();
      ++count;
    }
  }
  return count;
}

Result<std::uint32_t> OldestKekVersionInUse(storage::Transaction& tx) {
  std::uint32_t oldest = 0;
  auto keys = tx.QueryOne("SELECT min(kek_version) FROM org_keys");
  if (!keys) return keys.error();
  if (*keys && !(*keys)->IsNull(0)) oldest = static_cast<std::uint32_t>((*keys)->Int(0));
  auto deployment = tx.QueryOne("SELECT audit_signing_key_wrapped FROM deployment WHERE id = 1");
  if (!deployment) return deployment.error();
  if (*deployment) {
    auto version = crypto::KeyEncryptionKey::WrappedVersion(AsSpan((*deployment)->Bytes(0)));
    if (!version) return version.error();
    if (oldest == 0 || *version < oldest) oldest = *version;
  }
  return oldest;
}

Result<bool> EnsureDeploymentKeys(storage::Transaction& tx, const crypto::KeyEncryptionKey& kek,
                                  std::string_view now) {
  auto existing = tx.QueryOne("SELECT 1 FROM deployment WHERE id = 1");
  if (!existing) return Fail(existing.error());
  if (*existing) return false;
  auto seed = crypto::DataKey::Generate(1);
  std::array<std::uint8_t, crypto_sign_PUBLICKEYBYTES> public_key{};
  auto* secret = static_cast<std::uint8_t*>(sodium_malloc(crypto_sign_SECRETKEYBYTES));
  if (secret == nullptr) return Fail(core::Error::kInternal);
  crypto_sign_seed_keypair(public_key.data(), secret, seed->bytes().data());
  sodium_free(secret);
  const crypto::Bytes wrapped = kek.Wrap({kDeploymentOwner, kAuditSigningPurpose, 1}, *seed);
  auto inserted = tx.Execute(
      "INSERT INTO deployment (id, created_at, audit_signing_public_key, "
      "audit_signing_key_wrapped) VALUES (1, ?, ?, ?)",
      {std::string(now), Blob(public_key.begin(), public_key.end()), ToBlob(wrapped)});
  if (!inserted) return Fail(inserted.error());
  return true;
}

Result<DeploymentKeys> LoadDeploymentKeys(storage::Transaction& tx,
                                          const crypto::KeyEncryptionKey& kek) {
  auto row = tx.QueryOne(
      "SELECT audit_signing_public_key, audit_signing_key_wrapped FROM deployment WHERE id = 1");
  if (!row) return row.error();
  if (!*row) return core::Error::kNotFound;
  DeploymentKeys keys;
  const Blob& public_key = (*row)->Bytes(0);
  if (public_key.size() != keys.audit_public_key.size()) return crypto::Error::kMalformed;
  std::copy(public_key.begin(), public_key.end(), keys.audit_public_key.begin());
  auto seed = kek.Unwrap({kDeploymentOwner, kAuditSigningPurpose, 1}, AsSpan((*row)->Bytes(1)));
  if (!seed) return seed.error();
  keys.audit_signing_seed = std::move(*seed);
  return keys;
}

}  // namespace cw::keys
