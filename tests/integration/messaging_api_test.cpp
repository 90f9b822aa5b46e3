// Secure messaging as clients see it, against the real binary over TLS and
// real WebSocket connections: two clients exchanging a message with its
// delivered and read receipts, a socket resuming from its cursor after a
// thousand messages, idempotent and gap-free sends under concurrency, one
// direct conversation per pair, membership and its revocation (live sockets
// included), recall, isolation from non-members and other organizations,
// the bad inputs of /work/shared/QUALITY.md on the messaging routes, and the
// audit trail. The API is the one of the messaging specification (the
// conversation and message JSON, the event frames and their cursors).
//
// Each test has a deployment of its own (CTest runs each test case in a
// process of its own): clinic-a and its owner, made in SetUpTestSuite, and
// the staff the test names, activated on demand (see Need). Clients'
// transaction ids are unique to the process, since the server keeps them per
// sender across all conversations.
//
// Checking that a socket received nothing: the server answers a ping in
// order with the frames it has queued for that socket, so a ping sent once
// the event has reached the sockets that should see it (a member's socket,
// or a barrier event on a conversation the socket does belong to) and
// answered with a pong before anything else proves nothing was sent.
//
// QUALITY.md item 13 (internal URLs) does not apply: nothing here fetches
// anything. Item 14 (no, expired or revoked tokens) is the isolation
// matrix's (isolation_matrix_test.cpp); here it is the other
// organization's token and ids.

#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "support/accounts.hpp"
#include "support/api.hpp"
#include "support/deployment.hpp"
#include "support/https_client.hpp"
#include "support/server_process.hpp"
#include "support/sql.hpp"

namespace cw::testing {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace std::chrono_literals;
using Headers = std::vector<std::pair<std::string, std::string>>;

constexpr const char* kOrgA = "clinic-a";
constexpr const char* kOwnerA = "alice";
constexpr const char* kOrgB = "clinic-b";
constexpr const char* kOwnerB = "bob";
const std::string kPassword = "violet-lantern-orbit-97";

// ---- small helpers -------------------------------------------------------------

// A nested object, or an empty one.
json::object Object(const json::object& o, const char* key) {
  const auto* v = o.if_contains(key);
  return v != nullptr && v->is_object() ? v->as_object() : json::object{};
}

// The array `key` of a response, as objects.
std::vector<json::object> List(const HttpResponse& r, const char* key) {
  std::vector<json::object> out;
  const json::object o = Parse(r);
  const auto* v = o.if_contains(key);
  if (v == nullptr || !v->is_array()) {
    ADD_FAILURE() << "no array \"" << key << "\" in " << r.status << " " << r.body.substr(0, 300);
    return out;
  }
  for (const auto& e : v->as_array()) out.push_back(e.is_object() ? e.as_object() : json::object{});
  return out;
}

// Unique names and client transaction ids. The server keeps a sender's
// client_txn_ids across all conversations, so every send of these tests has
// its own unless it means to repeat one.
std::string Unique(const std::string& stem) {
  static std::atomic<int> counter{0};
  static const std::string run = RandomHex(4);
  return stem + run + "-" + std::to_string(++counter);
}
std::string Txn() { return Unique("txn-"); }

// A text that must never be found at rest or in a log: random, so that
// finding it cannot be a coincidence.
std::string Canary(const std::string& what) { return "canary-" + what + "-" + RandomHex(12); }

// An error body without its request id and with `id` (if any) replaced, to
// compare the answers about two different ids.
std::string Comparable(const HttpResponse& r, const std::string& id = "") {
  json::object v = Parse(r);
  if (auto* e = v.if_contains("error"); e != nullptr && e->is_object()) {
    e->as_object().erase("request_id");
  }
  std::string text = json::serialize(v);
  for (std::size_t at; !id.empty() && (at = text.find(id)) != std::string::npos;) {
    text.replace(at, id.size(), "<id>");
  }
  return std::to_string(r.status) + " " + text;
}

// ---- the event stream ------------------------------------------------------------

bool IsCursor(const std::string& c) {
  return !c.empty() && c.size() <= 18 &&
         std::all_of(c.begin(), c.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
}

// The conversation an event frame is about; "" for pong, ready and errors.
std::string ConversationOf(const json::object& frame) {
  const std::string type = Field(frame, "type");
  if (type == "message.created") return Field(Object(frame, "message"), "conversation_id");
  if (type == "conversation.updated") return Field(Object(frame, "conversation"), "id");
  return Field(frame, "conversation_id");
}

// Frames about one conversation, for a failure message.
std::string Show(const std::vector<json::object>& frames) {
  std::string out;
  for (const auto& f : frames) out += "\n  " + json::serialize(f).substr(0, 300);
  return out.empty() ? "(none)" : out;
}

std::vector<json::object> About(const std::vector<json::object>& frames,
                                const std::string& conversation_id) {
  std::vector<json::object> out;
  for (const auto& f : frames) {
    if (ConversationOf(f) == conversation_id) out.push_back(f);
  }
  return out;
}

// One authenticated live socket (GET /api/v1/events over TLS). Checks, for
// every event frame read, that its cursor is a decimal string greater than
// the one before (starting from the cursor it resumed from, or else the
// ready frame's).
class Events {
 public:
  Events(std::uint16_t port, const std::string& token, const std::string& cursor = "")
      : ws_(port, "/api/v1/events", 10s) {
    json::object auth{{"type", "auth"}, {"token", token}};
    if (!cursor.empty()) auth["cursor"] = cursor;
    ws_.SendText(Body(auth));
    const auto first = ws_.ReadText();
    if (!first) {
      ADD_FAILURE() << "the socket closed (" << ws_.close_code() << ") instead of answering ready";
      return;
    }
    const json::object o = Parse(*first);
    if (Field(o, "type") != "ready" || !IsCursor(Field(o, "cursor"))) {
      ADD_FAILURE() << "the first frame is not ready with a cursor: " << *first;
      return;
    }
    ready_ = Field(o, "cursor");
    last_ = cursor.empty() ? ready_ : cursor;
    ok_ = true;
  }

  bool ok() const { return ok_; }
  const std::string& ready_cursor() const { return ready_; }
  // The cursor of the last event frame read.
  const std::string& last_cursor() const { return last_; }
  int close_code() const { return ws_.close_code(); }

  // The next frame; nullopt when the server closed the socket or sent
  // nothing within 10 s.
  std::optional<json::object> Next() {
    const auto text = ws_.ReadText();
    if (!text) return std::nullopt;
    json::object o = Parse(*text);
    EXPECT_FALSE(o.empty()) << "not a JSON object: " << *text;
    const std::string type = Field(o, "type");
    if (type != "pong" && type != "error") {
      const std::string c = Field(o, "cursor");
      EXPECT_TRUE(IsCursor(c)) << "no decimal cursor: " << *text;
      if (IsCursor(c) && IsCursor(last_)) {
        EXPECT_GT(std::stoll(c), std::stoll(last_))
            << "cursor not after " << last_ << ": " << *text;
      }
      last_ = c;
    }
    return o;
  }

  // Reads until a frame matches; the ones before it go to `skipped`.
  std::optional<json::object> NextMatching(const std::function<bool(const json::object&)>& match,
                                           std::vector<json::object>* skipped = nullptr) {
    while (auto f = Next()) {
      if (match(*f)) return f;
      if (skipped != nullptr) skipped->push_back(*f);
    }
    return std::nullopt;
  }

  // Pings; returns every frame that arrives before the pong.
  std::vector<json::object> UntilPong() {
    ws_.SendText(R"({"type":"ping"})");
    std::vector<json::object> before;
    while (auto f = Next()) {
      if (Field(*f, "type") == "pong") return before;
      before.push_back(*f);
    }
    ADD_FAILURE() << "no pong (closed with " << ws_.close_code() << ")";
    return before;
  }

 private:
  WebSocketClient ws_;
  std::string ready_;
  std::string last_;
  bool ok_ = false;
};

auto MessageCreated(const std::string& message_id) {
  return [message_id](const json::object& f) {
    return Field(f, "type") == "message.created" && Field(Object(f, "message"), "id") == message_id;
  };
}

auto Receipt(const std::string& message_id, const std::string& status) {
  return [message_id, status](const json::object& f) {
    return Field(f, "type") == "receipt" && Field(f, "message_id") == message_id &&
           Field(f, "status") == status;
  };
}

// ---- the deployment of a test ----------------------------------------------------------

// CTest runs each test case in a process of its own (gtest_discover_tests),
// so each pays for its own deployment: clinic-a and its owner in
// SetUpTestSuite, and only the accounts the test asks for, activated in
// parallel (each costs about five Argon2id hashes, and the server hashes on
// one worker per core).

// Nurses of clinic-a: each may send and read messages, and none has any
// other standing in a conversation than its membership gives it. "bob" is
// the owner of clinic-b, created on demand.
struct Shared {
  std::unique_ptr<Deployment> deployment;
  TestAccount alice;  // owner of clinic-a (audit.read)
  std::mutex mu;
  std::map<std::string, TestAccount> accounts;    // guarded by mu
  std::map<std::string, std::string> colleagues;  // name -> user id; guarded by mu
};

class MessagingApiTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    shared_ = new Shared;
    shared_->deployment = std::make_unique<Deployment>();
    Deployment& d = *shared_->deployment;
    const std::string otp_a = d.AddOrg(kOrgA, kOwnerA);
    if (otp_a.empty()) return;
    d.Start();
    shared_->alice = ActivateAccount(d.port(), kOrgA, kOwnerA, otp_a, kPassword);
  }

