#include "audit/checkpoint.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include "audit/test_support.hpp"

namespace cw::audit {
namespace {

using testing::AppendEvents;
using testing::LastEvent;
using testing::RawSqlite;
using testing::TempDir;
using testing::TestKey;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

Hash SomeHash(std::uint8_t fill) {
  Hash hash;
  hash.fill(fill);
  return hash;
}

// Waits up to 10 s for `done`; tests never assert a time, only an outcome.
template <class F>
bool Eventually(F done) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < until) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return done();
}

class AuditCheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ = testing::OpenDatabase(dir_.File("carewire.db"));
    ASSERT_TRUE(db_);
  }

  std::int64_t LastCheckpointSeq() {
    auto last = ReadLastCheckpoint(path_);
    if (!last || !*last) return 0;
    return (*last)->seq;
  }

  TempDir dir_;
  std::unique_ptr<storage::Database> db_;
  std::unique_ptr<SigningKey> key_ = TestKey();
  std::string path_ = dir_.File("audit-checkpoints.jsonl");
};

TEST_F(AuditCheckpointTest, SignaturesVerifyOnlyUnchangedAndWithTheRightKey) {
  const Checkpoint checkpoint = Sign(*key_, 42, SomeHash(3), "2026-01-01T00:00:00.000000Z");
  EXPECT_TRUE(VerifySignature(key_->public_key(), checkpoint));

  // The same seed gives the same key; another seed another.
  EXPECT_EQ(TestKey()->public_key(), key_->public_key());
  EXPECT_FALSE(VerifySignature(TestKey(8)->public_key(), checkpoint));

  Checkpoint changed = checkpoint;
  changed.seq = 43;
  EXPECT_FALSE(VerifySignature(key_->public_key(), changed));
  changed = checkpoint;
  changed.hash[31] ^= 1;
  EXPECT_FALSE(VerifySignature(key_->public_key(), changed));
  changed = checkpoint;
  changed.time = "2026-01-01T00:00:01.000000Z";
  EXPECT_FALSE(VerifySignature(key_->public_key(), changed));
  changed = checkpoint;
  changed.signature[0] ^= 0x80;
  EXPECT_FALSE(VerifySignature(key_->public_key(), changed));

  const std::uint8_t short_seed[16] = {};
  EXPECT_THROW(SigningKey::FromSeed(short_seed), std::invalid_argument);
}

TEST_F(AuditCheckpointTest, LinesRoundTripAndOddLinesAreRefused) {
  const Checkpoint checkpoint = Sign(*key_, 7, SomeHash(0xab), "2026-01-01T00:00:00.000000Z");
  const std::string line = FormatCheckpointLine(checkpoint);
  EXPECT_EQ(line.rfind("{\"seq\":7,\"hash\":\"abab", 0), 0u) << line;
  EXPECT_EQ(line.find('\n'), std::string::npos);
  auto parsed = ParseCheckpointLine(line);
  ASSERT_TRUE(parsed);
  EXPECT_EQ(*parsed, checkpoint);

  const std::string hash(64, 'a');
  const std::string sig(128, 'b');
  auto make = [&](const std::string& seq, const std::string& h, const std::string& time,
                  const std::string& s) {
    return "{\"seq\":" + seq + ",\"hash\":\"" + h + "\",\"time\":\"" + time +
           "\",\"signature\":\"" + s + "\"}";
  };
  EXPECT_TRUE(ParseCheckpointLine(make("1", hash, "2026-01-01T00:00:00Z", sig)));
  for (const std::string& bad : {
           std::string(),
           std::string("[]"),
           make("0", hash, "2026-01-01T00:00:00Z", sig),
           make("-3", hash, "2026-01-01T00:00:00Z", sig),
           make("1.5", hash, "2026-01-01T00:00:00Z", sig),
           make("\"1\"", hash, "2026-01-01T00:00:00Z", sig),
           make("1", hash.substr(2), "2026-01-01T00:00:00Z", sig),
           make("1", "zz" + hash.substr(2), "2026-01-01T00:00:00Z", sig),
           make("1", hash, "yesterday", sig),
           make("1", hash, "2026-01-01T00:00:00Z", sig + "00"),
           make("1", hash, "2026-01-01T00:00:00Z", sig).insert(1, "\"x\":1,"),
           std::string("{\"seq\":1}"),
       }) {
    EXPECT_FALSE(ParseCheckpointLine(bad)) << bad;
  }
}

