#include "storage/sqlite/sqlite_database.hpp"

#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

#include "core/log.hpp"
#include "storage/sqlite/migrations.hpp"
#include "storage/sqlite/sqlite_connection.hpp"

namespace cw::storage {
namespace {

using sqlite::Connection;
using sqlite::SqliteTransaction;

// How long a connection waits for another process's lock (a `carewire
// migrate` or a backup) before reporting kBusy.
constexpr int kBusyTimeoutMs = 5000;

// The writer's WAL is copied into the database file by a connection of its
// own from kCheckpointPages on (SQLite's own default threshold), so the writer
// does not spend its commits copying pages. At kWriterCheckpointPages the
// writer checkpoints what is left itself, after which the WAL starts over
// (see OnWalCommit), and its file is cut back to kWalFileLimit.
constexpr int kCheckpointPages = 1000;
constexpr int kWriterCheckpointPages = 2000;
constexpr std::string_view kWalFileLimit = "PRAGMA journal_size_limit=16777216";

constexpr double kBatchSizeBuckets[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096};

// The savepoint around each write work; named so it cannot be confused with
// a savepoint a work opens for itself.
constexpr std::string_view kSavepoint = "SAVEPOINT cw_write";
constexpr std::string_view kRelease = "RELEASE cw_write";
constexpr std::string_view kRollbackTo = "ROLLBACK TO cw_write";

ErrorCode Err(Error e) { return make_error_code(e); }

void LogError(SafeText event, const ErrorCode& error, std::size_t batch_size = 0) {
  // The category message is fixed text, so it may go into a log line.
  const std::string message = error.message();
  if (batch_size == 0) {
    log::Error(event, {{log::Key::kError, SafeText::Trusted(message)}});
  } else {
    log::Error(event, {{log::Key::kError, SafeText::Trusted(message)},
                       {log::Key::kBatchSize, static_cast<std::uint64_t>(batch_size)}});
  }
}

// Runs a pragma or other statement without parameters or rows.
Status RunOn(Connection& connection, std::string_view sql) {
  const int rc = connection.Run(sql);
  if (rc != SQLITE_OK) return connection.Fail(rc);
  return Ok();
}

void RollbackIfOpen(Connection& connection) {
  if (!sqlite3_get_autocommit(connection.handle())) connection.Run("ROLLBACK");
}

Result<std::int64_t> ReadUserVersion(Connection& connection) {
  SqliteTransaction txn(connection, /*read_only=*/false);
  auto row = txn.QueryOne("PRAGMA user_version");
  if (!row) return row.error();
  if (!*row) return Err(Error::kInternal);
  return (*row)->Int(0);
}

// The database file may hold PHI ciphertext and metadata, so it is created
// owner-only before SQLite opens it (SQLite itself would create it 0644 less
// the umask). The -wal and -shm files SQLite creates beside it take the
// database file's permissions, so they are owner-only as well; nothing
// process-wide (the umask) is changed here. An existing file keeps its mode.
Status CreateOwnerOnly(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return Err(Error::kIo);
  ::close(fd);
  return Ok();
}

Result<std::unique_ptr<Connection>> OpenWriter(const std::string& path, const std::string& vfs) {
  if (Status created = CreateOwnerOnly(path); !created) return created.error();
  auto connection = Connection::Open(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, vfs);
  if (!connection) return connection.error();
  Connection& c = **connection;
  sqlite3_busy_timeout(c.handle(), kBusyTimeoutMs);

  // WAL lets readers run beside the writer; SQLite answers with the mode it
  // is actually in, which stays "delete" on a file system without shared
  // memory, so the answer is checked rather than assumed.
  SqliteTransaction txn(c, /*read_only=*/false);
  auto mode = txn.QueryOne("PRAGMA journal_mode=WAL");
  if (!mode) return mode.error();
  const std::string* mode_name = *mode ? std::get_if<std::string>(&(*mode)->at(0)) : nullptr;
  if (mode_name == nullptr || *mode_name != "wal") {
    log::Error("storage.wal_unavailable");
    return Err(Error::kInternal);
  }
  // In WAL mode only FULL syncs the WAL on every commit, so only FULL keeps
  // an acknowledged commit across a power loss.
  if (Status s = RunOn(c, "PRAGMA synchronous=FULL"); !s) return s.error();
  if (Status s = RunOn(c, "PRAGMA foreign_keys=ON"); !s) return s.error();
  // Statement journals (one per savepoint, so one per write work) and
  // temporary b-trees stay in memory instead of spilling to files.
  if (Status s = RunOn(c, "PRAGMA temp_store=MEMORY"); !s) return s.error();
  if (Status s = RunOn(c, kWalFileLimit); !s) return s.error();
  return connection;
}

// The connection that checkpoints the writer's WAL. Opened after the writer,
// and so without CreateOwnerOnly: closing a descriptor of the database file
// would drop every POSIX lock this process holds on it, the writer's too.
Result<std::unique_ptr<Connection>> OpenCheckpointer(const std::string& path,
                                                     const std::string& vfs) {
  auto connection = Connection::Open(path, SQLITE_OPEN_READWRITE, vfs);
  if (!connection) return connection.error();
  Connection& c = **connection;
  sqlite3_busy_timeout(c.handle(), kBusyTimeoutMs);
  if (Status s = RunOn(c, "PRAGMA synchronous=FULL"); !s) return s.error();
  return connection;
}

Result<std::unique_ptr<Connection>> OpenReader(const std::string& path, const std::string& vfs) {
  auto connection = Connection::Open(path, SQLITE_OPEN_READONLY, vfs);
  if (!connection) return connection.error();
  Connection& c = **connection;
  sqlite3_busy_timeout(c.handle(), kBusyTimeoutMs);
  if (Status s = RunOn(c, "PRAGMA foreign_keys=ON"); !s) return s.error();
  if (Status s = RunOn(c, "PRAGMA synchronous=FULL"); !s) return s.error();
  // The connection is read-only already; query_only also refuses writes to
  // temporary tables, so a read transaction cannot change anything.
  if (Status s = RunOn(c, "PRAGMA query_only=ON"); !s) return s.error();
  c.RestrictToReading();
  return connection;
}

// Applies pending migrations one at a time, each in its own transaction with
// its user_version bump. The version is read inside BEGIN IMMEDIATE, so two
// processes migrating the same file at once cannot apply one twice.
Result<MigrationReport> Migrate(Connection& connection) {
  const auto migrations = sqlite::Migrations();
  const int latest = LatestSqliteSchemaVersion();
  MigrationReport report;
  bool first = true;
  for (;;) {
    if (Status s = RunOn(connection, "BEGIN IMMEDIATE"); !s) return s.error();
    auto version = ReadUserVersion(connection);
    if (!version) {
      RollbackIfOpen(connection);
      return version.error();
    }
    if (first) {
      report.from = static_cast<int>(*version);
      first = false;
    }
    if (*version > latest) {
      RollbackIfOpen(connection);
      log::Error("storage.schema_too_new", {{log::Key::kVersion, *version}});
      return Err(Error::kSchemaTooNew);
    }
    if (*version == latest) {
      RollbackIfOpen(connection);
      report.to = latest;
      return report;
    }
    // Versions start at 1 without gaps (checked where the table is defined),
    // so the migration after version v is at index v.
    const sqlite::Migration& next = migrations[static_cast<std::size_t>(*version)];
    const std::string bump = "PRAGMA user_version = " + std::to_string(next.version);
    int rc = sqlite3_exec(connection.handle(), next.sql, nullptr, nullptr, nullptr);
    if (rc == SQLITE_OK) {
      rc = sqlite3_exec(connection.handle(), bump.c_str(), nullptr, nullptr, nullptr);
    }
    if (rc == SQLITE_OK) rc = connection.Run("COMMIT");
    if (rc != SQLITE_OK) {
      const ErrorCode error = connection.Fail(rc);
      RollbackIfOpen(connection);
      const std::string message = error.message();
      log::Error("storage.migration_failed", {{log::Key::kVersion, next.version},
                                              {log::Key::kError, SafeText::Trusted(message)}});
      return error;
    }
    log::Info("storage.migrated", {{log::Key::kVersion, next.version}});
  }
}

class SqliteDatabase final : public Database {
 public:
  SqliteDatabase(std::unique_ptr<Connection> writer, std::unique_ptr<Connection> checkpointer,
                 std::vector<std::unique_ptr<Connection>> readers, int schema_version,
                 int max_batch, metrics::Registry* registry)
      : writer_(std::move(writer)),
        checkpointer_(std::move(checkpointer)),
        readers_(std::move(readers)),
        schema_version_(schema_version),
        max_batch_(static_cast<std::size_t>(std::max(1, max_batch))) {
    for (auto& reader : readers_) free_readers_.push_back(reader.get());
    if (registry != nullptr) {
      batch_size_ =
          &registry->GetHistogram("carewire_storage_commit_batch_size",
                                  "Write works grouped into one commit.", kBatchSizeBuckets);
      commit_seconds_ =
          &registry->GetHistogram("carewire_storage_commit_seconds",
                                  "Seconds from BEGIN to COMMIT returning, per batch of writes.",
                                  metrics::LatencyBuckets());
      commit_failures_ = &registry->GetCounter("carewire_storage_commit_failures_total",
                                               "Batches of writes whose commit failed.");
    }
    // Replaces SQLite's own automatic checkpoint on the writer.
    sqlite3_wal_hook(writer_->handle(), &SqliteDatabase::OnWalCommit, this);
    // Last, so the threads see every member initialized.
    checkpoint_thread_ = std::thread([this] { CheckpointLoop(); });
    writer_thread_ = std::thread([this] { WriterLoop(); });
    writer_thread_id_ = writer_thread_.get_id();
  }