  static void TearDownTestSuite() {
    if (shared_ != nullptr && shared_->deployment) {
      // Everything the test did leaves an audit chain that verifies.
      shared_->deployment->StopAndVerifyAudit();
    }
    delete shared_;
    shared_ = nullptr;
  }

  void SetUp() override {
    ASSERT_NE(shared_, nullptr);
    ASSERT_TRUE(shared_->deployment);
    ASSERT_FALSE(shared_->alice.token.empty()) << "the suite's set-up failed";
  }

  // Activates the named accounts the test has not got yet, in parallel;
  // fails the test (fatally) when one cannot be activated.
  static void Need(const std::vector<std::string>& names) {
    std::vector<std::thread> threads;
    for (const std::string& name : names) {
      {
        std::lock_guard lock(shared_->mu);
        if (shared_->accounts.count(name)) continue;
      }
      threads.emplace_back([name] {
        TestAccount account = name == kOwnerB ? MakeOwnerB() : MakeNurse(name);
        std::lock_guard lock(shared_->mu);
        shared_->accounts[name] = std::move(account);
      });
    }
    for (auto& t : threads) t.join();
    for (const std::string& name : names) {
      const TestAccount& a = shared_->accounts.at(name);
      ASSERT_FALSE(a.token.empty() || a.user_id.empty()) << "cannot activate " << name;
    }
  }

  static TestAccount MakeNurse(const std::string& name) {
    const auto r =
        Fetch(port(), "POST", "/api/v1/users",
              Body({{"username", name}, {"display_name", "Nurse " + name}, {"roles", {"nurse"}}}),
              BearerHeader(alice().token));
    if (r.status != 201) {
      ADD_FAILURE() << "creating " << name << ": " << r.status << " " << r.body;
      return {};
    }
    return ActivateAccount(port(), kOrgA, name, Field(Parse(r), "one_time_password"), kPassword);
  }

  // clinic-b, created while the server runs (as an operator would), and its owner.
  static TestAccount MakeOwnerB() {
    const std::string otp = shared_->deployment->AddOrg(kOrgB, kOwnerB);
    if (otp.empty()) return {};
    return ActivateAccount(port(), kOrgB, kOwnerB, otp, kPassword);
  }

  // The id of a nurse who is only named (a member, a user to add), created
  // without signing in: one hash rather than five.
  static std::string Colleague(const std::string& name) {
    {
      std::lock_guard lock(shared_->mu);
      if (const auto it = shared_->accounts.find(name); it != shared_->accounts.end()) {
        return it->second.user_id;
      }
      if (const auto it = shared_->colleagues.find(name); it != shared_->colleagues.end()) {
        return it->second;
      }
    }
    const auto r =
        Fetch(port(), "POST", "/api/v1/users", Body({{"username", name}, {"roles", {"nurse"}}}),
              BearerHeader(alice().token));
    EXPECT_EQ(r.status, 201) << name << ": " << r.body;
    std::lock_guard lock(shared_->mu);
    return shared_->colleagues[name] = Field(Parse(r), "id");
  }

  static TestAccount& Account(const std::string& name) {
    Need({name});
    std::lock_guard lock(shared_->mu);
    return shared_->accounts.at(name);
  }

  static std::uint16_t port() { return shared_->deployment->port(); }
  static fs::path database() { return shared_->deployment->database(); }
  static ServerProcess& server() { return shared_->deployment->server(); }
  static TestAccount& alice() { return shared_->alice; }
  static TestAccount& bob() { return Account(kOwnerB); }
  static TestAccount& nina() { return Account("nina"); }
  static TestAccount& omar() { return Account("omar"); }
  static TestAccount& pia() { return Account("pia"); }
  static TestAccount& quinn() { return Account("quinn"); }
  static TestAccount& rui() { return Account("rui"); }

  static HttpResponse Api(const std::string& method, const std::string& target,
                          const TestAccount& who, const std::string& body = "") {
    return Fetch(port(), method, target, body, BearerHeader(who.token));
  }

  static std::string ConversationPath(const std::string& id) {
    return "/api/v1/conversations/" + id;
  }
  static std::string MessagesPath(const std::string& id) {
    return "/api/v1/conversations/" + id + "/messages";
  }

  // POST /api/v1/conversations for a group; the conversation (201 checked).
  static json::object CreateGroup(const TestAccount& admin, const std::string& title,
                                  const std::vector<const TestAccount*>& members) {
    json::array ids;
    for (const TestAccount* m : members) ids.emplace_back(m->user_id);
    const auto r = Api("POST", "/api/v1/conversations", admin,
                       Body({{"kind", "group"}, {"title", title}, {"members", ids}}));
    EXPECT_EQ(r.status, 201) << r.body;
    return Parse(r);
  }

  // POST /api/v1/conversations for a direct one; its id (201 or 200).
  static std::string Direct(const TestAccount& a, const TestAccount& b) {
    return Direct(a, b.user_id);
  }
  static std::string Direct(const TestAccount& a, const std::string& other_id) {
    const auto r = Api("POST", "/api/v1/conversations", a,
                       Body({{"kind", "direct"}, {"members", {other_id}}}));
    EXPECT_TRUE(r.status == 201 || r.status == 200) << r.status << " " << r.body;
    return Field(Parse(r), "id");
  }

  static HttpResponse PostMessage(const TestAccount& sender, const std::string& conversation,
                                  const std::string& body, const std::string& txn) {
    return Api("POST", MessagesPath(conversation), sender,
               Body({{"client_txn_id", txn}, {"body", body}}));
  }

  // A message sent (201 checked).
  static json::object SendMessage(const TestAccount& sender, const std::string& conversation,
                                  const std::string& body) {
    const auto r = PostMessage(sender, conversation, body, Txn());
    EXPECT_EQ(r.status, 201) << r.body;
    return Parse(r);
  }

  // GET /api/v1/conversations/{id}/messages (200 checked).
  static std::vector<json::object> Messages(const TestAccount& who, const std::string& conversation,
                                            const std::string& query = "limit=200") {
    const auto r = Api("GET", MessagesPath(conversation) + "?" + query, who);
    EXPECT_EQ(r.status, 200) << r.body;
    return r.status == 200 ? List(r, "messages") : std::vector<json::object>{};
  }

  // The ids of the caller's conversations (GET /api/v1/conversations).
  static std::vector<std::string> ConversationIds(const TestAccount& who) {
    const auto r = Api("GET", "/api/v1/conversations", who);
    EXPECT_EQ(r.status, 200) << r.body;
    std::vector<std::string> out;
    if (r.status != 200) return out;
    for (const auto& c : List(r, "conversations")) out.push_back(Field(c, "id"));
    return out;
  }

  static std::int64_t Rows(const std::string& table) {
    Sql db(database(), false);
    return db.Count(table);
  }

  // Rows of `table` in which any column holds `needle` (blobs included).
  static std::int64_t RowsHolding(const std::string& table, const std::string& needle) {
    Sql db(database(), false);
    std::int64_t n = 0;
    for (const std::string& column :
         db.Column("SELECT name FROM pragma_table_info('" + table + "')")) {
      n += std::stoll(db.Column("SELECT count(*) FROM " + table + " WHERE instr(CAST(\"" + column +
                                    "\" AS BLOB), CAST(? AS BLOB)) > 0",
                                {needle})
                          .at(0));
    }
    return n;
  }

  static Shared* shared_;
};

Shared* MessagingApiTest::shared_ = nullptr;

// ---- two clients ---------------------------------------------------------------------

TEST_F(MessagingApiTest, TwoClientsExchangeAMessageWithReceiptsOverLiveSockets) {
  Need({"nina", "omar"});
  TestAccount& a = nina();
  TestAccount& b = omar();
  const std::string conversation = Direct(a, b);
  ASSERT_FALSE(conversation.empty());
  Events a_events(port(), a.token);
  Events b_events(port(), b.token);
  ASSERT_TRUE(a_events.ok() && b_events.ok());

  // A sends; the answer is the message, seq 1 of a new conversation.
  const std::string text = "Bed 4: please review the potassium result " + Unique("");
  const auto r = PostMessage(a, conversation, text, Txn());
  ASSERT_EQ(r.status, 201) << r.body;
  const json::object sent = Parse(r);
  const std::string id = Field(sent, "id");
  EXPECT_TRUE(std::regex_match(id, std::regex("msg_[0-9a-f]{32}"))) << r.body;
  EXPECT_EQ(Field(sent, "conversation_id"), conversation);
  EXPECT_EQ(Int(sent, "seq"), 1);
  EXPECT_EQ(Field(sent, "sender"), a.user_id);
  EXPECT_EQ(Field(sent, "body"), text);
  EXPECT_EQ(Field(sent, "priority"), "routine");
  EXPECT_TRUE(sent.contains("reply_to") && sent.at("reply_to").is_null()) << r.body;
  EXPECT_EQ(sent.contains("recalled") ? sent.at("recalled") : json::value(), json::value(false));
  EXPECT_TRUE(sent.contains("recalled_at") && sent.at("recalled_at").is_null()) << r.body;
  EXPECT_FALSE(Field(sent, "created_at").empty()) << r.body;

  // B's socket receives it, body and all, exactly as the POST answered it.
  const auto created = b_events.NextMatching(MessageCreated(id));
  ASSERT_TRUE(created.has_value()) << "B's socket never received message.created";
  EXPECT_EQ(json::value(Object(*created, "message")), json::value(sent));

  // Reaching B's socket marks it delivered: A hears so, and hears it before
  // any "read" (which would be skipped here and then never match below).
  std::vector<json::object> skipped;
  const auto delivered = a_events.NextMatching(Receipt(id, "delivered"), &skipped);
  ASSERT_TRUE(delivered.has_value())
      << "no delivered receipt on A's socket; before it:" << Show(skipped);
  EXPECT_EQ(Field(*delivered, "user_id"), b.user_id);
  EXPECT_EQ(Field(*delivered, "conversation_id"), conversation);

  // B reads it; A hears that too.
  const auto read = Api("POST", "/api/v1/messages/" + id + "/read", b);
  EXPECT_EQ(read.status, 204) << read.body;
  const auto read_receipt = a_events.NextMatching(Receipt(id, "read"), &skipped);
  ASSERT_TRUE(read_receipt.has_value())
      << "no read receipt on A's socket; before it:" << Show(skipped);
  EXPECT_EQ(Field(*read_receipt, "user_id"), b.user_id);
  EXPECT_EQ(Field(*read_receipt, "conversation_id"), conversation);

  // The sender's view of the receipts: B, delivered and read.
  const auto receipts = Api("GET", "/api/v1/messages/" + id + "/receipts", a);
  ASSERT_EQ(receipts.status, 200) << receipts.body;
  const auto list = List(receipts, "receipts");
  ASSERT_EQ(list.size(), 1u) << receipts.body;
  EXPECT_EQ(Field(list[0], "user_id"), b.user_id);
  EXPECT_FALSE(Field(list[0], "delivered_at").empty()) << receipts.body;
  EXPECT_FALSE(Field(list[0], "read_at").empty()) << receipts.body;

  // Receipts go to the sender only: B's socket has none queued.
  const auto b_rest = b_events.UntilPong();
  for (const auto& f : b_rest) {
    EXPECT_NE(Field(f, "type"), "receipt") << "B received a receipt: " << json::serialize(f);
  }
}

