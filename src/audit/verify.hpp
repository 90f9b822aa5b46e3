#pragma once

// Verification of the audit log against its hash chain and signed
// checkpoints (see audit_log.hpp and checkpoint.hpp for what each covers).
//
// What is caught, each reported at the first bad sequence number:
//   - a gap, or a row whose seq is not the next one ("sequence break");
//   - a row whose stored hash is not the chain hash recomputed from the row
//     and the previous row's hash: an edited field, rows swapped, a row
//     inserted or deleted in the middle ("hash mismatch");
//   - a row that does not read back at all ("unreadable event");
//   - a checkpoint whose signature does not verify ("checkpoint signature
//     invalid") or whose seq is not above the one before it in the file
//     ("checkpoints out of order"): reported at that checkpoint's seq;
//   - a checkpoint whose hash is not the chain's hash at its seq ("checkpoint
//     hash mismatch"): a rewrite that recomputed the chain, reported at the
//     checkpoint's seq, since the edit itself can be anywhere after the
//     previous matching checkpoint (VerifyReport::last_good_checkpoint);
//   - a checkpoint beyond the last row ("log truncated"): reported at the
//     last row's seq + 1;
//   - with require_checkpoints, a non-empty log and no checkpoint at all
//     ("no checkpoint"), reported at seq 1.
//
// Not caught, by design: a rewrite of the rows after the newest checkpoint
// that recomputes their hashes, or rows appended with correctly computed
// hashes by someone with write access to the database. Only the chain covers
// the tail; checkpoints are written often so that tail stays short.
//
// Memory stays constant in the length of the log (the checkpoints given are
// held, the events are streamed in pages).

#include <cstdint>
#include <string>
#include <vector>

#include "audit/checkpoint.hpp"
#include "core/result.hpp"
#include "storage/database.hpp"

namespace cw::audit {

struct VerifyOptions {
  // 0: verify from the first row, whose previous hash is 32 zero bytes.
  // Otherwise start at the checkpoint (one of `checkpoints`) with this seq:
  // its signature is checked, the stored row there must carry its hash, and
  // the chain is verified from the row after it. Checkpoints below from_seq
  // are not looked at.
  std::int64_t from_seq = 0;
  // As read from the checkpoint file, in file order.
  std::vector<Checkpoint> checkpoints;
  PublicKey public_key{};
  bool require_checkpoints = true;
};

struct VerifyReport {
  bool ok = true;
  std::int64_t events = 0;         // rows whose chain hash was checked
  std::int64_t last_seq = 0;       // the highest seq read (from_seq when no row after it)
  std::int64_t first_bad_seq = 0;  // 0 when ok
  // A fixed phrase from the list above (empty when ok): never event content.
  std::string problem;
  // The highest checkpoint seq found to match the chain before the first
  // problem (0 for none): rows up to it are vouched for by a signature.
  std::int64_t last_good_checkpoint = 0;
};

// Verifies the log. Errors are for failing to verify (storage errors;
// kNoSuchCheckpoint when from_seq names no given checkpoint); a log that
// fails verification is a report with ok false.
Result<VerifyReport> Verify(storage::Database& db, const VerifyOptions& options);

// For server start-up: reads the checkpoint file's last checkpoint, checks
// its signature and that the row at its seq carries its hash, then verifies
// the chain from there to the end. An empty file verifies the whole log and
// reports "no checkpoint" when the log is not empty. Errors as
// ReadLastCheckpoint (kCheckpointFileMissing, kCheckpointMalformed...) and
// Verify.
Result<VerifyReport> VerifySinceLastCheckpoint(storage::Database& db,
                                               const std::string& checkpoint_path,
                                               const PublicKey& public_key);

}  // namespace cw::audit
