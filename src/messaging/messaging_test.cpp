// Conversations, messages, receipts, recall and the event log against a real
// SQLite database and real sealing.

#include "messaging/messaging.hpp"

#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <future>
#include <set>
#include <stdexcept>
#include <thread>

#include "core/error.hpp"
#include "core/time.hpp"
#include "identity/organizations.hpp"
#include "keys/reencrypt.hpp"
#include "storage/sqlite/sqlite_database.hpp"
#include "storage/sqlite/test_support.hpp"

namespace cw::messaging {
namespace {

template <class T>
T Must(Result<T> r, const char* what) {
  if (!r) throw std::runtime_error(std::string(what) + ": " + r.error().message());
  return std::move(*r);
}

class Recorder final : public Subscriber {
 public:
  void Push(const LiveEvent& event) override {
    std::lock_guard lock(mu);
    frames.push_back(*event.frame);
    cursors.push_back(event.cursor);
  }
  std::vector<std::string> Types() {
    std::lock_guard lock(mu);
    std::vector<std::string> out;
    for (const auto& f : frames) {
      out.emplace_back(boost::json::parse(f).as_object().at("type").as_string());
    }
    return out;
  }
  std::mutex mu;
  std::vector<std::string> frames;
  std::vector<std::int64_t> cursors;
};

// Keeps every notification, for checking what would leave the server.
class KeptPushes final : public PushSender {
 public:
  explicit KeptPushes(std::vector<std::string>* out, std::mutex* mu) : out_(out), mu_(mu) {}
  void Send(const PushNotification& n) override {
    std::lock_guard lock(*mu_);
    out_->push_back(n.user_id + " " + PushPayload(n));
  }

 private:
  std::vector<std::string>* out_;
  std::mutex* mu_;
};

class MessagingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    storage::SqliteOptions options;
    options.path = dir_.File("messaging.db");
    db_ = Must(storage::OpenSqlite(options), "open");
    kek_ = crypto::LoadMasterKey("", "1 " + std::string(64, 'b'));
    keys_ = std::make_unique<keys::KeyStore>(*db_, kek_, std::chrono::seconds(60));
    push_ = std::make_unique<PushDispatcher>(std::make_unique<KeptPushes>(&pushes_, &pushes_mu_));
    messaging_ = std::make_unique<Messaging>(*db_, *keys_, hub_, push_.get());
    ann_ = AddUser("north", "ann");
    bob_ = AddUser("north", "bob");
    cat_ = AddUser("north", "cat");
    eve_ = AddUser("south", "eve");
  }
  void TearDown() override {
    db_->Close();
    messaging_.reset();
    push_.reset();
  }

  // Every notification sent so far (the dispatcher is drained first).
  // Every notification sent since the last call.
  std::vector<std::string> Pushes() {
    push_->Drain();
    std::lock_guard lock(pushes_mu_);
    return std::exchange(pushes_, {});
  }

  void Exec(const std::string& sql, std::vector<storage::Value> params = {}) {
    ASSERT_TRUE(db_->Write([&](storage::Transaction& tx) -> Status {
      auto r = tx.Execute(sql, params);
      if (!r) return r.error();
      return Ok();
    }));
  }

  // An organization on first use, and a user in it.
  Principal AddUser(const std::string& slug, const std::string& name) {
    if (orgs_.insert(slug).second) {
      identity::NewOrganization org;
      org.org_id = "org_" + slug;
      org.slug = slug;
      org.name = "Clinic " + slug;
      org.owner_id = "usr_" + slug + "_owner";
      org.owner_username = "owner";
      org.password_hash = "not-a-real-hash";
      EXPECT_TRUE(db_->Write([&](storage::Transaction& tx) {
        return identity::InsertOrganization(tx, *kek_, org, "test", core::NowRfc3339());
      }));
    }
    Principal p;
    p.user_id = "usr_" + slug + "_" + name;
    p.org_id = "org_" + slug;
    p.username = name;
    EXPECT_TRUE(db_->Write([&](storage::Transaction& tx) -> Status {
      auto r = tx.Execute(
          "INSERT INTO users (id, org_id, username, display_name, roles, password_hash, "
          "password_temporary, status, created_at) VALUES (?, ?, ?, ?, '[\"staff\"]', 'x', 0, "
          "'active', ?)",
          {p.user_id, p.org_id, name, "User " + name, core::NowRfc3339()});
      if (!r) return r.error();
      return Ok();
    }));
    return p;
  }

  Conversation Group(const Principal& admin, std::vector<std::string> members) {
    bool created = false;
    std::string problem;
    return Must(messaging_->CreateConversation(admin, {"group", "Ward 3", std::move(members)},
                                               origin_, &created, &problem),
                "create group");
  }

  Result<Message> Send(const Principal& from, const std::string& conversation,
                       const std::string& txn, const std::string& body,
                       const std::string& priority = "routine") {
    NewMessage m;
    m.client_txn_id = txn;
    m.body = body;
    m.priority = priority;
    return SendMessage(from, conversation, std::move(m));
  }

  Result<Message> SendMessage(const Principal& from, const std::string& conversation,
                              NewMessage m) {
    std::promise<Result<Message>> promise;
    messaging_->Send(from, conversation, std::move(m), origin_,
                     [&](Result<Message> r, SafeText) { promise.set_value(std::move(r)); });
    return promise.get_future().get();
  }