  ~SqliteDatabase() override { Close(); }

  void SubmitWrite(WriteWork work, WriteDone done) override {
    Error refused = Error::kOk;
    {
      std::lock_guard lock(mutex_);
      if (failed_.load()) {
        refused = Error::kFailed;
      } else if (closing_) {
        refused = Error::kClosed;
      } else {
        queue_.push_back(PendingWrite{std::move(work), std::move(done)});
      }
    }
    if (refused == Error::kOk) {
      wake_writer_.notify_one();
    } else {
      Notify(done, Err(refused));
    }
  }

  Status Read(const ReadWork& work) override {
    Connection* connection = nullptr;
    {
      std::unique_lock lock(pool_mutex_);
      pool_changed_.wait(lock, [this] { return pool_closed_ || !free_readers_.empty(); });
      if (pool_closed_) return Err(Error::kClosed);
      connection = free_readers_.back();
      free_readers_.pop_back();
    }
    // Rolls back whatever the work left open and returns the connection,
    // also when the work throws (the exception goes on to the caller).
    struct Lease {
      SqliteDatabase* db;
      Connection* connection;
      ~Lease() {
        RollbackIfOpen(*connection);
        // Notified under the lock: once the last reader is back, Close may
        // go on to destroy the database.
        std::lock_guard lock(db->pool_mutex_);
        db->free_readers_.push_back(connection);
        db->pool_changed_.notify_all();
      }
    } lease{this, connection};

    // A deferred BEGIN takes its snapshot at the first read and keeps it
    // until COMMIT, so every statement of the work sees the same data.
    if (Status s = RunOn(*connection, "BEGIN"); !s) return s;
    SqliteTransaction txn(*connection, /*read_only=*/true);
    if (Status s = work(txn); !s) return s;
    return RunOn(*connection, "COMMIT");
  }

