#include "audit/checkpoint.hpp"

#include <fcntl.h>
#include <sodium.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <utility>

#include "audit/timestamp.hpp"
#include "core/log.hpp"
#include "core/time.hpp"
#include "crypto/seal.hpp"

namespace cw::audit {
namespace {

constexpr std::string_view kCheckpointTag = "carewire-audit-checkpoint-v1";

// A checkpoint line is about 240 bytes; the tail read starts with this much
// and doubles until it holds the whole last line.
constexpr std::size_t kTailChunk = 4096;
// Far above a real line; a longer one is damage, not a checkpoint.
constexpr std::size_t kMaxLineSize = 1024;
constexpr std::size_t kMaxTimeSize = 64;

ErrorCode Err(Error e) { return make_error_code(e); }

void AppendBigEndian(std::vector<std::uint8_t>& out, std::uint64_t value, int bytes) {
  for (int shift = 8 * (bytes - 1); shift >= 0; shift -= 8) {
    out.push_back(static_cast<std::uint8_t>(value >> shift));
  }
}

void AppendItem(std::vector<std::uint8_t>& out, std::string_view item) {
  AppendBigEndian(out, item.size(), 4);
  out.insert(out.end(), item.begin(), item.end());
}

template <std::size_t N>
std::string Hex(const std::array<std::uint8_t, N>& bytes) {
  char hex[2 * N + 1];
  sodium_bin2hex(hex, sizeof hex, bytes.data(), N);
  return std::string(hex, 2 * N);
}

template <std::size_t N>
bool FromHex(std::string_view hex, std::array<std::uint8_t, N>* out) {
  if (hex.size() != 2 * N) return false;
  std::size_t length = 0;
  const char* end = nullptr;
  return sodium_hex2bin(out->data(), N, hex.data(), hex.size(), nullptr, &length, &end) == 0 &&
         length == N && end == hex.data() + hex.size();
}

// An open checkpoint file, closed on destruction (which also drops a flock).
class File {
 public:
  File() = default;
  explicit File(int fd) : fd_(fd) {}
  ~File() {
    if (fd_ >= 0) ::close(fd_);
  }
  File(File&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  File& operator=(File&&) = delete;

  int fd() const { return fd_; }

 private:
  int fd_ = -1;
};

Status SyncDirectoryOf(const std::string& path) {
  std::filesystem::path dir = std::filesystem::path(path).parent_path();
  if (dir.empty()) dir = ".";
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Err(Error::kCheckpointIo);
  const bool synced = ::fsync(fd) == 0;
  ::close(fd);
  if (!synced) return Err(Error::kCheckpointIo);
  return Ok();
}

// Opens the file for appending under an exclusive lock, creating it 0600.
// A new file's directory entry is synced before anything is written to it,
// so a line reported durable is never in a file that vanishes on power loss.
Result<File> OpenLockedForAppend(const std::string& path) {
  bool created = true;
  int fd = ::open(path.c_str(), O_RDWR | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0 && errno == EEXIST) {
    created = false;
    fd = ::open(path.c_str(), O_RDWR | O_APPEND | O_CLOEXEC);
  }
  if (fd < 0) return Err(Error::kCheckpointIo);
  File file(fd);
  int rc;
  while ((rc = ::flock(fd, LOCK_EX)) != 0 && errno == EINTR) {
  }
  if (rc != 0) return Err(Error::kCheckpointIo);
  if (created) {
    if (Status s = SyncDirectoryOf(path); !s) return s.error();
  }
  return file;
}

Result<File> OpenForReading(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return Err(errno == ENOENT ? Error::kCheckpointFileMissing : Error::kCheckpointIo);
  }
  return File(fd);
}

bool ReadAt(int fd, char* out, std::size_t size, off_t offset) {
  while (size > 0) {
    const ssize_t n = ::pread(fd, out, size, offset);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    out += n;
    size -= static_cast<std::size_t>(n);
    offset += n;
  }
  return true;
}

// The last line of the open file, read from its end.
Result<std::optional<Checkpoint>> ReadLast(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return Err(Error::kCheckpointIo);
  const auto size = static_cast<std::size_t>(st.st_size);
  if (size == 0) return std::optional<Checkpoint>();

  std::string tail;
  for (std::size_t chunk = kTailChunk;; chunk *= 2) {
    const std::size_t length = std::min(chunk, size);
    tail.resize(length);
    if (!ReadAt(fd, tail.data(), length, static_cast<off_t>(size - length))) {
      return Err(Error::kCheckpointIo);
    }
    // A last line without its newline is a torn append.
    const std::size_t end = tail.size() - 1;
    if (tail[end] != '\n') return Err(Error::kCheckpointMalformed);
    const std::size_t start = end == 0 ? std::string::npos : tail.find_last_of('\n', end - 1);
    if (start != std::string::npos || length == size) {
      const std::size_t begin = start == std::string::npos ? 0 : start + 1;
      auto checkpoint = ParseCheckpointLine(std::string_view(tail).substr(begin, end - begin));
      if (!checkpoint) return Err(Error::kCheckpointMalformed);
      return std::optional<Checkpoint>(std::move(*checkpoint));
    }
    if (length > kMaxLineSize) return Err(Error::kCheckpointMalformed);
  }
}

Status WriteLine(int fd, const Checkpoint& checkpoint) {
  const std::string line = FormatCheckpointLine(checkpoint) + "\n";
  const char* data = line.data();
  std::size_t left = line.size();
  while (left > 0) {
    const ssize_t n = ::write(fd, data, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Err(Error::kCheckpointIo);
    data += n;
    left -= static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) return Err(Error::kCheckpointIo);
  return Ok();
}

}  // namespace

SigningKey::SigningKey()
    : secret_(static_cast<std::uint8_t*>(sodium_malloc(crypto_sign_SECRETKEYBYTES))) {
  if (secret_ == nullptr) {
    // Out of locked memory: carrying on would mean holding the key where it
    // can be swapped out.
    std::fputs("fatal: cannot allocate protected memory for the audit signing key\n", stderr);
    std::abort();
  }
}

SigningKey::~SigningKey() { sodium_free(secret_); }

std::unique_ptr<SigningKey> SigningKey::FromSeed(std::span<const std::uint8_t> seed) {
  static_assert(kSeedSize == crypto_sign_SEEDBYTES);
  static_assert(std::tuple_size_v<PublicKey> == crypto_sign_PUBLICKEYBYTES);
  if (seed.size() != kSeedSize) throw std::invalid_argument("audit signing seed must be 32 bytes");
  crypto::EnsureInitialized();
  std::unique_ptr<SigningKey> key(new SigningKey());
  crypto_sign_seed_keypair(key->public_key_.data(), key->secret_, seed.data());
  sodium_mprotect_readonly(key->secret_);
  return key;
}

Signature SigningKey::SignDetached(std::span<const std::uint8_t> message) const {
  static_assert(std::tuple_size_v<Signature> == crypto_sign_BYTES);
  Signature signature;
  crypto_sign_detached(signature.data(), nullptr, message.data(), message.size(), secret_);
  return signature;
}

std::vector<std::uint8_t> CheckpointMessage(std::int64_t seq, const Hash& hash,
                                            std::string_view time) {
  std::vector<std::uint8_t> message;
  message.reserve(4 + kCheckpointTag.size() + 8 + hash.size() + 4 + time.size());
  AppendItem(message, kCheckpointTag);
  AppendBigEndian(message, static_cast<std::uint64_t>(seq), 8);
  message.insert(message.end(), hash.begin(), hash.end());
  AppendItem(message, time);
  return message;
}

Checkpoint Sign(const SigningKey& key, std::int64_t seq, const Hash& hash, std::string time) {
  Checkpoint checkpoint;
  checkpoint.seq = seq;
  checkpoint.hash = hash;
  checkpoint.signature = key.SignDetached(CheckpointMessage(seq, hash, time));
  checkpoint.time = std::move(time);
  return checkpoint;
}

bool VerifySignature(std::span<const std::uint8_t, 32> public_key, const Checkpoint& checkpoint) {
  crypto::EnsureInitialized();
  const auto message = CheckpointMessage(checkpoint.seq, checkpoint.hash, checkpoint.time);
  return crypto_sign_verify_detached(checkpoint.signature.data(), message.data(), message.size(),
                                     public_key.data()) == 0;
}

std::string FormatCheckpointLine(const Checkpoint& checkpoint) {
  boost::json::object line;
  line["seq"] = checkpoint.seq;
  line["hash"] = Hex(checkpoint.hash);
  line["time"] = checkpoint.time;
  line["signature"] = Hex(checkpoint.signature);
  return boost::json::serialize(line);
}

std::optional<Checkpoint> ParseCheckpointLine(std::string_view line) {
  if (line.size() > kMaxLineSize) return std::nullopt;
  boost::system::error_code ec;
  const boost::json::value parsed = boost::json::parse(line, ec);
  if (ec || !parsed.is_object()) return std::nullopt;
  const boost::json::object& object = parsed.get_object();
  if (object.size() != 4) return std::nullopt;
  const auto* seq = object.if_contains("seq");
  const auto* hash = object.if_contains("hash");
  const auto* time = object.if_contains("time");
  const auto* signature = object.if_contains("signature");
  if (seq == nullptr || !seq->is_int64() || seq->get_int64() < 1 || hash == nullptr ||
      !hash->is_string() || time == nullptr || !time->is_string() || signature == nullptr ||
      !signature->is_string()) {
    return std::nullopt;
  }
  Checkpoint checkpoint;
  checkpoint.seq = seq->get_int64();
  const std::string_view time_text = time->get_string();
  if (time_text.size() > kMaxTimeSize || !ParseRfc3339(time_text)) return std::nullopt;
  checkpoint.time = time_text;
  if (!FromHex(hash->get_string(), &checkpoint.hash) ||
      !FromHex(signature->get_string(), &checkpoint.signature)) {
    return std::nullopt;
  }
  return checkpoint;
}

Status AppendCheckpoint(const std::string& path, const Checkpoint& checkpoint) {
  auto file = OpenLockedForAppend(path);
  if (!file) return file.error();
  auto last = ReadLast(file->fd());
  if (!last) return last.error();
  if (*last && checkpoint.seq <= (*last)->seq) return Err(Error::kCheckpointStale);
  return WriteLine(file->fd(), checkpoint);
}

Result<std::vector<Checkpoint>> ReadCheckpoints(const std::string& path, std::int64_t* bad_line) {
  auto file = OpenForReading(path);
  if (!file) return file.error();
  std::vector<Checkpoint> checkpoints;
  std::string pending;  // the line read so far
  std::int64_t line_number = 0;
  char buffer[16384];
  for (;;) {
    const ssize_t n = ::read(file->fd(), buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Err(Error::kCheckpointIo);
    if (n == 0) break;
    std::string_view chunk(buffer, static_cast<std::size_t>(n));
    for (;;) {
      const std::size_t newline = chunk.find('\n');
      if (newline == std::string_view::npos) {
        pending.append(chunk);
        // Guards memory against a huge file without newlines.
        if (pending.size() > kMaxLineSize) {
          if (bad_line != nullptr) *bad_line = line_number + 1;
          return Err(Error::kCheckpointMalformed);
        }
        break;
      }
      pending.append(chunk.substr(0, newline));
      chunk.remove_prefix(newline + 1);
      ++line_number;
      auto checkpoint = ParseCheckpointLine(pending);
      if (!checkpoint) {
        if (bad_line != nullptr) *bad_line = line_number;
        return Err(Error::kCheckpointMalformed);
      }
      checkpoints.push_back(std::move(*checkpoint));
      pending.clear();
    }
  }
  if (!pending.empty()) {
    if (bad_line != nullptr) *bad_line = line_number + 1;
    return Err(Error::kCheckpointMalformed);
  }
  return checkpoints;
}

Result<std::optional<Checkpoint>> ReadLastCheckpoint(const std::string& path) {
  auto file = OpenForReading(path);
  if (!file) return file.error();
  return ReadLast(file->fd());
}

Result<std::optional<Checkpoint>> WriteCheckpointNow(storage::Database& db, const SigningKey& key,
                                                     const std::string& path) {
  // The lock is taken before the log is read: the log only grows, so of two
  // processes racing here the second to get the lock sees a seq at least as
  // high as the first wrote, and the file's seqs keep rising.
  auto file = OpenLockedForAppend(path);
  if (!file) return file.error();
  auto last_checkpoint = ReadLast(file->fd());
  if (!last_checkpoint) return last_checkpoint.error();

  std::optional<StoredEvent> newest;
  std::optional<StoredEvent> at_checkpoint;
  Status read = db.Read([&](storage::Transaction& txn) -> Status {
    auto last = Last(txn);
    if (!last) return last.error();
    newest = std::move(*last);
    if (*last_checkpoint) {
      auto found = Find(txn, (*last_checkpoint)->seq);
      if (!found) return found.error();
      at_checkpoint = std::move(*found);
    }
    return Ok();
  });
  if (!read) return read.error();

  if (*last_checkpoint) {
    if (!at_checkpoint) return Err(Error::kCheckpointAhead);
    if (at_checkpoint->hash != (*last_checkpoint)->hash) return Err(Error::kCheckpointMismatch);
    if (newest->seq == (*last_checkpoint)->seq) return std::optional<Checkpoint>();
  }
  if (!newest) return std::optional<Checkpoint>();

  Checkpoint checkpoint = Sign(key, newest->seq, newest->hash, core::NowRfc3339());
  if (Status s = WriteLine(file->fd(), checkpoint); !s) return s.error();
  return std::optional<Checkpoint>(std::move(checkpoint));
}

Checkpointer::Checkpointer(storage::Database& db, const SigningKey& key, std::string path,
                           CheckpointerOptions options)
    : db_(db),
      key_(key),
      path_(std::move(path)),
      options_(options),
      last_write_(std::chrono::steady_clock::now()) {
  // Last, so the thread sees every member initialized.
  thread_ = std::thread([this] { Run(); });
}

Checkpointer::~Checkpointer() { Stop(); }

void Checkpointer::Stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (!thread_.joinable()) return;
  thread_.join();
  MaybeWrite(/*final=*/true);
}

std::int64_t Checkpointer::written() const {
  std::lock_guard lock(mutex_);
  return written_;
}

void Checkpointer::Run() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    if (wake_.wait_for(lock, options_.poll, [this] { return stopping_; })) break;
    lock.unlock();
    MaybeWrite(/*final=*/false);
    lock.lock();
  }
}

