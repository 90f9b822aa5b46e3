#include "audit/verify.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "audit/test_support.hpp"

namespace cw::audit {
namespace {

using testing::MakeEvent;
using testing::RawSqlite;
using testing::TempDir;
using testing::TestKey;
using testing::TimeAt;

constexpr int kEvents = 50;
constexpr int kCheckpointEvery = 10;

// Every column an attacker could edit, with an edit that the schema's CHECK
// constraints accept.
struct FieldEdit {
  const char* column;
  const char* set;  // SQL expression for the new value
};
constexpr FieldEdit kEdits[] = {
    {"occurred_at", "'2020-01-01T00:00:00.000000Z'"},
    {"org_id", "'org-evil'"},
    {"actor_type", "CASE actor_type WHEN 'user' THEN 'device' ELSE 'user' END"},
    {"actor_id", "'user-evil'"},
    {"action", "'auth.logout'"},
    {"target_type", "'user'"},
    {"target_id", "'c-evil'"},
    {"patient_id", "'p-evil'"},
    {"outcome", "CASE outcome WHEN 'success' THEN 'denied' ELSE 'success' END"},
    {"source_address", "'192.0.2.1'"},
    {"request_id", "'req-evil'"},
    {"details", "'{\"n\":-1}'"},
    {"hash", "zeroblob(32)"},
    {"seq", "seq + 1000"},
};

// A 50-event log with a signed checkpoint after every 10th event (the file
// holds seqs 10, 20, 30, 40, 50), and a raw connection to tamper with it.
// Each tampering is undone from a copy of the table before the next.
class AuditVerifyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ = testing::OpenDatabase(db_path_);
    ASSERT_TRUE(db_);
    AppendAndCheckpoint(0, kEvents);
    raw_ = std::make_unique<RawSqlite>(db_path_);
    raw_->DropAppendOnlyTriggers();
    raw_->Exec("CREATE TEMP TABLE pristine AS SELECT * FROM audit_events");
    auto checkpoints = ReadCheckpoints(checkpoint_path_);
    ASSERT_TRUE(checkpoints);
    checkpoints_ = *checkpoints;
    ASSERT_EQ(checkpoints_.size(), 5u);
  }

  // Appends events first..first+count-1, checkpointing every 10th seq.
  void AppendAndCheckpoint(int first, int count) {
    std::vector<Checkpoint> signed_now;
    ASSERT_TRUE(db_->Write([&](storage::Transaction& txn) -> Status {
      for (int i = first; i < first + count; ++i) {
        auto seq = Append(txn, MakeEvent(i), TimeAt(i));
        if (!seq) return seq.error();
        if (*seq % kCheckpointEvery != 0) continue;
        auto last = Last(txn);
        if (!last) return last.error();
        signed_now.push_back(Sign(*key_, *seq, (*last)->hash, "2026-01-02T00:00:00.000000Z"));
      }
      return Ok();
    }));
    for (const Checkpoint& c : signed_now) ASSERT_TRUE(AppendCheckpoint(checkpoint_path_, c));
  }

  void Restore() {
    raw_->Exec("DELETE FROM audit_events");
    raw_->Exec("INSERT INTO audit_events SELECT * FROM pristine");
  }

  VerifyReport Run(const std::vector<Checkpoint>& checkpoints, std::int64_t from_seq = 0) {
    VerifyOptions options;
    options.checkpoints = checkpoints;
    options.public_key = key_->public_key();
    options.from_seq = from_seq;
    auto report = Verify(*db_, options);
    EXPECT_TRUE(report) << report.error().message();
    return report ? *report : VerifyReport{};
  }
  VerifyReport Run() { return Run(checkpoints_); }

