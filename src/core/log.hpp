#pragma once

// Structured JSON-line logging from a fixed vocabulary.
//
// A line is an event name plus named fields. Field names come from the Key
// enum and string values must be SafeText, so a log line holds only what the
// code chose to say, never a request path, query string, header or body.
// Lines go to standard error (standard output is reserved for the messages an
// operator reads: the listening address, one-time passwords).
//
// Thread-safe: each line is written with a single write(2).

#include <cstdint>
#include <initializer_list>
#include <string_view>
#include <variant>

#include "core/safe_text.hpp"

namespace cw::log {

enum class Level { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

// Every field name a log line may carry. Add a key here, with a reason, rather
// than putting free text into a message.
enum class Key {
  kRequestId,    // server-generated request id
  kRoute,        // route template as registered, e.g. /api/v1/users/{id}
  kMethod,       // HTTP method
  kStatus,       // HTTP status code
  kLatencyUs,    // microseconds from first header byte to response written
  kBytesIn,      // request body size
  kBytesOut,     // response body size
  kError,        // a fixed error message from an error category
  kErrorCode,    // an API error code such as bad_request
  kCount,        // a count of whatever the event is about
  kLimit,        // the configured limit that was hit
  kAddress,      // a listening address the operator configured
  kPath,         // a filesystem path the operator configured
  kFingerprint,  // a certificate fingerprint
  kVersion,      // software or schema version
  kConnections,  // open connection count
  kConfigKey,    // a configuration key name
  kBatchSize,    // writes grouped into one commit
  kDurationMs,   // a duration in milliseconds
  kSignal,       // a signal number
  kSequence,     // an audit log sequence number
};

using Value = std::variant<std::int64_t, double, bool, SafeText>;

struct Field {
  Key key;
  Value value;

  Field(Key k, std::int64_t v) : key(k), value(v) {}
  Field(Key k, int v) : key(k), value(std::int64_t{v}) {}
  Field(Key k, unsigned v) : key(k), value(std::int64_t{v}) {}
  Field(Key k, std::uint64_t v) : key(k), value(static_cast<std::int64_t>(v)) {}
  Field(Key k, double v) : key(k), value(v) {}
  Field(Key k, bool v) : key(k), value(v) {}
  Field(Key k, SafeText v) : key(k), value(v) {}
};

void SetLevel(Level level);
Level GetLevel();
bool Enabled(Level level);

// Parses "debug", "info", "warn" or "error".
bool ParseLevel(std::string_view text, Level* level);

void Write(Level level, SafeText event, std::initializer_list<Field> fields = {});

inline void Debug(SafeText event, std::initializer_list<Field> fields = {}) {
  if (Enabled(Level::kDebug)) Write(Level::kDebug, event, fields);
}
inline void Info(SafeText event, std::initializer_list<Field> fields = {}) {
  if (Enabled(Level::kInfo)) Write(Level::kInfo, event, fields);
}
inline void Warn(SafeText event, std::initializer_list<Field> fields = {}) {
  if (Enabled(Level::kWarn)) Write(Level::kWarn, event, fields);
}
inline void Error(SafeText event, std::initializer_list<Field> fields = {}) {
  Write(Level::kError, event, fields);
}

// Formats one line without writing it; for tests.
std::string FormatLineForTest(Level level, SafeText event, std::initializer_list<Field> fields);

}  // namespace cw::log
