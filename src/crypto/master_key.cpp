#include "crypto/master_key.hpp"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <charconv>
#include <filesystem>
#include <map>
#include <stdexcept>
#include <string>

namespace cw::crypto {
namespace {

constexpr std::string_view kWrapTable = "wrapped_keys";
constexpr std::size_t kMaxFileBytes = 64 * 1024;

// Key text is wiped from memory as soon as it has been parsed.
class SecretText {
 public:
  explicit SecretText(std::string text) : text_(std::move(text)) {}
  ~SecretText() { sodium_memzero(text_.data(), text_.size()); }
  SecretText(const SecretText&) = delete;
  SecretText& operator=(const SecretText&) = delete;
  std::string& str() { return text_; }

 private:
  std::string text_;
};

std::shared_ptr<const DataKey> ParseHexKey(std::uint32_t version, std::string_view hex) {
  std::uint8_t* raw = static_cast<std::uint8_t*>(sodium_malloc(DataKey::kSize));
  if (raw == nullptr) throw std::runtime_error("cannot allocate protected key memory");
  std::size_t len = 0;
  const int rc =
      sodium_hex2bin(raw, DataKey::kSize, hex.data(), hex.size(), nullptr, &len, nullptr);
  if (rc != 0 || len != DataKey::kSize || hex.size() != DataKey::kSize * 2) {
    sodium_free(raw);
    throw std::runtime_error("master key must be 64 hexadecimal digits (32 bytes) per version");
  }
  auto key = DataKey::FromBytes(version, std::span<const std::uint8_t>(raw, DataKey::kSize));
  sodium_free(raw);
  return key;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

// Parses "<version> <hex>" entries separated by newlines (or commas).
KeyRing ParseKeyText(std::string& text) {
  KeyRing ring;
  std::size_t start = 0;
  int entries = 0;
  while (start <= text.size()) {
    std::size_t end = text.find_first_of("\n,", start);
    if (end == std::string::npos) end = text.size();
    const std::string_view entry = Trim(std::string_view(text).substr(start, end - start));
    start = end + 1;
    if (entry.empty()) continue;
    std::uint32_t version = 1;
    std::string_view hex = entry;
    if (const std::size_t space = entry.find(' '); space != std::string_view::npos) {
      const std::string_view v = entry.substr(0, space);
      const auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), version);
      if (ec != std::errc() || ptr != v.data() + v.size() || version == 0) {
        throw std::runtime_error("master key entries must read \"<version> <hex>\"");
      }
      hex = Trim(entry.substr(space + 1));
    }
    if (ring.Find(version) != nullptr) {
      throw std::runtime_error("master key version listed twice");
    }
    ring.Add(ParseHexKey(version, hex));
    ++entries;
  }
  if (entries == 0) throw std::runtime_error("the master key is empty");
  return ring;
}

std::string ReadKeyFile(const std::string& path) {
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
  std::string text(kMaxFileBytes, '\0');
  std::size_t used = 0;
  while (used < text.size()) {
    const ssize_t n = ::read(fd, text.data() + used, text.size() - used);
    if (n < 0) {
      ::close(fd);
      throw std::runtime_error("cannot read the master key file");
    }
    if (n == 0) break;
    used += static_cast<std::size_t>(n);
  }
  ::close(fd);
  text.resize(used);
  return text;
}

std::string RandomKeyLine(std::uint32_t version) {
  std::uint8_t raw[DataKey::kSize];
  randombytes_buf(raw, sizeof raw);
  char hex[DataKey::kSize * 2 + 1];
  sodium_bin2hex(hex, sizeof hex, raw, sizeof raw);
  sodium_memzero(raw, sizeof raw);
  std::string line = std::to_string(version);
  line.append(" ").append(hex).append("\n");
  sodium_memzero(hex, sizeof hex);
  return line;
}

bool WriteAllAndSync(int fd, const std::string& text) {
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n <= 0) return false;
    done += static_cast<std::size_t>(n);
  }
  return ::fsync(fd) == 0;
}

void SyncDirectoryOf(const std::string& path) {
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  const std::string dir = parent.empty() ? std::string(".") : parent.string();
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("cannot open the master key file's directory");
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) throw std::runtime_error("cannot sync the master key file's directory");
}

