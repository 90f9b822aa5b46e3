#pragma once

// Sealing: authenticated encryption of one value for one place.
//
// A sealed value is bound to its organization, table, column and row id (and
// to its format and key version) through the AEAD's associated data, so a
// ciphertext copied to another row, column, table or organization fails to
// open. libsodium's XChaCha20-Poly1305 with a random 192-bit nonce: random
// nonces of that size may be drawn without coordination for the lifetime of
// a key (NIST SP 800-38D's concern with 96-bit nonces does not arise).
//
// Stored format, self-describing so old values stay readable when the
// format or the key changes:
//
//   byte 0      format version (1)
//   bytes 1-4   data-key version, big-endian
//   bytes 5-28  nonce (24 bytes)
//   bytes 29-   ciphertext, then the 16-byte Poly1305 tag
//
// Thread-safe: keys are immutable once built.

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "core/result.hpp"

namespace cw::crypto {

enum class Error {
  kOk = 0,
  kMalformed,          // too short, or an unknown format version
  kUnknownKeyVersion,  // sealed with a key version this ring does not hold
  kAuthentication,     // tampered with, or opened in the wrong place or with the wrong key
};

const boost::system::error_category& ErrorCategory();
inline ErrorCode make_error_code(Error e) { return {static_cast<int>(e), ErrorCategory()}; }

using Bytes = std::vector<std::uint8_t>;

// Initializes libsodium once; stops the process if it cannot (carrying on
// without a working CSPRNG would risk PHI). Safe to call from any thread.
void EnsureInitialized();

// Where a sealed value lives. Every field is part of the associated data.
struct SealContext {
  std::string_view org_id;
  std::string_view table;
  std::string_view column;
  std::string_view row_id;
};

// A 256-bit data-encryption key and its version. The key bytes live in
// memory that libsodium locks (no swap) and wipes on destruction.
class DataKey {
 public:
  static constexpr std::size_t kSize = 32;

  // A new random key.
  static std::shared_ptr<const DataKey> Generate(std::uint32_t version);
  // A key from its bytes (e.g. unwrapped from storage). REQUIRES: kSize bytes.
  static std::shared_ptr<const DataKey> FromBytes(std::uint32_t version,
                                                  std::span<const std::uint8_t> bytes);
  ~DataKey();
  DataKey(const DataKey&) = delete;
  DataKey& operator=(const DataKey&) = delete;

  std::uint32_t version() const { return version_; }
  std::span<const std::uint8_t> bytes() const { return {key_, kSize}; }

 private:
  explicit DataKey(std::uint32_t version);
  std::uint32_t version_;
  std::uint8_t* key_;  // sodium_malloc'd
};

// The versions of one organization's data key. New values are sealed with
// the newest; any version held can open.
class KeyRing {
 public:
  void Add(std::shared_ptr<const DataKey> key);
  const DataKey* Find(std::uint32_t version) const;
  // The newest version, or null when the ring is empty.
  const DataKey* Current() const;

 private:
  std::map<std::uint32_t, std::shared_ptr<const DataKey>> keys_;
};

// The 5-byte header both stored formats start with: format version, then the
// data-key version big-endian. Shared by Seal and SealStream.
void WriteHeader(std::uint8_t format, std::uint32_t key_version, std::uint8_t* out);
std::uint32_t ReadHeaderKeyVersion(const std::uint8_t* header);

// The associated data that binds a sealed value: its header bytes (format and
// key version), then each context field length-prefixed, so ("ab","c") and
// ("a","bc") differ. Shared by Seal and SealStream.
Bytes BindingData(std::span<const std::uint8_t> header, const SealContext& context);

Bytes Seal(const DataKey& key, const SealContext& context, std::span<const std::uint8_t> plaintext);
Bytes Seal(const DataKey& key, const SealContext& context, std::string_view plaintext);

Result<Bytes> Open(const KeyRing& keys, const SealContext& context,
                   std::span<const std::uint8_t> sealed);

// The key version a sealed value names, without opening it (for rotation).
Result<std::uint32_t> SealedKeyVersion(std::span<const std::uint8_t> sealed);

// Blind index: a keyed hash (HMAC-SHA-256) of a value already normalized by
// the caller (E.164 for a phone number, say), under a key kept apart from
// the data keys, so equal values can be found without storing plaintext.
// `domain` separates kinds of value ("phone", "mrn") so equal text of two
// kinds does not collide.
std::array<std::uint8_t, 32> BlindIndex(std::span<const std::uint8_t> index_key,
                                        std::string_view domain, std::string_view normalized);

}  // namespace cw::crypto

template <>
struct boost::system::is_error_code_enum<cw::crypto::Error> : std::true_type {};
