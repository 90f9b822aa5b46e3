#pragma once

// The audit subsystem's error codes. Messages are fixed strings, so an error
// never carries event content.

#include "core/result.hpp"

namespace cw::audit {

enum class Error {
  kOk = 0,
  kInvalidEvent,           // a field missing, too long or not plain text: a bug in the caller
  kInvalidFilter,          // a limit out of range or a time that is not RFC 3339
  kCorruptEvent,           // a stored event that does not read back (a wrong type, a bad hash size)
  kCheckpointFileMissing,  // the checkpoint file does not exist
  kCheckpointMalformed,    // a line of the checkpoint file is not a checkpoint
  kCheckpointIo,           // opening, reading, writing or syncing the checkpoint file failed
  kCheckpointStale,        // refused: a checkpoint at or below the file's last one
  kCheckpointAhead,        // the file names an event the log lacks: truncated or restored
  kCheckpointMismatch,     // the log's hash at the file's last checkpoint differs from it
  kNoSuchCheckpoint,       // VerifyOptions::from_seq names none of the given checkpoints
  kExportWrite,            // the output stream refused the export
};

const boost::system::error_category& ErrorCategory();

inline ErrorCode make_error_code(Error e) { return {static_cast<int>(e), ErrorCategory()}; }

}  // namespace cw::audit

template <>
struct boost::system::is_error_code_enum<cw::audit::Error> : std::true_type {};