  std::int64_t Count(const std::string& sql, std::vector<storage::Value> params = {}) {
    std::int64_t n = -1;
    EXPECT_TRUE(db_->Read([&](storage::Transaction& tx) -> Status {
      auto row = tx.QueryOne(sql, params);
      if (!row) return row.error();
      n = (*row)->Int(0);
      return Ok();
    }));
    return n;
  }

  // A rotation of org_north's data key, begun long enough ago that the
  // re-encryption job takes it up at once.
  void RotateNorthKey() {
    ASSERT_TRUE(db_->Write([&](storage::Transaction& tx) -> Status {
      auto v = keys::AddDataKeyVersion(tx, *kek_, "org_north", "2000-01-01T00:00:00Z");
      if (!v) return v.error();
      return Ok();
    }));
  }

  // Runs the job's batches until it has nothing (more) to do now.
  static void RunUntilIdle(keys::Reencryptor& job) {
    for (int steps = 0;; ++steps) {
      ASSERT_LT(steps, 20);
      auto step = job.Step();
      ASSERT_TRUE(step);
      if (!*step) return;
    }
  }

  // The first column of the first row, as text.
  std::string Text(const std::string& sql) {
    std::string out;
    EXPECT_TRUE(db_->Read([&](storage::Transaction& tx) -> Status {
      auto row = tx.QueryOne(sql);
      if (!row) return row.error();
      if (*row) out = (*row)->Text(0);
      return Ok();
    }));
    return out;
  }

  storage::testing::TempDir dir_;
  std::unique_ptr<storage::Database> db_;
  std::shared_ptr<const crypto::KeyEncryptionKey> kek_;
  std::unique_ptr<keys::KeyStore> keys_;
  LiveHub hub_;
  std::mutex pushes_mu_;
  std::vector<std::string> pushes_;
  std::unique_ptr<PushDispatcher> push_;
  std::unique_ptr<Messaging> messaging_;
  std::set<std::string> orgs_;
  RequestOrigin origin_{"req-test", "127.0.0.1", "test"};
  Principal ann_, bob_, cat_, eve_;
};

TEST_F(MessagingTest, ADirectConversationIsOnePerPair) {
  bool created = false;
  std::string problem;
  auto first = Must(messaging_->CreateConversation(ann_, {"direct", "", {bob_.user_id}}, origin_,
                                                   &created, &problem),
                    "first");
  EXPECT_TRUE(created);
  auto again = Must(messaging_->CreateConversation(bob_, {"direct", "", {ann_.user_id}}, origin_,
                                                   &created, &problem),
                    "again");
  EXPECT_FALSE(created);
  EXPECT_EQ(first.id, again.id);
  // Another organization's user is refused like an unknown one.
  auto foreign = messaging_->CreateConversation(ann_, {"direct", "", {eve_.user_id}}, origin_,
                                                &created, &problem);
  ASSERT_FALSE(foreign);
  EXPECT_EQ(foreign.error(), core::Error::kInvalidArgument);
}

TEST_F(MessagingTest, SeqIsGapFreeAndRetriesAreIdempotentUnderConcurrency) {
  auto c = Group(ann_, {bob_.user_id});
  std::vector<std::thread> threads;
  std::mutex mu;
  std::map<std::string, std::set<std::int64_t>> seqs_by_txn;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        // Every message is sent twice, once by each of two threads.
        const std::string txn = "t" + std::to_string(t / 2) + "-" + std::to_string(i);
        auto m = Send(ann_, c.id, txn, "body " + txn);
        ASSERT_TRUE(m) << m.error().message();
        std::lock_guard lock(mu);
        seqs_by_txn[txn].insert(m->seq);
      }
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_EQ(seqs_by_txn.size(), 100u);
  std::set<std::int64_t> all;
  for (const auto& [txn, seqs] : seqs_by_txn) {
    EXPECT_EQ(seqs.size(), 1u) << txn << " made more than one message";
    all.insert(*seqs.begin());
  }
  EXPECT_EQ(all.size(), 100u);
  EXPECT_EQ(*all.begin(), 1);
  EXPECT_EQ(*all.rbegin(), 100);
  EXPECT_EQ(Count("SELECT count(*) FROM messages"), 100);
  EXPECT_EQ(Count("SELECT count(*) FROM audit_events WHERE action = 'message.sent'"), 100);
  // The same client_txn_id with another body is a conflict, not a retry.
  auto clash = Send(ann_, c.id, "t0-1", "something else");
  ASSERT_FALSE(clash);
  EXPECT_EQ(clash.error(), core::Error::kConflict);
}