// ---- resuming from a cursor ------------------------------------------------------------

TEST_F(MessagingApiTest, ASocketResumesFromItsCursorWithoutGapsOrDuplicates) {
  Need({"nina", "pia"});
  constexpr int kCount = 1000;
  TestAccount& a = nina();
  TestAccount& b = pia();
  const std::string conversation = Field(CreateGroup(a, "Resume " + Unique(""), {&b}), "id");
  ASSERT_FALSE(conversation.empty());

  std::string cursor;
  {
    Events first(port(), b.token);
    ASSERT_TRUE(first.ok());
    cursor = first.ready_cursor();
  }

  // A thousand sends over one keep-alive connection. Should the server close
  // it, the send is retried on a new one with the same client_txn_id, as a
  // client would: idempotency makes the retry safe, and the checks below
  // would see a duplicate.
  const auto started = std::chrono::steady_clock::now();
  auto connection = std::make_unique<HttpsConnection>(port());
  int reconnects = 0;
  for (int i = 1; i <= kCount; ++i) {
    const std::string txn = Txn();
    const std::string body =
        Body({{"client_txn_id", txn}, {"body", "resume message " + std::to_string(i)}});
    HttpResponse r;
    for (int attempt = 0;; ++attempt) {
      try {
        r = connection->Send("POST", MessagesPath(conversation), body, BearerHeader(a.token));
        if (!r.keep_alive) connection = std::make_unique<HttpsConnection>(port());
        break;
      } catch (const std::exception& e) {
        ASSERT_LT(attempt, 3) << "send " << i << ": " << e.what();
        ++reconnects;
        connection = std::make_unique<HttpsConnection>(port());
      }
    }
    ASSERT_EQ(r.status, 201) << "send " << i << ": " << r.body;
    ASSERT_EQ(Int(Parse(r), "seq"), i) << r.body;
  }
  const auto sent = std::chrono::steady_clock::now();

  // Back with the cursor: every one of them, in order, once.
  Events again(port(), b.token, cursor);
  ASSERT_TRUE(again.ok());
  std::vector<std::int64_t> seqs;
  std::set<std::string> ids;
  std::vector<json::object> unexpected;
  while (seqs.size() < static_cast<std::size_t>(kCount)) {
    const auto f = again.Next();
    if (!f) break;
    if (ConversationOf(*f) != conversation) {
      unexpected.push_back(*f);
      continue;
    }
    if (Field(*f, "type") != "message.created") {
      unexpected.push_back(*f);
      continue;
    }
    const json::object m = Object(*f, "message");
    seqs.push_back(Int(m, "seq"));
    ids.insert(Field(m, "id"));
    EXPECT_EQ(Field(m, "body"), "resume message " + std::to_string(Int(m, "seq")));
  }
  const auto replayed = std::chrono::steady_clock::now();
  ASSERT_EQ(seqs.size(), static_cast<std::size_t>(kCount))
      << "the replay stopped (close code " << again.close_code() << ")";
  for (int i = 0; i < kCount; ++i) {
    ASSERT_EQ(seqs[i], i + 1) << "frame " << i << " out of order";
  }
  EXPECT_EQ(ids.size(), static_cast<std::size_t>(kCount)) << "duplicate message ids";
  EXPECT_TRUE(unexpected.empty()) << "frames other than the messages:" << Show(unexpected);
  // Nothing after the thousandth: no duplicate tail.
  const auto tail = again.UntilPong();
  EXPECT_TRUE(About(tail, conversation).empty()) << Show(tail);

  // A second resume from the last cursor replays nothing.
  const std::string last = again.last_cursor();
  Events third(port(), b.token, last);
  ASSERT_TRUE(third.ok());
  const auto rest = third.UntilPong();
  EXPECT_TRUE(About(rest, conversation).empty()) << "replayed again:" << Show(rest);

  using ms = std::chrono::milliseconds;
  std::cout << "[ info     ] " << kCount << " sends in "
            << std::chrono::duration_cast<ms>(sent - started).count() << " ms (" << reconnects
            << " reconnects), replayed in "
            << std::chrono::duration_cast<ms>(replayed - sent).count() << " ms\n";
}

// Replays stop while their client's queue is full and give their worker
// back: sockets that resume and then read nothing do not keep another
// socket's replay waiting.
TEST_F(MessagingApiTest, ResumingSocketsThatDoNotReadHoldUpNoOtherReplay) {
  Need({"nina", "pia"});
  constexpr int kCount = 500;
  TestAccount& a = nina();
  TestAccount& b = pia();
  const std::string conversation = Field(CreateGroup(a, "Stalled " + Unique(""), {&b}), "id");
  ASSERT_FALSE(conversation.empty());
  std::string cursor;
  {
    Events first(port(), b.token);
    ASSERT_TRUE(first.ok());
    cursor = first.ready_cursor();
  }
  // About 5 MB of events: more than the kernel's socket buffers take, so a
  // replay to a socket that does not read fills its queue.
  const std::string filler(9000, 'x');
  HttpsConnection connection(port());
  for (int i = 1; i <= kCount; ++i) {
    const auto r = connection.Send(
        "POST", MessagesPath(conversation),
        Body({{"client_txn_id", Txn()}, {"body", std::to_string(i) + " " + filler}}),
        BearerHeader(a.token));
    ASSERT_EQ(r.status, 201) << r.body;
  }
  // More stalled replays than the stream pool has workers.
  std::vector<std::unique_ptr<Events>> stalled;
  for (int i = 0; i < 6; ++i) {
    stalled.push_back(std::make_unique<Events>(port(), b.token, cursor));
    ASSERT_TRUE(stalled.back()->ok());
  }
  std::this_thread::sleep_for(500ms);
  const auto started = std::chrono::steady_clock::now();
  Events reader(port(), b.token, cursor);
  ASSERT_TRUE(reader.ok());
  int seen = 0;
  while (seen < kCount) {
    const auto f = reader.Next();
    if (!f) break;
    if (Field(*f, "type") == "message.created" && ConversationOf(*f) == conversation) ++seen;
  }
  EXPECT_EQ(seen, kCount) << "the replay stopped (close code " << reader.close_code() << ")";
  EXPECT_LT(std::chrono::steady_clock::now() - started, 5s);
  // The stalled ones are still open, and get everything once they read.
  for (auto& s : stalled) {
    int got = 0;
    while (got < kCount) {
      const auto f = s->Next();
      if (!f) break;
      if (Field(*f, "type") == "message.created" && ConversationOf(*f) == conversation) ++got;
    }
    EXPECT_EQ(got, kCount) << "closed with " << s->close_code();
  }
}

// ---- idempotency and sequence numbers ---------------------------------------------------

