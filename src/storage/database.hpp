#pragma once

// The storage seam: every subsystem reads and writes through Database and
// Transaction, never through a backend's own API, so SQLite (the embedded
// default) and PostgreSQL can stand behind the same callers.
//
// SQL is always parameterized: values are bound to `?` placeholders, numbered
// from left to right. Statements use the common subset of SQLite and
// PostgreSQL (INSERT ... RETURNING, no backend-specific functions in callers).
//
// Writes are group-committed: concurrent write transactions are queued to one
// writer, which runs a batch of them inside a single database transaction and
// makes the batch durable with one fsync. A write is reported committed only
// after that fsync returned; every caller in a failed batch is told it failed.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/result.hpp"

namespace cw::storage {

enum class Error {
  kOk = 0,
  kConstraint,    // a UNIQUE, CHECK or FOREIGN KEY constraint refused the change
  kIo,            // the disk refused a read, write or fsync
  kCorrupt,       // the database file is damaged
  kFailed,        // an earlier I/O error stopped writes: fail closed, never carry on
  kClosed,        // the database is shutting down
  kSchemaTooNew,  // the database was migrated by a newer Carewire
  kBadStatement,  // SQL that does not prepare, or a wrong parameter count: a bug
  kTypeMismatch,  // a column read as the wrong type: a bug
  kBusy,          // the database is locked by another process
  kInternal,      // any other backend error
};

const boost::system::error_category& ErrorCategory();

inline ErrorCode make_error_code(Error e) { return {static_cast<int>(e), ErrorCategory()}; }

using Blob = std::vector<std::uint8_t>;

// A bound parameter or a column value.
using Value = std::variant<std::nullptr_t, std::int64_t, double, std::string, Blob>;

// One result row. Accessors check the column's type; reading a column as the
// wrong type is a bug and throws std::logic_error.
class Row {
 public:
  explicit Row(std::vector<Value> values) : values_(std::move(values)) {}

  std::size_t size() const { return values_.size(); }
  bool IsNull(std::size_t i) const;
  std::int64_t Int(std::size_t i) const;
  double Real(std::size_t i) const;
  const std::string& Text(std::size_t i) const;
  const Blob& Bytes(std::size_t i) const;
  const Value& at(std::size_t i) const { return values_.at(i); }

 private:
  std::vector<Value> values_;
};

// Statements run inside one database transaction. A Transaction is handed to
// work functions by Database and is valid only during that call; it is not
// thread-safe and must not be kept.
class Transaction {
 public:
  virtual ~Transaction() = default;

  // Runs a statement and returns the number of rows it changed.
  virtual Result<std::int64_t> Execute(std::string_view sql,
                                       const std::vector<Value>& params = {}) = 0;

  // Runs an INSERT of one row into a table keyed by an INTEGER PRIMARY KEY
  // and returns the new row's key. (Cheaper in SQLite than RETURNING, which
  // buffers its rows in a temporary table.)
  virtual Result<std::int64_t> Insert(std::string_view sql,
                                      const std::vector<Value>& params = {}) = 0;

  // Runs a query and calls `on_row` for each result row in order, stopping at
  // the first error `on_row` returns. Rows are not buffered.
  virtual Status Query(std::string_view sql, const std::vector<Value>& params,
                       const std::function<Status(const Row&)>& on_row) = 0;

  // The first row of a query, or nullopt when it returns none.
  Result<std::optional<Row>> QueryOne(std::string_view sql, const std::vector<Value>& params = {});

  // Every row of a query; for results known to be small.
  Result<std::vector<Row>> QueryAll(std::string_view sql, const std::vector<Value>& params = {});
};

// A unit of write work. It runs on the writer thread inside its own savepoint:
// when it returns an error, its changes alone are undone.
using WriteWork = std::function<Status(Transaction&)>;

// Told the outcome of one write, exactly once, on the writer thread, after the
// batch's commit is durable (or failed); or, when SubmitWrite refuses the
// write at once (kFailed, kClosed), on the submitting thread before
// SubmitWrite returns. Must be quick and must not block.
using WriteDone = std::function<void(Status)>;

using ReadWork = std::function<Status(Transaction&)>;

struct DatabaseStats {
  std::uint64_t commits = 0;  // batches committed
  std::uint64_t writes = 0;   // write works committed
  std::uint64_t failed_commits = 0;
};

// A database. Thread-safe: any thread may submit writes and run reads.
class Database {
 public:
  virtual ~Database() = default;

  // Queues `work`; `done` is told the outcome. Never blocks on the disk.
  virtual void SubmitWrite(WriteWork work, WriteDone done) = 0;

  // Runs `work` in a read-only transaction on a consistent snapshot, on the
  // calling thread (it may block while every reader is busy).
  virtual Status Read(const ReadWork& work) = 0;

  // Succeeds while the database answers queries and still accepts writes.
  virtual Status Ping() = 0;

  // The schema version this database is at.
  virtual int SchemaVersion() const = 0;

  virtual DatabaseStats Stats() const = 0;

  // Finishes every queued write, then refuses new ones with kClosed.
  // Not from inside a write work or a done callback.
  virtual void Close() = 0;

  // SubmitWrite and wait for the outcome; for tools and tests, never for a
  // thread that serves network I/O, nor from inside a write work or a done
  // callback (the writer would wait for itself).
  Status Write(WriteWork work);
};

}  // namespace cw::storage

template <>
struct boost::system::is_error_code_enum<cw::storage::Error> : std::true_type {};
