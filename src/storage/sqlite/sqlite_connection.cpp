#include "storage/sqlite/sqlite_connection.hpp"

#include <utility>

namespace cw::storage::sqlite {
namespace {

// SQLITE_STATIC spelled without the header's C-style cast: the bound memory
// belongs to the caller's parameter vector, which outlives the statement's
// use because Statement clears the bindings before it is returned.
const sqlite3_destructor_type kStatic = nullptr;

bool OnlyWhitespaceOrSemicolons(const char* tail) {
  for (; tail != nullptr && *tail != '\0'; ++tail) {
    const char c = *tail;
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r' && c != ';') return false;
  }
  return true;
}

Value ColumnValue(sqlite3_stmt* stmt, int i) {
  switch (sqlite3_column_type(stmt, i)) {
    case SQLITE_INTEGER:
      return std::int64_t{sqlite3_column_int64(stmt, i)};
    case SQLITE_FLOAT:
      return sqlite3_column_double(stmt, i);
    case SQLITE_TEXT: {
      const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(stmt, i));
      const int size = sqlite3_column_bytes(stmt, i);
      return text == nullptr ? std::string() : std::string(text, static_cast<std::size_t>(size));
    }
    case SQLITE_BLOB: {
      const auto* data = static_cast<const std::uint8_t*>(sqlite3_column_blob(stmt, i));
      const int size = sqlite3_column_bytes(stmt, i);
      // A zero-length blob comes back as a null pointer.
      return data == nullptr ? Blob() : Blob(data, data + size);
    }
    default:
      return nullptr;
  }
}

// Returns SQLite's result code for the first parameter that fails to bind.
int BindOne(sqlite3_stmt* stmt, int index, const Value& value) {
  struct Binder {
    sqlite3_stmt* stmt;
    int index;
    int operator()(std::nullptr_t) const { return sqlite3_bind_null(stmt, index); }
    int operator()(std::int64_t v) const { return sqlite3_bind_int64(stmt, index, v); }
    int operator()(double v) const { return sqlite3_bind_double(stmt, index, v); }
    int operator()(const std::string& v) const {
      return sqlite3_bind_text64(stmt, index, v.data(), v.size(), kStatic, SQLITE_UTF8);
    }
    int operator()(const Blob& v) const {
      // sqlite3_bind_blob with a null pointer would bind NULL, not an empty blob.
      if (v.empty()) return sqlite3_bind_zeroblob(stmt, index, 0);
      return sqlite3_bind_blob64(stmt, index, v.data(), v.size(), kStatic);
    }
  };
  return std::visit(Binder{stmt, index}, value);
}

// Refuses what query_only does not: ATTACH (which could create a file) and
// DETACH, and any pragma that sets a value, so a read work cannot turn
// query_only off on a connection the pool hands to the next read.
int ReaderAuthorizer(void*, int action, const char*, const char* pragma_value, const char*,
                     const char*) {
  switch (action) {
    case SQLITE_ATTACH:
    case SQLITE_DETACH:
      return SQLITE_DENY;
    case SQLITE_PRAGMA:
      return pragma_value == nullptr ? SQLITE_OK : SQLITE_DENY;
    default:
      return SQLITE_OK;
  }
}

}  // namespace

Error MapResultCode(int rc) {
  switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_ROW:
    case SQLITE_DONE:
      return Error::kOk;
    case SQLITE_CONSTRAINT:
      return Error::kConstraint;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return Error::kCorrupt;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return Error::kBusy;
    case SQLITE_IOERR:
    case SQLITE_FULL:  // a disk that is full refused the write like any other I/O error
    case SQLITE_CANTOPEN:
      return Error::kIo;
    case SQLITE_RANGE:
      return Error::kBadStatement;
    default:
      return Error::kInternal;
  }
}

bool IsIoError(int rc) {
  const int primary = rc & 0xff;
  return primary == SQLITE_IOERR || primary == SQLITE_FULL;
}

Statement::Statement(Statement&& other) noexcept
    : stmt_(std::exchange(other.stmt_, nullptr)), owned_(other.owned_) {}

Statement& Statement::operator=(Statement&& other) noexcept {
  if (this != &other) {
    Release();
    stmt_ = std::exchange(other.stmt_, nullptr);
    owned_ = other.owned_;
  }
  return *this;
}

Statement::~Statement() { Release(); }

void Statement::Release() {
  if (stmt_ == nullptr) return;
  if (owned_) {
    sqlite3_finalize(stmt_);
  } else {
    // The result of reset repeats the last step's error, already reported.
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  stmt_ = nullptr;
}

namespace {

// Process-wide SQLite settings, applied once before the first connection.
// Memory statistics off: they take a global mutex on every allocation,
// which serializes readers on different connections.
void ConfigureSqliteOnce() {
  static const bool configured = [] {
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    return true;
  }();
  (void)configured;
}

}  // namespace

Result<std::unique_ptr<Connection>> Connection::Open(const std::string& path, int flags,
                                                     const std::string& vfs) {
  ConfigureSqliteOnce();
  sqlite3* db = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &db, flags | SQLITE_OPEN_NOMUTEX,
                                 vfs.empty() ? nullptr : vfs.c_str());
  if (rc != SQLITE_OK) {
    // Even a failed open may allocate a handle that must be closed.
    sqlite3_close_v2(db);
    return make_error_code(MapResultCode(rc));
  }
  sqlite3_extended_result_codes(db, 1);
  // Defensive mode refuses statements that could corrupt the file on purpose
  // (writable_schema, journal_mode=OFF, direct writes to shadow tables).
  sqlite3_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, 1, static_cast<int*>(nullptr));
  return std::unique_ptr<Connection>(new Connection(db));
}

