#include "storage/sqlite/sqlite_database.hpp"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <stdexcept>
#include <thread>

#include "core/error.hpp"
#include "storage/sqlite/test_support.hpp"

namespace cw::storage {
namespace {

using testing::InsertId;
using testing::Outcomes;
using testing::TempDir;
using testing::WriterHold;

class SqliteDatabaseTest : public ::testing::Test {
 protected:
  std::unique_ptr<Database> Open(SqliteOptions options = {}) {
    options.path = path_;
    auto db = OpenSqlite(options);
    if (!db) {
      ADD_FAILURE() << "OpenSqlite: " << db.error().message();
      return nullptr;
    }
    return std::move(*db);
  }

  // Creates the table `t`: an integer key and an optional note.
  static void CreateTable(Database& db) {
    ASSERT_TRUE(db.Write([](Transaction& txn) -> Status {
      auto r = txn.Execute("CREATE TABLE t (id INTEGER PRIMARY KEY, note TEXT) STRICT");
      if (!r) return r.error();
      return Ok();
    }));
  }

  static std::vector<std::int64_t> Ids(Database& db, const char* table = "t") {
    std::vector<std::int64_t> ids;
    EXPECT_TRUE(db.Read([&](Transaction& txn) -> Status {
      return txn.Query(std::string("SELECT id FROM ") + table + " ORDER BY id", {},
                       [&](const Row& row) -> Status {
                         ids.push_back(row.Int(0));
                         return Ok();
                       });
    }));
    return ids;
  }

  static std::int64_t ReadInt(Database& db, const std::string& sql) {
    std::int64_t value = -1;
    EXPECT_TRUE(db.Read([&](Transaction& txn) -> Status {
      auto row = txn.QueryOne(sql);
      if (!row) return row.error();
      if (!*row) return Error::kInternal;
      value = (*row)->Int(0);
      return Ok();
    }));
    return value;
  }

