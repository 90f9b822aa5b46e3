#include "keys/key_store.hpp"

#include <gtest/gtest.h>

#include <string>

#include "audit/audit_log.hpp"
#include "core/error.hpp"
#include "core/time.hpp"
#include "keys/reencrypt.hpp"
#include "storage/sqlite/sqlite_database.hpp"
#include "storage/sqlite/test_support.hpp"

namespace cw::keys {
namespace {

using storage::Blob;

constexpr std::string_view kLongAgo = "2000-01-01T00:00:00.000000Z";

std::shared_ptr<const crypto::KeyEncryptionKey> Kek(std::string_view entries) {
  return crypto::LoadMasterKey("", std::string(entries));
}

const std::string kKek1 = "1 " + std::string(64, 'a');
const std::string kKek2 = kKek1 + ",2 " + std::string(64, 'b');

class KeyStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    storage::SqliteOptions options;
    options.path = dir_.File("keys.db");
    auto db = storage::OpenSqlite(options);
    ASSERT_TRUE(db);
    db_ = std::move(*db);
  }
  void TearDown() override { db_->Close(); }

  void AddOrg(const std::string& id, const crypto::KeyEncryptionKey& kek) {
    ASSERT_TRUE(db_->Write([&](storage::Transaction& tx) -> Status {
      auto r =
          tx.Execute("INSERT INTO organizations (id, slug, name, created_at) VALUES (?, ?, ?, ?)",
                     {id, id, id, core::NowRfc3339()});
      if (!r) return r.error();
      return CreateOrgKeys(tx, kek, id, core::NowRfc3339());
    }));
  }

  std::uint32_t Rotate(const std::string& org, const crypto::KeyEncryptionKey& kek,
                       std::string_view at) {
    std::uint32_t version = 0;
    EXPECT_TRUE(db_->Write([&](storage::Transaction& tx) -> Status {
      auto v = AddDataKeyVersion(tx, kek, org, at);
      if (!v) return v.error();
      version = *v;
      return Ok();
    }));
    return version;
  }

  // Stores `count` sealed probes for `org`; returns their ids in order.
  std::vector<std::string> AddProbes(KeyStore& keys, const std::string& org, int count) {
    std::vector<std::string> ids;
    EXPECT_TRUE(db_->Write([&](storage::Transaction& tx) -> Status {
      for (int i = 0; i < count; ++i) {
        char id[32];
        std::snprintf(id, sizeof id, "spr_%s_%05d", org.c_str(), i);
        auto sealed = keys.Seal({org, "sealed_probes", "value", id}, "value " + std::to_string(i));
        if (!sealed) return sealed.error();
        auto r = tx.Execute(
            "INSERT INTO sealed_probes (id, org_id, value, created_at) VALUES (?, ?, ?, ?)",
            {std::string(id), org, Blob(sealed->begin(), sealed->end()), core::NowRfc3339()});
        if (!r) return r.error();
        ids.emplace_back(id);
      }
      return Ok();
    }));
    return ids;
  }

  // Every probe of `org` opens to its original text; returns the key
  // versions found.
  std::set<std::uint32_t> CheckProbes(KeyStore& keys, const std::string& org) {
    std::set<std::uint32_t> versions;
    EXPECT_TRUE(db_->Read([&](storage::Transaction& tx) -> Status {
      return tx.Query("SELECT id, value FROM sealed_probes WHERE org_id = ? ORDER BY id", {org},
                      [&](const storage::Row& row) -> Status {
                        const std::string& id = row.Text(0);
                        auto plain = keys.Open({org, "sealed_probes", "value", id}, row.Bytes(1));
                        EXPECT_TRUE(plain) << id;
                        if (plain) {
                          const std::string text(plain->begin(), plain->end());
                          EXPECT_EQ(text,
                                    "value " + std::to_string(std::stoi(id.substr(id.size() - 5))));
                        }
                        versions.insert(*crypto::SealedKeyVersion(row.Bytes(1)));
                        return Ok();
                      });
    }));
    return versions;
  }

  storage::testing::TempDir dir_;
  std::unique_ptr<storage::Database> db_;
};