TEST_F(AuditCheckpointTest, FileIsCreatedOwnerOnlyAndOnlyGrows) {
  auto missing = ReadCheckpoints(path_);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error(), Error::kCheckpointFileMissing);
  EXPECT_EQ(ReadLastCheckpoint(path_).error(), Error::kCheckpointFileMissing);

  const Checkpoint first = Sign(*key_, 10, SomeHash(1), "2026-01-01T00:00:00.000000Z");
  const Checkpoint second = Sign(*key_, 20, SomeHash(2), "2026-01-01T00:00:01.000000Z");
  ASSERT_TRUE(AppendCheckpoint(path_, first));
  struct stat st {};
  ASSERT_EQ(::stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  ASSERT_TRUE(AppendCheckpoint(path_, second));
  for (const Checkpoint& stale : {first, second, Sign(*key_, 15, SomeHash(4), first.time)}) {
    const Status refused = AppendCheckpoint(path_, stale);
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error(), Error::kCheckpointStale);
  }

  auto all = ReadCheckpoints(path_);
  ASSERT_TRUE(all);
  EXPECT_EQ(*all, (std::vector<Checkpoint>{first, second}));
  auto last = ReadLastCheckpoint(path_);
  ASSERT_TRUE(last && *last);
  EXPECT_EQ(**last, second);
  EXPECT_EQ(ReadFile(path_),
            FormatCheckpointLine(first) + "\n" + FormatCheckpointLine(second) + "\n");

  WriteFile(path_, "");
  auto empty = ReadCheckpoints(path_);
  ASSERT_TRUE(empty);
  EXPECT_TRUE(empty->empty());
  last = ReadLastCheckpoint(path_);
  ASSERT_TRUE(last);
  EXPECT_FALSE(*last);
}

TEST_F(AuditCheckpointTest, MalformedLinesAreReportedByNumber) {
  const std::string good1 = FormatCheckpointLine(Sign(*key_, 1, SomeHash(1), "2026-01-01"));
  const std::string good2 = FormatCheckpointLine(Sign(*key_, 2, SomeHash(2), "2026-01-01"));

  WriteFile(path_, good1 + "\n" + "{\"seq\":2}\n" + good2 + "\n");
  std::int64_t bad_line = 0;
  auto read = ReadCheckpoints(path_, &bad_line);
  ASSERT_FALSE(read);
  EXPECT_EQ(read.error(), Error::kCheckpointMalformed);
  EXPECT_EQ(bad_line, 2);

  // A torn last line (a crash during an append) is malformed too, and
  // nothing is appended after it.
  WriteFile(path_, good1 + "\n" + good2.substr(0, 40));
  read = ReadCheckpoints(path_, &bad_line);
  ASSERT_FALSE(read);
  EXPECT_EQ(bad_line, 2);
  EXPECT_EQ(ReadLastCheckpoint(path_).error(), Error::kCheckpointMalformed);
  EXPECT_EQ(AppendCheckpoint(path_, Sign(*key_, 3, SomeHash(3), "2026-01-01")).error(),
            Error::kCheckpointMalformed);

  WriteFile(path_, good1 + "\n\n");
  read = ReadCheckpoints(path_, &bad_line);
  ASSERT_FALSE(read);
  EXPECT_EQ(bad_line, 2);

  // The last line is found however long the file grows.
  std::string many;
  for (int i = 1; i <= 200; ++i) {
    many += FormatCheckpointLine(Sign(*key_, i, SomeHash(5), "2026-01-01")) + "\n";
  }
  WriteFile(path_, many);
  auto last = ReadLastCheckpoint(path_);
  ASSERT_TRUE(last && *last);
  EXPECT_EQ((*last)->seq, 200);
}