  TempDir dir_;
  std::string path_ = dir_.File("carewire.db");
};

TEST_F(SqliteDatabaseTest, RoundTripsEveryValueType) {
  auto db = Open();
  ASSERT_TRUE(db);
  const std::vector<Value> values = {
      nullptr,
      std::int64_t{0},
      std::numeric_limits<std::int64_t>::min(),
      std::numeric_limits<std::int64_t>::max(),
      -0.5,
      1e300,
      std::string(),
      std::string("h\xc3\xa9llo\0w\"orld';--", 16),  // embedded NUL and SQL metacharacters
      std::string("42"),                             // text that looks like a number stays text
      Blob(),                                        // empty, not NULL
      Blob{0, 1, 0, 255},
  };
  ASSERT_TRUE(db->Write([&](Transaction& txn) -> Status {
    auto r = txn.Execute("CREATE TABLE v (k INTEGER PRIMARY KEY, a ANY) STRICT");
    if (!r) return r.error();
    for (std::size_t i = 0; i < values.size(); ++i) {
      r = txn.Execute("INSERT INTO v (k, a) VALUES (?, ?)",
                      {static_cast<std::int64_t>(i), values[i]});
      if (!r) return r.error();
    }
    return Ok();
  }));

  std::vector<Row> rows;
  ASSERT_TRUE(db->Read([&](Transaction& txn) -> Status {
    auto all = txn.QueryAll("SELECT a FROM v ORDER BY k");
    if (!all) return all.error();
    rows = std::move(*all);
    return Ok();
  }));
  ASSERT_EQ(rows.size(), values.size());
  for (std::size_t i = 0; i < values.size(); ++i) {
    EXPECT_EQ(rows[i].at(0).index(), values[i].index()) << "value " << i;
    EXPECT_TRUE(rows[i].at(0) == values[i]) << "value " << i;
  }
  EXPECT_TRUE(rows[0].IsNull(0));
  EXPECT_EQ(rows[3].Int(0), std::numeric_limits<std::int64_t>::max());
  EXPECT_EQ(rows[4].Real(0), -0.5);
  EXPECT_EQ(rows[7].Text(0).size(), 16u);
  EXPECT_TRUE(rows[9].Bytes(0).empty());
  EXPECT_THROW(rows[8].Int(0), std::logic_error);
}

TEST_F(SqliteDatabaseTest, ConstraintViolationRollsBackOnlyThatWork) {
  auto db = Open();
  ASSERT_TRUE(db);
  CreateTable(*db);
  ASSERT_TRUE(db->Write(InsertId("t", 1)));
  const DatabaseStats before = db->Stats();

  Outcomes outcomes;
  {
    WriterHold hold(*db);
    db->SubmitWrite(InsertId("t", 10), outcomes.Recorder(10));
    // Inserts 20, then violates the primary key: 20 must go with it.
    db->SubmitWrite(
        [](Transaction& txn) -> Status {
          if (auto r = txn.Execute("INSERT INTO t (id) VALUES (20)"); !r) return r.error();
          auto r = txn.Execute("INSERT INTO t (id) VALUES (1)");
          if (!r) return r.error();
          return Ok();
        },
        outcomes.Recorder(20));
    // Inserts 40, then gives up with an error of its own.
    db->SubmitWrite(
        [](Transaction& txn) -> Status {
          if (auto r = txn.Execute("INSERT INTO t (id) VALUES (40)"); !r) return r.error();
          return core::Error::kConflict;
        },
        outcomes.Recorder(40));
    // NOT NULL is a constraint too.
    db->SubmitWrite(
        [](Transaction& txn) -> Status {
          auto r = txn.Execute("CREATE TABLE IF NOT EXISTS n (id INTEGER NOT NULL) STRICT");
          if (r) r = txn.Execute("INSERT INTO n (id) VALUES (?)", {nullptr});
          if (!r) return r.error();
          return Ok();
        },
        outcomes.Recorder(50));
    db->SubmitWrite(InsertId("t", 30), outcomes.Recorder(30));
    hold.Release();
    EXPECT_TRUE(hold.Wait());
  }
  outcomes.WaitFor(5);
  auto results = outcomes.Results();
  EXPECT_TRUE(results.at(10));
  ASSERT_FALSE(results.at(20));
  EXPECT_EQ(results.at(20).error(), Error::kConstraint);
  ASSERT_FALSE(results.at(40));
  EXPECT_EQ(results.at(40).error(), core::Error::kConflict);
  ASSERT_FALSE(results.at(50));
  EXPECT_EQ(results.at(50).error(), Error::kConstraint);
  EXPECT_TRUE(results.at(30));

  EXPECT_EQ(Ids(*db), (std::vector<std::int64_t>{1, 10, 30}));
  const DatabaseStats after = db->Stats();
  // The hold's batch, then one batch for all five: they shared a transaction.
  EXPECT_EQ(after.commits - before.commits, 2u);
  EXPECT_EQ(after.writes - before.writes, 3u);
  EXPECT_EQ(after.failed_commits, 0u);
}

TEST_F(SqliteDatabaseTest, ThrowingWorkFailsAloneWithInternal) {
  auto db = Open();
  ASSERT_TRUE(db);
  CreateTable(*db);
  Outcomes outcomes;
  {
    WriterHold hold(*db);
    db->SubmitWrite(
        [](Transaction& txn) -> Status {
          (void)txn.Execute("INSERT INTO t (id) VALUES (5)");
          throw std::runtime_error("bug");
        },
        outcomes.Recorder(5));
    db->SubmitWrite(InsertId("t", 6), outcomes.Recorder(6));
  }
  outcomes.WaitFor(2);
  auto results = outcomes.Results();
  ASSERT_FALSE(results.at(5));
  EXPECT_EQ(results.at(5).error(), Error::kInternal);
  EXPECT_TRUE(results.at(6));
  EXPECT_EQ(Ids(*db), (std::vector<std::int64_t>{6}));
}

TEST_F(SqliteDatabaseTest, BadStatementsAreRefused) {
  auto db = Open();
  ASSERT_TRUE(db);
  CreateTable(*db);
  ASSERT_TRUE(db->Read([](Transaction& txn) -> Status {
    const std::pair<const char*, std::vector<Value>> bad[] = {
        {"SELEC 1", {}},
        {"SELECT * FROM no_such_table", {}},
        {"", {}},
        {"SELECT 1; SELECT 2", {}},
        {"SELECT ?", {}},                                  // too few parameters
        {"SELECT ?", {std::int64_t{1}, std::int64_t{2}}},  // too many
        {"SELECT 1", {std::int64_t{1}}},
    };
    for (const auto& [sql, params] : bad) {
      auto r = txn.QueryAll(sql, params);
      EXPECT_FALSE(r) << sql;
      if (!r) {
        EXPECT_EQ(r.error(), Error::kBadStatement) << sql;
      }
    }
    // The transaction is still usable after refused statements.
    auto ok = txn.QueryOne("SELECT ?", {std::int64_t{7}});
    if (!ok) return ok.error();
    EXPECT_EQ((*ok)->Int(0), 7);
    return Ok();
  }));
}

TEST_F(SqliteDatabaseTest, ExecuteReturnsRowsChangedAndInsertTheNewKey) {
  auto db = Open();
  ASSERT_TRUE(db);
  CreateTable(*db);
  ASSERT_TRUE(db->Write([](Transaction& txn) -> Status {
    for (std::int64_t id : {1, 2, 3}) {
      auto r = txn.Execute("INSERT INTO t (id) VALUES (?)", {id});
      if (!r) return r.error();
      EXPECT_EQ(*r, 1);
    }
    auto updated = txn.Execute("UPDATE t SET note = ?", {std::string("x")});
    EXPECT_TRUE(updated && *updated == 3);
    auto none = txn.Execute("DELETE FROM t WHERE id = ?", {std::int64_t{99}});
    EXPECT_TRUE(none && *none == 0);
    auto select = txn.Execute("SELECT id FROM t");
    EXPECT_TRUE(select && *select == 0);
    // Insert answers the new row's key, the one SQLite chose.
    auto added = txn.Insert("INSERT INTO t (note) VALUES (?)", {std::string("y")});
    EXPECT_TRUE(added && *added == 4);
    auto again = txn.Insert("INSERT INTO t (note) VALUES (?)", {std::string("z")});
    EXPECT_TRUE(again && *again == 5);
    // An insert that adds no row is an error, not a stale key.
    auto nothing = txn.Insert("INSERT INTO t (id) SELECT id FROM t WHERE id = 99");
    EXPECT_FALSE(nothing);
    return Ok();
  }));
}

TEST_F(SqliteDatabaseTest, NestedQueryWithTheSameSqlWorks) {
  auto db = Open();
  ASSERT_TRUE(db);
  CreateTable(*db);
  ASSERT_TRUE(db->Write(InsertId("t", 1)));
  ASSERT_TRUE(db->Write(InsertId("t", 2)));
  std::vector<std::pair<std::int64_t, std::int64_t>> pairs;
  ASSERT_TRUE(db->Read([&](Transaction& txn) -> Status {
    const char* sql = "SELECT id FROM t ORDER BY id";
    return txn.Query(sql, {}, [&](const Row& outer) -> Status {
      auto inner = txn.QueryAll(sql);
      if (!inner) return inner.error();
      for (const Row& row : *inner) pairs.emplace_back(outer.Int(0), row.Int(0));
      return Ok();
    });
  }));
  EXPECT_EQ(pairs.size(), 4u);
}

TEST_F(SqliteDatabaseTest, GroupCommitGroupsConcurrentWriters) {
  metrics::Registry registry;
  SqliteOptions options;
  options.metrics = &registry;
  auto db = Open(options);
  ASSERT_TRUE(db);
  CreateTable(*db);
  const DatabaseStats before = db->Stats();

  constexpr int kThreads = 4;
  constexpr int kPerThread = 50;
  Outcomes outcomes;
  {
    WriterHold hold(*db);
    std::vector<std::thread> writers;
    for (int t = 0; t < kThreads; ++t) {
      writers.emplace_back([&, t] {
        for (int i = 0; i < kPerThread; ++i) {
          const std::int64_t id = 1000 * (t + 1) + i;
          db->SubmitWrite(InsertId("t", id), outcomes.Recorder(id));
        }
      });
    }
    for (auto& w : writers) w.join();
  }
  outcomes.WaitFor(kThreads * kPerThread);
  for (const auto& [id, status] : outcomes.Results()) EXPECT_TRUE(status) << id;
  EXPECT_EQ(outcomes.duplicates(), 0);
  EXPECT_EQ(Ids(*db).size(), static_cast<std::size_t>(kThreads * kPerThread));

  const DatabaseStats after = db->Stats();
  const auto writes = after.writes - before.writes;
  const auto commits = after.commits - before.commits;
  EXPECT_EQ(writes, static_cast<std::uint64_t>(kThreads * kPerThread + 1));
  EXPECT_LT(commits, writes);
  EXPECT_EQ(commits, 2u);  // the hold, then everything queued behind it

  // Every batch is measured: as many observations as commits, one per work.
  const auto sizes =
      registry.GetHistogram("carewire_storage_commit_batch_size", "unused", std::vector<double>{1})
          .Take();
  EXPECT_EQ(sizes.count, after.commits);
  EXPECT_EQ(sizes.sum, static_cast<double>(after.writes));
  ASSERT_EQ(sizes.bounds.size(), 13u);  // 1, 2, 4, ... 4096
  EXPECT_EQ(sizes.bounds.back(), 4096);
  const std::string text = registry.RenderPrometheus();
  EXPECT_NE(text.find("carewire_storage_commit_seconds_count " + std::to_string(after.commits)),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("carewire_storage_commit_failures_total 0"), std::string::npos) << text;
}

TEST_F(SqliteDatabaseTest, MaxBatchBoundsABatch) {
  SqliteOptions options;
  options.max_batch = 8;
  auto db = Open(options);
  ASSERT_TRUE(db);
  CreateTable(*db);
  const DatabaseStats before = db->Stats();
  Outcomes outcomes;
  {
    WriterHold hold(*db);
    for (int id = 1; id <= 20; ++id) db->SubmitWrite(InsertId("t", id), outcomes.Recorder(id));
  }
  outcomes.WaitFor(20);
  // The hold's batch, then 8 + 8 + 4.
  EXPECT_EQ(db->Stats().commits - before.commits, 4u);
  EXPECT_EQ(Ids(*db).size(), 20u);
}

TEST_F(SqliteDatabaseTest, ConnectionsUseDurableSettings) {
  auto db = Open();
  ASSERT_TRUE(db);
  CreateTable(*db);
  ASSERT_TRUE(db->Write(InsertId("t", 1)));
  EXPECT_TRUE(std::filesystem::exists(path_ + "-wal"));

  ASSERT_TRUE(db->Read([](Transaction& txn) -> Status {
    auto mode = txn.QueryOne("PRAGMA journal_mode");
    EXPECT_TRUE(mode && *mode && (*mode)->Text(0) == "wal");
    auto sync = txn.QueryOne("PRAGMA synchronous");
    EXPECT_TRUE(sync && *sync && (*sync)->Int(0) == 2);  // FULL
    auto fk = txn.QueryOne("PRAGMA foreign_keys");
    EXPECT_TRUE(fk && *fk && (*fk)->Int(0) == 1);
    auto query_only = txn.QueryOne("PRAGMA query_only");
    EXPECT_TRUE(query_only && *query_only && (*query_only)->Int(0) == 1);
    return Ok();
  }));
  ASSERT_TRUE(db->Write([](Transaction& txn) -> Status {
    auto sync = txn.QueryOne("PRAGMA synchronous");
    EXPECT_TRUE(sync && *sync && (*sync)->Int(0) == 2);
    auto fk = txn.QueryOne("PRAGMA foreign_keys");
    EXPECT_TRUE(fk && *fk && (*fk)->Int(0) == 1);
    return Ok();
  }));
}

// The WAL is copied into the database file while the writer commits (by the
// checkpoint thread, the last pages by the writer) and starts over, so it
// stays bounded; and the process keeps its locks on
// the file throughout, so another process that opens and closes the database
// (a CLI run beside the server) can neither checkpoint it away nor delete the
// WAL from under the open connections.
TEST_F(SqliteDatabaseTest, WalStaysBoundedAndSurvivesOtherProcesses) {
  auto db = Open();
  ASSERT_TRUE(db);
  CreateTable(*db);
  const std::string note(3000, 'n');
  const auto insert_many = [&](int from, int count) {
    for (int i = from; i < from + count; ++i) {
      ASSERT_TRUE(db->Write([&](Transaction& txn) -> Status {
        auto r = txn.Execute("INSERT INTO t (id, note) VALUES (?, ?)",
                             {static_cast<std::int64_t>(i), note});
        if (!r) return r.error();
        return Ok();
      }));
    }
  };
  // About 14,000 pages through the WAL (57 MB): they are copied as they come,
  // the WAL starts over, and its file is cut back.
  insert_many(0, 6000);
  const std::string wal = path_ + "-wal";
  EXPECT_LT(std::filesystem::file_size(wal), 24u << 20);

  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    sqlite3* other = nullptr;
    const bool ok = sqlite3_open_v2(path_.c_str(), &other, SQLITE_OPEN_READWRITE, nullptr) ==
                        SQLITE_OK &&
                    sqlite3_exec(other, "SELECT count(*) FROM t", nullptr, nullptr, nullptr) ==
                        SQLITE_OK;
    sqlite3_close(other);
    _exit(ok ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_TRUE(std::filesystem::exists(wal)) << "another process removed the WAL";
  insert_many(6000, 1);
  // What this process commits after that, another process sees.
  sqlite3* reader = nullptr;
  ASSERT_EQ(sqlite3_open_v2(path_.c_str(), &reader, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(reader, "SELECT count(*) FROM t", -1, &stmt, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int64(stmt, 0), 6001);
  sqlite3_finalize(stmt);
  sqlite3_close(reader);
}

TEST_F(SqliteDatabaseTest, ForeignKeysAreEnforced) {
  auto db = Open();
  ASSERT_TRUE(db);
  ASSERT_TRUE(db->Write([](Transaction& txn) -> Status {
    auto r = txn.Execute("CREATE TABLE parent (id INTEGER PRIMARY KEY) STRICT");
    if (r) {
      r = txn.Execute(
          "CREATE TABLE child (id INTEGER PRIMARY KEY, "
          "parent_id INTEGER NOT NULL REFERENCES parent (id)) STRICT");
    }
    if (!r) return r.error();
    return Ok();
  }));
  const Status orphan = db->Write([](Transaction& txn) -> Status {
    auto r = txn.Execute("INSERT INTO child (id, parent_id) VALUES (1, 99)");
    if (!r) return r.error();
    return Ok();
  });
  ASSERT_FALSE(orphan);
  EXPECT_EQ(orphan.error(), Error::kConstraint);
}

TEST_F(SqliteDatabaseTest, ReadsSeeCommittedDataAndCannotWrite) {
  auto db = Open();
  ASSERT_TRUE(db);
  CreateTable(*db);
  ASSERT_TRUE(db->Write(InsertId("t", 1)));
  EXPECT_EQ(Ids(*db), (std::vector<std::int64_t>{1}));

  const std::string attach = "ATTACH '" + dir_.File("other.db") + "' AS other";
  for (const std::string& sql :
       {std::string("INSERT INTO t (id) VALUES (2)"), std::string("DELETE FROM t"),
        std::string("CREATE TEMP TABLE scratch (x)"), std::string("PRAGMA user_version = 99"),
        std::string("PRAGMA query_only = OFF"), attach}) {
    // Every reader in turn: a connection changed by one read would serve later ones.
    for (int reader = 0; reader < SqliteOptions{}.readers; ++reader) {
      const Status write = db->Read([&](Transaction& txn) -> Status {
        auto r = txn.Execute(sql);
        if (!r) return r.error();
        return Ok();
      });
      ASSERT_FALSE(write) << sql;
      EXPECT_EQ(write.error(), Error::kBadStatement) << sql;
    }
  }
  EXPECT_EQ(Ids(*db), (std::vector<std::int64_t>{1}));
  EXPECT_EQ(ReadInt(*db, "PRAGMA user_version"), LatestSqliteSchemaVersion());
  EXPECT_EQ(ReadInt(*db, "PRAGMA query_only"), 1);
  EXPECT_FALSE(std::filesystem::exists(dir_.File("other.db")));
}

TEST_F(SqliteDatabaseTest, ReadsDoNotWaitForTheWriter) {
  auto db = Open();
  ASSERT_TRUE(db);
  CreateTable(*db);
  ASSERT_TRUE(db->Write(InsertId("t", 1)));
  // The hold's transaction has begun and written, uncommitted.
  WriterHold hold(*db, InsertId("t", 2));
  EXPECT_EQ(Ids(*db), (std::vector<std::int64_t>{1}));
  hold.Release();
  EXPECT_TRUE(hold.Wait());
  EXPECT_EQ(Ids(*db), (std::vector<std::int64_t>{1, 2}));
}

TEST_F(SqliteDatabaseTest, ReadSeesOneSnapshot) {
  auto db = Open();
  ASSERT_TRUE(db);
  CreateTable(*db);
  ASSERT_TRUE(db->Write(InsertId("t", 1)));
  std::int64_t first = -1;
  std::int64_t second = -1;
  ASSERT_TRUE(db->Read([&](Transaction& txn) -> Status {
    first = (*txn.QueryOne("SELECT count(*) FROM t"))->Int(0);
    // Committed by the writer thread while this read is open.
    if (Status s = db->Write(InsertId("t", 2)); !s) return s;
    second = (*txn.QueryOne("SELECT count(*) FROM t"))->Int(0);
    return Ok();
  }));
  EXPECT_EQ(first, 1);
  EXPECT_EQ(second, 1);
  EXPECT_EQ(ReadInt(*db, "SELECT count(*) FROM t"), 2);
}

TEST_F(SqliteDatabaseTest, FreshDatabaseIsAtTheLatestSchema) {
  ASSERT_GE(LatestSqliteSchemaVersion(), 1);
  auto db = Open();
  ASSERT_TRUE(db);
  EXPECT_EQ(db->SchemaVersion(), LatestSqliteSchemaVersion());
  EXPECT_EQ(ReadInt(*db, "PRAGMA user_version"), LatestSqliteSchemaVersion());
  // Migration 1: write_probes, STRICT.
  ASSERT_TRUE(db->Write([](Transaction& txn) -> Status {
    auto r = txn.Execute("INSERT INTO write_probes (created_at) VALUES (?)",
                         {std::string("2024-01-01T00:00:00Z")});
    if (!r) return r.error();
    return Ok();
  }));
  const Status wrong_type = db->Write([](Transaction& txn) -> Status {
    auto r = txn.Execute("INSERT INTO write_probes (created_at) VALUES (?)", {Blob{1}});
    if (!r) return r.error();
    return Ok();
  });
  ASSERT_FALSE(wrong_type);
  EXPECT_EQ(wrong_type.error(), Error::kConstraint);
  EXPECT_EQ(ReadInt(*db, "SELECT count(*) FROM write_probes"), 1);
}

TEST_F(SqliteDatabaseTest, MigrateReportsFromAndToAndReopeningAppliesNothing) {
  auto fresh = MigrateSqlite(path_);
  ASSERT_TRUE(fresh) << fresh.error().message();
  EXPECT_EQ(fresh->from, 0);
  EXPECT_EQ(fresh->to, LatestSqliteSchemaVersion());

  {
    auto db = Open();
    ASSERT_TRUE(db);
    EXPECT_EQ(db->SchemaVersion(), LatestSqliteSchemaVersion());
    ASSERT_TRUE(db->Write([](Transaction& txn) -> Status {
      auto r = txn.Execute("INSERT INTO write_probes (created_at) VALUES ('now')");
      if (!r) return r.error();
      return Ok();
    }));
  }
  auto again = MigrateSqlite(path_);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->from, LatestSqliteSchemaVersion());
  EXPECT_EQ(again->to, LatestSqliteSchemaVersion());

  auto db = Open();
  ASSERT_TRUE(db);
  EXPECT_EQ(ReadInt(*db, "SELECT count(*) FROM write_probes"), 1);
}

TEST_F(SqliteDatabaseTest, RefusesASchemaNewerThanThisBinary) {
  const int newer = LatestSqliteSchemaVersion() + 1;
  {
    auto db = Open();
    ASSERT_TRUE(db);
    ASSERT_TRUE(db->Write([newer](Transaction& txn) -> Status {
      auto r = txn.Execute("PRAGMA user_version = " + std::to_string(newer));
      if (!r) return r.error();
      return Ok();
    }));
  }
  SqliteOptions options;
  options.path = path_;
  auto opened = OpenSqlite(options);
  ASSERT_FALSE(opened);
  EXPECT_EQ(opened.error(), Error::kSchemaTooNew);
  auto migrated = MigrateSqlite(path_);
  ASSERT_FALSE(migrated);
  EXPECT_EQ(migrated.error(), Error::kSchemaTooNew);

  // Left as it was found.
  sqlite3* raw = nullptr;
  ASSERT_EQ(sqlite3_open_v2(path_.c_str(), &raw, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(raw, "PRAGMA user_version", -1, &stmt, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(stmt, 0), newer);
  sqlite3_finalize(stmt);
  sqlite3_close(raw);
}

TEST_F(SqliteDatabaseTest, CloseFinishesQueuedWritesThenRefuses) {
  auto db = Open();
  ASSERT_TRUE(db);
  CreateTable(*db);
  Outcomes outcomes;
  auto hold = std::make_unique<WriterHold>(*db, InsertId("t", 1));
  for (int id = 2; id <= 21; ++id) db->SubmitWrite(InsertId("t", id), outcomes.Recorder(id));

  std::thread closer([&] { db->Close(); });
  // Probe until Close has begun. The writer is held, so a probe is told its
  // outcome before SubmitWrite returns only when it was refused.
  std::int64_t probe = 100;
  for (;; ++probe) {
    db->SubmitWrite(InsertId("t", probe), outcomes.Recorder(probe));
    if (outcomes.Has(probe)) break;
    std::this_thread::yield();
  }
  const std::int64_t refused = probe;
  hold->Release();
  closer.join();
  EXPECT_TRUE(hold->Wait());
  hold.reset();

  auto results = outcomes.Results();
  ASSERT_FALSE(results.at(refused));
  EXPECT_EQ(results.at(refused).error(), Error::kClosed);
  for (std::int64_t id = 2; id <= 21; ++id) EXPECT_TRUE(results.at(id)) << id;
  for (std::int64_t id = 100; id < refused; ++id) EXPECT_TRUE(results.at(id)) << id;

  bool told = false;
  db->SubmitWrite(InsertId("t", 999), [&](Status s) {
    told = true;
    EXPECT_EQ(s.error(), Error::kClosed);
  });
  EXPECT_TRUE(told);
  ASSERT_FALSE(db->Ping());
  EXPECT_EQ(db->Ping().error(), Error::kClosed);
  const Status read = db->Read([](Transaction&) -> Status { return Ok(); });
  ASSERT_FALSE(read);
  EXPECT_EQ(read.error(), Error::kClosed);
  db.reset();

  auto reopened = Open();
  ASSERT_TRUE(reopened);
  EXPECT_EQ(Ids(*reopened).size(), static_cast<std::size_t>(21 + (refused - 100)));
}

TEST_F(SqliteDatabaseTest, PingSucceedsWhileOpen) {
  auto db = Open();
  ASSERT_TRUE(db);
  EXPECT_TRUE(db->Ping());
}

// Sets the process umask for a test's duration.
class ScopedUmask {
 public:
  explicit ScopedUmask(mode_t mask) : old_(::umask(mask)) {}
  ~ScopedUmask() { ::umask(old_); }

 private:
  mode_t old_;
};

TEST_F(SqliteDatabaseTest, DatabaseFileIsOwnerOnly) {
  const ScopedUmask umask(022);  // under which SQLite alone would create 0644 files
  auto db = Open();
  ASSERT_TRUE(db);
  CreateTable(*db);
  struct stat st {};
  ASSERT_EQ(::stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat((path_ + "-wal").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 077, 0u);
}

TEST_F(SqliteDatabaseTest, MigrateCreatesAnOwnerOnlyFile) {
  const ScopedUmask umask(022);
  auto report = MigrateSqlite(path_);
  ASSERT_TRUE(report);
  struct stat st {};
  ASSERT_EQ(::stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

}  // namespace
}  // namespace cw::storage