Connection::~Connection() {
  for (auto& [sql, stmt] : cache_) sqlite3_finalize(stmt);
  sqlite3_close_v2(db_);
}

Result<Statement> Connection::Prepare(std::string_view sql) {
  auto it = cache_.find(sql);
  if (it != cache_.end() && !sqlite3_stmt_busy(it->second)) return Statement(it->second, false);

  const bool cache = it == cache_.end() && cache_.size() < kMaxCachedStatements;
  sqlite3_stmt* stmt = nullptr;
  const char* tail = nullptr;
  const int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()),
                                    cache ? SQLITE_PREPARE_PERSISTENT : 0, &stmt, &tail);
  if (rc != SQLITE_OK) {
    sqlite3_finalize(stmt);
    // SQLITE_ERROR from prepare is bad SQL (a syntax error, an unknown
    // table), SQLITE_AUTH a statement the connection's authorizer refuses;
    // anything else (busy, corrupt, I/O while reading the schema) is not.
    if ((rc & 0xff) == SQLITE_ERROR || (rc & 0xff) == SQLITE_AUTH) {
      return make_error_code(Error::kBadStatement);
    }
    return Fail(rc);
  }
  // Empty SQL, or more than one statement: both are bugs in the caller.
  if (stmt == nullptr || !OnlyWhitespaceOrSemicolons(tail)) {
    sqlite3_finalize(stmt);
    return make_error_code(Error::kBadStatement);
  }
  if (cache) {
    cache_.emplace(std::string(sql), stmt);
    return Statement(stmt, false);
  }
  return Statement(stmt, true);
}

int Connection::Run(std::string_view sql) {
  auto stmt = Prepare(sql);
  if (!stmt) return SQLITE_ERROR;
  int rc;
  while ((rc = sqlite3_step(stmt->get())) == SQLITE_ROW) {
  }
  if (rc == SQLITE_DONE) return SQLITE_OK;
  if (IsIoError(rc)) saw_io_error_ = true;
  return rc;
}

void Connection::RestrictToReading() { sqlite3_set_authorizer(db_, ReaderAuthorizer, nullptr); }

ErrorCode Connection::Fail(int rc) {
  if (IsIoError(rc)) saw_io_error_ = true;
  return make_error_code(MapResultCode(rc));
}

Result<Statement> SqliteTransaction::PrepareAndBind(std::string_view sql,
                                                    const std::vector<Value>& params) {
  auto stmt = connection_.Prepare(sql);
  if (!stmt) return stmt.error();
  sqlite3_stmt* s = stmt->get();
  if (static_cast<std::size_t>(sqlite3_bind_parameter_count(s)) != params.size()) {
    return make_error_code(Error::kBadStatement);
  }
  for (std::size_t i = 0; i < params.size(); ++i) {
    const int rc = BindOne(s, static_cast<int>(i + 1), params[i]);
    if (rc != SQLITE_OK) return connection_.Fail(rc);
  }
  return stmt;
}

ErrorCode SqliteTransaction::StepError(int rc) {
  // Plain SQLITE_READONLY (not one of its extended codes, which report a file
  // that cannot be written) is query_only refusing a write: on a read
  // transaction that is a bug in the caller.
  if (read_only_ && rc == SQLITE_READONLY) return make_error_code(Error::kBadStatement);
  return connection_.Fail(rc);
}

Result<std::int64_t> SqliteTransaction::Execute(std::string_view sql,
                                                const std::vector<Value>& params) {
  auto stmt = PrepareAndBind(sql, params);
  if (!stmt) return stmt.error();
  int rc;
  while ((rc = sqlite3_step(stmt->get())) == SQLITE_ROW) {
  }
  if (rc != SQLITE_DONE) return StepError(rc);
  // sqlite3_changes repeats the last writing statement's count; a statement
  // that cannot write changed nothing.
  if (sqlite3_stmt_readonly(stmt->get())) return std::int64_t{0};
  return std::int64_t{sqlite3_changes64(connection_.handle())};
}

Result<std::int64_t> SqliteTransaction::Insert(std::string_view sql,
                                               const std::vector<Value>& params) {
  auto changed = Execute(sql, params);
  if (!changed) return changed.error();
  if (*changed != 1) return make_error_code(Error::kInternal);
  return std::int64_t{sqlite3_last_insert_rowid(connection_.handle())};
}

Status SqliteTransaction::Query(std::string_view sql, const std::vector<Value>& params,
                                const std::function<Status(const Row&)>& on_row) {
  auto stmt = PrepareAndBind(sql, params);
  if (!stmt) return stmt.error();
  sqlite3_stmt* s = stmt->get();
  const int columns = sqlite3_column_count(s);
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    std::vector<Value> values;
    values.reserve(static_cast<std::size_t>(columns));
    for (int i = 0; i < columns; ++i) values.push_back(ColumnValue(s, i));
    Status status = on_row(Row(std::move(values)));
    if (!status) return status;
  }
  if (rc != SQLITE_DONE) return StepError(rc);
  return Ok();
}

}  // namespace cw::storage::sqlite