TEST_F(MessagingTest, BodiesAreSealedAndRecallDestroysThem) {
  auto c = Group(ann_, {bob_.user_id, cat_.user_id});
  const std::string canary = "canary-4f1c9 patient Jane Roe";
  auto m = Must(Send(bob_, c.id, "x1", canary), "send");
  EXPECT_EQ(Count("SELECT count(*) FROM messages WHERE instr(CAST(body AS TEXT), ?) > 0",
                  {canary}),
            0);
  auto listed = Must(messaging_->ListMessages(cat_, c.id, 0, 50, origin_), "list");
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].body.value_or(""), canary);

  // Cat is a plain member: not the sender, not an admin.
  auto refused = messaging_->Recall(cat_, m.id, origin_);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error(), core::Error::kPermissionDenied);
  // Ann, the conversation's admin, may.
  ASSERT_TRUE(messaging_->Recall(ann_, m.id, origin_));
  EXPECT_EQ(Count("SELECT count(*) FROM messages WHERE body IS NULL AND recalled_at IS NOT NULL"),
            1);
  listed = Must(messaging_->ListMessages(bob_, c.id, 0, 50, origin_), "list again");
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_FALSE(listed[0].body.has_value());
  EXPECT_EQ(Count("SELECT count(*) FROM audit_events WHERE action = 'message.recalled' AND "
                  "target_id = ?",
                  {m.id}),
            1);
}

TEST_F(MessagingTest, LegalHoldSuspendsRecall) {
  auto c = Group(ann_, {bob_.user_id});
  auto m = Must(Send(ann_, c.id, "h1", "held"), "send");
  ASSERT_TRUE(db_->Write([&](storage::Transaction& tx) -> Status {
    auto r = tx.Execute("UPDATE conversations SET legal_hold = 1 WHERE id = ?", {c.id});
    if (!r) return r.error();
    return Ok();
  }));
  auto refused = messaging_->Recall(ann_, m.id, origin_);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error(), core::Error::kConflict);
  EXPECT_EQ(Count("SELECT count(*) FROM messages WHERE body IS NOT NULL"), 1);
}

TEST_F(MessagingTest, OutsidersCannotReachAConversation) {
  auto c = Group(ann_, {bob_.user_id});
  auto m = Must(Send(ann_, c.id, "o1", "private"), "send");
  for (const Principal* outsider : {&cat_, &eve_}) {
    EXPECT_EQ(messaging_->GetConversation(*outsider, c.id).error(), core::Error::kNotFound);
    EXPECT_EQ(messaging_->ListMessages(*outsider, c.id, 0, 50, origin_).error(),
              core::Error::kNotFound);
    EXPECT_EQ(Send(*outsider, c.id, "o2", "hi").error(), core::Error::kNotFound);
    EXPECT_EQ(messaging_->MarkRead(*outsider, m.id, origin_).error(), core::Error::kNotFound);
    EXPECT_EQ(messaging_->Recall(*outsider, m.id, origin_).error(), core::Error::kNotFound);
    EXPECT_EQ(messaging_->Receipts(*outsider, m.id).error(), core::Error::kNotFound);
    auto replay = Must(messaging_->Replay(outsider->org_id, outsider->user_id, 0, 100), "replay");
    EXPECT_TRUE(replay.frames.empty());
  }
}

TEST_F(MessagingTest, ReceiptsReachTheSender) {
  auto c = Group(ann_, {bob_.user_id});
  auto ann_live = std::make_shared<Recorder>();
  hub_.Subscribe(ann_.user_id, ann_live);
  auto m = Must(Send(ann_, c.id, "r1", "please call back"), "send");
  Must(messaging_->ListMessages(bob_, c.id, 0, 50, origin_), "fetch");
  ASSERT_TRUE(messaging_->MarkRead(bob_, m.id, origin_));
  ASSERT_TRUE(messaging_->MarkRead(bob_, m.id, origin_));  // once is enough
  EXPECT_EQ(ann_live->Types(),
            (std::vector<std::string>{"message.created", "receipt", "receipt"}));
  auto receipts = Must(messaging_->Receipts(ann_, m.id), "receipts");
  ASSERT_EQ(receipts.size(), 1u);
  EXPECT_EQ(receipts[0].user_id, bob_.user_id);
  EXPECT_FALSE(receipts[0].delivered_at.empty());
  EXPECT_FALSE(receipts[0].read_at.empty());
  EXPECT_EQ(Count("SELECT count(*) FROM audit_events WHERE action = 'message.read'"), 1);
}

TEST_F(MessagingTest, ARemovedMemberLosesTheConversationAtOnce) {
  auto c = Group(ann_, {bob_.user_id, cat_.user_id});
  Must(Send(ann_, c.id, "m1", "before"), "send");
  const auto start = Must(messaging_->LatestCursor(), "cursor");
  auto cat_live = std::make_shared<Recorder>();
  hub_.Subscribe(cat_.user_id, cat_live);
  std::string problem;
  ASSERT_TRUE(messaging_->RemoveMember(ann_, c.id, cat_.user_id, origin_, &problem));
  Must(Send(ann_, c.id, "m2", "after"), "send after");
  EXPECT_EQ(cat_live->Types(), (std::vector<std::string>{"conversation.removed"}));
  EXPECT_EQ(messaging_->ListMessages(cat_, c.id, 0, 50, origin_).error(), core::Error::kNotFound);
  // A replay from before the removal shows the removal alone.
  auto replay = Must(messaging_->Replay(cat_.org_id, cat_.user_id, 0, 100), "replay");
  ASSERT_EQ(replay.frames.size(), 1u);
  EXPECT_NE(replay.frames[0].text.find("conversation.removed"), std::string::npos);
  EXPECT_GT(replay.frames[0].cursor, start);
  // A plain member cannot add anyone back.
  auto refused = messaging_->AddMember(bob_, c.id, cat_.user_id, origin_, &problem);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error(), core::Error::kPermissionDenied);
}