TEST_F(MessagingApiTest, SendsAreIdempotentAndSequenceNumbersHaveNoGaps) {
  Need({"nina", "omar"});
  TestAccount& a = nina();
  TestAccount& b = omar();
  const std::string conversation = Field(CreateGroup(a, "Retries " + Unique(""), {&b}), "id");
  const std::string other = Field(CreateGroup(a, "Elsewhere " + Unique(""), {&b}), "id");
  ASSERT_FALSE(conversation.empty() || other.empty());

  // The same client_txn_id again: the same message, not a second one.
  const std::string txn = Txn();
  const auto first = PostMessage(a, conversation, "Obs at 14:00 please", txn);
  const auto again = PostMessage(a, conversation, "Obs at 14:00 please", txn);
  ASSERT_EQ(first.status, 201) << first.body;
  EXPECT_EQ(again.status, 201) << again.body;
  EXPECT_EQ(Field(Parse(again), "id"), Field(Parse(first), "id"));
  EXPECT_EQ(Int(Parse(again), "seq"), Int(Parse(first), "seq"));
  EXPECT_EQ(Int(Parse(first), "seq"), 1);
  // ... but not for a different message: another body, another conversation.
  EXPECT_TRUE(IsError(PostMessage(a, conversation, "Obs at 15:00 please", txn), 409, "conflict"));
  EXPECT_TRUE(IsError(PostMessage(a, other, "Obs at 14:00 please", txn), 409, "conflict"));
  // Another sender's client_txn_id is their own.
  const auto bs = PostMessage(b, conversation, "Obs at 14:00 please", txn);
  EXPECT_EQ(bs.status, 201) << bs.body;
  EXPECT_NE(Field(Parse(bs), "id"), Field(Parse(first), "id"));
  EXPECT_EQ(Int(Parse(bs), "seq"), 2);

  // Eight concurrent sends with one client_txn_id: one message.
  const std::string shared_txn = Txn();
  std::vector<HttpResponse> answers(8);
  {
    std::vector<std::thread> threads;
    for (std::size_t i = 0; i < answers.size(); ++i) {
      threads.emplace_back([&, i] {
        try {
          answers[i] = PostMessage(a, conversation, "Concurrent retry", shared_txn);
        } catch (const std::exception& e) {
          answers[i].body = e.what();
        }
      });
    }
    for (auto& t : threads) t.join();
  }
  std::set<std::string> ids;
  for (const auto& r : answers) {
    EXPECT_EQ(r.status, 201) << r.body;
    ids.insert(Field(Parse(r), "id"));
    EXPECT_EQ(Int(Parse(r), "seq"), 3) << r.body;
  }
  EXPECT_EQ(ids.size(), 1u) << "concurrent retries made " << ids.size() << " messages";
  EXPECT_EQ(Sql(database(), false)
                .Column("SELECT count(*) FROM messages WHERE client_txn_id = ?", {shared_txn})
                .at(0),
            "1");
  EXPECT_TRUE(
      IsError(PostMessage(a, conversation, "Concurrent retry!", shared_txn), 409, "conflict"));
  const auto listed = Messages(a, conversation);
  ASSERT_EQ(listed.size(), 3u);
  EXPECT_EQ(Field(listed[2], "body"), "Concurrent retry");

  // 200 sends from four threads (two senders), each on its own keep-alive
  // connection, into a new conversation: seq is exactly 1..200.
  const std::string busy = Field(CreateGroup(a, "Busy " + Unique(""), {&b}), "id");
  ASSERT_FALSE(busy.empty());
  constexpr int kThreads = 4;
  constexpr int kPerThread = 50;
  std::mutex mu;
  std::vector<std::int64_t> seqs;
  std::vector<std::string> failures;
  {
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        const TestAccount& sender = t % 2 == 0 ? a : b;
        try {
          HttpsConnection c(port());
          for (int i = 0; i < kPerThread; ++i) {
            const auto r =
                c.Send("POST", MessagesPath(busy),
                       Body({{"client_txn_id", Txn()},
                             {"body", "thread " + std::to_string(t) + " #" + std::to_string(i)}}),
                       BearerHeader(sender.token));
            std::lock_guard lock(mu);
            if (r.status == 201) {
              seqs.push_back(Int(Parse(r), "seq"));
            } else {
              failures.push_back(std::to_string(r.status) + " " + r.body.substr(0, 200));
            }
          }
        } catch (const std::exception& e) {
          std::lock_guard lock(mu);
          failures.push_back(e.what());
        }
      });
    }
    for (auto& t : threads) t.join();
  }
  EXPECT_TRUE(failures.empty()) << failures.size()
                                << " failed, first: " << (failures.empty() ? "" : failures[0]);
  std::sort(seqs.begin(), seqs.end());
  std::vector<std::int64_t> expected(kThreads * kPerThread);
  for (std::size_t i = 0; i < expected.size(); ++i) expected[i] = static_cast<std::int64_t>(i) + 1;
  EXPECT_EQ(seqs, expected) << "the answered seqs are not exactly 1..200";
  const auto all = Messages(a, busy, "limit=200");
  std::vector<std::int64_t> stored;
  for (const auto& m : all) stored.push_back(Int(m, "seq"));
  EXPECT_EQ(stored, expected) << "GET messages does not show seq 1..200 in order";
  EXPECT_EQ(Int(Parse(Api("GET", ConversationPath(busy), a)), "last_seq"), 200);
  // Paging: the default page is 50; after_seq and limit select a window.
  EXPECT_EQ(Messages(b, busy, "").size(), 50u);
  const auto window = Messages(b, busy, "after_seq=120&limit=3");
  ASSERT_EQ(window.size(), 3u);
  EXPECT_EQ(Int(window[0], "seq"), 121);
  EXPECT_EQ(Int(window[2], "seq"), 123);
  EXPECT_TRUE(Messages(b, busy, "after_seq=200").empty());
}

// ---- conversations ------------------------------------------------------------------

TEST_F(MessagingApiTest, ADirectConversationIsOnePerPairAndGroupsHaveAdmins) {
  Need({"pia", "quinn", "rui"});
  TestAccount& p = pia();
  TestAccount& q = quinn();
  const std::string direct_body = Body({{"kind", "direct"}, {"members", {q.user_id}}});
  const auto created = Api("POST", "/api/v1/conversations", p, direct_body);
  ASSERT_EQ(created.status, 201) << created.body;
  const json::object c = Parse(created);
  const std::string id = Field(c, "id");
  EXPECT_TRUE(std::regex_match(id, std::regex("cnv_[0-9a-f]{32}"))) << created.body;
  EXPECT_EQ(Field(c, "kind"), "direct");
  EXPECT_TRUE(c.contains("title") && c.at("title").is_null()) << created.body;
  EXPECT_EQ(Field(c, "created_by"), p.user_id);
  EXPECT_FALSE(Field(c, "created_at").empty());
  EXPECT_EQ(Int(c, "last_seq"), 0);
  // A legal hold may be confidential: members are never shown one.
  EXPECT_FALSE(c.contains("legal_hold")) << created.body;
  EXPECT_TRUE(c.contains("message_lifespan_days") && c.at("message_lifespan_days").is_null());
  {
    // Both as plain members, sorted by user id.
    json::array want;
    for (const std::string& u : std::set<std::string>{p.user_id, q.user_id}) {
      want.push_back(json::object{{"user_id", u}, {"role", "member"}});
    }
    EXPECT_EQ(c.contains("members") ? c.at("members") : json::value(), json::value(want))
        << created.body;
  }

  // Asked again, from either side: the same conversation, 200.
  const auto repeated = Api("POST", "/api/v1/conversations", p, direct_body);
  EXPECT_EQ(repeated.status, 200) << repeated.body;
  EXPECT_EQ(Field(Parse(repeated), "id"), id);
  const auto reverse =
      Api("POST", "/api/v1/conversations", q, Body({{"kind", "direct"}, {"members", {p.user_id}}}));
  EXPECT_EQ(reverse.status, 200) << reverse.body;
  EXPECT_EQ(Field(Parse(reverse), "id"), id);
  const auto listed = ConversationIds(p);
  EXPECT_EQ(std::count(listed.begin(), listed.end(), id), 1);
  EXPECT_EQ(Rows("conversations WHERE id = '" + id + "'"), 1);
  // Not with oneself, nor with two others.
  EXPECT_TRUE(IsError(
      Api("POST", "/api/v1/conversations", p, Body({{"kind", "direct"}, {"members", {p.user_id}}})),
      400, "bad_request"));
  EXPECT_TRUE(IsError(Api("POST", "/api/v1/conversations", p,
                          Body({{"kind", "direct"}, {"members", {q.user_id, rui().user_id}}})),
                      400, "bad_request"));

  // A group: the creator is its admin, the listed users members.
  const std::string title = "Ward 3 nights " + Unique("");
  const auto group_r =
      Api("POST", "/api/v1/conversations", q,
          Body({{"kind", "group"}, {"title", title}, {"members", {p.user_id, rui().user_id}}}));
  ASSERT_EQ(group_r.status, 201) << group_r.body;
  const json::object group = Parse(group_r);
  const std::string group_id = Field(group, "id");
  EXPECT_EQ(Field(group, "kind"), "group");
  EXPECT_EQ(Field(group, "title"), title);
  {
    std::map<std::string, std::string> roles = {
        {q.user_id, "admin"}, {p.user_id, "member"}, {rui().user_id, "member"}};
    json::array want;
    for (const auto& [u, role] : roles)
      want.push_back(json::object{{"user_id", u}, {"role", role}});
    EXPECT_EQ(group.contains("members") ? group.at("members") : json::value(), json::value(want))
        << group_r.body;
  }
  // Every member sees the same conversation; the list is newest first.
  const auto seen = Api("GET", ConversationPath(group_id), rui());
  ASSERT_EQ(seen.status, 200) << seen.body;
  EXPECT_EQ(json::value(Parse(seen)), json::value(group));
  const auto q_list = ConversationIds(q);
  ASSERT_GE(q_list.size(), 2u);
  EXPECT_EQ(q_list[0], group_id) << "not newest first";
  // Its admin renames it; a plain member may not.
  const auto renamed = Api("PATCH", ConversationPath(group_id), q, Body({{"title", "Ward 3"}}));
  EXPECT_EQ(renamed.status, 200) << renamed.body;
  EXPECT_EQ(Field(Parse(renamed), "title"), "Ward 3");
  EXPECT_TRUE(IsError(Api("PATCH", ConversationPath(group_id), p, Body({{"title", "Mine now"}})),
                      403, "forbidden"));
  EXPECT_EQ(Field(Parse(Api("GET", ConversationPath(group_id), p)), "title"), "Ward 3");
  // A direct conversation has no members to add.
  EXPECT_TRUE(
      IsError(Api("POST", ConversationPath(id) + "/members", p, Body({{"user_id", rui().user_id}})),
              400, "bad_request"));
}

// ---- membership ----------------------------------------------------------------------

