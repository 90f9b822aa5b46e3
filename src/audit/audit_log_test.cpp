#include "audit/audit_log.hpp"

#include <gtest/gtest.h>
#include <sodium.h>

#include <atomic>
#include <set>
#include <thread>

#include "audit/test_support.hpp"
#include "audit/verify.hpp"
#include "core/time.hpp"

namespace cw::audit {
namespace {

using testing::AppendEvents;
using testing::CountRows;
using testing::LastEvent;
using testing::MakeEvent;
using testing::TempDir;
using testing::TimeAt;

class AuditLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ = testing::OpenDatabase(dir_.File("carewire.db"));
    ASSERT_TRUE(db_);
  }

  std::vector<StoredEvent> All() {
    std::vector<StoredEvent> events;
    EXPECT_TRUE(ForEach(*db_, Filter{}, [&](const StoredEvent& e) -> Status {
      events.push_back(e);
      return Ok();
    }));
    return events;
  }

  Result<std::vector<StoredEvent>> RunQuery(const Filter& filter) {
    Result<std::vector<StoredEvent>> out = std::vector<StoredEvent>();
    EXPECT_TRUE(db_->Read([&](storage::Transaction& txn) -> Status {
      out = Query(txn, filter);
      return Ok();
    }));
    return out;
  }

  VerifyReport VerifyChain() {
    VerifyOptions options;
    options.require_checkpoints = false;
    auto report = Verify(*db_, options);
    EXPECT_TRUE(report) << report.error().message();
    return report ? *report : VerifyReport{};
  }

  TempDir dir_;
  std::unique_ptr<storage::Database> db_;
};

// A work that inserts a write probe and records it in the audit log.
storage::WriteWork ProbeAndAudit(int i, bool fail_after) {
  return [i, fail_after](storage::Transaction& txn) -> Status {
    auto inserted =
        txn.Execute("INSERT INTO write_probes (created_at) VALUES (?)", {core::NowRfc3339()});
    if (!inserted) return inserted.error();
    auto seq = Append(txn, MakeEvent(i), core::NowRfc3339());
    if (!seq) return seq.error();
    if (fail_after) return make_error_code(Error::kInvalidEvent);  // any error will do
    return Ok();
  };
}

TEST_F(AuditLogTest, AppendNumbersFromOneAndChainsFromZeroHash) {
  std::vector<std::int64_t> seqs;
  ASSERT_TRUE(db_->Write([&](storage::Transaction& txn) -> Status {
    for (int i = 0; i < 3; ++i) {
      auto seq = Append(txn, MakeEvent(i), TimeAt(i));
      if (!seq) return seq.error();
      seqs.push_back(*seq);
    }
    return Ok();
  }));
  EXPECT_EQ(seqs, (std::vector<std::int64_t>{1, 2, 3}));

  const auto events = All();
  ASSERT_EQ(events.size(), 3u);
  Hash previous{};
  for (int i = 0; i < 3; ++i) {
    const StoredEvent& e = events[static_cast<std::size_t>(i)];
    EXPECT_EQ(e.seq, i + 1);
    EXPECT_EQ(e.occurred_at, TimeAt(i));
    EXPECT_EQ(e.event, MakeEvent(i));
    EXPECT_EQ(e.hash, ChainHash(previous, e.seq, e.occurred_at, e.event));
    previous = e.hash;
  }
  EXPECT_EQ(LastEvent(*db_).seq, 3);
}

TEST_F(AuditLogTest, ChainHashFollowsTheDocumentedCanonicalForm) {
  Event e;
  e.org_id = "org";
  e.actor_type = ActorType::kUser;
  e.actor_id = "u1";
  e.action = "auth.login";
  e.outcome = Outcome::kDenied;
  e.details = "{\"reason\":\"mfa\"}";
  Hash previous{};
  previous[0] = 0xab;
  const std::string time = "2026-11-21T21:36:20.123456Z";

  // Built here independently from the comment in audit_log.hpp.
  std::string bytes(previous.begin(), previous.end());
  auto item = [&bytes](std::string_view s) {
    const auto n = static_cast<std::uint32_t>(s.size());
    bytes.push_back(static_cast<char>(n >> 24));
    bytes.push_back(static_cast<char>(n >> 16));
    bytes.push_back(static_cast<char>(n >> 8));
    bytes.push_back(static_cast<char>(n));
    bytes.append(s);
  };
  for (std::string_view s : {"carewire-audit-v1", "42", time.c_str(), "org", "user", "u1",
                             "auth.login", "", "", "", "denied", "", "", "{\"reason\":\"mfa\"}"}) {
    item(s);
  }
  Hash expected;
  crypto_hash_sha256(expected.data(), reinterpret_cast<const unsigned char*>(bytes.data()),
                     bytes.size());
  EXPECT_EQ(ChainHash(previous, 42, time, e), expected);

  // Moving bytes between neighbouring fields changes the hash.
  Event moved = e;
  moved.org_id = "or";
  moved.actor_id = "gu1";
  EXPECT_NE(ChainHash(previous, 42, time, moved), ChainHash(previous, 42, time, e));
  EXPECT_NE(ChainHash(previous, 43, time, e), ChainHash(previous, 42, time, e));
}