TEST_F(MessagingTest, ReplayPagesThroughEveryEventOnce) {
  auto c = Group(ann_, {bob_.user_id});
  const auto start = Must(messaging_->LatestCursor(), "cursor");
  for (int i = 0; i < 25; ++i) Must(Send(ann_, c.id, "p" + std::to_string(i), "n"), "send");
  std::vector<std::int64_t> seen;
  std::int64_t from = start;
  for (;;) {
    auto page = Must(messaging_->Replay(bob_.org_id, bob_.user_id, from, 7), "page");
    for (const auto& f : page.frames) seen.push_back(f.cursor);
    from = page.through;
    if (page.complete) break;
  }
  ASSERT_EQ(seen.size(), 25u);
  for (std::size_t i = 1; i < seen.size(); ++i) EXPECT_GT(seen[i], seen[i - 1]);
}

TEST_F(MessagingTest, ExpiredMessagesArePurgedExceptUnderLegalHold) {
  auto held = Group(ann_, {bob_.user_id});
  auto open = Group(ann_, {bob_.user_id});
  Must(Send(ann_, held.id, "e1", "old and held"), "send");
  Must(Send(ann_, open.id, "e2", "old"), "send");
  auto recent = Must(Send(ann_, open.id, "e3", "recent"), "send");
  // Two of them are backdated 40 days; the organization keeps 30.
  Exec("UPDATE messages SET created_at = ? WHERE client_txn_id IN ('e1', 'e2')",
       {core::FormatRfc3339(std::chrono::system_clock::now() - std::chrono::hours(24 * 40))});
  Exec("UPDATE organizations SET message_lifespan_days = 30 WHERE id = ?", {ann_.org_id});
  ASSERT_TRUE(messaging_->SetLegalHold(ann_, held.id, true, origin_));
  auto bob_live = std::make_shared<Recorder>();
  hub_.Subscribe(bob_.user_id, bob_live);

  auto counts = Must(messaging_->PurgeExpired(std::chrono::system_clock::now()), "purge");
  EXPECT_EQ(counts.messages, 1);
  EXPECT_EQ(Count("SELECT count(*) FROM messages WHERE purged_at IS NOT NULL AND body IS NULL "
                  "AND client_txn_id = 'e2'"),
            1);
  EXPECT_EQ(Count("SELECT count(*) FROM messages WHERE body IS NOT NULL"), 2);
  EXPECT_EQ(bob_live->Types(), (std::vector<std::string>{"message.expired"}));
  EXPECT_EQ(Count("SELECT count(*) FROM audit_events WHERE action = 'message.purged' AND "
                  "actor_type = 'system' AND target_id = ?",
                  {open.id}),
            1);
  auto listed = Must(messaging_->ListMessages(bob_, open.id, 0, 50, origin_), "list");
  ASSERT_EQ(listed.size(), 2u);
  EXPECT_FALSE(listed[0].body.has_value());
  EXPECT_EQ(listed[1].id, recent.id);
  // Released, the held conversation's old message goes at the next pass.
  ASSERT_TRUE(messaging_->SetLegalHold(ann_, held.id, false, origin_));
  counts = Must(messaging_->PurgeExpired(std::chrono::system_clock::now()), "purge again");
  EXPECT_EQ(counts.messages, 1);
}

TEST_F(MessagingTest, AConversationMayOnlyShortenTheLifespan) {
  auto c = Group(ann_, {bob_.user_id});
  Exec("UPDATE organizations SET message_lifespan_days = 30 WHERE id = ?", {ann_.org_id});
  std::string problem;
  ConversationChange longer;
  longer.message_lifespan_days = std::optional<int>(60);
  EXPECT_EQ(messaging_->Update(ann_, c.id, longer, origin_, &problem).error(),
            core::Error::kInvalidArgument);
  ConversationChange shorter;
  shorter.message_lifespan_days = std::optional<int>(7);
  EXPECT_EQ(messaging_->Update(bob_, c.id, shorter, origin_, &problem).error(),
            core::Error::kPermissionDenied);  // a plain member
  auto changed = Must(messaging_->Update(ann_, c.id, shorter, origin_, &problem), "update");
  EXPECT_EQ(changed.message_lifespan_days, 7);
}