  // Rewrites the hashes of rows from..end so the chain is consistent again,
  // as an attacker who knows the algorithm would after an edit.
  void RecomputeChainFrom(std::int64_t from) {
    Hash previous{};
    std::vector<StoredEvent> events;
    ASSERT_TRUE(ForEach(*db_, Filter{}, [&](const StoredEvent& e) -> Status {
      events.push_back(e);
      return Ok();
    }));
    for (const StoredEvent& e : events) {
      if (e.seq >= from) {
        const Hash hash = ChainHash(previous, e.seq, e.occurred_at, e.event);
        raw_->Run("UPDATE audit_events SET hash = ? WHERE seq = ?",
                  {storage::Blob(hash.begin(), hash.end()), e.seq});
        previous = hash;
      } else {
        previous = e.hash;
      }
    }
  }

  static std::int64_t NextCheckpointAtOrAfter(std::int64_t seq) {
    return (seq + kCheckpointEvery - 1) / kCheckpointEvery * kCheckpointEvery;
  }

  TempDir dir_;
  std::string db_path_ = dir_.File("carewire.db");
  std::string checkpoint_path_ = dir_.File("audit-checkpoints.jsonl");
  std::unique_ptr<SigningKey> key_ = TestKey();
  std::unique_ptr<storage::Database> db_;
  std::unique_ptr<RawSqlite> raw_;
  std::vector<Checkpoint> checkpoints_;
};

TEST_F(AuditVerifyTest, AnUntouchedLogVerifies) {
  const VerifyReport report = Run();
  EXPECT_TRUE(report.ok) << report.problem;
  EXPECT_EQ(report.events, kEvents);
  EXPECT_EQ(report.last_seq, kEvents);
  EXPECT_EQ(report.first_bad_seq, 0);
  EXPECT_EQ(report.last_good_checkpoint, kEvents);
  EXPECT_EQ(report.problem, "");

  for (std::int64_t from : {10, 30, 50}) {
    const VerifyReport partial = Run(checkpoints_, from);
    EXPECT_TRUE(partial.ok) << from;
    EXPECT_EQ(partial.events, kEvents - from);
  }
  VerifyOptions options;
  options.from_seq = 15;  // not a checkpoint
  options.checkpoints = checkpoints_;
  options.public_key = key_->public_key();
  auto refused = Verify(*db_, options);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error(), Error::kNoSuchCheckpoint);
}

TEST_F(AuditVerifyTest, EditingAnyFieldOfAnyRowIsFoundAtThatRow) {
  for (const FieldEdit& edit : kEdits) {
    for (int seq = 1; seq <= kEvents; ++seq) {
      raw_->Exec(std::string("UPDATE audit_events SET ") + edit.column + " = " + edit.set +
                 " WHERE seq = " + std::to_string(seq));
      const VerifyReport report = Run();
      EXPECT_FALSE(report.ok) << edit.column << " at " << seq;
      EXPECT_EQ(report.first_bad_seq, seq) << edit.column << " at " << seq;
      const std::string expected =
          std::string(edit.column) == "seq" ? "sequence break" : "hash mismatch";
      EXPECT_EQ(report.problem, expected) << edit.column << " at " << seq;
      EXPECT_EQ(report.last_good_checkpoint, (seq - 1) / kCheckpointEvery * kCheckpointEvery);
      Restore();
    }
  }
  EXPECT_TRUE(Run().ok);
}

TEST_F(AuditVerifyTest, DeletingAnyRowIsFoundAtThatRow) {
  for (int seq = 1; seq <= kEvents; ++seq) {
    raw_->Exec("DELETE FROM audit_events WHERE seq = " + std::to_string(seq));
    const VerifyReport report = Run();
    EXPECT_FALSE(report.ok) << seq;
    EXPECT_EQ(report.first_bad_seq, seq);
    // The last row's deletion leaves no gap; only its checkpoint shows it.
    EXPECT_EQ(report.problem, seq == kEvents ? "log truncated" : "sequence break") << seq;
    Restore();
  }
}