TEST_F(MessagingApiTest, ARemovedMemberLosesTheConversationEverywhereAtOnce) {
  Need({"nina", "omar", "pia"});
  TestAccount& a = nina();
  TestAccount& b = omar();
  TestAccount& c = pia();
  const std::string conversation =
      Field(CreateGroup(a, "Membership " + Unique(""), {&b, &c}), "id");
  ASSERT_FALSE(conversation.empty());
  Events c_events(port(), c.token);
  ASSERT_TRUE(c_events.ok());
  const std::string before = Field(SendMessage(a, conversation, "Before the change"), "id");
  ASSERT_TRUE(c_events.NextMatching(MessageCreated(before)).has_value());

  // A plain member can neither add, rename nor remove others.
  EXPECT_TRUE(IsError(Api("POST", ConversationPath(conversation) + "/members", b,
                          Body({{"user_id", Colleague("quinn")}})),
                      403, "forbidden"));
  EXPECT_TRUE(IsError(Api("DELETE", ConversationPath(conversation) + "/members/" + c.user_id, b),
                      403, "forbidden"));

  // The admin removes C: C's socket hears it, once, as the last word.
  const auto removed = Api("DELETE", ConversationPath(conversation) + "/members/" + c.user_id, a);
  ASSERT_EQ(removed.status, 204) << removed.body;
  std::vector<json::object> skipped;
  const auto frame = c_events.NextMatching(
      [&](const json::object& f) {
        return Field(f, "type") == "conversation.removed" &&
               Field(f, "conversation_id") == conversation;
      },
      &skipped);
  ASSERT_TRUE(frame.has_value()) << "no conversation.removed; before it:" << Show(skipped);
  for (const auto& f : About(skipped, conversation)) {
    EXPECT_EQ(Field(f, "type"), "conversation.updated") << json::serialize(f);
  }

  // Every route of the conversation and its messages: 404, as for an id
  // that does not exist.
  const std::string msg = "/api/v1/messages/" + before;
  struct Route {
    std::string method, target, body;
  };
  const std::vector<Route> routes = {
      {"GET", ConversationPath(conversation), ""},
      {"PATCH", ConversationPath(conversation), Body({{"title", "Mine"}})},
      {"POST", ConversationPath(conversation) + "/members", Body({{"user_id", c.user_id}})},
      {"DELETE", ConversationPath(conversation) + "/members/" + b.user_id, ""},
      {"GET", MessagesPath(conversation), ""},
      {"POST", MessagesPath(conversation),
       Body({{"client_txn_id", Txn()}, {"body", "Still here?"}})},
      {"POST", msg + "/read", ""},
      {"POST", msg + "/recall", ""},
      {"GET", msg + "/receipts", ""},
  };
  for (const Route& r : routes) {
    EXPECT_TRUE(IsError(Api(r.method, r.target, c, r.body), 404, "not_found"))
        << r.method << " " << r.target;
  }
  const auto c_list = ConversationIds(c);
  EXPECT_EQ(std::count(c_list.begin(), c_list.end(), conversation), 0);

  // New messages do not reach C's socket. The barrier: a message in a
  // conversation C still belongs to, sent after; it arrives with nothing of
  // the old conversation before it, and nothing after it either.
  const std::string after = Field(SendMessage(a, conversation, "After the change"), "id");
  const std::string barrier_conversation = Direct(a, c);
  const std::string barrier = Field(SendMessage(a, barrier_conversation, "Barrier"), "id");
  skipped.clear();
  EXPECT_TRUE(c_events.NextMatching(MessageCreated(barrier), &skipped).has_value());
  EXPECT_TRUE(About(skipped, conversation).empty()) << "after removal:" << Show(skipped);
  const auto rest = c_events.UntilPong();
  EXPECT_TRUE(About(rest, conversation).empty()) << "after removal:" << Show(rest);

  // The others go on: both messages, two members.
  const auto seen = Messages(b, conversation);
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(Field(seen[1], "id"), after);
  const auto members = Parse(Api("GET", ConversationPath(conversation), a)).at("members");
  EXPECT_EQ(members.as_array().size(), 2u) << json::serialize(members);
  EXPECT_EQ(json::serialize(members).find(c.user_id), std::string::npos);

  // A plain member may leave on their own.
  EXPECT_EQ(Api("DELETE", ConversationPath(conversation) + "/members/" + b.user_id, b).status, 204);
  EXPECT_TRUE(IsError(Api("GET", ConversationPath(conversation), b), 404, "not_found"));
}

// ---- recall --------------------------------------------------------------------------

TEST_F(MessagingApiTest, RecallErasesTheBodyForEveryoneAndBodiesAreSealedAtRest) {
  Need({"nina", "omar"});
  TestAccount& a = nina();
  TestAccount& b = omar();
  const std::string conversation = Field(CreateGroup(a, "Recall " + Unique(""), {&b}), "id");
  ASSERT_FALSE(conversation.empty());
  Events b_events(port(), b.token);
  ASSERT_TRUE(b_events.ok());

  const std::string recalled_text = Canary("recalled");
  const std::string id = Field(SendMessage(a, conversation, recalled_text), "id");
  const auto created = b_events.NextMatching(MessageCreated(id));
  ASSERT_TRUE(created.has_value());
  EXPECT_EQ(Field(Object(*created, "message"), "body"), recalled_text);

  // The sender recalls it: B's socket hears so, without the body.
  EXPECT_EQ(Api("POST", "/api/v1/messages/" + id + "/recall", a).status, 204);
  const auto recalled = b_events.NextMatching([&](const json::object& f) {
    return Field(f, "type") == "message.recalled" && Field(f, "message_id") == id;
  });
  ASSERT_TRUE(recalled.has_value()) << "no message.recalled on B's socket";
  EXPECT_EQ(Field(*recalled, "conversation_id"), conversation);
  EXPECT_EQ(json::serialize(*recalled).find(recalled_text), std::string::npos);
  // Gone for everyone, the sender included; the tombstone stays.
  for (const TestAccount* who : {&b, &a}) {
    const auto list = Messages(*who, conversation);
    ASSERT_EQ(list.size(), 1u);
    EXPECT_TRUE(list[0].contains("body") && list[0].at("body").is_null())
        << json::serialize(list[0]);
    EXPECT_EQ(list[0].contains("recalled") ? list[0].at("recalled") : json::value(),
              json::value(true));
    EXPECT_FALSE(Field(list[0], "recalled_at").empty()) << json::serialize(list[0]);
  }
  EXPECT_EQ(Sql(database(), false).Column("SELECT body IS NULL FROM messages WHERE id = ?", {id}),
            std::vector<std::string>{"1"})
      << "a recalled message's sealed body is still stored";

  // B is neither its sender nor an admin: may not recall A's message.
  const std::string kept_text = Canary("kept");
  const std::string kept = Field(SendMessage(a, conversation, kept_text), "id");
  EXPECT_TRUE(IsError(Api("POST", "/api/v1/messages/" + kept + "/recall", b), 403, "forbidden"));
  const auto after = Messages(b, conversation);
  ASSERT_EQ(after.size(), 2u);
  EXPECT_EQ(Field(after[1], "body"), kept_text);
  // The sender may recall their own; an admin anyone's.
  const std::string own = Field(SendMessage(b, conversation, "Sent in error"), "id");
  EXPECT_EQ(Api("POST", "/api/v1/messages/" + own + "/recall", b).status, 204);
  const std::string others = Field(SendMessage(b, conversation, "Wrong patient"), "id");
  EXPECT_EQ(Api("POST", "/api/v1/messages/" + others + "/recall", a).status, 204);
  const auto last = Messages(a, conversation);
  ASSERT_EQ(last.size(), 4u);
  EXPECT_EQ(last[3].contains("recalled") ? last[3].at("recalled") : json::value(),
            json::value(true));

  // Bodies are sealed: no column of any message row, nor the database files,
  // hold either text (the kept one is still stored, sealed).
  EXPECT_EQ(RowsHolding("messages", kept_text), 0) << "plaintext body in the messages table";
  EXPECT_EQ(RowsHolding("messages", recalled_text), 0) << "plaintext body in the messages table";
  EXPECT_EQ(Sql(database(), false)
                .Column("SELECT body IS NOT NULL AND length(body) > 0 FROM messages WHERE id = ?",
                        {kept}),
            std::vector<std::string>{"1"})
      << "the kept message has no stored body";
  for (const char* suffix : {"", "-wal"}) {
    const std::string bytes = ReadFile(database().string() + suffix);
    EXPECT_EQ(bytes.find(kept_text), std::string::npos) << "plaintext in carewire.db" << suffix;
    EXPECT_EQ(bytes.find(recalled_text), std::string::npos) << "plaintext in carewire.db" << suffix;
  }
  EXPECT_EQ(server().Stderr().find(kept_text), std::string::npos) << "a body in the log";
}

// ---- isolation -----------------------------------------------------------------------