TEST_F(MessagingTest, UrgentUnreadMessagesAreRemindedThenEscalatedWithoutPhi) {
  auto c = Group(ann_, {bob_.user_id, cat_.user_id});
  const std::string canary = "canary-77e1 Mrs Smith potassium 6.9";
  auto m = Must(Send(bob_, c.id, "u1", canary, "urgent"), "send");
  Pushes();  // the notifications of the send itself
  ASSERT_TRUE(messaging_->MarkRead(cat_, m.id, origin_));
  const auto sent = std::chrono::system_clock::now();
  using std::chrono::minutes;
  // Too early for either step.
  auto none = Must(messaging_->FollowUpUrgent(sent + minutes(1), minutes(5), minutes(15)), "f0");
  EXPECT_EQ(none.messages, 0);
  auto reminded =
      Must(messaging_->FollowUpUrgent(sent + minutes(6), minutes(5), minutes(15)), "f1");
  EXPECT_EQ(reminded.messages, 1);
  auto escalated =
      Must(messaging_->FollowUpUrgent(sent + minutes(16), minutes(5), minutes(15)), "f2");
  EXPECT_EQ(escalated.messages, 1);
  // Nothing happens twice.
  auto again = Must(messaging_->FollowUpUrgent(sent + minutes(30), minutes(5), minutes(15)), "f3");
  EXPECT_EQ(again.messages, 0);

  std::vector<std::string> pushes = Pushes();
  // Cat read it: the reminder goes to Ann alone, the escalation to Ann, the admin.
  std::vector<std::string> expected_recipients = {ann_.user_id, ann_.user_id};
  std::vector<std::string> recipients;
  for (const auto& p : pushes) {
    recipients.push_back(p.substr(0, p.find(' ')));
    EXPECT_EQ(p.find(canary), std::string::npos);
    EXPECT_EQ(p.find("Mrs Smith"), std::string::npos);
    EXPECT_EQ(p.find("Ward 3"), std::string::npos);  // the title
    EXPECT_EQ(p.find("User "), std::string::npos);   // display names
  }
  EXPECT_EQ(recipients, expected_recipients);
  EXPECT_NE(pushes.at(0).find("urgent_reminder"), std::string::npos);
  EXPECT_NE(pushes.at(1).find("urgent_escalation"), std::string::npos);
  EXPECT_EQ(Count("SELECT count(*) FROM audit_events WHERE action IN "
                  "('message.urgent_reminded', 'message.urgent_escalated') AND target_id = ?",
                  {m.id}),
            2);
}

// A direct conversation has no admins: its unread urgent message escalates
// to the sender, who can reach the other person another way.
TEST_F(MessagingTest, UnreadUrgentDirectMessagesEscalateToTheSender) {
  bool created = false;
  std::string problem;
  auto c = Must(messaging_->CreateConversation(ann_, {"direct", "", {bob_.user_id}}, origin_,
                                               &created, &problem),
                "direct");
  auto m = Must(Send(ann_, c.id, "d1", "call me about bed 4", "urgent"), "send");
  Pushes();
  const auto sent = std::chrono::system_clock::now();
  using std::chrono::minutes;
  Must(messaging_->FollowUpUrgent(sent + minutes(6), minutes(5), minutes(15)), "remind");
  Must(messaging_->FollowUpUrgent(sent + minutes(16), minutes(5), minutes(15)), "escalate");
  const std::vector<std::string> pushes = Pushes();
  ASSERT_EQ(pushes.size(), 2u);
  EXPECT_EQ(pushes[0].substr(0, pushes[0].find(' ')), bob_.user_id);
  EXPECT_NE(pushes[0].find("urgent_reminder"), std::string::npos);
  EXPECT_EQ(pushes[1].substr(0, pushes[1].find(' ')), ann_.user_id);
  EXPECT_NE(pushes[1].find("An urgent message you sent is still unread"), std::string::npos);
  EXPECT_EQ(pushes[1].find("bed 4"), std::string::npos);
  EXPECT_EQ(Count("SELECT count(*) FROM audit_events WHERE action = 'message.urgent_escalated' "
                  "AND details LIKE '%\"to\":\"sender\"%' AND target_id = ?",
                  {m.id}),
            1);
}

TEST_F(MessagingTest, SendsNotifyEveryOtherMemberWithAGenericText) {
  auto c = Group(ann_, {bob_.user_id, cat_.user_id});
  Must(Send(ann_, c.id, "n1", "canary-31ab Jane Doe DOB 1950-01-02"), "send");
  auto pushes = Pushes();
  ASSERT_EQ(pushes.size(), 2u);
  for (const auto& p : pushes) {
    EXPECT_EQ(p.find("canary-31ab"), std::string::npos) << p;
    EXPECT_NE(p.find("New secure message"), std::string::npos) << p;
    EXPECT_NE(p.find(c.id), std::string::npos) << p;
    EXPECT_EQ(p.rfind(ann_.user_id, 0), std::string::npos) << "the sender is not notified";
  }
}

TEST_F(MessagingTest, DoNotForwardIsEnforcedAndCanBeTheDefault) {
  auto from = Group(ann_, {bob_.user_id});
  auto to = Group(bob_, {cat_.user_id});
  auto plain = Must(Send(ann_, from.id, "f1", "may travel"), "send");
  NewMessage marked;
  marked.client_txn_id = "f2";
  marked.body = "stays here";
  marked.do_not_forward = true;
  auto kept = Must(SendMessage(ann_, from.id, marked), "send marked");
  EXPECT_TRUE(kept.do_not_forward);

  auto forward = [&](const std::string& id, const std::string& txn) {
    std::promise<Result<Message>> promise;
    messaging_->Forward(bob_, id, to.id, txn, origin_,
                        [&](Result<Message> r, SafeText) { promise.set_value(std::move(r)); });
    return promise.get_future().get();
  };
  auto copied = Must(forward(plain.id, "fw1"), "forward");
  EXPECT_EQ(copied.forwarded_from, plain.id);
  EXPECT_EQ(copied.body.value_or(""), "may travel");
  EXPECT_EQ(forward(kept.id, "fw2").error(), core::Error::kPermissionDenied);
  // Cat is not in the source conversation: it does not exist for her.
  std::promise<Result<Message>> p;
  messaging_->Forward(cat_, plain.id, to.id, "fw3", origin_,
                      [&](Result<Message> r, SafeText) { p.set_value(std::move(r)); });
  EXPECT_EQ(p.get_future().get().error(), core::Error::kNotFound);

  Exec("UPDATE organizations SET do_not_forward_default = 1 WHERE id = ?", {ann_.org_id});
  auto by_default = Must(Send(ann_, from.id, "f3", "marked by policy"), "send");
  EXPECT_TRUE(by_default.do_not_forward);
  EXPECT_EQ(forward(by_default.id, "fw4").error(), core::Error::kPermissionDenied);
  EXPECT_EQ(Count("SELECT count(*) FROM messages WHERE conversation_id = ?", {to.id}), 1);
}