TEST_F(AuditVerifyTest, SwappingAnyTwoAdjacentRowsIsFoundAtTheFirst) {
  constexpr const char* kSwap =
      "UPDATE audit_events SET (occurred_at, org_id, actor_type, actor_id, action, target_type, "
      "target_id, patient_id, outcome, source_address, request_id, details, hash) = "
      "(SELECT occurred_at, org_id, actor_type, actor_id, action, target_type, target_id, "
      "patient_id, outcome, source_address, request_id, details, hash FROM pristine p "
      "WHERE p.seq = CASE audit_events.seq WHEN ?1 THEN ?1 + 1 ELSE ?1 END) "
      "WHERE seq IN (?1, ?1 + 1)";
  for (int seq = 1; seq < kEvents; ++seq) {
    raw_->Run(kSwap, {std::int64_t{seq}});
    const VerifyReport report = Run();
    EXPECT_FALSE(report.ok) << seq;
    EXPECT_EQ(report.first_bad_seq, seq);
    EXPECT_EQ(report.problem, "hash mismatch");
    Restore();
  }
}

TEST_F(AuditVerifyTest, InsertingARowAnywhereIsFound) {
  for (int seq = 1; seq <= kEvents + 1; ++seq) {
    for (bool correct_hash : {false, true}) {
      // Make room at `seq`, then insert there.
      raw_->Exec("UPDATE audit_events SET seq = -seq WHERE seq >= " + std::to_string(seq));
      raw_->Exec("UPDATE audit_events SET seq = 1 - seq WHERE seq < 0");
      Hash previous{};
      if (seq > 1) {
        ASSERT_TRUE(db_->Read([&](storage::Transaction& txn) -> Status {
          auto before = Find(txn, seq - 1);
          if (!before) return before.error();
          previous = (*before)->hash;
          return Ok();
        }));
      }
      Event forged = MakeEvent(1000);
      forged.actor_type = ActorType::kUser;
      forged.patient_id = "";
      forged.outcome = Outcome::kSuccess;
      const std::string time = TimeAt(seq);
      Hash hash = correct_hash ? ChainHash(previous, seq, time, forged) : previous;
      raw_->Run(
          "INSERT INTO audit_events (seq, occurred_at, org_id, actor_type, actor_id, action, "
          "target_type, target_id, patient_id, outcome, source_address, request_id, details, "
          "hash) VALUES (?, ?, ?, 'user', ?, ?, ?, ?, NULL, 'success', ?, ?, ?, ?)",
          {std::int64_t{seq}, time, forged.org_id, forged.actor_id, forged.action,
           forged.target_type, forged.target_id, forged.source_address, forged.request_id,
           forged.details, storage::Blob(hash.begin(), hash.end())});
      const VerifyReport report = Run();
      const std::string where = std::to_string(seq) + (correct_hash ? " hashed" : " unhashed");
      if (!correct_hash) {
        EXPECT_FALSE(report.ok) << where;
        EXPECT_EQ(report.first_bad_seq, seq) << where;
      } else if (seq <= kEvents) {
        // The forged row chains, but a checkpoint at its seq expects the
        // original row, and the row after it was hashed at its old seq.
        EXPECT_FALSE(report.ok) << where;
        EXPECT_EQ(report.first_bad_seq, seq % kCheckpointEvery == 0 ? seq : seq + 1) << where;
      } else {
        // A correctly hashed row after the last is an append: the chain
        // cannot tell it from a real one (see verify.hpp).
        EXPECT_TRUE(report.ok) << where;
      }
      Restore();
    }
  }
}

