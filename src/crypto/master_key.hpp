#pragma once

// The master key-encryption key (KEK) and the wrapping of other keys.
//
// The KEK never encrypts data itself: it wraps each organization's data and
// blind-index keys and the deployment's audit-signing key, so rotating it
// re-wraps those keys only. KeyEncryptionKey is the seam where a KMS can
// stand in later.
//
// The KEK is versioned so that rotating it is crash-safe. The key file (mode
// 0600; a file any other user can read is refused) holds one line per
// version, "<version> <64 hex digits>"; a line of bare hex is version 1.
// CAREWIRE_MASTER_KEY holds the same text, with "," allowed between entries.
// Rotation first adds a version to the file, then re-wraps every key under
// it in one database transaction, then drops the old version from the file:
// a crash at any step leaves a file that opens every wrapped key.

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "crypto/seal.hpp"

namespace cw::crypto {

// What a wrapped key is, bound into the wrapping's associated data: a key
// unwraps only as the owner, purpose and version it was wrapped for.
struct WrapLabel {
  std::string_view owner;    // an organization id, or "deployment"
  std::string_view purpose;  // "data", "blind_index", "audit_signing"
  std::uint32_t version = 0;
};

class KeyEncryptionKey {
 public:
  virtual ~KeyEncryptionKey() = default;
  // The KEK version new wraps use (the highest held).
  virtual std::uint32_t version() const = 0;
  // Wraps `key` (its bytes) for `label` under the current KEK version.
  virtual Bytes Wrap(const WrapLabel& label, const DataKey& key) const = 0;
  // Unwraps with whichever held KEK version the wrapping names. The key
  // returned carries label.version.
  virtual Result<std::shared_ptr<const DataKey>> Unwrap(
      const WrapLabel& label, std::span<const std::uint8_t> wrapped) const = 0;
  // The KEK version a wrapping was made with.
  static Result<std::uint32_t> WrappedVersion(std::span<const std::uint8_t> wrapped) {
    return SealedKeyVersion(wrapped);
  }
};

// KEK versions held in this process's memory (locked, wiped on destruction).
// Loaded from a key file, it re-reads the file when it meets a wrapping made
// with a version it does not hold: a running server keeps working while
// `carewire keys rotate --master` rotates the key underneath it.
class LocalKeyEncryptionKey final : public KeyEncryptionKey {
 public:
  explicit LocalKeyEncryptionKey(KeyRing ring, std::string path = {});
  std::uint32_t version() const override;
  Bytes Wrap(const WrapLabel& label, const DataKey& key) const override;
  Result<std::shared_ptr<const DataKey>> Unwrap(
      const WrapLabel& label, std::span<const std::uint8_t> wrapped) const override;

 private:
  std::shared_ptr<const KeyRing> Ring() const;

  const std::string path_;  // empty: the key came from the environment
  mutable std::mutex mu_;
  mutable std::shared_ptr<const KeyRing> ring_;
};

// Creates a new key file at `path` holding version 1 (mode 0600, never over
// an existing file). Throws std::runtime_error with a fixed message.
void CreateMasterKeyFile(const std::string& path);

// Adds a new random version to the key file, replacing the file atomically
// (write, fsync, rename, fsync of the directory). Returns the new version.
std::uint32_t AddMasterKeyVersion(const std::string& path);

// Rewrites the key file with `version` alone, atomically. Called once every
// wrapped key uses that version.
void KeepOnlyMasterKeyVersion(const std::string& path, std::uint32_t version);

// Loads the KEK: from `environment_value` when it is set, else from the key
// file. Throws std::runtime_error when the file is missing, malformed, or
// accessible by group or others. The messages never contain key material.
std::unique_ptr<KeyEncryptionKey> LoadMasterKey(
    const std::string& path, const std::optional<std::string>& environment_value);

}  // namespace cw::crypto
