#include "crypto/seal.hpp"

#include <sodium.h>

#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <stdexcept>

namespace cw::crypto {
namespace {

constexpr std::uint8_t kFormatVersion = 1;
constexpr std::size_t kHeaderSize = 1 + 4;
constexpr std::size_t kNonceSize = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
constexpr std::size_t kTagSize = crypto_aead_xchacha20poly1305_ietf_ABYTES;
static_assert(kNonceSize == 24 && kTagSize == 16);

class Category final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "cw.crypto"; }
  std::string message(int ev) const override {
    switch (static_cast<Error>(ev)) {
      case Error::kOk:
        return "ok";
      case Error::kMalformed:
        return "sealed value is malformed";
      case Error::kUnknownKeyVersion:
        return "sealed value names an unknown key version";
      case Error::kAuthentication:
        return "sealed value failed authentication";
    }
    return "unknown crypto error";
  }
};

}  // namespace

namespace {

void AppendField(Bytes& out, std::string_view field) {
  const auto n = static_cast<std::uint32_t>(field.size());
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<std::uint8_t>(n >> shift));
  out.insert(out.end(), field.begin(), field.end());
}

}  // namespace

void WriteHeader(std::uint8_t format, std::uint32_t key_version, std::uint8_t* out) {
  out[0] = format;
  out[1] = static_cast<std::uint8_t>(key_version >> 24);
  out[2] = static_cast<std::uint8_t>(key_version >> 16);
  out[3] = static_cast<std::uint8_t>(key_version >> 8);
  out[4] = static_cast<std::uint8_t>(key_version);
}

std::uint32_t ReadHeaderKeyVersion(const std::uint8_t* header) {
  return (std::uint32_t{header[1]} << 24) | (std::uint32_t{header[2]} << 16) |
         (std::uint32_t{header[3]} << 8) | std::uint32_t{header[4]};
}

Bytes BindingData(std::span<const std::uint8_t> header, const SealContext& c) {
  Bytes ad(header.begin(), header.end());
  AppendField(ad, c.org_id);
  AppendField(ad, c.table);
  AppendField(ad, c.column);
  AppendField(ad, c.row_id);
  return ad;
}

const boost::system::error_category& ErrorCategory() {
  static const Category category;
  return category;
}

void EnsureInitialized() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (sodium_init() < 0) {
      std::fputs("fatal: libsodium failed to initialize\n", stderr);
      std::abort();
    }
  });
}

DataKey::DataKey(std::uint32_t version) : version_(version) {
  EnsureInitialized();
  key_ = static_cast<std::uint8_t*>(sodium_malloc(kSize));
  if (key_ == nullptr) {
    std::fputs("fatal: cannot allocate protected key memory\n", stderr);
    std::abort();
  }
}

DataKey::~DataKey() { sodium_free(key_); }

std::shared_ptr<const DataKey> DataKey::Generate(std::uint32_t version) {
  std::shared_ptr<DataKey> key(new DataKey(version));
  crypto_aead_xchacha20poly1305_ietf_keygen(key->key_);
  return key;
}

std::shared_ptr<const DataKey> DataKey::FromBytes(std::uint32_t version,
                                                  std::span<const std::uint8_t> bytes) {
  if (bytes.size() != kSize) throw std::invalid_argument("data key must be 32 bytes");
  std::shared_ptr<DataKey> key(new DataKey(version));
  std::copy(bytes.begin(), bytes.end(), key->key_);
  return key;
}

void KeyRing::Add(std::shared_ptr<const DataKey> key) {
  const std::uint32_t v = key->version();
  keys_[v] = std::move(key);
}

const DataKey* KeyRing::Find(std::uint32_t version) const {
  auto it = keys_.find(version);
  return it == keys_.end() ? nullptr : it->second.get();
}

const DataKey* KeyRing::Current() const {
  return keys_.empty() ? nullptr : keys_.rbegin()->second.get();
}

Bytes Seal(const DataKey& key, const SealContext& context,
           std::span<const std::uint8_t> plaintext) {
  EnsureInitialized();
  Bytes out(kHeaderSize + kNonceSize + plaintext.size() + kTagSize);
  WriteHeader(kFormatVersion, key.version(), out.data());
  std::uint8_t* nonce = out.data() + kHeaderSize;
  randombytes_buf(nonce, kNonceSize);
  const Bytes ad = BindingData({out.data(), kHeaderSize}, context);
  unsigned long long written = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(out.data() + kHeaderSize + kNonceSize, &written,
                                             plaintext.data(), plaintext.size(), ad.data(),
                                             ad.size(), nullptr, nonce, key.bytes().data());
  out.resize(kHeaderSize + kNonceSize + static_cast<std::size_t>(written));
  return out;
}

Bytes Seal(const DataKey& key, const SealContext& context, std::string_view plaintext) {
  return Seal(key, context,
              std::span(reinterpret_cast<const std::uint8_t*>(plaintext.data()), plaintext.size()));
}

Result<std::uint32_t> SealedKeyVersion(std::span<const std::uint8_t> sealed) {
  if (sealed.size() < kHeaderSize + kNonceSize + kTagSize || sealed[0] != kFormatVersion) {
    return Error::kMalformed;
  }
  return ReadHeaderKeyVersion(sealed.data());
}

Result<Bytes> Open(const KeyRing& keys, const SealContext& context,
                   std::span<const std::uint8_t> sealed) {
  EnsureInitialized();
  auto version = SealedKeyVersion(sealed);
  if (!version) return version.error();
  const DataKey* key = keys.Find(*version);
  if (key == nullptr) return Error::kUnknownKeyVersion;
  const Bytes ad = BindingData(sealed.subspan(0, kHeaderSize), context);
  const auto body = sealed.subspan(kHeaderSize + kNonceSize);
  Bytes plain(body.size() - kTagSize);
  unsigned long long written = 0;
  if (crypto_aead_xchacha20poly1305_ietf_decrypt(
          plain.data(), &written, nullptr, body.data(), body.size(), ad.data(), ad.size(),
          sealed.data() + kHeaderSize, key->bytes().data()) != 0) {
    return Error::kAuthentication;
  }
  plain.resize(static_cast<std::size_t>(written));
  return plain;
}

std::array<std::uint8_t, 32> BlindIndex(std::span<const std::uint8_t> index_key,
                                        std::string_view domain, std::string_view normalized) {
  EnsureInitialized();
  crypto_auth_hmacsha256_state st;
  crypto_auth_hmacsha256_init(&st, index_key.data(), index_key.size());
  Bytes prefix;
  AppendField(prefix, domain);
  crypto_auth_hmacsha256_update(&st, prefix.data(), prefix.size());
  crypto_auth_hmacsha256_update(&st, reinterpret_cast<const unsigned char*>(normalized.data()),
                                normalized.size());
  std::array<std::uint8_t, 32> out{};
  crypto_auth_hmacsha256_final(&st, out.data());
  return out;
}

}  // namespace cw::crypto