TEST_F(AuditLogTest, EmptyFieldsAreStoredAsNull) {
  Event e;
  e.action = "system.start";
  ASSERT_TRUE(db_->Write([&](storage::Transaction& txn) -> Status {
    auto seq = Append(txn, e, TimeAt(0));
    if (!seq) return seq.error();
    return Ok();
  }));
  std::int64_t nulls = -1;
  ASSERT_TRUE(db_->Read([&](storage::Transaction& txn) -> Status {
    auto row = txn.QueryOne(
        "SELECT (org_id IS NULL) + (actor_id IS NULL) + (target_type IS NULL) + "
        "(target_id IS NULL) + (patient_id IS NULL) + (source_address IS NULL) + "
        "(request_id IS NULL) + (details IS NULL) FROM audit_events");
    if (!row) return row.error();
    nulls = (*row)->Int(0);
    return Ok();
  }));
  EXPECT_EQ(nulls, 8);
  EXPECT_EQ(LastEvent(*db_).event, e);
}

TEST_F(AuditLogTest, EventCommitsAndRollsBackWithTheChangeItRecords) {
  EXPECT_FALSE(db_->Write(ProbeAndAudit(1, /*fail_after=*/true)));
  EXPECT_EQ(CountRows(*db_, "write_probes"), 0);
  EXPECT_EQ(CountRows(*db_, "audit_events"), 0);

  EXPECT_TRUE(db_->Write(ProbeAndAudit(2, /*fail_after=*/false)));
  EXPECT_EQ(CountRows(*db_, "write_probes"), 1);
  EXPECT_EQ(CountRows(*db_, "audit_events"), 1);
  EXPECT_EQ(LastEvent(*db_).event, MakeEvent(2));
}

TEST_F(AuditLogTest, AFailedWriteInABatchLeavesNoGap) {
  storage::testing::Outcomes outcomes;
  {
    // Holds the writer so the three writes form one batch (one transaction).
    storage::testing::WriterHold hold(*db_);
    db_->SubmitWrite(ProbeAndAudit(1, false), outcomes.Recorder(1));
    db_->SubmitWrite(ProbeAndAudit(2, true), outcomes.Recorder(2));
    db_->SubmitWrite(ProbeAndAudit(3, false), outcomes.Recorder(3));
  }
  outcomes.WaitFor(3);
  auto results = outcomes.Results();
  EXPECT_TRUE(results.at(1));
  EXPECT_FALSE(results.at(2));
  EXPECT_TRUE(results.at(3));

  const auto events = All();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].seq, 1);
  EXPECT_EQ(events[1].seq, 2);
  EXPECT_EQ(events[1].event, MakeEvent(3));
  EXPECT_TRUE(VerifyChain().ok);
}

TEST_F(AuditLogTest, ConcurrentGroupCommittedAppendsFormOneGapFreeChain) {
  constexpr int kThreads = 6;
  constexpr int kPerThread = 60;
  storage::testing::Outcomes outcomes;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const int key = t * kPerThread + i;
        db_->SubmitWrite(ProbeAndAudit(key, false), outcomes.Recorder(key));
      }
    });
  }
  for (auto& thread : threads) thread.join();
  outcomes.WaitFor(kThreads * kPerThread);
  for (const auto& [key, status] : outcomes.Results()) EXPECT_TRUE(status) << key;

  const auto events = All();
  ASSERT_EQ(events.size(), static_cast<std::size_t>(kThreads * kPerThread));
  std::set<std::string> request_ids;
  for (std::size_t i = 0; i < events.size(); ++i) {
    EXPECT_EQ(events[i].seq, static_cast<std::int64_t>(i + 1));
    request_ids.insert(events[i].event.request_id);
  }
  EXPECT_EQ(request_ids.size(), events.size());  // every write recorded exactly once

  const VerifyReport report = VerifyChain();
  EXPECT_TRUE(report.ok) << report.problem << " at " << report.first_bad_seq;
  EXPECT_EQ(report.events, kThreads * kPerThread);
  EXPECT_LT(db_->Stats().commits, db_->Stats().writes);  // batches did form
}