TEST_F(MessagingApiTest, NonMembersAndOtherOrganizationsSeeNothing) {
  Need({"nina", "omar", "rui", kOwnerB});
  TestAccount& a = nina();
  TestAccount& b = omar();
  const std::string title = "Isolation " + Unique("");
  const std::string conversation = Field(CreateGroup(a, title, {&b}), "id");
  ASSERT_FALSE(conversation.empty());
  const std::string secret = Canary("isolation");
  const std::string message = Field(SendMessage(a, conversation, secret), "id");
  ASSERT_FALSE(message.empty());

  // The outsiders: another organization's owner, a colleague outside the
  // conversation, and this organization's owner, whose permissions do not
  // make her a member.
  const std::vector<std::pair<std::string, TestAccount*>> outsiders = {
      {"other organization", &bob()}, {"non-member", &rui()}, {"owner, non-member", &alice()}};
  std::vector<std::unique_ptr<Events>> sockets;
  for (const auto& [who, account] : outsiders) {
    sockets.push_back(std::make_unique<Events>(port(), account->token));
    ASSERT_TRUE(sockets.back()->ok()) << who;
  }
  Events b_events(port(), b.token);
  ASSERT_TRUE(b_events.ok());
  const std::string a_before = Api("GET", ConversationPath(conversation), a).body;

  // Every route, with the real ids and with made-up ones: the same 404.
  const std::string no_conversation = "cnv_" + std::string(32, '0');
  const std::string no_message = "msg_" + std::string(32, '0');
  struct Route {
    std::string method, target, body;
    std::string id;  // the id in the target, swapped for a made-up one
    std::string made_up;
  };
  for (const auto& [who, account] : outsiders) {
    const std::vector<Route> routes = {
        {"GET", ConversationPath(conversation), "", conversation, no_conversation},
        {"PATCH", ConversationPath(conversation), Body({{"title", "Taken over"}}), conversation,
         no_conversation},
        {"POST", ConversationPath(conversation) + "/members", Body({{"user_id", account->user_id}}),
         conversation, no_conversation},
        {"DELETE", ConversationPath(conversation) + "/members/" + b.user_id, "", conversation,
         no_conversation},
        {"GET", MessagesPath(conversation), "", conversation, no_conversation},
        {"GET", MessagesPath(conversation) + "?after_seq=0&limit=200", "", conversation,
         no_conversation},
        {"POST", MessagesPath(conversation),
         Body({{"client_txn_id", Txn()}, {"body", "Let me in"}}), conversation, no_conversation},
        {"POST", "/api/v1/messages/" + message + "/read", "", message, no_message},
        {"POST", "/api/v1/messages/" + message + "/recall", "", message, no_message},
        {"GET", "/api/v1/messages/" + message + "/receipts", "", message, no_message},
    };
    for (const Route& r : routes) {
      const auto real = Api(r.method, r.target, *account, r.body);
      std::string made_up_target = r.target;
      made_up_target.replace(made_up_target.find(r.id), r.id.size(), r.made_up);
      std::string made_up_body = r.body;
      if (r.method == "POST" && r.target.ends_with("/messages")) {
        made_up_body = Body({{"client_txn_id", Txn()}, {"body", "Let me in"}});
      }
      const auto fake = Api(r.method, made_up_target, *account, made_up_body);
      EXPECT_TRUE(IsError(real, 404, "not_found")) << who << ": " << r.method << " " << r.target;
      EXPECT_EQ(Comparable(real, r.id), Comparable(fake, r.made_up))
          << who << ": " << r.method << " " << r.target << " differs from a made-up id";
      EXPECT_EQ(real.body.find(secret), std::string::npos);
      EXPECT_EQ(real.body.find(title), std::string::npos);
    }
    const auto listed = ConversationIds(*account);
    EXPECT_EQ(std::count(listed.begin(), listed.end(), conversation), 0) << who;
  }
  // Another organization's user cannot be named as a member: the same 400
  // as a user who does not exist.
  const std::string no_user = "usr_" + std::string(24, '0');
  const auto foreign = Api("POST", "/api/v1/conversations", bob(),
                           Body({{"kind", "direct"}, {"members", {b.user_id}}}));
  const auto nobody = Api("POST", "/api/v1/conversations", bob(),
                          Body({{"kind", "direct"}, {"members", {no_user}}}));
  EXPECT_TRUE(IsError(foreign, 400, "bad_request"));
  EXPECT_EQ(Comparable(foreign, b.user_id), Comparable(nobody, no_user));
  const auto foreign_group =
      Api("POST", "/api/v1/conversations", bob(),
          Body({{"kind", "group"}, {"title", "Poach"}, {"members", {b.user_id}}}));
  EXPECT_TRUE(IsError(foreign_group, 400, "bad_request"));

  // Nothing they did changed anything.
  EXPECT_EQ(Api("GET", ConversationPath(conversation), a).body, a_before);
  const auto messages = Messages(a, conversation);
  ASSERT_EQ(messages.size(), 1u);
  EXPECT_EQ(Field(messages[0], "body"), secret);

  // Their sockets hear nothing of the conversation: once B's socket has the
  // next message (and its recall), theirs have nothing queued about it.
  const std::string next = Field(SendMessage(a, conversation, secret + " again"), "id");
  ASSERT_TRUE(b_events.NextMatching(MessageCreated(next)).has_value());
  ASSERT_EQ(Api("POST", "/api/v1/messages/" + next + "/recall", a).status, 204);
  ASSERT_TRUE(b_events
                  .NextMatching([&](const json::object& f) {
                    return Field(f, "type") == "message.recalled" && Field(f, "message_id") == next;
                  })
                  .has_value());
  for (std::size_t i = 0; i < outsiders.size(); ++i) {
    const auto frames = sockets[i]->UntilPong();
    EXPECT_TRUE(About(frames, conversation).empty()) << outsiders[i].first << ":" << Show(frames);
    for (const auto& f : frames) {
      EXPECT_EQ(json::serialize(f).find(secret), std::string::npos) << outsiders[i].first;
    }
  }
}

// ---- bad inputs ----------------------------------------------------------------------

// JSON nested `depth` arrays deep.
std::string Nested(int depth) { return std::string(depth, '[') + std::string(depth, ']'); }

// `n` copies of a UTF-8 sequence.
std::string Repeat(const std::string& s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += s;
  return out;
}