TEST_F(KeyStoreTest, OrganizationKeysSealOpenAndIndex) {
  auto kek = Kek(kKek1);
  AddOrg("org_a", *kek);
  AddOrg("org_b", *kek);
  KeyStore keys(*db_, kek, std::chrono::seconds(60));
  auto sealed = keys.Seal({"org_a", "t", "c", "1"}, "Jane Doe");
  ASSERT_TRUE(sealed);
  auto opened = keys.Open({"org_a", "t", "c", "1"}, *sealed);
  ASSERT_TRUE(opened);
  EXPECT_EQ(std::string(opened->begin(), opened->end()), "Jane Doe");
  // Another organization's keys do not open it, nor does another row.
  EXPECT_FALSE(keys.Open({"org_b", "t", "c", "1"}, *sealed));
  EXPECT_FALSE(keys.Open({"org_a", "t", "c", "2"}, *sealed));
  // Blind indexes are stable within an organization and differ across them.
  auto a1 = keys.BlindIndex("org_a", "phone", "+15550100");
  auto a2 = keys.BlindIndex("org_a", "phone", "+15550100");
  auto b1 = keys.BlindIndex("org_b", "phone", "+15550100");
  ASSERT_TRUE(a1 && a2 && b1);
  EXPECT_EQ(*a1, *a2);
  EXPECT_NE(*a1, *b1);
  EXPECT_EQ(keys.ForOrg("org_none").error(), core::Error::kNotFound);
}

TEST_F(KeyStoreTest, WrongMasterKeyOpensNothing) {
  AddOrg("org_a", *Kek(kKek1));
  KeyStore keys(*db_, Kek("1 " + std::string(64, 'c')), std::chrono::seconds(60));
  auto loaded = keys.ForOrg("org_a");
  ASSERT_FALSE(loaded);
  EXPECT_EQ(loaded.error(), crypto::Error::kAuthentication);
}

TEST_F(KeyStoreTest, NewVersionSealsAfterTheCacheLifetimeAndOldValuesStillOpen) {
  auto kek = Kek(kKek1);
  AddOrg("org_a", *kek);
  KeyStore keys(*db_, kek, std::chrono::milliseconds(50));
  auto old_value = keys.Seal({"org_a", "t", "c", "1"}, "old");
  ASSERT_TRUE(old_value);
  EXPECT_EQ(Rotate("org_a", *kek, core::NowRfc3339()), 2u);
  std::this_thread::sleep_for(std::chrono::milliseconds(60));
  auto new_value = keys.Seal({"org_a", "t", "c", "1"}, "new");
  ASSERT_TRUE(new_value);
  EXPECT_EQ(*crypto::SealedKeyVersion(*new_value), 2u);
  EXPECT_TRUE(keys.Open({"org_a", "t", "c", "1"}, *old_value));
}

TEST_F(KeyStoreTest, ValueSealedElsewhereWithANewerVersionOpensAtOnce) {
  auto kek = Kek(kKek1);
  AddOrg("org_a", *kek);
  KeyStore here(*db_, kek, std::chrono::hours(1));
  ASSERT_TRUE(here.ForOrg("org_a"));  // cached at version 1
  Rotate("org_a", *kek, core::NowRfc3339());
  KeyStore elsewhere(*db_, kek, std::chrono::hours(1));
  auto sealed = elsewhere.Seal({"org_a", "t", "c", "9"}, "x");
  ASSERT_TRUE(sealed);
  EXPECT_EQ(*crypto::SealedKeyVersion(*sealed), 2u);
  EXPECT_TRUE(here.Open({"org_a", "t", "c", "9"}, *sealed));
}