TEST_F(AuditLogTest, RefusesEventsThatBreakTheRules) {
  std::vector<Event> bad;
  auto with = [](auto change) {
    Event e = MakeEvent(1);
    change(e);
    return e;
  };
  bad.push_back(with([](Event& e) { e.action = ""; }));
  bad.push_back(with([](Event& e) { e.action = "Auth.Login"; }));
  bad.push_back(with([](Event& e) { e.action = "auth login"; }));
  bad.push_back(with([](Event& e) { e.action = std::string(kMaxActionSize + 1, 'a'); }));
  bad.push_back(with([](Event& e) { e.actor_id = std::string(kMaxFieldSize + 1, 'a'); }));
  bad.push_back(with([](Event& e) { e.target_id = "a\nb"; }));
  bad.push_back(with([](Event& e) { e.org_id = std::string("a\0b", 3); }));
  bad.push_back(with([](Event& e) { e.source_address = "\x7f"; }));
  bad.push_back(with([](Event& e) { e.request_id = "\xc2\x85"; }));  // U+0085, a C1 control
  bad.push_back(with([](Event& e) { e.patient_id = "\xff\xfe"; }));  // not UTF-8
  bad.push_back(with([](Event& e) { e.details = "[1,2]"; }));        // not an object
  bad.push_back(with([](Event& e) { e.details = "{\"a\":"; }));
  // Keys that name a secret or content, at any depth.
  bad.push_back(with([](Event& e) { e.details = "{\"new_password\":\"x\"}"; }));
  bad.push_back(with([](Event& e) { e.details = "{\"a\":{\"Session_Token\":1}}"; }));
  bad.push_back(with([](Event& e) { e.details = "{\"a\":[{\"message_body\":\"x\"}]}"; }));
  bad.push_back(
      with([](Event& e) { e.details = "{\"a\":\"" + std::string(kMaxDetailsSize, 'x') + "\"}"; }));
  bad.push_back(with([](Event& e) { e.actor_type = static_cast<ActorType>(9); }));
  bad.push_back(with([](Event& e) { e.outcome = static_cast<Outcome>(-1); }));

  for (std::size_t i = 0; i < bad.size(); ++i) {
    const Status status = db_->Write([&](storage::Transaction& txn) -> Status {
      auto seq = Append(txn, bad[i], TimeAt(0));
      if (!seq) return seq.error();
      return Ok();
    });
    ASSERT_FALSE(status) << "event " << i;
    EXPECT_EQ(status.error(), Error::kInvalidEvent) << "event " << i;
  }
  for (const char* time : {"", "2026-01-01T00:00:00Z", "2026-01-01T00:00:00.000000+00:00",
                           "2026-13-01T00:00:00.000000Z", "not a time"}) {
    EXPECT_FALSE(ValidateEvent(MakeEvent(1), time)) << time;
  }
  EXPECT_TRUE(ValidateEvent(MakeEvent(1), "2026-01-01T00:00:00.000000Z"));
  EXPECT_TRUE(ValidateEvent(with([](Event& e) { e.actor_id = "Zoë 山田"; }), TimeAt(0)));
  EXPECT_EQ(CountRows(*db_, "audit_events"), 0);
}

TEST_F(AuditLogTest, QuerySelectsAndPagesBothWays) {
  AppendEvents(*db_, 0, 60);

  Filter org;
  org.org_id = "org-1";
  org.limit = 7;
  std::vector<std::int64_t> forward;
  for (;;) {
    auto page = RunQuery(org);
    ASSERT_TRUE(page);
    for (const auto& e : *page) {
      EXPECT_EQ(e.event.org_id, "org-1");
      forward.push_back(e.seq);
    }
    if (page->size() < 7u) break;
    org.after_seq = page->back().seq;
  }
  std::vector<std::int64_t> expected;
  for (int i = 0; i < 60; ++i) {
    if (MakeEvent(i).org_id == "org-1") expected.push_back(i + 1);
  }
  EXPECT_EQ(forward, expected);

  Filter newest;
  newest.org_id = "org-1";
  newest.newest_first = true;
  newest.limit = 5;
  std::vector<std::int64_t> backward;
  for (;;) {
    auto page = RunQuery(newest);
    ASSERT_TRUE(page);
    for (const auto& e : *page) backward.push_back(e.seq);
    if (page->size() < 5u) break;
    newest.before_seq = page->back().seq;
  }
  std::reverse(backward.begin(), backward.end());
  EXPECT_EQ(backward, expected);

  Filter several;
  several.action = "message.read";
  several.actor_id = "user-2";
  several.from = "2026-01-01T00:00:10Z";
  several.to = "2026-01-01T00:00:50+00:00";
  auto page = RunQuery(several);
  ASSERT_TRUE(page);
  std::vector<std::int64_t> got;
  for (const auto& e : *page) got.push_back(e.seq);
  std::vector<std::int64_t> want;
  for (int i = 10; i < 50; ++i) {
    if (MakeEvent(i).action == "message.read" && MakeEvent(i).actor_id == "user-2") {
      want.push_back(i + 1);
    }
  }
  EXPECT_EQ(got, want);

  Filter patient;
  patient.patient_id = "p-4";
  patient.target_id = "c-4";
  page = RunQuery(patient);
  ASSERT_TRUE(page);
  ASSERT_EQ(page->size(), 1u);
  EXPECT_EQ(page->front().seq, 5);

  for (auto change : std::vector<std::function<void(Filter&)>>{
           [](Filter& f) { f.limit = 0; }, [](Filter& f) { f.limit = kMaxQueryLimit + 1; },
           [](Filter& f) { f.from = "yesterday"; },
           [](Filter& f) { f.to = "2026-01-01T00:00:00.1234567Z"; },
           [](Filter& f) { f.after_seq = -1; }}) {
    Filter f;
    change(f);
    auto refused = RunQuery(f);
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error(), Error::kInvalidFilter);
  }
}

