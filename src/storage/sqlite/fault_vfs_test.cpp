#include "storage/sqlite/fault_vfs.hpp"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <cstring>
#include <map>
#include <mutex>
#include <set>

#include "storage/sqlite/sqlite_database.hpp"
#include "storage/sqlite/test_support.hpp"

namespace cw::storage {
namespace {

using testing::InsertId;
using testing::Outcomes;
using testing::TempDir;
using testing::WriterHold;

// The VFS is process-wide; every test starts and ends with it disarmed.
class FaultVfsTest : public ::testing::Test {
 protected:
  FaultVfsTest() : faults_(FaultVfs::Install()) { faults_.Reset(); }
  ~FaultVfsTest() override { faults_.Reset(); }

  FaultVfs& faults_;
  TempDir dir_;
};

TEST_F(FaultVfsTest, CountsFromWhenArmed) {
  EXPECT_FALSE(faults_.ShouldFailSync());
  EXPECT_FALSE(faults_.ShouldFailSync());
  faults_.FailSyncAt(2);  // two calls so far: the 2nd from now is the 4th
  EXPECT_FALSE(faults_.ShouldFailSync());
  EXPECT_TRUE(faults_.ShouldFailSync());
  EXPECT_TRUE(faults_.ShouldFailSync());  // and every one after it
  EXPECT_EQ(faults_.syncs(), 5);
  faults_.FailSyncAt(0);
  EXPECT_FALSE(faults_.ShouldFailSync());

  faults_.FailWriteAt(1);
  EXPECT_TRUE(faults_.ShouldFailWrite());
  EXPECT_TRUE(faults_.ShouldFailWrite());
  faults_.Reset();
  EXPECT_FALSE(faults_.ShouldFailWrite());
  EXPECT_EQ(faults_.writes(), 1);
  EXPECT_EQ(faults_.syncs(), 0);
}

TEST_F(FaultVfsTest, IsRegisteredButNotTheDefault) {
  sqlite3_vfs* vfs = sqlite3_vfs_find(FaultVfs::kName);
  ASSERT_NE(vfs, nullptr);
  EXPECT_NE(sqlite3_vfs_find(nullptr), vfs);
  EXPECT_EQ(&FaultVfs::Install(), &faults_);  // idempotent
}

TEST_F(FaultVfsTest, PassesEverythingThroughWhenDisarmed) {
  SqliteOptions options;
  options.path = dir_.File("passthrough.db");
  options.vfs = FaultVfs::kName;
  auto db = OpenSqlite(options);
  ASSERT_TRUE(db) << db.error().message();
  ASSERT_TRUE((*db)->Write([](Transaction& txn) -> Status {
    auto r = txn.Execute("INSERT INTO write_probes (created_at) VALUES ('t')");
    if (!r) return r.error();
    return Ok();
  }));
  EXPECT_TRUE((*db)->Ping());
  // The shim really is in the path: it saw the commit's writes and fsync.
  EXPECT_GT(faults_.writes(), 0);
  EXPECT_GT(faults_.syncs(), 0);
}

TEST_F(FaultVfsTest, AnInjectedWriteFaultReachesSqlite) {
  const std::string path = dir_.File("raw.db");
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                            FaultVfs::kName),
            SQLITE_OK);
  sqlite3_extended_result_codes(db, 1);
  ASSERT_EQ(sqlite3_exec(db, "CREATE TABLE x (a)", nullptr, nullptr, nullptr), SQLITE_OK);
  faults_.FailWriteAt(1);
  EXPECT_EQ(sqlite3_exec(db, "INSERT INTO x VALUES (1)", nullptr, nullptr, nullptr),
            SQLITE_IOERR_WRITE);
  faults_.Reset();
  faults_.FailSyncAt(1);
  EXPECT_EQ(sqlite3_exec(db, "INSERT INTO x VALUES (2)", nullptr, nullptr, nullptr),
            SQLITE_IOERR_FSYNC);
  faults_.Reset();
  sqlite3_close(db);
}

enum class Fault { kWrite, kSync };

struct SweepCase {
  Fault fault;
  int n;
};

std::string CaseName(const ::testing::TestParamInfo<SweepCase>& info) {
  return std::string(info.param.fault == Fault::kWrite ? "Write" : "Sync") +
         std::to_string(info.param.n);
}

// Fails the Nth write or fsync under a workload of alternating batches (one
// write holding the writer, then several writes queued behind it), then
// checks what callers were told against what a reopened database holds.
class FaultSweepTest : public FaultVfsTest, public ::testing::WithParamInterface<SweepCase> {};

