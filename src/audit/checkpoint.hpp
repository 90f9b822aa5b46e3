#pragma once

// Signed checkpoints of the audit log, kept in a file outside the database.
//
// The hash chain shows that no row was changed relative to the rows before
// it, but someone who can write the database can delete the newest rows, or
// edit a row and recompute every hash after it. A checkpoint is the chain's
// (seq, hash) at some moment, signed with the deployment's Ed25519 key and
// appended to a file kept apart from the database (ideally on other storage,
// shipped off the machine). Any rewrite at or before a checkpoint's seq, and
// any truncation below it, then disagrees with the checkpoint. What happens
// after the newest checkpoint is covered only by the chain.
//
// Signed message, so a verifier can be written from this comment:
//
//   4-byte big-endian length, "carewire-audit-checkpoint-v1",
//   seq as 8 bytes big-endian, the 32-byte hash,
//   4-byte big-endian length, time (RFC 3339 text)
//
// The file holds one JSON object per line, oldest first:
//
//   {"seq":N,"hash":"<64 hex>","time":"<RFC 3339>","signature":"<128 hex>"}

#include <array>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "audit/audit_log.hpp"
#include "audit/error.hpp"
#include "core/result.hpp"
#include "storage/database.hpp"

namespace cw::audit {

using PublicKey = std::array<std::uint8_t, 32>;
using Signature = std::array<std::uint8_t, 64>;

struct Checkpoint {
  std::int64_t seq = 0;
  Hash hash{};
  std::string time;  // when the checkpoint was made, RFC 3339
  Signature signature{};

  friend bool operator==(const Checkpoint&, const Checkpoint&) = default;
};

// The deployment's audit signing key. The secret key lives in memory that
// libsodium locks (no swap), guards and wipes on destruction, and that is
// read-only after construction. Thread-safe: signing only reads it.
class SigningKey {
 public:
  static constexpr std::size_t kSeedSize = 32;

  // The key pair derived from a 32-byte seed (the secret the deployment
  // stores wrapped). A seed of another size is a bug: throws
  // std::invalid_argument.
  static std::unique_ptr<SigningKey> FromSeed(std::span<const std::uint8_t> seed);

  ~SigningKey();
  SigningKey(const SigningKey&) = delete;
  SigningKey& operator=(const SigningKey&) = delete;

  const PublicKey& public_key() const { return public_key_; }

  Signature SignDetached(std::span<const std::uint8_t> message) const;

 private:
  SigningKey();
  std::uint8_t* secret_;  // sodium_malloc'd, crypto_sign_SECRETKEYBYTES
  PublicKey public_key_{};
};

// The signed message for (seq, hash, time); see the top of this file.
std::vector<std::uint8_t> CheckpointMessage(std::int64_t seq, const Hash& hash,
                                            std::string_view time);

Checkpoint Sign(const SigningKey& key, std::int64_t seq, const Hash& hash, std::string time);

bool VerifySignature(std::span<const std::uint8_t, 32> public_key, const Checkpoint& checkpoint);

// One line of the checkpoint file, without the newline.
std::string FormatCheckpointLine(const Checkpoint& checkpoint);

// Parses one line (without its newline); nullopt when it is not exactly a
// checkpoint object (extra or missing keys, wrong types, bad hex).
std::optional<Checkpoint> ParseCheckpointLine(std::string_view line);

// Appends `checkpoint` as one line to the file at `path`, creating it owner
// only (0600) when absent, and returns once the line, and for a new file its
// directory entry, are on disk (fsync).
//
// Holds an exclusive flock on the file while it checks and writes, so the
// server and the command line appending at once cannot interleave, and
// refuses (kCheckpointStale) a checkpoint whose seq is not above the file's
// last. kCheckpointMalformed when the file's last line does not parse: a
// file that is already damaged is not appended to.
Status AppendCheckpoint(const std::string& path, const Checkpoint& checkpoint);

// Every checkpoint in the file, oldest first. kCheckpointFileMissing when the
// file does not exist (an empty file gives an empty list);
// kCheckpointMalformed when a line does not parse, its 1-based number then
// stored in *bad_line when given. A last line without its newline (a crash
// during an append) is malformed too.
Result<std::vector<Checkpoint>> ReadCheckpoints(const std::string& path,
                                                std::int64_t* bad_line = nullptr);

// The file's last checkpoint, or nullopt for an empty file, reading only the
// end of the file. Errors as ReadCheckpoints (no line number).
Result<std::optional<Checkpoint>> ReadLastCheckpoint(const std::string& path);

// Signs the log's newest event and appends it to the checkpoint file, unless
// the file's last checkpoint already covers it (then nullopt). Before signing
// it checks that the log still holds the file's last checkpoint: fails with
// kCheckpointAhead when the log ends before that seq (truncated, or restored
// from an older backup) and kCheckpointMismatch when the hash there differs
// (rewritten), so a rewritten log is never signed over. The file is created
// (empty) when absent, even when the log is empty.
//
// Used by the command line after `carewire init` and by Checkpointer. Safe
// against other processes doing the same (see AppendCheckpoint).
Result<std::optional<Checkpoint>> WriteCheckpointNow(storage::Database& db, const SigningKey& key,
                                                     const std::string& path);

struct CheckpointerOptions {
  // How often the log's newest seq is looked at.
  std::chrono::milliseconds poll{1000};
  // Write once this many events were appended since the last checkpoint...
  std::int64_t every_events = 1000;
  // ...or once this long has passed since the last one and there are new
  // events, so a quiet deployment's tail is not left unsigned for long.
  std::chrono::milliseconds interval{60'000};
};

// Writes checkpoints for the running server on a thread of its own.
//
// Every `poll` it reads the newest seq (one indexed read) and calls
// WriteCheckpointNow when a threshold of CheckpointerOptions is met. Failures
// are logged and retried at the next poll; they never stop the server from
// serving (a verifier will report the gap they leave). Stop(), also run by
// the destructor, ends the thread and writes a final checkpoint when there
// are events since the last, so a graceful shutdown leaves the tail signed.
//
// `db` and `key` must outlive the Checkpointer; Stop() must run before the
// database is closed.
class Checkpointer {
 public:
  Checkpointer(storage::Database& db, const SigningKey& key, std::string path,
               CheckpointerOptions options = {});
  ~Checkpointer();
  Checkpointer(const Checkpointer&) = delete;
  Checkpointer& operator=(const Checkpointer&) = delete;

  // Idempotent. Not from two threads at once.
  void Stop();

  // Checkpoints written by this object, the final one included.
  std::int64_t written() const;

 private:
  void Run();
  // Writes a checkpoint when due (or always with `final`); logs failures.
  void MaybeWrite(bool final);

  storage::Database& db_;
  const SigningKey& key_;
  const std::string path_;
  const CheckpointerOptions options_;

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;     // GUARDED_BY(mutex_)
  std::int64_t written_ = 0;  // GUARDED_BY(mutex_)

  // The checkpointer thread's own state (and Stop's, after the join).
  std::int64_t checkpointed_seq_ = -1;  // -1: not read from the file yet
  std::chrono::steady_clock::time_point last_write_;

  std::thread thread_;
};

}  // namespace cw::audit