// Replaces the key file with `text` so that a crash leaves the old file or
// the new one, whole.
void ReplaceKeyFile(const std::string& path, SecretText& text) {
  const std::string temp = path + ".new";
  ::unlink(temp.c_str());  // a leftover from an interrupted rotation
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) throw std::runtime_error("cannot create the new master key file");
  const bool ok = WriteAllAndSync(fd, text.str());
  ::close(fd);
  if (!ok || ::rename(temp.c_str(), path.c_str()) != 0) {
    ::unlink(temp.c_str());
    throw std::runtime_error("cannot write the new master key file");
  }
  SyncDirectoryOf(path);
}

std::string VersionText(std::uint32_t version) { return std::to_string(version); }

}  // namespace

LocalKeyEncryptionKey::LocalKeyEncryptionKey(KeyRing ring, std::string path)
    : path_(std::move(path)), ring_(std::make_shared<const KeyRing>(std::move(ring))) {}

std::shared_ptr<const KeyRing> LocalKeyEncryptionKey::Ring() const {
  std::lock_guard lock(mu_);
  return ring_;
}

std::uint32_t LocalKeyEncryptionKey::version() const { return Ring()->Current()->version(); }

Bytes LocalKeyEncryptionKey::Wrap(const WrapLabel& label, const DataKey& key) const {
  const std::string version = VersionText(label.version);
  return Seal(*Ring()->Current(), SealContext{label.owner, kWrapTable, label.purpose, version},
              key.bytes());
}

Result<std::shared_ptr<const DataKey>> LocalKeyEncryptionKey::Unwrap(
    const WrapLabel& label, std::span<const std::uint8_t> wrapped) const {
  const std::string version = VersionText(label.version);
  const SealContext context{label.owner, kWrapTable, label.purpose, version};
  auto raw = Open(*Ring(), context, wrapped);
  if (!raw && raw.error() == Error::kUnknownKeyVersion && !path_.empty()) {
    try {
      SecretText text(ReadKeyFile(path_));
      auto fresh = std::make_shared<const KeyRing>(ParseKeyText(text.str()));
      {
        std::lock_guard lock(mu_);
        ring_ = fresh;
      }
      raw = Open(*fresh, context, wrapped);
    } catch (const std::exception&) {
      // The file is unreadable now; the wrapping stays unopened.
    }
  }
  if (!raw) return raw.error();
  if (raw->size() != DataKey::kSize) {
    sodium_memzero(raw->data(), raw->size());
    return Error::kMalformed;
  }
  auto key = DataKey::FromBytes(label.version, *raw);
  sodium_memzero(raw->data(), raw->size());
  return key;
}

void CreateMasterKeyFile(const std::string& path) {
  EnsureInitialized();
  SecretText text(RandomKeyLine(1));
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    throw std::runtime_error("cannot create the master key file (does it exist already?)");
  }
  const bool ok = WriteAllAndSync(fd, text.str());
  ::close(fd);
  if (!ok) {
    ::unlink(path.c_str());
    throw std::runtime_error("cannot write the master key file");
  }
  SyncDirectoryOf(path);
}

std::uint32_t AddMasterKeyVersion(const std::string& path) {
  EnsureInitialized();
  SecretText text(ReadKeyFile(path));
  const KeyRing ring = ParseKeyText(text.str());
  const std::uint32_t next = ring.Current()->version() + 1;
  if (!text.str().empty() && text.str().back() != '\n') text.str() += '\n';
  SecretText line(RandomKeyLine(next));
  text.str() += line.str();
  ReplaceKeyFile(path, text);
  return next;
}

void KeepOnlyMasterKeyVersion(const std::string& path, std::uint32_t version) {
  EnsureInitialized();
  SecretText text(ReadKeyFile(path));
  const KeyRing ring = ParseKeyText(text.str());
  const DataKey* key = ring.Find(version);
  if (key == nullptr) throw std::runtime_error("the master key file lacks that version");
  char hex[DataKey::kSize * 2 + 1];
  sodium_bin2hex(hex, sizeof hex, key->bytes().data(), key->bytes().size());
  SecretText kept(VersionText(version));
  kept.str().append(" ").append(hex).append("\n");
  sodium_memzero(hex, sizeof hex);
  ReplaceKeyFile(path, kept);
}

std::unique_ptr<KeyEncryptionKey> LoadMasterKey(
    const std::string& path, const std::optional<std::string>& environment_value) {
  EnsureInitialized();
  if (environment_value) {
    SecretText text(*environment_value);
    return std::make_unique<LocalKeyEncryptionKey>(ParseKeyText(text.str()));
  }
  SecretText text(ReadKeyFile(path));
  return std::make_unique<LocalKeyEncryptionKey>(ParseKeyText(text.str()), path);
}

}  // namespace cw::crypto