// A minimal PDF, enough for libmagic.
const std::string kPdf = "%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << >>\n%%EOF\n";

TEST_F(MessagingTest, AttachmentsAreSniffedSealedServedToMembersAndDestroyedByRecall) {
  auto c = Group(ann_, {bob_.user_id});
  std::string problem;
  EXPECT_EQ(messaging_->UploadAttachment(ann_, c.id, "x.pdf", "<html><script>1</script></html>",
                                         origin_, &problem)
                .error(),
            core::Error::kInvalidArgument);
  // A large body in many chunks, with a canary near the end.
  std::string big = kPdf + std::string(3 << 20, 'x') + "canary-9d2e";
  auto a = Must(messaging_->UploadAttachment(ann_, c.id, "Jane Roe scan.pdf", big, origin_,
                                             &problem),
                "upload");
  EXPECT_EQ(a.content_type, "application/pdf");
  EXPECT_EQ(a.size, static_cast<std::int64_t>(big.size()));
  EXPECT_EQ(Count("SELECT count(*) FROM attachment_chunks WHERE attachment_id = ?", {a.id}), 4);
  EXPECT_EQ(Count("SELECT count(*) FROM attachment_chunks WHERE instr(data, ?) > 0",
                  {std::string("canary-9d2e")}),
            0);
  // Before it is sent, it is the uploader's alone.
  EXPECT_EQ(messaging_->DownloadAttachment(bob_, a.id, origin_).error(), core::Error::kNotFound);
  NewMessage m;
  m.client_txn_id = "a1";
  m.attachment_ids = {a.id};
  auto sent = Must(SendMessage(ann_, c.id, m), "send with attachment");
  ASSERT_EQ(sent.attachments.size(), 1u);
  auto got = Must(messaging_->DownloadAttachment(bob_, a.id, origin_), "download");
  EXPECT_EQ(got.bytes, big);
  EXPECT_EQ(got.name, "Jane Roe scan.pdf");
  EXPECT_EQ(messaging_->DownloadAttachment(cat_, a.id, origin_).error(), core::Error::kNotFound);
  EXPECT_EQ(messaging_->DownloadAttachment(eve_, a.id, origin_).error(), core::Error::kNotFound);
  EXPECT_EQ(Count("SELECT count(*) FROM audit_events WHERE action = 'attachment.downloaded'"), 1);
  // Sent once, it cannot be attached again.
  m.client_txn_id = "a2";
  m.body = "again";
  EXPECT_EQ(SendMessage(ann_, c.id, m).error(), core::Error::kInvalidArgument);

  ASSERT_TRUE(messaging_->Recall(ann_, sent.id, origin_));
  EXPECT_EQ(messaging_->DownloadAttachment(bob_, a.id, origin_).error(), core::Error::kNotFound);
  EXPECT_EQ(Count("SELECT count(*) FROM attachment_chunks"), 0);
  EXPECT_EQ(Count("SELECT count(*) FROM attachments WHERE name IS NULL AND destroyed_at IS NOT "
                  "NULL"),
            1);
}