TEST_P(FaultSweepTest, FailedBatchIsReportedAndWritesStop) {
  constexpr int kRounds = 5;
  constexpr int kPerBatch = 4;
  const std::string path = dir_.File("sweep.db");
  SqliteOptions options;
  options.path = path;
  options.vfs = FaultVfs::kName;
  options.readers = 2;
  auto opened = OpenSqlite(options);
  ASSERT_TRUE(opened) << opened.error().message();
  std::unique_ptr<Database> db = std::move(*opened);
  // No uniqueness: a write applied twice would show as a duplicate id.
  ASSERT_TRUE(db->Write([](Transaction& txn) -> Status {
    auto r = txn.Execute("CREATE TABLE acks (id INTEGER NOT NULL) STRICT");
    if (!r) return r.error();
    return Ok();
  }));

  const bool writes = GetParam().fault == Fault::kWrite;
  auto operations = [&] { return writes ? faults_.writes() : faults_.syncs(); };
  // The operation that fails, counted like operations().
  const std::int64_t failing_operation = operations() + GetParam().n;
  if (writes) {
    faults_.FailWriteAt(GetParam().n);
  } else {
    faults_.FailSyncAt(GetParam().n);
  }

  // Each work records, on the writer thread, how many operations had been
  // done when it started. Writes and fsyncs happen at COMMIT, so the batch
  // that meets the failing operation is the last one whose first work
  // started before it: the test knows which batch must fail without
  // trusting what the database reported.
  std::mutex mutex;
  std::map<std::int64_t, std::int64_t> started_at;
  auto insert = [&](std::int64_t id) -> WriteWork {
    return [&, id](Transaction& txn) -> Status {
      {
        std::lock_guard lock(mutex);
        started_at[id] = operations();
      }
      return InsertId("acks", id)(txn);
    };
  };

  Outcomes outcomes;
  std::vector<std::vector<std::int64_t>> batches;  // ids, in commit order
  std::int64_t next_id = 1;
  for (int round = 0; round < kRounds; ++round) {
    const std::int64_t held = next_id++;
    auto hold = std::make_unique<WriterHold>(*db, insert(held));
    std::vector<std::int64_t> batch;
    for (int i = 0; i < kPerBatch; ++i) {
      batch.push_back(next_id++);
      db->SubmitWrite(insert(batch.back()), outcomes.Recorder(batch.back()));
    }
    hold->Release();
    outcomes.Recorder(held)(hold->Wait());
    hold.reset();
    outcomes.WaitFor(static_cast<std::size_t>(next_id - 1));
    batches.push_back({held});
    batches.push_back(batch);
  }
  EXPECT_EQ(outcomes.duplicates(), 0);
  ASSERT_GE(operations(), failing_operation) << "the fault never fired";
  const auto results = outcomes.Results();

  std::size_t failed_batch = batches.size();
  for (std::size_t b = 0; b < batches.size(); ++b) {
    auto first = started_at.find(batches[b].front());
    if (first != started_at.end() && first->second < failing_operation) failed_batch = b;
  }
  ASSERT_LT(failed_batch, batches.size());

  // Every batch before the failure committed, every write of the failed
  // batch was told kIo, and everything after it was refused with kFailed.
  for (std::size_t b = 0; b < batches.size(); ++b) {
    for (std::int64_t id : batches[b]) {
      const Status& status = results.at(id);
      if (b < failed_batch) {
        EXPECT_TRUE(status) << "id " << id;
      } else if (b == failed_batch) {
        ASSERT_FALSE(status) << "id " << id << " acknowledged in the failed batch";
        EXPECT_EQ(status.error(), Error::kIo) << "id " << id;
      } else {
        ASSERT_FALSE(status) << "id " << id;
        EXPECT_EQ(status.error(), Error::kFailed) << "id " << id;
        EXPECT_EQ(started_at.count(id), 0u) << "id " << id << " ran after the failure";
      }
    }
  }
  EXPECT_EQ(db->Stats().failed_commits, 1u);

  // Failed closed: no more writes, and Ping says so.
  ASSERT_FALSE(db->Ping());
  EXPECT_EQ(db->Ping().error(), Error::kFailed);
  bool refused = false;
  db->SubmitWrite(InsertId("acks", 999),
                  [&](Status s) { refused = !s && s.error() == Error::kFailed; });
  EXPECT_TRUE(refused);

  db.reset();
  faults_.Reset();

  // Reopen without faults, as after a restart.
  options.vfs.clear();
  auto reopened = OpenSqlite(options);
  ASSERT_TRUE(reopened) << reopened.error().message();
  std::map<std::int64_t, int> stored;
  ASSERT_TRUE((*reopened)->Read([&](Transaction& txn) -> Status {
    auto check = txn.QueryOne("PRAGMA integrity_check");
    if (!check) return check.error();
    EXPECT_EQ((*check)->Text(0), "ok");
    return txn.Query("SELECT id FROM acks", {}, [&](const Row& row) -> Status {
      ++stored[row.Int(0)];
      return Ok();
    });
  }));
  std::set<std::int64_t> in_failed_batch(batches[failed_batch].begin(),
                                         batches[failed_batch].end());
  for (const auto& [id, status] : results) {
    if (status) {
      EXPECT_EQ(stored.count(id), 1u) << "acknowledged id " << id << " lost";
    }
  }
  for (const auto& [id, count] : stored) {
    EXPECT_EQ(count, 1) << "id " << id << " stored twice";
    // Present, so either acknowledged or in the failed batch (whose frames
    // may have reached the file before the fsync failed); never one that was
    // refused.
    EXPECT_TRUE(results.at(id) || in_failed_batch.count(id) == 1) << "id " << id;
  }
}

std::vector<SweepCase> SweepCases() {
  std::vector<SweepCase> cases;
  for (Fault fault : {Fault::kSync, Fault::kWrite}) {
    for (int n = 1; n <= 8; ++n) cases.push_back({fault, n});
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(EveryNth, FaultSweepTest, ::testing::ValuesIn(SweepCases()), CaseName);

}  // namespace
}  // namespace cw::storage