  Status Ping() override {
    if (failed_.load()) return Err(Error::kFailed);
    {
      std::lock_guard lock(mutex_);
      if (closing_) return Err(Error::kClosed);
    }
    return Read([](Transaction& txn) -> Status {
      auto row = txn.QueryOne("SELECT 1");
      if (!row) return row.error();
      if (!*row || (*row)->Int(0) != 1) return Err(Error::kInternal);
      return Ok();
    });
  }

  int SchemaVersion() const override { return schema_version_; }

  DatabaseStats Stats() const override {
    DatabaseStats stats;
    stats.commits = commits_.load();
    stats.writes = writes_.load();
    stats.failed_commits = failed_commits_.load();
    return stats;
  }

  void Close() override {
    if (std::this_thread::get_id() == writer_thread_id_) {
      throw std::logic_error("storage: Close called from a write work or done callback");
    }
    {
      std::lock_guard lock(mutex_);
      closing_ = true;
    }
    wake_writer_.notify_all();
    std::call_once(close_once_, [this] {
      writer_thread_.join();
      {
        std::lock_guard lock(checkpoint_mutex_);
        checkpoint_stop_ = true;
      }
      checkpoint_wake_.notify_all();
      checkpoint_thread_.join();
      checkpointer_.reset();
      {
        std::unique_lock lock(pool_mutex_);
        pool_closed_ = true;
        pool_changed_.notify_all();
        // Reads already running finish on their connections first.
        pool_changed_.wait(lock, [this] { return free_readers_.size() == readers_.size(); });
        free_readers_.clear();
      }
      readers_.clear();
      // Closed last: as the last connection, the writer checkpoints the WAL
      // into the database file.
      writer_.reset();
      log::Info("storage.closed");
    });
  }

