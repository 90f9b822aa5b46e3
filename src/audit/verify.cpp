#include "audit/verify.hpp"

#include <algorithm>
#include <limits>
#include <optional>
#include <string_view>

#include "audit/event_rows.hpp"
#include "crypto/seal.hpp"

namespace cw::audit {
namespace {

// Rows per read transaction. Verification runs inside the transaction (it is
// only hashing), so the page size bounds how long a snapshot is held, not
// memory; larger pages save a little per-page overhead.
constexpr int kVerifyPageRows = 4096;

constexpr std::int64_t kNone = std::numeric_limits<std::int64_t>::max();

// The earliest problem seen so far.
struct FirstProblem {
  std::int64_t seq = kNone;
  std::string_view what;

  void Note(std::int64_t at, std::string_view problem) {
    if (at < seq) {
      seq = at;
      what = problem;
    }
  }
};

Result<std::optional<std::int64_t>> MaxSeq(storage::Database& db) {
  std::optional<std::int64_t> max;
  Status read = db.Read([&max](storage::Transaction& txn) -> Status {
    auto row = txn.QueryOne("SELECT max(seq) FROM audit_events");
    if (!row) return row.error();
    if (*row && !(*row)->IsNull(0)) max = (*row)->Int(0);
    return Ok();
  });
  if (!read) return read.error();
  return max;
}

}  // namespace

Result<VerifyReport> Verify(storage::Database& db, const VerifyOptions& options) {
  crypto::EnsureInitialized();
  VerifyReport report;
  FirstProblem first;

  // Checkpoint problems that need no rows, in file order. Checkpoints with a
  // bad signature are not trusted for anything else.
  std::vector<const Checkpoint*> trusted;
  const Checkpoint* start = nullptr;
  std::int64_t previous_seq = 0;
  bool any_checkpoint = false;
  for (const Checkpoint& checkpoint : options.checkpoints) {
    if (checkpoint.seq < options.from_seq) continue;
    if (any_checkpoint && checkpoint.seq <= previous_seq) {
      first.Note(checkpoint.seq, "checkpoints out of order");
    }
    any_checkpoint = true;
    previous_seq = checkpoint.seq;
    if (!VerifySignature(options.public_key, checkpoint)) {
      first.Note(checkpoint.seq, "checkpoint signature invalid");
      if (checkpoint.seq == options.from_seq && start == nullptr) start = &checkpoint;
      continue;
    }
    if (checkpoint.seq == options.from_seq && start == nullptr) start = &checkpoint;
    trusted.push_back(&checkpoint);
  }
  std::stable_sort(trusted.begin(), trusted.end(),
                   [](const Checkpoint* a, const Checkpoint* b) { return a->seq < b->seq; });

  Hash previous{};
  std::int64_t expected = 1;
  std::int64_t after = std::numeric_limits<std::int64_t>::min();
  if (options.from_seq != 0) {
    if (start == nullptr) return make_error_code(Error::kNoSuchCheckpoint);
    report.last_seq = options.from_seq;
    if (first.seq == options.from_seq) {
      // The starting checkpoint itself is not to be trusted.
      report.ok = false;
      report.first_bad_seq = first.seq;
      report.problem = first.what;
      return report;
    }
    std::optional<StoredEvent> row;
    Status read = db.Read([&](storage::Transaction& txn) -> Status {
      auto found = Find(txn, options.from_seq);
      if (!found) return found.error();
      row = std::move(*found);
      return Ok();
    });
    if (!read && read.error() != Error::kCorruptEvent) return read.error();
    if (!read) {
      first.Note(options.from_seq, "unreadable event");
    } else if (!row) {
      auto max = MaxSeq(db);
      if (!max) return max.error();
      if (!*max || **max < options.from_seq) {
        first.Note(max->value_or(0) + 1, "log truncated");
      } else {
        first.Note(options.from_seq, "sequence break");
      }
    } else if (row->hash != start->hash) {
      first.Note(options.from_seq, "checkpoint hash mismatch");
    } else {
      report.last_good_checkpoint = options.from_seq;
    }
    previous = start->hash;
    expected = options.from_seq + 1;
    after = options.from_seq;
  }

  std::size_t next_checkpoint = 0;
  bool reached_end = true;
  if (first.seq > expected) {
    internal::Scan scan;
    scan.after_seq = after;
    scan.page_rows = kVerifyPageRows;
    Status scanned = internal::ScanPages(
        db, scan,
        [&](const storage::Row& row) -> Result<bool> {
          // Nothing found from here on could come before a problem already
          // known from the checkpoints alone.
          if (expected >= first.seq) {
            reached_end = false;
            return false;
          }
          std::int64_t seq = 0;
          internal::RowText text;
          Hash stored;
          if (!internal::ReadRowText(row, &seq, &text, &stored)) {
            const auto* row_seq = std::get_if<std::int64_t>(&row.at(internal::kSeqColumn));
            const bool in_place = row_seq != nullptr && *row_seq == expected;
            first.Note(expected, in_place ? "unreadable event" : "sequence break");
            reached_end = false;
            return false;
          }
          report.last_seq = seq;
          if (seq != expected) {
            first.Note(expected, "sequence break");
            reached_end = false;
            return false;
          }
          const Hash hash = internal::ChainHashOfText(previous, seq, text);
          if (hash != stored) {
            first.Note(seq, "hash mismatch");
            reached_end = false;
            return false;
          }
          ++report.events;
          while (next_checkpoint < trusted.size() && trusted[next_checkpoint]->seq <= seq) {
            const Checkpoint& checkpoint = *trusted[next_checkpoint++];
            if (checkpoint.seq < seq) continue;  // at from_seq, checked above
            if (checkpoint.hash != hash) {
              first.Note(seq, "checkpoint hash mismatch");
              reached_end = false;
              return false;
            }
            report.last_good_checkpoint = seq;
          }
          previous = hash;
          expected = seq + 1;
          return true;
        },
        nullptr);
    if (!scanned) return scanned.error();
  } else {
    reached_end = false;
  }

  if (reached_end) {
    // Every checkpoint left is beyond the last row: rows it covered are gone.
    while (next_checkpoint < trusted.size() && trusted[next_checkpoint]->seq <= report.last_seq) {
      ++next_checkpoint;
    }
    if (next_checkpoint < trusted.size()) first.Note(report.last_seq + 1, "log truncated");
    if (options.require_checkpoints && !any_checkpoint && report.events > 0) {
      first.Note(1, "no checkpoint");
    }
  }

  if (first.seq != kNone) {
    report.ok = false;
    report.first_bad_seq = first.seq;
    report.problem = first.what;
  }
  // A checkpoint matched after the first problem vouches for nothing.
  if (!report.ok && report.last_good_checkpoint >= report.first_bad_seq) {
    report.last_good_checkpoint = 0;
  }
  return report;
}

Result<VerifyReport> VerifySinceLastCheckpoint(storage::Database& db,
                                               const std::string& checkpoint_path,
                                               const PublicKey& public_key) {
  auto last = ReadLastCheckpoint(checkpoint_path);
  if (!last) return last.error();
  VerifyOptions options;
  options.public_key = public_key;
  options.require_checkpoints = true;
  if (*last) {
    options.from_seq = (*last)->seq;
    options.checkpoints.push_back(std::move(**last));
  }
  return Verify(db, options);
}

}  // namespace cw::audit
