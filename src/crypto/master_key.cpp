#include "crypto/master_key.hpp"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stdexcept>
#include <string>

namespace cw::crypto {
namespace {

constexpr std::string_view kWrapTable = "data_keys";
constexpr std::string_view kWrapColumn = "wrapped_key";

std::shared_ptr<const DataKey> ParseHexKey(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) {
    text.pop_back();
  }
  std::uint8_t* raw = static_cast<std::uint8_t*>(sodium_malloc(DataKey::kSize));
  if (raw == nullptr) throw std::runtime_error("cannot allocate protected key memory");
  std::size_t len = 0;
  const int rc =
      sodium_hex2bin(raw, DataKey::kSize, text.data(), text.size(), nullptr, &len, nullptr);
  sodium_memzero(text.data(), text.size());
  if (rc != 0 || len != DataKey::kSize) {
    sodium_free(raw);
    throw std::runtime_error("master key must be 64 hexadecimal digits (32 bytes)");
  }
  auto key = DataKey::FromBytes(0, std::span<const std::uint8_t>(raw, DataKey::kSize));
  sodium_free(raw);
  return key;
}

}  // namespace

Bytes LocalKeyEncryptionKey::Wrap(const std::string& org_id, const DataKey& key) const {
  const std::string version = std::to_string(key.version());
  return Seal(*key_, SealContext{org_id, kWrapTable, kWrapColumn, version}, key.bytes());
}

Result<std::shared_ptr<const DataKey>> LocalKeyEncryptionKey::Unwrap(
    const std::string& org_id, std::uint32_t version, std::span<const std::uint8_t> wrapped) const {
  KeyRing ring;
  ring.Add(key_);
  const std::string v = std::to_string(version);
  auto raw = Open(ring, SealContext{org_id, kWrapTable, kWrapColumn, v}, wrapped);
  if (!raw) return raw.error();
  if (raw->size() != DataKey::kSize) return Error::kMalformed;
  auto key = DataKey::FromBytes(version, *raw);
  sodium_memzero(raw->data(), raw->size());
  return key;
}

void CreateMasterKeyFile(const std::string& path) {
  EnsureInitialized();
  std::uint8_t raw[DataKey::kSize];
  randombytes_buf(raw, sizeof raw);
  char hex[DataKey::kSize * 2 + 1];
  sodium_bin2hex(hex, sizeof hex, raw, sizeof raw);
  sodium_memzero(raw, sizeof raw);
  std::string text = std::string(hex) + "\n";
  sodium_memzero(hex, sizeof hex);
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0)
    throw std::runtime_error("cannot create the master key file (does it exist already?)");
  const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
                  ::fsync(fd) == 0;
  ::close(fd);
  sodium_memzero(text.data(), text.size());
  if (!ok) {
    ::unlink(path.c_str());
    throw std::runtime_error("cannot write the master key file");
  }
}

std::unique_ptr<KeyEncryptionKey> LoadMasterKey(
    const std::string& path, const std::optional<std::string>& environment_value) {
  EnsureInitialized();
  if (environment_value) {
    return std::make_unique<LocalKeyEncryptionKey>(ParseHexKey(*environment_value));
  }
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("cannot open the master key file");
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw std::runtime_error("the master key file is not a regular file");
  }
  // A key readable by anyone but its owner may already be in other hands.
  if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
    ::close(fd);
    throw std::runtime_error(
        "the master key file must not be accessible by group or others (chmod 600)");
  }
  std::string text(256, '\0');
  const ssize_t n = ::read(fd, text.data(), text.size());
  ::close(fd);
  if (n <= 0) throw std::runtime_error("cannot read the master key file");
  text.resize(static_cast<std::size_t>(n));
  return std::make_unique<LocalKeyEncryptionKey>(ParseHexKey(std::move(text)));
}

}  // namespace cw::crypto