 private:
  struct PendingWrite {
    WriteWork work;
    WriteDone done;
  };

  static void Notify(WriteDone& done, Status status) {
    try {
      done(status);
    } catch (...) {
      // A throwing callback is a bug; the other callers must still be told.
      log::Error("storage.write_done_threw");
    }
  }

  void WriterLoop() {
    for (;;) {
      std::vector<PendingWrite> batch;
      {
        std::unique_lock lock(mutex_);
        wake_writer_.wait(lock, [this] { return !queue_.empty() || closing_; });
        if (queue_.empty()) return;  // closing, and everything queued is done
        const std::size_t n = std::min(queue_.size(), max_batch_);
        batch.reserve(n);
        for (std::size_t i = 0; i < n; ++i) {
          batch.push_back(std::move(queue_.front()));
          queue_.pop_front();
        }
      }
      std::vector<Status> outcomes(batch.size());
      if (failed_.load()) {
        // Queued before the failure was seen; never run on a broken disk.
        std::fill(outcomes.begin(), outcomes.end(), Status(Err(Error::kFailed)));
      } else {
        Commit(batch, outcomes);
      }
      // Outside the queue lock: a callback may submit the next write.
      for (std::size_t i = 0; i < batch.size(); ++i) Notify(batch[i].done, outcomes[i]);
    }
  }

  // SQLite's WAL hook: runs on the writer thread after each commit with the
  // number of pages in the WAL.
  static int OnWalCommit(void* self, sqlite3* db, const char* name, int pages) {
    auto* database = static_cast<SqliteDatabase*>(self);
    if (pages >= kWriterCheckpointPages) {
      // The WAL starts over only at a write that finds it wholly copied,
      // which a checkpoint running beside a busy writer never leaves it. So
      // the writer copies what is left itself (little, when the checkpoint
      // thread keeps up; everything, when it does not), and its next commit
      // starts the WAL over.
      sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
    } else if (pages >= kCheckpointPages) {
      {
        std::lock_guard lock(database->checkpoint_mutex_);
        database->checkpoint_wanted_ = true;
      }
      database->checkpoint_wake_.notify_one();
    }
    return SQLITE_OK;
  }