TEST_F(MessagingApiTest, BadInputsAreRefusedAndChangeNothing) {
  Need({"nina", "omar"});
  TestAccount& a = nina();
  TestAccount& b = omar();
  const std::string conversation = Field(CreateGroup(a, "Inputs " + Unique(""), {&b}), "id");
  const std::string elsewhere = Field(CreateGroup(a, "Other " + Unique(""), {&b}), "id");
  const std::string quinn_id = Colleague("quinn");
  const std::string rui_id = Colleague("rui");
  const std::string direct = Direct(a, quinn_id);
  ASSERT_FALSE(conversation.empty() || elsewhere.empty() || direct.empty());
  const std::string message = Field(SendMessage(a, conversation, "Valid"), "id");
  const std::string foreign_message = Field(SendMessage(a, elsewhere, "Elsewhere"), "id");
  ASSERT_FALSE(message.empty() || foreign_message.empty());
  // Wait for what the sends set off (deliveries, their audit) to settle.
  std::this_thread::sleep_for(300ms);

  const std::string canary = Canary("input");
  const std::string nul(1, '\0');
  const std::string no_user = "usr_" + std::string(24, '0');
  const std::string no_conversation = "cnv_" + std::string(32, '0');
  const std::string no_message = "msg_" + std::string(32, '0');
  const std::string conv_path = ConversationPath(conversation);
  const std::string msgs_path = MessagesPath(conversation);
  const std::string omar_id = b.user_id;

  struct Case {
    std::string what, method, target, body;
    int status = 0;  // 0: any 4xx
    std::string content_type = "application/json";
  };
  std::vector<Case> cases;
  auto add = [&](const std::string& method, const std::string& target, const std::string& what,
                 const std::string& body, int status = 400,
                 const std::string& content_type = "application/json") {
    cases.push_back(
        {method + " " + target + ": " + what, method, target, body, status, content_type});
  };
  // Bodies that are not the object a route reads (items 1 to 6, 15), for
  // each route with a body; `valid` is a body the route would accept.
  auto malformed = [&](const std::string& method, const std::string& target,
                       const std::string& valid) {
    add(method, target, "empty body", "");
    add(method, target, "null", "null");
    add(method, target, "array", "[]");
    add(method, target, "string", "\"x\"");
    add(method, target, "truncated", valid.substr(0, valid.size() - 1));
    add(method, target, "trailing garbage", valid + "x");
    add(method, target, "two documents", valid + valid);
    add(method, target, "nested 10,000 deep", Nested(10'000));
    add(method, target, "unknown key", "{\"" + canary + "\":1," + valid.substr(1));
    add(method, target, "__proto__", "{\"__proto__\":{\"admin\":true}," + valid.substr(1));
    add(method, target, "NaN", "{\"x\":NaN," + valid.substr(1));
    add(method, target, "invalid UTF-8 key", "{\"\xff\":1," + valid.substr(1));
    add(method, target, "text/plain", valid, 415, "text/plain");
    add(method, target, "form", "a=b", 415, "application/x-www-form-urlencoded");
    add(method, target, "latin-1", valid, 415, "application/json; charset=latin1");
    add(method, target, "10 MB", "{\"x\":\"" + std::string(10 << 20, 'a') + "\"}", 413);
  };

  // POST /api/v1/conversations
  {
    const std::string t = "/api/v1/conversations";
    auto group = [&](const std::string& title_json, const std::string& members_json) {
      return "{\"kind\":\"group\",\"title\":" + title_json + ",\"members\":" + members_json + "}";
    };
    const std::string members = "[\"" + omar_id + "\"]";
    malformed("POST", t, group("\"Fine\"", members));
    add("POST", t, "empty object", "{}");
    add("POST", t, "no kind", "{\"title\":\"t\",\"members\":" + members + "}");
    add("POST", t, "kind 1", "{\"kind\":1,\"members\":" + members + "}");
    add("POST", t, "kind null", "{\"kind\":null,\"members\":" + members + "}");
    add("POST", t, "kind channel", "{\"kind\":\"channel\",\"members\":" + members + "}");
    add("POST", t, "kind Group",
        "{\"kind\":\"Group\",\"title\":\"t\",\"members\":" + members + "}");
    add("POST", t, "duplicate kind",
        "{\"kind\":\"group\",\"kind\":\"direct\",\"title\":\"t\",\"members\":" + members + "}");
    add("POST", t, "direct without members", "{\"kind\":\"direct\"}");
    add("POST", t, "direct, no one", "{\"kind\":\"direct\",\"members\":[]}");
    add("POST", t, "direct, members a string",
        "{\"kind\":\"direct\",\"members\":\"" + omar_id + "\"}");
    for (const std::string& m :
         {std::string("1"), std::string("null"), std::string("{}"), std::string("[]"),
          std::string("9223372036854775808"), std::string("1e999"), std::string("\"\""),
          "\"" + no_user + "\"", "\"" + conversation + "\"", std::string("\"../../users\""),
          std::string("\"usr_x' OR '1'='1\""), "\"" + omar_id + "\\u0000\"",
          "\"" + std::string(300, 'u') + "\""}) {
      add("POST", t, "direct with member " + m.substr(0, 30),
          "{\"kind\":\"direct\",\"members\":[" + m + "]}");
      add("POST", t, "group with member " + m.substr(0, 30), group("\"t\"", "[" + m + "]"));
    }
    add("POST", t, "group without title", "{\"kind\":\"group\",\"members\":" + members + "}");
    add("POST", t, "group without members", "{\"kind\":\"group\",\"title\":\"t\"}");
    add("POST", t, "members not an array", group("\"t\"", "\"" + omar_id + "\""));
    {
      std::string many = "[";
      for (int i = 0; i < 257; ++i) {
        char id[32];
        std::snprintf(id, sizeof id, "usr_%024x", i + 1);
        many += std::string(i ? "," : "") + "\"" + id + "\"";
      }
      add("POST", t, "257 members", group("\"t\"", many + "]"));
    }
    for (const std::string& title : {std::string("5"),
                                     std::string("true"),
                                     std::string("[\"t\"]"),
                                     std::string("\"\""),
                                     "\"" + std::string(201, 't') + "\"",
                                     "\"" + Repeat("\xc3\xa9", 201) + "\"",
                                     std::string("\"a\\u0007b\""),
                                     std::string("\"a\\r\\nb\""),
                                     std::string("\"a\\nb\""),
                                     std::string("\"a\\u0000b\""),
                                     std::string("\"a\\u001b[2Jb\""),
                                     std::string("\"a\tb\""),
                                     std::string("\"a\\u007fb\""),
                                     "\"a" + nul + "b\"",
                                     std::string("\"ab\xc3\x28\""),
                                     std::string("\"\xc0\xaf\""),
                                     std::string("\"\\ud800\""),
                                     std::string("\"\\udc00x\""),
                                     std::string("\"\xe2\x80\xae"
                                                 "evil\""),
                                     std::string("\"a\\u2066b\"")}) {
      add("POST", t, "title " + title.substr(0, 30), group(title, members));
    }
  }

  // POST /api/v1/conversations/{id}/messages
  {
    auto msg = [](const std::string& fields) { return "{" + fields + "}"; };
    const std::string txn = "\"client_txn_id\":\"refused-" + RandomHex(4) + "\"";
    const std::string body = "\"body\":\"Valid\"";
    malformed("POST", msgs_path, msg(txn + "," + body));
    add("POST", msgs_path, "empty object", "{}");
    add("POST", msgs_path, "no body", msg(txn));
    add("POST", msgs_path, "no client_txn_id", msg(body));
    for (const std::string& v : {std::string("\"\""),
                                 std::string("null"),
                                 std::string("1"),
                                 std::string("[\"x\"]"),
                                 std::string("{\"text\":\"x\"}"),
                                 std::string("true"),
                                 "\"" + Repeat("\xc3\xa9", 10'001) + "\"",
                                 "\"" + std::string(10'001, 'a') + "\"",
                                 "\"" + Repeat("\xf0\x9f\x98\x80", 10'001) + "\"",
                                 std::string("\"ab\xc3\x28 cd\""),
                                 std::string("\"\xed\xa0\x80\""),
                                 std::string("\"\xc0\xaf\""),
                                 std::string("\"\\ud800\""),
                                 std::string("\"x\\udfffy\""),
                                 "\"a" + nul + "b\"",
                                 std::string("\"a\nb\""),
                                 std::string("\"a\x1b[2Jb\""),
                                 std::string("\"a\\u0000b\""),
                                 std::string("\"a\\u000bb\""),
                                 std::string("\"a\\u001cb\""),
                                 std::string("\"a\\u001b[2Jb\""),
                                 std::string("\"a\\u007fb\""),
                                 std::string("\"a\xe2\x80\xaa"
                                             "b\""),
                                 std::string("\"a\\u202eb\""),
                                 std::string("\"a\xe2\x81\xa9"
                                             "b\"")}) {
      add("POST", msgs_path, "body " + v.substr(0, 30), msg(txn + ",\"body\":" + v));
    }
    for (const std::string& v :
         {std::string("\"\""), std::string("null"), std::string("7"),
          "\"" + std::string(65, 't') + "\"", std::string("\"a b\""), std::string("\"a/b\""),
          std::string("\"../x\""), std::string("\"\xc3\xbc\""), std::string("\"a\\u0000\""),
          std::string("\"a;--\""), std::string("\"${x}\""), std::string("\"{{x}}\""),
          std::string("\"%n\"")}) {
      add("POST", msgs_path, "client_txn_id " + v.substr(0, 30),
          msg("\"client_txn_id\":" + v + "," + body));
    }
    for (const std::string& v : {std::string("\"high\""), std::string("\"URGENT\""),
                                 std::string("\"\""), std::string("1"), std::string("[]")}) {
      add("POST", msgs_path, "priority " + v, msg(txn + "," + body + ",\"priority\":" + v));
    }
    for (const std::string& v :
         {"\"" + no_message + "\"", "\"" + foreign_message + "\"", "\"" + conversation + "\"",
          std::string("\"x\""), std::string("1"), std::string("\"../msg\"")}) {
      add("POST", msgs_path, "reply_to " + v.substr(0, 40),
          msg(txn + "," + body + ",\"reply_to\":" + v), 0);
    }
    for (const char* key : {"sender", "seq", "conversation_id", "id", "recalled"}) {
      add("POST", msgs_path, std::string("key ") + key,
          msg(txn + "," + body + ",\"" + key + "\":\"x\""));
    }
    add("POST", msgs_path, "duplicate body", msg(txn + "," + body + ",\"body\":\"Other\""));
    add("POST", msgs_path, "duplicate client_txn_id", msg(txn + "," + txn + "," + body));
  }

  // PATCH /api/v1/conversations/{id}
  {
    const std::string valid = "{\"title\":\"Renamed\"}";
    malformed("PATCH", conv_path, valid);
    for (const std::string& title :
         {std::string("5"), std::string("null"), std::string("[]"), std::string("\"\""),
          "\"" + std::string(201, 't') + "\"", std::string("\"a\\u0007b\""),
          std::string("\"a\\r\\nX-Admin: 1\""), std::string("\"a\\u0000b\""),
          std::string("\"\\u001b[2J\""), std::string("\"ab\xc3\x28\""),
          std::string("\"\\ud800\"")}) {
      add("PATCH", conv_path, "title " + title.substr(0, 30), "{\"title\":" + title + "}");
    }
    add("PATCH", conv_path, "kind", "{\"title\":\"t\",\"kind\":\"direct\"}");
    add("PATCH", conv_path, "members", "{\"members\":[\"" + omar_id + "\"]}");
    add("PATCH", conv_path, "legal_hold", "{\"title\":\"t\",\"legal_hold\":true}");
    add("PATCH", conv_path, "created_by", "{\"title\":\"t\",\"created_by\":\"" + omar_id + "\"}");
    add("PATCH", ConversationPath(direct), "title of a direct conversation", valid, 0);
  }

  // POST /api/v1/conversations/{id}/members
  {
    const std::string t = conv_path + "/members";
    malformed("POST", t, "{\"user_id\":\"" + quinn_id + "\"}");
    add("POST", t, "empty object", "{}");
    for (const std::string& v :
         {std::string("5"), std::string("null"), std::string("\"\""), std::string("[]"),
          "\"" + no_user + "\"", "\"" + conversation + "\"", std::string("\"../users\""),
          std::string("\"usr_x' OR 1=1;--\""), "\"" + std::string(300, 'u') + "\""}) {
      add("POST", t, "user_id " + v.substr(0, 30), "{\"user_id\":" + v + "}");
    }
    add("POST", t, "role", "{\"user_id\":\"" + quinn_id + "\",\"role\":\"admin\"}");
    add("POST", t, "user_ids", "{\"user_ids\":[\"" + quinn_id + "\"]}");
    add("POST", ConversationPath(direct) + "/members", "to a direct conversation",
        "{\"user_id\":\"" + rui_id + "\"}");
  }

  // Ids that are not ids, or not of this organization, in every path (item
  // 11, 12): not found (or, where the route refuses the id's form, 400).
  {
    const std::vector<std::string> conversation_ids = {no_conversation,
                                                       message,
                                                       "xyz",
                                                       "..",
                                                       "%2e%2e",
                                                       "..%2f..%2fusers",
                                                       "%00",
                                                       "cnv_x%00",
                                                       "cnv_" + std::string(32, 'g'),
                                                       "CNV_" + conversation.substr(4),
                                                       std::string(300, 'c'),
                                                       conversation + "%20"};
    for (const std::string& id : conversation_ids) {
      add("GET", ConversationPath(id), "id " + id.substr(0, 30), "", 0);
      add("PATCH", ConversationPath(id), "id " + id.substr(0, 30), "{\"title\":\"Renamed\"}", 0);
      add("POST", ConversationPath(id) + "/members", "id " + id.substr(0, 30),
          "{\"user_id\":\"" + quinn_id + "\"}", 0);
      add("DELETE", ConversationPath(id) + "/members/" + omar_id, "id " + id.substr(0, 30), "", 0);
      add("GET", MessagesPath(id), "id " + id.substr(0, 30), "", 0);
      add("POST", MessagesPath(id), "id " + id.substr(0, 30),
          "{\"client_txn_id\":\"" + Txn() + "\",\"body\":\"Hello\"}", 0);
    }
    for (const std::string& user : {no_user, quinn_id, std::string(".."), std::string("%00"),
                                    std::string("..%2f..%2fusers"), std::string(300, 'u')}) {
      add("DELETE", conv_path + "/members/" + user, "member " + user.substr(0, 30), "", 0);
    }
    const std::vector<std::string> message_ids = {no_message,
                                                  conversation,
                                                  "xyz",
                                                  "..",
                                                  "%2e%2e",
                                                  "..%2f..%2fusers",
                                                  "%00",
                                                  "msg_x%00",
                                                  "msg_" + std::string(32, 'g'),
                                                  "MSG_" + message.substr(4),
                                                  std::string(300, 'm')};
    for (const std::string& id : message_ids) {
      for (const char* action : {"/read", "/recall"}) {
        add("POST", "/api/v1/messages/" + id + action, "id " + id.substr(0, 30), "", 0);
      }
      add("GET", "/api/v1/messages/" + id + "/receipts", "id " + id.substr(0, 30), "", 0);
    }
  }

  // GET /api/v1/conversations/{id}/messages: the query (items 4, 5, 6).
  for (const char* q : {"after_seq=-1",
                        "after_seq=abc",
                        "after_seq=1.5",
                        "after_seq=1e2",
                        "after_seq=",
                        "after_seq=0x10",
                        "after_seq=%2B1",
                        "after_seq=9223372036854775808",
                        "after_seq=99999999999999999999",
                        "after_seq=-9223372036854775809",
                        "after_seq=NaN",
                        "after_seq=%00",
                        "after_seq=1%20",
                        "limit=0",
                        "limit=201",
                        "limit=-1",
                        "limit=abc",
                        "limit=",
                        "limit=1.5",
                        "limit=1e2",
                        "limit=2147483648",
                        "limit=9223372036854775808",
                        "limit=18446744073709551616",
                        "limit=1&limit=2",
                        "after_seq=1&after_seq=1",
                        "foo=1",
                        "access_token=x",
                        "Limit=5",
                        "limit=%zz",
                        "limit=%ff"}) {
    add("GET", msgs_path + "?" + q, "query", "");
  }

  // The state that must not change.
  const char* tables[] = {"conversations",    "conversation_members", "messages",
                          "message_receipts", "conversation_events",  "audit_events"};
  auto counts = [&] {
    Sql db(database(), false);
    std::map<std::string, std::int64_t> out;
    for (const char* t : tables) out[t] = db.Count(t);
    return out;
  };
  const std::string conversation_before = Api("GET", conv_path, a).body;
  const auto before = counts();
  int checked = 0;
  for (const Case& c : cases) {
    Headers headers = BearerHeader(a.token);
    if (!c.body.empty() || c.method != "GET") headers.emplace_back("content-type", c.content_type);
    HttpResponse r;
    try {
      r = Fetch(port(), c.method, c.target, c.body, headers);
    } catch (const std::exception& e) {
      ADD_FAILURE() << c.what << ": " << e.what();
      continue;
    }
    ++checked;
    if (c.status != 0) {
      EXPECT_EQ(r.status, c.status) << c.what << ": " << r.body.substr(0, 300);
    }
    EXPECT_TRUE(IsClientError(r)) << c.what;
    EXPECT_EQ(r.body.find(canary), std::string::npos) << c.what;
    const auto now = counts();
    if (now != before) {
      ADD_FAILURE() << c.what << " changed the stored rows (answered " << r.status << " "
                    << r.body.substr(0, 200) << ")";
      break;
    }
  }
  // Refusals recorded without holding up the answer would show up late.
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(counts(), before);
  EXPECT_EQ(Api("GET", conv_path, a).body, conversation_before);
  EXPECT_EQ(server().Stderr().find(canary), std::string::npos);
  std::cout << "[ info     ] " << checked << " bad inputs\n";

  // The edges that must pass: 10,000 code points of 2 and of 4 bytes (a
  // limit counted in code points, not bytes or UTF-16 units), markup, SQL,
  // HL7's printable delimiters, zero-width characters, right-to-left text,
  // tabs and line breaks, stored and returned exactly (a body is the
  // sender's text). The specification is silent on the rest; the server
  // refuses, as decided (docs/decisions/0008), other control characters (NUL,
  // VT, FS, ESC, DEL) and bidirectional overrides and isolates (U+202A to
  // U+202E, U+2066 to U+2069), which are among the refused inputs above.
  const std::vector<std::string> accepted = {
      Repeat("\xc3\xa9", 10'000),
      Repeat("\xf0\x9f\x98\x80", 10'000),
      std::string(10'000, 'a'),
      "<script>alert(1)</script><svg onload=alert(1)> javascript:x data:text/html,x",
      "' \" ;-- ${x} {{x}} %n %s MSH|^~\\&|\tOBX ze\u200bro\u200d \r\nline two\nthree",
      "\u05e9\u05dc\u05d5\u05dd \u0645\u0631\u062d\u0628\u0627 \u200f(RTL text)",
      "x",
  };
  for (const std::string& text : accepted) {
    const auto r = PostMessage(a, conversation, text, Txn());
    EXPECT_EQ(r.status, 201) << text.substr(0, 40) << ": " << r.body.substr(0, 200);
    if (r.status != 201) continue;
    const auto listed = Messages(
        a, conversation, "after_seq=" + std::to_string(Int(Parse(r), "seq") - 1) + "&limit=1");
    ASSERT_EQ(listed.size(), 1u);
    EXPECT_EQ(Field(listed[0], "body"), text) << "not returned as sent";
  }
  // A client_txn_id of 64 of every allowed character; priority and reply_to.
  const std::string longest_txn =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-";
  const auto full = Api("POST", msgs_path, a,
                        Body({{"client_txn_id", longest_txn.substr(0, 60) + RandomHex(2)},
                              {"body", "Urgent: bay 2"},
                              {"priority", "urgent"},
                              {"reply_to", message}}));
  EXPECT_EQ(full.status, 201) << full.body;
  EXPECT_EQ(Field(Parse(full), "priority"), "urgent");
  EXPECT_EQ(Field(Parse(full), "reply_to"), message);
  // A client_txn_id of a refused request is still free.
  const std::string txn = Txn();
  EXPECT_TRUE(IsError(Api("POST", msgs_path, a,
                          Body({{"client_txn_id", txn}, {"body", "Hi"}, {"priority", "high"}})),
                      400, "bad_request"));
  EXPECT_EQ(PostMessage(a, conversation, "Hi", txn).status, 201);
  // A title of exactly 200 characters.
  EXPECT_EQ(Api("PATCH", conv_path, a, Body({{"title", std::string(200, 't')}})).status, 200);
}

// ---- audit ---------------------------------------------------------------------------

TEST_F(MessagingApiTest, SendReadAndRecallAreAuditedWithoutTheirContent) {
  Need({"nina", "omar"});
  TestAccount& a = nina();
  TestAccount& b = omar();
  const std::string conversation = Field(CreateGroup(a, "Audit " + Unique(""), {&b}), "id");
  ASSERT_FALSE(conversation.empty());
  const std::string text = Canary("audit");
  const std::string id = Field(SendMessage(a, conversation, text), "id");
  ASSERT_FALSE(id.empty());
  ASSERT_EQ(Api("POST", "/api/v1/messages/" + id + "/read", b).status, 204);
  ASSERT_EQ(Api("POST", "/api/v1/messages/" + id + "/recall", a).status, 204);

  // Read by the owner, who holds audit.read: one event per action, by its
  // actor, about the message.
  struct Expected {
    const char* action;
    const TestAccount* actor;
  };
  for (const Expected& e : {Expected{"message.sent", &a}, Expected{"message.read", &b},
                            Expected{"message.recalled", &a}}) {
    std::vector<json::object> events;
    HttpResponse r;
    Eventually([&] {
      r = Api("GET", std::string("/api/v1/audit?limit=500&action=") + e.action + "&target=" + id,
              alice());
      events = r.status == 200 ? List(r, "events") : std::vector<json::object>{};
      return !events.empty();
    });
    ASSERT_EQ(r.status, 200) << r.body;
    ASSERT_EQ(events.size(), 1u) << e.action << ": " << r.body;
    EXPECT_EQ(Field(events[0], "action"), e.action);
    EXPECT_EQ(Field(events[0], "target_id"), id) << r.body;
    EXPECT_EQ(Field(events[0], "actor_id"), e.actor->user_id) << r.body;
    EXPECT_EQ(Field(events[0], "outcome"), "success") << r.body;
    EXPECT_EQ(r.body.find(text), std::string::npos) << e.action;
  }
  // The body is in no audit row, nor anything the audit API shows.
  EXPECT_EQ(RowsHolding("audit_events", text), 0);
  const auto all = Api("GET", "/api/v1/audit?limit=500", alice());
  EXPECT_EQ(all.status, 200);
  EXPECT_EQ(all.body.find(text), std::string::npos);
  EXPECT_EQ(server().Stderr().find(text), std::string::npos) << "a body in the log";
}

}  // namespace
}  // namespace cw::testing
