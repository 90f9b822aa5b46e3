#pragma once

// The embedded SQLite backend.
//
// One writer connection owned by one writer thread: it takes every queued
// write (up to max_batch), runs each in a savepoint inside one BEGIN IMMEDIATE
// transaction, and COMMITs once, so a batch costs one fsync. WAL journal,
// synchronous=FULL (the only WAL setting that survives power loss),
// foreign_keys=ON. Reads run on a pool of read-only connections and so never
// wait for the writer. The WAL is copied into the database file by a
// checkpoint thread with a connection of its own, so commits do not pay for
// it; the writer checkpoints itself only if that thread falls far behind.
//
// An I/O error on commit stops the database accepting writes (kFailed) and
// makes Ping fail, like PostgreSQL on a failed fsync: after the disk has
// refused a write, what is on it can no longer be trusted. Note that a commit
// reported as failed because its fsync failed may still be found after a
// restart (its WAL frames reached the file); only acknowledged commits are
// promised, and idempotency keys make a retry of a failed one safe.

#include <memory>
#include <string>

#include "core/metrics.hpp"
#include "storage/database.hpp"

namespace cw::storage {

struct SqliteOptions {
  // Created owner-only (0600) when absent; its -wal and -shm files take the
  // same permissions. An existing file keeps its mode.
  std::string path;
  int readers = 4;       // at least 1 is opened
  int max_batch = 1024;  // write works per commit; at least 1
  // Name of a registered sqlite3_vfs; empty for the default. Tests pass the
  // fault-injecting VFS here.
  std::string vfs;
  // Where to record commit batch sizes and latencies; may be null.
  metrics::Registry* metrics = nullptr;
};

// Opens (creating if needed) the database and applies pending migrations.
// Fails with kSchemaTooNew when the file was migrated by a newer binary.
Result<std::unique_ptr<Database>> OpenSqlite(const SqliteOptions& options);

struct MigrationReport {
  int from = 0;
  int to = 0;
};

// Applies pending migrations and reports the versions; used by `carewire migrate`.
Result<MigrationReport> MigrateSqlite(const std::string& path);

// The schema version this binary knows.
int LatestSqliteSchemaVersion();

}  // namespace cw::storage
