#pragma once

// Organizations' keys in the database, and the process's cache of them.
//
// Each organization has versioned data keys (the highest seals new values,
// every version opens) and one blind-index key, each stored wrapped by the
// master key in `org_keys`. The deployment has one Ed25519 seed that signs
// audit checkpoints, stored wrapped in `deployment`. Unwrapped keys live in
// locked memory and are cached for `cache_ttl`, so a data-key version added
// by another process (`carewire keys rotate`) seals new values here within
// that time; a value sealed with a version not yet cached reloads at once.

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "core/result.hpp"
#include "crypto/master_key.hpp"
#include "crypto/seal.hpp"
#include "storage/database.hpp"

namespace cw::keys {

inline constexpr std::string_view kDataPurpose = "data";
inline constexpr std::string_view kBlindIndexPurpose = "blind_index";
inline constexpr std::string_view kAuditSigningPurpose = "audit_signing";
inline constexpr std::string_view kDeploymentOwner = "deployment";

// One organization's unwrapped keys.
struct OrgKeys {
  crypto::KeyRing data;
  std::shared_ptr<const crypto::DataKey> blind_index;
};

class KeyStore {
 public:
  KeyStore(storage::Database& db, std::shared_ptr<const crypto::KeyEncryptionKey> kek,
           std::chrono::milliseconds cache_ttl);

  // The organization's keys; not_found when it has none.
  Result<std::shared_ptr<const OrgKeys>> ForOrg(const std::string& org_id);
  // The same, read afresh from the database.
  Result<std::shared_ptr<const OrgKeys>> Reload(const std::string& org_id);

  // Seals with the organization's current data key.
  Result<crypto::Bytes> Seal(const crypto::SealContext& context,
                             std::span<const std::uint8_t> plaintext);
  Result<crypto::Bytes> Seal(const crypto::SealContext& context, std::string_view plaintext);
  Result<crypto::Bytes> Open(const crypto::SealContext& context,
                             std::span<const std::uint8_t> sealed);

  // The organization's blind index of an already normalized value.
  Result<std::array<std::uint8_t, 32>> BlindIndex(const std::string& org_id,
                                                  std::string_view domain,
                                                  std::string_view normalized);

  std::chrono::milliseconds cache_ttl() const { return cache_ttl_; }
  const crypto::KeyEncryptionKey& kek() const { return *kek_; }

 private:
  struct Entry {
    std::shared_ptr<const OrgKeys> keys;
    std::chrono::steady_clock::time_point loaded;
  };
  storage::Database& db_;
  std::shared_ptr<const crypto::KeyEncryptionKey> kek_;
  const std::chrono::milliseconds cache_ttl_;
  std::mutex mu_;
  std::map<std::string, Entry> cache_;
};

// --- Inside a write transaction -------------------------------------------

// Gives a new organization data key 1 and a blind-index key.
Status CreateOrgKeys(storage::Transaction& tx, const crypto::KeyEncryptionKey& kek,
                     std::string_view org_id, std::string_view now);

// Adds the next data-key version for the organization and records a pending
// re-encryption; returns the new version.
Result<std::uint32_t> AddDataKeyVersion(storage::Transaction& tx,
                                        const crypto::KeyEncryptionKey& kek,
                                        std::string_view org_id, std::string_view now);

// Re-wraps every stored key (organizations' and the deployment's) under the
// KEK's current version; returns how many were re-wrapped. Keys already under
// it are left alone, so a repeated run after a crash finishes the job.
Result<std::int64_t> RewrapAllKeys(storage::Transaction& tx, const crypto::KeyEncryptionKey& kek);

// The lowest KEK version any stored key is wrapped with (0 when none).
Result<std::uint32_t> OldestKekVersionInUse(storage::Transaction& tx);

// The deployment's audit-signing key.
struct DeploymentKeys {
  std::array<std::uint8_t, 32> audit_public_key{};
  std::shared_ptr<const crypto::DataKey> audit_signing_seed;  // Ed25519 seed
};

// Creates the deployment row and its audit-signing key unless it exists;
// returns true when it created them.
Result<bool> EnsureDeploymentKeys(storage::Transaction& tx, const crypto::KeyEncryptionKey& kek,
                                  std::string_view now);

// not_found when the deployment has not been created.
Result<DeploymentKeys> LoadDeploymentKeys(storage::Transaction& tx,
                                          const crypto::KeyEncryptionKey& kek);

}  // namespace cw::keys
