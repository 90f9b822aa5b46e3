#pragma once

// Internal to the SQLite backend: one sqlite3 connection with its prepared
// statement cache, and the Transaction that runs caller statements on it.
//
// A Connection is used by one thread at a time (connections are opened
// SQLITE_OPEN_NOMUTEX); the writer thread owns the writer connection and the
// reader pool hands each reader connection to one Read() at a time.

#include <sqlite3.h>

#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "storage/database.hpp"

namespace cw::storage::sqlite {

// Maps a SQLite result code (primary or extended) to a storage error:
// CONSTRAINT -> kConstraint, CORRUPT/NOTADB -> kCorrupt, BUSY/LOCKED -> kBusy,
// IOERR/FULL/CANTOPEN -> kIo, anything else -> kInternal.
Error MapResultCode(int rc);

// True for the codes after which the disk can no longer be trusted.
bool IsIoError(int rc);

class Connection;

// A prepared statement borrowed from a connection's cache, or prepared for
// this one use when the cached one is still stepping (a nested query with the
// same SQL). Destruction resets the statement and clears its bindings, so a
// cached statement never holds a read snapshot open or points at a caller's
// parameter memory.
class Statement {
 public:
  Statement() = default;
  Statement(sqlite3_stmt* stmt, bool owned) : stmt_(stmt), owned_(owned) {}
  Statement(Statement&& other) noexcept;
  Statement& operator=(Statement&& other) noexcept;
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  ~Statement();

  sqlite3_stmt* get() const { return stmt_; }

 private:
  void Release();

  sqlite3_stmt* stmt_ = nullptr;
  bool owned_ = false;
};

class Connection {
 public:
  // Opens `path` with SQLite `flags` (SQLITE_OPEN_NOMUTEX is added) through
  // the VFS named `vfs`, or the default one when empty. Extended result codes
  // are on and the connection runs in SQLite's defensive mode.
  static Result<std::unique_ptr<Connection>> Open(const std::string& path, int flags,
                                                  const std::string& vfs);

  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  sqlite3* handle() const { return db_; }

  // Prepares `sql`, taking it from the cache when it is there. Exactly one
  // statement; anything that fails to prepare is kBadStatement.
  Result<Statement> Prepare(std::string_view sql);

  // Runs a statement without parameters to completion, discarding rows
  // (BEGIN, SAVEPOINT, COMMIT...). Returns SQLite's result code.
  int Run(std::string_view sql);

  // Installs an authorizer that refuses ATTACH, DETACH and pragmas that set
  // a value. For reader connections, after their pragmas are set.
  void RestrictToReading();

  // Maps `rc` to a storage error, remembering an I/O error.
  ErrorCode Fail(int rc);

  // True once any statement on this connection met an I/O error, even one a
  // caller's work swallowed.
  bool saw_io_error() const { return saw_io_error_; }

 private:
  explicit Connection(sqlite3* db) : db_(db) {}

  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };

  // Callers' SQL is fixed text in the code, so the cache is bounded by the
  // number of distinct statements in the program; the cap only guards
  // against a caller that builds SQL dynamically.
  static constexpr std::size_t kMaxCachedStatements = 512;

  sqlite3* db_;
  std::unordered_map<std::string, sqlite3_stmt*, Hash, std::equal_to<>> cache_;
  bool saw_io_error_ = false;
};

// Runs caller statements on a connection inside a transaction the caller of
// this class has begun. On a read-only transaction (a reader connection, with
// query_only=ON) a statement that would write fails with kBadStatement.
class SqliteTransaction final : public Transaction {
 public:
  SqliteTransaction(Connection& connection, bool read_only)
      : connection_(connection), read_only_(read_only) {}

  Result<std::int64_t> Execute(std::string_view sql, const std::vector<Value>& params) override;
  Result<std::int64_t> Insert(std::string_view sql, const std::vector<Value>& params) override;
  Status Query(std::string_view sql, const std::vector<Value>& params,
               const std::function<Status(const Row&)>& on_row) override;

 private:
  Result<Statement> PrepareAndBind(std::string_view sql, const std::vector<Value>& params);
  ErrorCode StepError(int rc);

  Connection& connection_;
  bool read_only_;
};

}  // namespace cw::storage::sqlite