TEST_F(KeyStoreTest, RewrapMovesEveryKeyToTheCurrentMasterVersion) {
  AddOrg("org_a", *Kek(kKek1));
  ASSERT_TRUE(db_->Write([&](storage::Transaction& tx) -> Status {
    auto made = EnsureDeploymentKeys(tx, *Kek(kKek1), core::NowRfc3339());
    if (!made) return made.error();
    return Ok();
  }));
  KeyStore before(*db_, Kek(kKek1), std::chrono::hours(1));
  auto sealed = before.Seal({"org_a", "t", "c", "1"}, "kept");
  ASSERT_TRUE(sealed);

  auto both = Kek(kKek2);
  std::int64_t rewrapped = 0;
  ASSERT_TRUE(db_->Write([&](storage::Transaction& tx) -> Status {
    auto n = RewrapAllKeys(tx, *both);
    if (!n) return n.error();
    rewrapped = *n;
    auto oldest = OldestKekVersionInUse(tx);
    EXPECT_TRUE(oldest && *oldest == 2u);
    return Ok();
  }));
  EXPECT_EQ(rewrapped, 3);  // data, blind index, audit signing
  // A second run finds nothing left to do.
  ASSERT_TRUE(db_->Write([&](storage::Transaction& tx) -> Status {
    auto n = RewrapAllKeys(tx, *both);
    EXPECT_TRUE(n && *n == 0);
    return Ok();
  }));
  // The new master version alone opens everything; the old one alone nothing.
  auto only_new = Kek("2 " + std::string(64, 'b'));
  KeyStore after(*db_, only_new, std::chrono::hours(1));
  EXPECT_TRUE(after.Open({"org_a", "t", "c", "1"}, *sealed));
  ASSERT_TRUE(db_->Read([&](storage::Transaction& tx) -> Status {
    EXPECT_TRUE(LoadDeploymentKeys(tx, *only_new));
    EXPECT_FALSE(LoadDeploymentKeys(tx, *Kek(kKek1)));
    return Ok();
  }));
  KeyStore old_only(*db_, Kek(kKek1), std::chrono::hours(1));
  EXPECT_FALSE(old_only.ForOrg("org_a"));
}

TEST_F(KeyStoreTest, ReencryptionResealsEveryOldValueAndResumesAfterARestart) {
  auto kek = Kek(kKek1);
  AddOrg("org_a", *kek);
  AddOrg("org_b", *kek);
  KeyStore keys(*db_, kek, std::chrono::milliseconds(1));
  AddProbes(keys, "org_a", 230);
  AddProbes(keys, "org_b", 20);
  Rotate("org_a", *kek, kLongAgo);

  {
    Reencryptor first(*db_, keys, {std::chrono::milliseconds(10), 50});
    for (int i = 0; i < 2; ++i) {  // two batches, then "crash"
      auto step = first.Step();
      ASSERT_TRUE(step);
      EXPECT_TRUE(*step);
    }
  }
  EXPECT_EQ(CheckProbes(keys, "org_a"), (std::set<std::uint32_t>{1, 2}));

  Reencryptor second(*db_, keys, {std::chrono::milliseconds(10), 50});
  int steps = 0;
  for (;;) {
    auto step = second.Step();
    ASSERT_TRUE(step);
    if (!*step) break;
    ASSERT_LT(++steps, 20);
  }
  EXPECT_EQ(CheckProbes(keys, "org_a"), (std::set<std::uint32_t>{2}));
  EXPECT_EQ(CheckProbes(keys, "org_b"), (std::set<std::uint32_t>{1}));  // not rotated

  ASSERT_TRUE(db_->Read([&](storage::Transaction& tx) -> Status {
    auto row = tx.QueryOne(
        "SELECT finished_at IS NOT NULL, resealed FROM key_rotations WHERE org_id = 'org_a'");
    EXPECT_TRUE(row && *row);
    EXPECT_EQ((*row)->Int(0), 1);
    EXPECT_EQ((*row)->Int(1), 230);
    auto events = tx.QueryOne(
        "SELECT count(*) FROM audit_events WHERE action = 'keys.rotation_finished' "
        "AND org_id = 'org_a'");
    EXPECT_EQ((*events)->Int(0), 1);
    auto resealed =
        tx.QueryOne("SELECT count(*) FROM audit_events WHERE action = 'keys.values_resealed'");
    EXPECT_GE((*resealed)->Int(0), 5);
    return Ok();
  }));
}

TEST_F(KeyStoreTest, ReencryptionWaitsUntilEveryProcessSealsWithTheNewVersion) {
  auto kek = Kek(kKek1);
  AddOrg("org_a", *kek);
  KeyStore keys(*db_, kek, std::chrono::hours(1));
  AddProbes(keys, "org_a", 3);
  Rotate("org_a", *kek, core::NowRfc3339());
  Reencryptor job(*db_, keys, {std::chrono::milliseconds(10), 50});
  auto step = job.Step();
  ASSERT_TRUE(step);
  EXPECT_FALSE(*step);  // the cache lifetime has not passed
  EXPECT_EQ(CheckProbes(keys, "org_a"), (std::set<std::uint32_t>{1}));
}

