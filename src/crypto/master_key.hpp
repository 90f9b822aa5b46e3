#pragma once

// The master key-encryption key (KEK) and the wrapping of data keys.
//
// The KEK comes from a key file (32 random bytes, hex, mode 0600: a file any
// other user can read is refused) or from the CAREWIRE_MASTER_KEY
// environment variable (the same hex). It never encrypts data itself: it
// wraps each organization's data keys, so rotating it re-wraps those keys
// only. KeyEncryptionKey is the seam where a KMS can stand in later.

#include <memory>
#include <optional>
#include <string>

#include "crypto/seal.hpp"

namespace cw::crypto {

class KeyEncryptionKey {
 public:
  virtual ~KeyEncryptionKey() = default;
  // Wraps `key` for organization `org_id`; the result opens only for that
  // organization and that key version.
  virtual Bytes Wrap(const std::string& org_id, const DataKey& key) const = 0;
  virtual Result<std::shared_ptr<const DataKey>> Unwrap(
      const std::string& org_id, std::uint32_t version,
      std::span<const std::uint8_t> wrapped) const = 0;
};

// A KEK held in this process's memory (locked, wiped on destruction).
class LocalKeyEncryptionKey final : public KeyEncryptionKey {
 public:
  explicit LocalKeyEncryptionKey(std::shared_ptr<const DataKey> key) : key_(std::move(key)) {}
  Bytes Wrap(const std::string& org_id, const DataKey& key) const override;
  Result<std::shared_ptr<const DataKey>> Unwrap(
      const std::string& org_id, std::uint32_t version,
      std::span<const std::uint8_t> wrapped) const override;

 private:
  std::shared_ptr<const DataKey> key_;
};

// Creates a new key file at `path` (mode 0600, never over an existing file).
// Throws std::runtime_error with a fixed message on failure.
void CreateMasterKeyFile(const std::string& path);

// Loads the KEK: from `environment_value` when it is set (hex), else from the
// key file. Throws std::runtime_error when the file is missing, malformed, or
// readable by group or others. The messages never contain key material.
std::unique_ptr<KeyEncryptionKey> LoadMasterKey(
    const std::string& path, const std::optional<std::string>& environment_value);

}  // namespace cw::crypto