  // Copies the WAL into the database file when the writer asks, on a
  // connection of its own. PASSIVE never waits for readers or the writer;
  // whatever it cannot copy now is copied next time.
  void CheckpointLoop() {
    std::unique_lock lock(checkpoint_mutex_);
    for (;;) {
      checkpoint_wake_.wait(lock, [this] { return checkpoint_wanted_ || checkpoint_stop_; });
      if (checkpoint_stop_) return;
      checkpoint_wanted_ = false;
      lock.unlock();
      const int rc = sqlite3_wal_checkpoint_v2(checkpointer_->handle(), "main",
                                               SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
      if (rc != SQLITE_OK && rc != SQLITE_BUSY) {
        LogError("storage.checkpoint_failed", checkpointer_->Fail(rc));
      }
      lock.lock();
    }
  }

  static Status RunWork(const WriteWork& work, Transaction& txn) {
    try {
      return work(txn);
    } catch (...) {
      // An exception is a bug in the work; it must not end the writer thread.
      log::Error("storage.write_work_threw");
      return Err(Error::kInternal);
    }
  }

  // Runs `work` in its own savepoint and sets `outcome`. Returns false when
  // the batch's transaction can no longer be trusted to commit the other
  // works: after an I/O error, after SQLite itself ended the transaction (it
  // does on some errors, as does a work that runs COMMIT), or when this
  // work's changes could not be undone. Writer thread only.
  bool RunInSavepoint(Connection& c, Transaction& txn, const WriteWork& work, Status& outcome) {
    if (int rc = c.Run(kSavepoint); rc != SQLITE_OK) {
      outcome = c.Fail(rc);
      return false;
    }
    outcome = RunWork(work, txn);
    if (c.saw_io_error() || sqlite3_get_autocommit(c.handle())) return false;
    if (outcome) {
      const int rc = c.Run(kRelease);
      if (rc == SQLITE_OK) return true;
      outcome = c.Fail(rc);
    }
    // Undo this work alone; the others in the batch carry on.
    int rc = c.Run(kRollbackTo);
    if (rc == SQLITE_OK) rc = c.Run(kRelease);
    if (rc == SQLITE_OK) return true;
    c.Fail(rc);
    return false;
  }

  // Runs one batch in one transaction and fills `outcomes`, one per work.
  // Writer thread only.
  void Commit(std::vector<PendingWrite>& batch, std::vector<Status>& outcomes) {
    Connection& c = *writer_;
    const auto start = std::chrono::steady_clock::now();
    if (batch_size_ != nullptr) batch_size_->Observe(static_cast<double>(batch.size()));

    if (const int rc = c.Run("BEGIN IMMEDIATE"); rc != SQLITE_OK) {
      const ErrorCode error = c.Fail(rc);
      std::fill(outcomes.begin(), outcomes.end(), Status(error));
      FailBatch(error, outcomes.size());
      return;
    }

    SqliteTransaction txn(c, /*read_only=*/false);
    for (std::size_t i = 0; i < batch.size(); ++i) {
      if (RunInSavepoint(c, txn, batch[i].work, outcomes[i])) continue;
      // Every work of the batch fails: those before this one (their changes
      // go with the transaction), this one if it had succeeded, and those
      // after it, which never run.
      const ErrorCode error = Err(c.saw_io_error() ? Error::kIo : Error::kInternal);
      for (std::size_t j = 0; j < batch.size(); ++j) {
        if (j > i || outcomes[j]) outcomes[j] = error;
      }
      RollbackIfOpen(c);
      FailBatch(error, batch.size());
      return;
    }

    const int rc = c.Run("COMMIT");
    if (commit_seconds_ != nullptr) {
      commit_seconds_->Observe(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
    if (rc == SQLITE_OK) {
      commits_.fetch_add(1);
      writes_.fetch_add(static_cast<std::uint64_t>(
          std::count_if(outcomes.begin(), outcomes.end(), [](const Status& s) { return !!s; })));
      return;
    }
    // No work may be told it committed. (A deferred constraint also fails
    // here and takes the whole batch with it; the schema uses immediate
    // constraints only.)
    const ErrorCode error = c.Fail(rc);
    for (Status& outcome : outcomes) {
      if (outcome) outcome = error;
    }
    RollbackIfOpen(c);
    FailBatch(error, batch.size());
  }

  // Counts and logs a failed batch, and stops writes after an I/O error.
  // Writer thread only.
  void FailBatch(const ErrorCode& error, std::size_t batch_size) {
    failed_commits_.fetch_add(1);
    if (commit_failures_ != nullptr) commit_failures_->Add();
    LogError("storage.commit_failed", error, batch_size);
    if (writer_->saw_io_error() && !failed_.exchange(true)) {
      // Fail closed, as PostgreSQL does after a failed fsync: once the disk
      // has refused a write, what is on it can no longer be trusted, and a
      // retry could report a commit that is not durable.
      log::Error("storage.writes_stopped");
    }
  }

  std::unique_ptr<Connection> writer_;  // writer thread only, after construction
  std::unique_ptr<Connection> checkpointer_;  // checkpoint thread only
  std::vector<std::unique_ptr<Connection>> readers_;
  const int schema_version_;
  const std::size_t max_batch_;

  metrics::Histogram* batch_size_ = nullptr;
  metrics::Histogram* commit_seconds_ = nullptr;
  metrics::Counter* commit_failures_ = nullptr;

  std::mutex mutex_;
  std::condition_variable wake_writer_;
  std::deque<PendingWrite> queue_;  // GUARDED_BY(mutex_)
  bool closing_ = false;            // GUARDED_BY(mutex_)
  // Set once, by the writer thread; read without the lock by Ping.
  std::atomic<bool> failed_{false};

  std::mutex pool_mutex_;
  std::condition_variable pool_changed_;
  std::vector<Connection*> free_readers_;  // GUARDED_BY(pool_mutex_)
  bool pool_closed_ = false;               // GUARDED_BY(pool_mutex_)

  std::atomic<std::uint64_t> commits_{0};
  std::atomic<std::uint64_t> writes_{0};
  std::atomic<std::uint64_t> failed_commits_{0};

  std::mutex checkpoint_mutex_;
  std::condition_variable checkpoint_wake_;
  bool checkpoint_wanted_ = false;  // GUARDED_BY(checkpoint_mutex_)
  bool checkpoint_stop_ = false;    // GUARDED_BY(checkpoint_mutex_)

  std::once_flag close_once_;
  std::thread checkpoint_thread_;
  std::thread writer_thread_;
  std::thread::id writer_thread_id_;
};

}  // namespace

int LatestSqliteSchemaVersion() { return sqlite::Migrations().back().version; }

Result<std::unique_ptr<Database>> OpenSqlite(const SqliteOptions& options) {
  // Connections are opened NOMUTEX and handed between threads; that needs a
  // library built thread-safe.
  if (!sqlite3_threadsafe()) return Err(Error::kInternal);

  auto writer = OpenWriter(options.path, options.vfs);
  if (!writer) {
    LogError("storage.open_failed", writer.error());
    return writer.error();
  }
  auto report = Migrate(**writer);
  if (!report) return report.error();

  auto checkpointer = OpenCheckpointer(options.path, options.vfs);
  if (!checkpointer) {
    LogError("storage.open_failed", checkpointer.error());
    return checkpointer.error();
  }
  std::vector<std::unique_ptr<Connection>> readers;
  const int reader_count = std::max(1, options.readers);
  for (int i = 0; i < reader_count; ++i) {
    auto reader = OpenReader(options.path, options.vfs);
    if (!reader) {
      LogError("storage.open_failed", reader.error());
      return reader.error();
    }
    readers.push_back(std::move(*reader));
  }
  return std::unique_ptr<Database>(new SqliteDatabase(std::move(*writer), std::move(*checkpointer),
                                                      std::move(readers), report->to,
                                                      options.max_batch, options.metrics));
}

Result<MigrationReport> MigrateSqlite(const std::string& path) {
  auto writer = OpenWriter(path, "");
  if (!writer) {
    LogError("storage.open_failed", writer.error());
    return writer.error();
  }
  return Migrate(**writer);
}

}  // namespace cw::storage