TEST_F(KeyStoreTest, ReencryptionLeavesAValueChangedMeanwhileAlone) {
  // The job reads a batch, then the application rewrites a row before the
  // job's write: the compare-and-set keeps the application's value, and the
  // row is re-sealed by a later pass rather than overwritten with stale data.
  auto kek = Kek(kKek1);
  AddOrg("org_a", *kek);
  KeyStore keys(*db_, kek, std::chrono::milliseconds(1));
  AddProbes(keys, "org_a", 1);
  const std::string id = "spr_org_a_00000";
  auto v1 = keys.ForOrg("org_a");
  ASSERT_TRUE(v1);
  const crypto::Bytes changed =
      crypto::Seal(*(*v1)->data.Current(), {"org_a", "sealed_probes", "value", id}, "value 0");
  Rotate("org_a", *kek, kLongAgo);

  Reencryptor job(*db_, keys, {std::chrono::milliseconds(10), 50});
  {
    storage::testing::WriterHold hold(*db_);
    // Queued first: the application's write.
    db_->SubmitWrite(
        [&](storage::Transaction& tx) -> Status {
          auto r = tx.Execute("UPDATE sealed_probes SET value = ? WHERE id = ?",
                              {Blob(changed.begin(), changed.end()), id});
          if (!r) return r.error();
          return Ok();
        },
        [](Status s) { EXPECT_TRUE(s); });
    // The job reads the old value now and queues its write behind.
    std::thread step([&] { EXPECT_TRUE(job.Step()); });
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    hold.Release();
    step.join();
  }
  auto row_value = [&] {
    Blob value;
    EXPECT_TRUE(db_->Read([&](storage::Transaction& tx) -> Status {
      auto row = tx.QueryOne("SELECT value FROM sealed_probes WHERE id = ?", {id});
      value = (*row)->Bytes(0);
      return Ok();
    }));
    return value;
  };
  EXPECT_EQ(row_value(), Blob(changed.begin(), changed.end()));
  // The pass is not finished while a row it skipped is still old.
  while (*job.Step()) {
  }
  EXPECT_EQ(CheckProbes(keys, "org_a"), (std::set<std::uint32_t>{2}));
}

TEST_F(KeyStoreTest, AValueThatDoesNotOpenIsReportedAndDoesNotStopTheRotation) {
  auto kek = Kek(kKek1);
  AddOrg("org_a", *kek);
  KeyStore keys(*db_, kek, std::chrono::milliseconds(1));
  AddProbes(keys, "org_a", 10);
  const std::string damaged = "spr_org_a_00004";
  ASSERT_TRUE(db_->Write([&](storage::Transaction& tx) -> Status {
    // One flipped bit in the ciphertext.
    auto row = tx.QueryOne("SELECT value FROM sealed_probes WHERE id = ?", {damaged});
    if (!row) return row.error();
    Blob value = (*row)->Bytes(0);
    value[40] ^= 1;
    auto r = tx.Execute("UPDATE sealed_probes SET value = ? WHERE id = ?", {value, damaged});
    if (!r) return r.error();
    return Ok();
  }));
  Rotate("org_a", *kek, kLongAgo);
  Reencryptor job(*db_, keys, {std::chrono::milliseconds(10), 4});
  int steps = 0;
  while (*job.Step()) ASSERT_LT(++steps, 10);
  ASSERT_TRUE(db_->Read([&](storage::Transaction& tx) -> Status {
    auto finished = tx.QueryOne(
        "SELECT count(*) FROM key_rotations WHERE finished_at IS NOT NULL AND resealed = 9");
    EXPECT_EQ((*finished)->Int(0), 1);
    auto reported = tx.QueryOne(
        "SELECT count(*) FROM audit_events WHERE action = 'keys.value_unopenable' "
        "AND target_id = ? AND outcome = 'failure'",
        {damaged});
    EXPECT_EQ((*reported)->Int(0), 1);
    return Ok();
  }));
}

}  // namespace
}  // namespace cw::keys