TEST_F(AuditCheckpointTest, WriteCheckpointNowSignsTheNewestEventOnce) {
  auto none = WriteCheckpointNow(*db_, *key_, path_);
  ASSERT_TRUE(none);
  EXPECT_FALSE(*none);
  auto read = ReadCheckpoints(path_);  // created, empty
  ASSERT_TRUE(read);
  EXPECT_TRUE(read->empty());

  AppendEvents(*db_, 0, 5);
  auto written = WriteCheckpointNow(*db_, *key_, path_);
  ASSERT_TRUE(written && *written);
  EXPECT_EQ((*written)->seq, 5);
  EXPECT_EQ((*written)->hash, LastEvent(*db_).hash);
  EXPECT_TRUE(VerifySignature(key_->public_key(), **written));

  auto again = WriteCheckpointNow(*db_, *key_, path_);
  ASSERT_TRUE(again);
  EXPECT_FALSE(*again);

  AppendEvents(*db_, 5, 3);
  written = WriteCheckpointNow(*db_, *key_, path_);
  ASSERT_TRUE(written && *written);
  EXPECT_EQ((*written)->seq, 8);
  read = ReadCheckpoints(path_);
  ASSERT_TRUE(read);
  ASSERT_EQ(read->size(), 2u);
}

TEST_F(AuditCheckpointTest, WriteCheckpointNowRefusesToSignOverATamperedLog) {
  AppendEvents(*db_, 0, 5);
  ASSERT_TRUE(WriteCheckpointNow(*db_, *key_, path_));
  RawSqlite raw(dir_.File("carewire.db"));
  raw.DropAppendOnlyTriggers();

  // Rewritten at the checkpointed seq.
  raw.Exec("UPDATE audit_events SET hash = zeroblob(32) WHERE seq = 5");
  AppendEvents(*db_, 5, 1);
  auto refused = WriteCheckpointNow(*db_, *key_, path_);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error(), Error::kCheckpointMismatch);

  // Truncated below it.
  raw.Exec("DELETE FROM audit_events WHERE seq >= 4");
  refused = WriteCheckpointNow(*db_, *key_, path_);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error(), Error::kCheckpointAhead);
  EXPECT_EQ(LastCheckpointSeq(), 5);
}

TEST_F(AuditCheckpointTest, CheckpointerWritesEveryNEventsAndAtStop) {
  CheckpointerOptions options;
  options.poll = std::chrono::milliseconds(5);
  options.every_events = 10;
  options.interval = std::chrono::hours(1);
  Checkpointer checkpointer(*db_, *key_, path_, options);

  AppendEvents(*db_, 0, 10);
  EXPECT_TRUE(Eventually([&] { return LastCheckpointSeq() == 10; }));

  // Fewer than every_events since: not due until Stop.
  AppendEvents(*db_, 10, 4);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(LastCheckpointSeq(), 10);
  checkpointer.Stop();
  EXPECT_EQ(LastCheckpointSeq(), 14);
  EXPECT_EQ(checkpointer.written(), 2);
  checkpointer.Stop();  // idempotent, nothing new to write
  EXPECT_EQ(checkpointer.written(), 2);

  struct stat st {};
  ASSERT_EQ(::stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto all = ReadCheckpoints(path_);
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 2u);
  for (const Checkpoint& c : *all) EXPECT_TRUE(VerifySignature(key_->public_key(), c));
}

TEST_F(AuditCheckpointTest, CheckpointerWritesAfterTheIntervalAndSkipsWhatOthersWrote) {
  AppendEvents(*db_, 0, 3);
  // The command line checkpointed already: nothing for the server to add.
  ASSERT_TRUE(WriteCheckpointNow(*db_, *key_, path_));

  CheckpointerOptions options;
  options.poll = std::chrono::milliseconds(5);
  options.every_events = 1000;
  options.interval = std::chrono::milliseconds(20);
  Checkpointer checkpointer(*db_, *key_, path_, options);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(checkpointer.written(), 0);

  AppendEvents(*db_, 3, 1);
  EXPECT_TRUE(Eventually([&] { return LastCheckpointSeq() == 4; }));
  checkpointer.Stop();
  EXPECT_EQ(checkpointer.written(), 1);
}

}  // namespace
}  // namespace cw::audit