// An upload stores its rows as they fill; one dropped unfinished removes
// them (and says so in the audit trail), and one a crash cut off is swept by
// the jobs after an hour.
// A forwarded message takes its files along: each copied and re-sealed as
// the forwarder's upload to the other conversation, readable there byte for
// byte; a retried forward is the same message with the same copies.
TEST_F(MessagingTest, ForwardingCopiesAttachments) {
  auto from = Group(ann_, {bob_.user_id});
  auto to = Group(bob_, {cat_.user_id});
  std::string problem;
  const std::string scan = kPdf + std::string((1 << 20) + 300, 's');
  auto a = Must(messaging_->UploadAttachment(ann_, from.id, "wound day 3.pdf", scan, origin_,
                                             &problem),
                "upload");
  NewMessage m;
  m.client_txn_id = "with-file";
  m.body = "see scan";
  m.attachment_ids = {a.id};
  auto sent = Must(SendMessage(ann_, from.id, m), "send");

  auto forward = [&](const std::string& txn) {
    std::promise<Result<Message>> promise;
    messaging_->Forward(bob_, sent.id, to.id, txn, origin_,
                        [&](Result<Message> r, SafeText) { promise.set_value(std::move(r)); });
    return promise.get_future().get();
  };
  auto copied = Must(forward("fwd-file"), "forward");
  ASSERT_EQ(copied.attachments.size(), 1u);
  const std::string copy_id = copied.attachments[0].id;
  EXPECT_NE(copy_id, a.id);
  EXPECT_EQ(copied.attachments[0].conversation_id, to.id);
  auto got = Must(messaging_->DownloadAttachment(cat_, copy_id, origin_), "download copy");
  EXPECT_TRUE(got.bytes == scan);
  EXPECT_EQ(got.name, "wound day 3.pdf");
  // Cat sees the copy, not the original.
  EXPECT_EQ(messaging_->DownloadAttachment(cat_, a.id, origin_).error(), core::Error::kNotFound);

  auto again = Must(forward("fwd-file"), "forward again");
  EXPECT_EQ(again.id, copied.id);
  ASSERT_EQ(again.attachments.size(), 1u);
  EXPECT_EQ(again.attachments[0].id, copy_id);
  EXPECT_EQ(Count("SELECT count(*) FROM attachments"), 2);
  EXPECT_EQ(Count("SELECT count(*) FROM audit_events WHERE action = 'attachment.uploaded' AND "
                  "details LIKE '%copied_from%'"),
            1);
  // A forward that fails part way keeps no copies: here the second of two
  // files was damaged at rest, after the first was copied.
  EXPECT_EQ(forward("bad id with spaces").error(), core::Error::kInvalidArgument);
  auto b1 = Must(messaging_->UploadAttachment(ann_, from.id, "", kPdf + "one", origin_, &problem),
                 "upload one");
  auto b2 = Must(messaging_->UploadAttachment(ann_, from.id, "", kPdf + "two", origin_, &problem),
                 "upload two");
  NewMessage pair;
  pair.client_txn_id = "pair";
  pair.attachment_ids = {b1.id, b2.id};
  auto two = Must(SendMessage(ann_, from.id, pair), "send two");
  const std::string damaged = std::max(b1.id, b2.id);  // copied second (ids in order)
  Exec("UPDATE attachment_chunks SET data = CAST(substr(data, 1, 40) || X'FF' || "
       "substr(data, 42) AS BLOB) WHERE attachment_id = ?",
       {damaged});
  std::promise<Result<Message>> failed;
  messaging_->Forward(bob_, two.id, to.id, "fwd-pair", origin_,
                      [&](Result<Message> r, SafeText) { failed.set_value(std::move(r)); });
  EXPECT_FALSE(failed.get_future().get());
  Exec("SELECT 1");  // the discard was queued before this write
  EXPECT_EQ(Count("SELECT count(*) FROM attachments WHERE destroyed_at IS NULL"), 4);
  EXPECT_EQ(Count("SELECT count(*) FROM audit_events WHERE action = 'attachment.discarded'"), 1);
  // Recalling the original leaves the copy (it is the forwarder's now).
  ASSERT_TRUE(messaging_->Recall(ann_, sent.id, origin_));
  EXPECT_TRUE(messaging_->DownloadAttachment(cat_, copy_id, origin_));
}

TEST_F(MessagingTest, UnfinishedUploadsLeaveNothingBehind) {
  auto c = Group(ann_, {bob_.user_id});
  std::string problem;
  const std::string piece = kPdf + std::string((1 << 20) + 5, 'p');
  {
    auto upload = Must(messaging_->BeginUpload(ann_, c.id, "scan.pdf", origin_, &problem), "begin");
    ASSERT_TRUE(upload->Append(piece, &problem));
    ASSERT_TRUE(upload->Append(piece, &problem));
    EXPECT_EQ(Count("SELECT count(*) FROM attachments WHERE complete = 0"), 1);
    EXPECT_GE(Count("SELECT count(*) FROM attachment_chunks"), 2);
    // Not visible while incomplete: it cannot be sent.
    NewMessage m;
    m.client_txn_id = "early";
    m.attachment_ids = {Text("SELECT id FROM attachments")};
    EXPECT_EQ(SendMessage(ann_, c.id, m).error(), core::Error::kInvalidArgument);
  }  // dropped unfinished
  Exec("SELECT 1");  // the removal was queued before this write
  EXPECT_EQ(Count("SELECT count(*) FROM attachments"), 0);
  EXPECT_EQ(Count("SELECT count(*) FROM attachment_chunks"), 0);
  EXPECT_EQ(
      Count("SELECT count(*) FROM audit_events WHERE action = 'attachment.upload_abandoned'"), 1);

  // Cut off by a crash, which runs no destructor: the rows stay until the
  // sweep.
  Exec("INSERT INTO attachments (id, org_id, conversation_id, uploader_id, content_type, "
       "size_bytes, created_at, complete) VALUES ('att_00000000000000000000000000000001', "
       "'org_north', ?, ?, 'application/pdf', 0, ?, 0)",
       {c.id, ann_.user_id, core::NowRfc3339()});
  Exec("INSERT INTO attachment_chunks (attachment_id, n, data) VALUES "
       "('att_00000000000000000000000000000001', 0, x'00')");
  Must(messaging_->PurgeExpired(std::chrono::system_clock::now()), "purge");
  EXPECT_EQ(Count("SELECT count(*) FROM attachments WHERE destroyed_at IS NULL"), 1);
  Must(messaging_->PurgeExpired(std::chrono::system_clock::now() + std::chrono::minutes(61)),
       "purge later");
  EXPECT_EQ(Count("SELECT count(*) FROM attachments WHERE destroyed_at IS NULL"), 0);
  EXPECT_EQ(Count("SELECT count(*) FROM attachment_chunks"), 0);
  EXPECT_EQ(Count("SELECT count(*) FROM audit_events WHERE action = 'attachment.purged' AND "
                  "details LIKE '%never_finished%'"),
            1);
}