TEST_F(AuditVerifyTest, RecomputedChainIsCaughtByTheNextCheckpointButNotAfterTheLast) {
  // Five events beyond the last checkpoint (seq 50).
  raw_.reset();
  AppendAndCheckpoint(kEvents, 5);
  raw_ = std::make_unique<RawSqlite>(db_path_);
  raw_->DropAppendOnlyTriggers();
  raw_->Exec("CREATE TEMP TABLE pristine AS SELECT * FROM audit_events");
  ASSERT_TRUE(Run().ok);

  for (int seq = 1; seq <= kEvents + 5; ++seq) {
    raw_->Exec("UPDATE audit_events SET actor_id = 'user-evil' WHERE seq = " + std::to_string(seq));
    RecomputeChainFrom(seq);
    const VerifyReport report = Run();
    if (seq <= kEvents) {
      EXPECT_FALSE(report.ok) << seq;
      EXPECT_EQ(report.first_bad_seq, NextCheckpointAtOrAfter(seq)) << seq;
      EXPECT_EQ(report.problem, "checkpoint hash mismatch") << seq;
      EXPECT_EQ(report.last_good_checkpoint, NextCheckpointAtOrAfter(seq) - kCheckpointEvery);
    } else {
      EXPECT_TRUE(report.ok) << seq << ": " << report.problem;
    }
    Restore();
  }
}

TEST_F(AuditVerifyTest, TruncatingTheTailIsFoundAtTheFirstMissingSeq) {
  for (int k : {1, 2, 9, 10, 11, 25, 49, 50}) {
    raw_->Exec("DELETE FROM audit_events WHERE seq > " + std::to_string(kEvents - k));
    const VerifyReport report = Run();
    EXPECT_FALSE(report.ok) << k;
    EXPECT_EQ(report.first_bad_seq, kEvents - k + 1) << k;
    EXPECT_EQ(report.problem, "log truncated") << k;
    EXPECT_EQ(report.last_seq, kEvents - k) << k;
    Restore();
  }
}

TEST_F(AuditVerifyTest, AFlippedSignatureBitInTheFileIsFoundAtItsSeq) {
  std::ifstream in(checkpoint_path_);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  ASSERT_EQ(lines.size(), 5u);

  for (std::size_t i = 0; i < lines.size(); ++i) {
    for (std::size_t bit : {0u, 200u, 511u}) {
      auto changed = lines;
      // The signature's hex digits sit just before the closing quote and brace.
      const std::size_t signature_start = changed[i].size() - 2 - 128;
      const std::size_t digit = signature_start + bit / 4;
      const int value = std::stoi(changed[i].substr(digit, 1), nullptr, 16) ^ (1 << (bit % 4));
      changed[i][digit] = "0123456789abcdef"[value];

      const std::string path = dir_.File("tampered.jsonl");
      std::ofstream out(path, std::ios::trunc);
      for (const auto& line : changed) out << line << "\n";
      out.close();
      auto read = ReadCheckpoints(path);
      ASSERT_TRUE(read);
      const VerifyReport report = Run(*read);
      EXPECT_FALSE(report.ok) << i << " bit " << bit;
      EXPECT_EQ(report.first_bad_seq, static_cast<std::int64_t>(10 * (i + 1)));
      EXPECT_EQ(report.problem, "checkpoint signature invalid");
    }
  }
}

TEST_F(AuditVerifyTest, CheckpointsOutOfOrderAreFound) {
  auto c = checkpoints_;
  EXPECT_EQ(Run({c[0], c[2], c[1], c[3], c[4]}).first_bad_seq, 20);
  EXPECT_EQ(Run({c[0], c[2], c[1], c[3], c[4]}).problem, "checkpoints out of order");
  EXPECT_EQ(Run({c[0], c[1], c[1], c[2]}).first_bad_seq, 20);
  EXPECT_EQ(Run({c[4], c[0]}).first_bad_seq, 10);
  // The earliest problem wins: an edit at seq 5 comes before a disorder at 20.
  raw_->Exec("UPDATE audit_events SET action = 'x' WHERE seq = 5");
  EXPECT_EQ(Run({c[0], c[2], c[1]}).first_bad_seq, 5);
}