TEST_F(AuditLogTest, ForEachStreamsEveryPageInOrderAndFilters) {
  AppendEvents(*db_, 0, 2500);  // more than two pages

  const auto all = All();
  ASSERT_EQ(all.size(), 2500u);
  for (std::size_t i = 0; i < all.size(); ++i) ASSERT_EQ(all[i].seq, std::int64_t(i + 1));

  Filter window;
  window.from = "2026-01-01T00:10:00Z";  // i = 600
  window.to = "2026-01-01T00:30:00Z";    // i = 1800, exclusive
  window.org_id = "org-2";
  std::vector<std::int64_t> got;
  ASSERT_TRUE(ForEach(*db_, window, [&](const StoredEvent& e) -> Status {
    got.push_back(e.seq);
    return Ok();
  }));
  std::vector<std::int64_t> want;
  for (int i = 600; i < 1800; ++i) {
    if (MakeEvent(i).org_id == "org-2") want.push_back(i + 1);
  }
  EXPECT_EQ(got, want);

  Filter none;
  none.from = "2027-01-01";
  int calls = 0;
  ASSERT_TRUE(ForEach(*db_, none, [&](const StoredEvent&) -> Status {
    ++calls;
    return Ok();
  }));
  EXPECT_EQ(calls, 0);

  // The first error from the callback stops the walk and comes back.
  calls = 0;
  const Status stopped = ForEach(*db_, Filter{}, [&](const StoredEvent& e) -> Status {
    ++calls;
    if (e.seq == 1500) return make_error_code(Error::kExportWrite);
    return Ok();
  });
  ASSERT_FALSE(stopped);
  EXPECT_EQ(stopped.error(), Error::kExportWrite);
  EXPECT_EQ(calls, 1500);
}

TEST_F(AuditLogTest, ForEachFindsEventsWhoseTimesAreOutOfSeqOrder) {
  // The command line may append with a clock behind the server's.
  ASSERT_TRUE(db_->Write([&](storage::Transaction& txn) -> Status {
    for (int i : {100, 5, 200, 6, 300}) {
      auto seq = Append(txn, MakeEvent(i), TimeAt(i));
      if (!seq) return seq.error();
    }
    return Ok();
  }));
  Filter early;
  early.to = TimeAt(50);
  std::vector<std::int64_t> got;
  ASSERT_TRUE(ForEach(*db_, early, [&](const StoredEvent& e) -> Status {
    got.push_back(e.seq);
    return Ok();
  }));
  EXPECT_EQ(got, (std::vector<std::int64_t>{2, 4}));

  Filter late;
  late.from = TimeAt(150);
  got.clear();
  ASSERT_TRUE(ForEach(*db_, late, [&](const StoredEvent& e) -> Status {
    got.push_back(e.seq);
    return Ok();
  }));
  EXPECT_EQ(got, (std::vector<std::int64_t>{3, 5}));
}

TEST_F(AuditLogTest, LastAndFindOnAnEmptyLog) {
  ASSERT_TRUE(db_->Read([&](storage::Transaction& txn) -> Status {
    auto last = Last(txn);
    EXPECT_TRUE(last && !*last);
    auto found = Find(txn, 1);
    EXPECT_TRUE(found && !*found);
    return Ok();
  }));
}

}  // namespace
}  // namespace cw::audit