// After a data-key rotation, the re-encryption job re-seals attachment
// contents too, stream by stream, and they still open byte for byte.
TEST_F(MessagingTest, AttachmentContentIsResealedAfterAKeyRotation) {
  auto c = Group(ann_, {bob_.user_id});
  std::string problem;
  std::vector<std::string> ids;
  std::vector<std::string> contents;
  for (int i = 0; i < 3; ++i) {
    contents.push_back(kPdf + std::string((i + 1) * 700'000, static_cast<char>('a' + i)));
    ids.push_back(Must(messaging_->UploadAttachment(ann_, c.id, "f" + std::to_string(i),
                                                    contents.back(), origin_, &problem),
                       "upload")
                      .id);
  }
  const auto versions = [&] {
    std::set<std::uint32_t> out;
    for (const std::string& id : ids) {
      EXPECT_TRUE(db_->Read([&](storage::Transaction& tx) -> Status {
        auto row =
            tx.QueryOne("SELECT data FROM attachment_chunks WHERE attachment_id = ? AND n = 0",
                        {id});
        if (!row) return row.error();
        out.insert(crypto::StreamKeyVersion((**row).Bytes(0)));
        return Ok();
      }));
    }
    return out;
  };
  EXPECT_EQ(versions(), (std::set<std::uint32_t>{1}));
  const std::int64_t rows = Count("SELECT count(*) FROM attachment_chunks");
  RotateNorthKey();

  keys::Reencryptor job(*db_, *keys_, {std::chrono::milliseconds(10), 50});
  RunUntilIdle(job);
  EXPECT_EQ(versions(), (std::set<std::uint32_t>{2}));
  EXPECT_EQ(Count("SELECT count(*) FROM attachment_chunks"), rows);
  EXPECT_EQ(Count("SELECT count(*) FROM key_rotations WHERE finished_at IS NOT NULL"), 1);
  EXPECT_EQ(Count("SELECT count(*) FROM audit_events WHERE action = 'keys.values_resealed' AND "
                  "target_id = 'attachment_chunks'"),
            1);
  for (std::size_t i = 0; i < ids.size(); ++i) {
    auto got = Must(messaging_->DownloadAttachment(ann_, ids[i], origin_), "download");
    EXPECT_TRUE(got.bytes == contents[i]) << i;
    EXPECT_EQ(got.name, "f" + std::to_string(i));
  }
}

// An upload begun under the old key and finished while the re-encryption
// pass runs is not left behind: the pass waits for uploads in progress and
// goes round again for anything still under an older key.
TEST_F(MessagingTest, ARotationWaitsForUploadsInProgress) {
  auto c = Group(ann_, {bob_.user_id});
  std::string problem;
  const std::string piece = kPdf + std::string((1 << 20) + 7, 'q');
  auto upload = Must(messaging_->BeginUpload(ann_, c.id, "late.pdf", origin_, &problem), "begin");
  ASSERT_TRUE(upload->Append(piece, &problem));  // rows stored under version 1
  RotateNorthKey();
  keys::Reencryptor job(*db_, *keys_, {std::chrono::milliseconds(10), 50});
  RunUntilIdle(job);
  EXPECT_EQ(Count("SELECT count(*) FROM key_rotations WHERE finished_at IS NULL"), 1);
  ASSERT_TRUE(upload->Append(piece, &problem));
  auto done = Must(upload->Finish(&problem), "finish");
  RunUntilIdle(job);
  EXPECT_EQ(Count("SELECT count(*) FROM key_rotations WHERE finished_at IS NULL"), 0);
  EXPECT_EQ(Count("SELECT count(*) FROM attachment_chunks WHERE attachment_id = ? AND n = 0 AND "
                  "substr(data, 2, 4) = X'00000002'",
                  {done.id}),
            1);
  EXPECT_EQ(Count("SELECT count(*) FROM attachments WHERE id = ? AND "
                  "substr(name, 2, 4) = X'00000002'",
                  {done.id}),
            1);
  auto got = Must(messaging_->DownloadAttachment(ann_, done.id, origin_), "download");
  EXPECT_TRUE(got.bytes == piece + piece);
  EXPECT_EQ(got.name, "late.pdf");
}

TEST_F(MessagingTest, UnsentUploadsAreDestroyedAfterADay) {
  auto c = Group(ann_, {bob_.user_id});
  std::string problem;
  Must(messaging_->UploadAttachment(ann_, c.id, "", "plain words\n", origin_, &problem), "upload");
  Must(messaging_->PurgeExpired(std::chrono::system_clock::now()), "purge");
  EXPECT_EQ(Count("SELECT count(*) FROM attachment_chunks"), 1);
  Must(messaging_->PurgeExpired(std::chrono::system_clock::now() + std::chrono::hours(25)),
       "purge later");
  EXPECT_EQ(Count("SELECT count(*) FROM attachment_chunks"), 0);
  EXPECT_EQ(Count("SELECT count(*) FROM audit_events WHERE action = 'attachment.purged'"), 1);
}

}  // namespace
}  // namespace cw::messaging