TEST_F(AuditVerifyTest, ACheckpointFromAnotherKeyIsRefused) {
  auto other = TestKey(99);
  auto forged = checkpoints_;
  forged[2] = Sign(*other, forged[2].seq, forged[2].hash, forged[2].time);
  const VerifyReport report = Run(forged);
  EXPECT_FALSE(report.ok);
  EXPECT_EQ(report.first_bad_seq, 30);
  EXPECT_EQ(report.problem, "checkpoint signature invalid");
}

TEST_F(AuditVerifyTest, WithoutCheckpointsOnlyTheChainIsChecked) {
  EXPECT_EQ(Run({}).problem, "no checkpoint");
  EXPECT_EQ(Run({}).first_bad_seq, 1);
  VerifyOptions options;
  options.require_checkpoints = false;
  auto report = Verify(*db_, options);
  ASSERT_TRUE(report);
  EXPECT_TRUE(report->ok);
  EXPECT_EQ(report->events, kEvents);
}

TEST_F(AuditVerifyTest, StartUpCheckFromTheLastCheckpoint) {
  auto report = VerifySinceLastCheckpoint(*db_, checkpoint_path_, key_->public_key());
  ASSERT_TRUE(report);
  EXPECT_TRUE(report->ok);
  EXPECT_EQ(report->events, 0);
  EXPECT_EQ(report->last_seq, kEvents);

  // New events since the last checkpoint are chain-checked.
  raw_.reset();
  AppendAndCheckpoint(kEvents, 5);  // 51..55, no new checkpoint
  raw_ = std::make_unique<RawSqlite>(db_path_);
  raw_->DropAppendOnlyTriggers();
  raw_->Exec("CREATE TEMP TABLE pristine AS SELECT * FROM audit_events");
  report = VerifySinceLastCheckpoint(*db_, checkpoint_path_, key_->public_key());
  ASSERT_TRUE(report);
  EXPECT_TRUE(report->ok);
  EXPECT_EQ(report->events, 5);

  raw_->Exec("UPDATE audit_events SET org_id = NULL WHERE seq = 53");
  report = VerifySinceLastCheckpoint(*db_, checkpoint_path_, key_->public_key());
  ASSERT_TRUE(report);
  EXPECT_EQ(report->first_bad_seq, 53);
  EXPECT_EQ(report->problem, "hash mismatch");
  Restore();

  raw_->Exec("UPDATE audit_events SET hash = zeroblob(32) WHERE seq = 50");
  report = VerifySinceLastCheckpoint(*db_, checkpoint_path_, key_->public_key());
  ASSERT_TRUE(report);
  EXPECT_EQ(report->first_bad_seq, 50);
  EXPECT_EQ(report->problem, "checkpoint hash mismatch");
  Restore();

  raw_->Exec("DELETE FROM audit_events WHERE seq >= 47");
  report = VerifySinceLastCheckpoint(*db_, checkpoint_path_, key_->public_key());
  ASSERT_TRUE(report);
  EXPECT_EQ(report->first_bad_seq, 47);
  EXPECT_EQ(report->problem, "log truncated");
  Restore();

  raw_->Exec("DELETE FROM audit_events WHERE seq = 50");
  report = VerifySinceLastCheckpoint(*db_, checkpoint_path_, key_->public_key());
  ASSERT_TRUE(report);
  EXPECT_EQ(report->first_bad_seq, 50);
  EXPECT_EQ(report->problem, "sequence break");
  Restore();

  auto missing = VerifySinceLastCheckpoint(*db_, dir_.File("none.jsonl"), key_->public_key());
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error(), Error::kCheckpointFileMissing);

  auto wrong_key = VerifySinceLastCheckpoint(*db_, checkpoint_path_, TestKey(99)->public_key());
  ASSERT_TRUE(wrong_key);
  EXPECT_EQ(wrong_key->first_bad_seq, 50);
  EXPECT_EQ(wrong_key->problem, "checkpoint signature invalid");
}

}  // namespace
}  // namespace cw::audit
