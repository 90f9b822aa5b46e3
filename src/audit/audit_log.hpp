#pragma once

// The audit log: one append-only, hash-chained sequence of events for the
// whole deployment, in the table audit_events (storage migration 2).
//
// An event says who did what to which record, when, from where and with what
// outcome. It never holds message content, a secret or free text typed by a
// user: `details` carries a few non-secret facts chosen by the code.
//
// Each row carries
//
//   hash = SHA-256(previous hash || canonical form of the row)
//
// where the first row's previous hash is 32 zero bytes and the canonical form
// is, each item as a 4-byte big-endian length followed by its bytes:
//
//   "carewire-audit-v1", seq as decimal text, occurred_at, org_id,
//   actor_type, actor_id, action, target_type, target_id, patient_id,
//   outcome, source_address, request_id, details
//
// A NULL column is encoded as the empty string (length 0). Empty strings are
// never stored (they are stored as NULL), so the encoding is unambiguous.
// Editing, reordering, inserting or deleting a row breaks the chain from that
// row on; rewriting the whole chain after an edit is caught by the signed
// checkpoints (checkpoint.hpp) that cover it.
//
// Appends run inside the caller's write transaction, so an event commits or
// rolls back with the change it records. All functions here are thread-safe
// in the sense that they keep no state: each works on the Transaction or
// Database it is given.

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "audit/error.hpp"
#include "core/result.hpp"
#include "storage/database.hpp"

namespace cw::audit {

using Hash = std::array<std::uint8_t, 32>;

// Stored as "user", "device", "patient", "system".
enum class ActorType { kUser, kDevice, kPatient, kSystem };

// Stored as "success", "failure", "denied".
enum class Outcome { kSuccess, kFailure, kDenied };

std::string_view ToString(ActorType actor_type);
std::string_view ToString(Outcome outcome);
std::optional<ActorType> ParseActorType(std::string_view text);
std::optional<Outcome> ParseOutcome(std::string_view text);

// Limits on an event's fields, in bytes. An event is made by server code from
// ids and fixed names, so these are far above anything legitimate; they keep
// a bug from filling the log with megabytes.
inline constexpr std::size_t kMaxActionSize = 64;
inline constexpr std::size_t kMaxFieldSize = 256;
inline constexpr std::size_t kMaxDetailsSize = 4096;

// One event to append. Empty strings are stored as NULL and read back empty.
//
// `action` is required: 1 to kMaxActionSize bytes of [a-z0-9_.], such as
// "auth.login" or "message.read". Every other field is optional, at most
// kMaxFieldSize bytes of valid UTF-8 without control characters. `details`
// is empty or the text of a JSON object (at most kMaxDetailsSize bytes, same
// character rules) of non-secret facts; a key naming a password, passphrase,
// secret, token, body or content, at any depth, is refused outright.
struct Event {
  std::string org_id;
  ActorType actor_type = ActorType::kSystem;
  std::string actor_id;
  std::string action;
  std::string target_type;
  std::string target_id;
  std::string patient_id;
  Outcome outcome = Outcome::kSuccess;
  std::string source_address;
  std::string request_id;
  std::string details;

  friend bool operator==(const Event&, const Event&) = default;
};

struct StoredEvent {
  std::int64_t seq = 0;
  std::string occurred_at;  // the stored form, see timestamp.hpp
  Event event;
  Hash hash{};
};

// The chain hash of one row; see the top of this file.
Hash ChainHash(const Hash& previous, std::int64_t seq, std::string_view occurred_at,
               const Event& event);

// Checks an event against the rules on Event, and `occurred_at` against the
// stored time form (core::FormatRfc3339's output). kInvalidEvent when broken.
Status ValidateEvent(const Event& event, std::string_view occurred_at);

// Appends `event` as the next row and returns its seq (1 for the first).
//
// Runs inside the caller's write transaction: the event is durable exactly
// when the caller's change is. The last row is read from the database each
// time rather than from a cache in this process, because another process
// (the `carewire` command line) may append between two of the server's
// writes; SQLite's BEGIN IMMEDIATE serializes the two writers.
//
// `occurred_at` must be in the stored form (pass core::NowRfc3339()).
// Fails with kInvalidEvent when the event breaks the rules on Event (a bug in
// the caller: the caller's work should fail, undoing its change), with
// kCorruptEvent when the last row's hash is unreadable, or with a storage
// error.
Result<std::int64_t> Append(storage::Transaction& txn, const Event& event,
                            std::string_view occurred_at);

// Append for callers that do not need the seq: its outcome alone, so a write
// work can end with `return audit::Record(tx, event, now);`.
Status Record(storage::Transaction& txn, const Event& event, std::string_view occurred_at);

// The newest event, or nullopt when the log is empty.
Result<std::optional<StoredEvent>> Last(storage::Transaction& txn);

// The event with sequence number `seq`, or nullopt.
Result<std::optional<StoredEvent>> Find(storage::Transaction& txn, std::int64_t seq);

// Selects events. Empty strings and zero numbers mean "no condition"; the
// string conditions are equality. `from` (inclusive) and `to` (exclusive)
// are RFC 3339 date-times or dates, normalized to the stored form (see
// timestamp.hpp) before comparing.
struct Filter {
  std::string org_id;
  std::string actor_id;
  std::string action;
  std::string target_id;
  std::string patient_id;
  std::string from;
  std::string to;
  std::int64_t after_seq = 0;   // only seq > after_seq: the cursor for oldest-first pages
  std::int64_t before_seq = 0;  // only seq < before_seq: the cursor for newest-first pages
  int limit = 100;              // Query: 1 to kMaxQueryLimit rows. ForEach ignores it.
  bool newest_first = false;    // Query only; ForEach always goes oldest first
};

// A page is held in memory whole; this bounds it.
inline constexpr int kMaxQueryLimit = 1000;

// One page of events in seq order (descending when newest_first). Pass the
// last seq of a page as after_seq (or before_seq, newest first) for the next.
// kInvalidFilter for a limit out of range, a negative cursor or a time that
// does not parse.
//
// Cost: the rows are walked in seq order from the cursor until `limit` match,
// so a page costs in proportion to the rows skipped: little for a common
// organization or action, a pass over the log for a patient or target with
// few events (no index covers those columns). A time bound adds one pass over
// the time index entries on its side of the bound (see ScanForFilter).
Result<std::vector<StoredEvent>> Query(storage::Transaction& txn, const Filter& filter);

// Calls `fn` for every event matching `filter` (limit and newest_first are
// ignored), oldest first, stopping at the first error `fn` returns.
//
// Memory stays constant however long the log: events are read in pages of a
// thousand, each page in its own short read transaction, and `fn` is called
// outside any transaction, so a slow consumer (an export to a network
// stream) never holds a database snapshot or a reader connection. Events
// appended while it runs are included until it catches up with the end.
Status ForEach(storage::Database& db, const Filter& filter,
               const std::function<Status(const StoredEvent&)>& fn);

// The hash as 64 lowercase hex digits.
std::string HexHash(const Hash& hash);

}  // namespace cw::audit