void Checkpointer::MaybeWrite(bool final) {
  auto log_failure = [](SafeText event, const ErrorCode& error) {
    // Category messages are fixed text, so they may go into a log line.
    const std::string message = error.message();
    log::Error(event, {{log::Key::kError, SafeText::Trusted(message)}});
  };

  std::optional<std::int64_t> newest;
  Status read = db_.Read([&newest](storage::Transaction& txn) -> Status {
    auto row = txn.QueryOne("SELECT max(seq) FROM audit_events");
    if (!row) return row.error();
    if (*row && !(*row)->IsNull(0)) newest = (*row)->Int(0);
    return Ok();
  });
  if (!read) {
    log_failure("audit.checkpoint_failed", read.error());
    return;
  }
  if (!newest || *newest <= checkpointed_seq_) return;

  // Re-read the file's last checkpoint: the command line may have written
  // one since.
  auto last = ReadLastCheckpoint(path_);
  if (last) {
    checkpointed_seq_ = *last ? (*last)->seq : 0;
  } else if (last.error() == Error::kCheckpointFileMissing) {
    checkpointed_seq_ = 0;
  } else {
    log_failure("audit.checkpoint_failed", last.error());
    return;
  }
  if (*newest <= checkpointed_seq_) return;

  const auto now = std::chrono::steady_clock::now();
  const bool due = final || *newest - checkpointed_seq_ >= options_.every_events ||
                   now - last_write_ >= options_.interval;
  if (!due) return;

  auto written = WriteCheckpointNow(db_, key_, path_);
  if (!written) {
    log_failure("audit.checkpoint_failed", written.error());
    return;
  }
  if (!*written) return;
  checkpointed_seq_ = (*written)->seq;
  last_write_ = now;
  {
    std::lock_guard lock(mutex_);
    ++written_;
  }
  log::Debug("audit.checkpoint_written", {{log::Key::kSequence, (*written)->seq}});
}

}  // namespace cw::audit
