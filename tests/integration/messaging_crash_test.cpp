// Secure messaging under kill -9: several clients send messages while the
// server is killed with SIGKILL at random moments and restarted on the same
// data directory, cycle after cycle. Afterwards every acknowledged (201)
// message is present exactly once, with the id and seq it was acknowledged
// with; each conversation's seqs are 1..N without a gap; a client_txn_id
// retried after a kill (or again later) names one message only; every live
// event socket, resuming from the last cursor it received, saw strictly
// increasing cursors and every message of its conversations exactly once,
// in seq order; the audit log verifies and holds one message.sent event per
// message.
//
// The deployment: clinic, its owner alice and the nurses bob, carol and
// dave; a group conversation of all four and a direct one of bob and carol.
// Sessions live in the database, so the tokens work across restarts.
//
// Each cycle starts the server, and then:
//   - four senders (alice, bob, carol, dave), each on a keep-alive
//     connection of its own, first retry the send that was cut off by the
//     previous kill (same client_txn_id, same body), repeat one send that
//     was acknowledged earlier (which must answer the same message), then
//     send new messages until the connection dies;
//   - event sockets of bob and dave reconnect with {"type":"auth","token",
//     "cursor":LAST} every cycle; one of carol reconnects only every fourth
//     cycle, so its replay spans several cycles (and pages) and is itself
//     killed midway at times;
//   - once the first send of the cycle is acknowledged, a random 20-250 ms
//     later, kill -9.
// Before the load of each cycle, the messages the previous cycle
// acknowledged are read back (a cheap check); the full check is at the end,
// after a last start that retries every cut-off send and resumes every
// socket until it has seen every message.
//
// CW_CRASH_CYCLES sets the number of cycles (50 by default; 200 for the
// long run). CW_CRASH_SEED replays the random choices of an earlier run (the
// seed is printed and recorded as a test property); the moments of the kills
// still depend on timing.

#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <random>
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

const std::string kPassword = "violet-lantern-orbit-97";
constexpr const char* kOrg = "clinic";

// A cursor as frames carry it: a decimal string. -1 when it is not one.
std::int64_t CursorOf(const json::object& frame) {
  const std::string text = Field(frame, "cursor");
  if (text.empty() || text.size() > 18 ||
      text.find_first_not_of("0123456789") != std::string::npos) {
    return -1;
  }
  return std::stoll(text);
}

int EnvInt(const char* name, int fallback) {
  const char* v = std::getenv(name);  // NOLINT(concurrency-mt-unsafe): before any thread
  if (v == nullptr || *v == '\0') return fallback;
  return std::stoi(v);
}

// ---- what the clients were told ----------------------------------------------------------

// One send as the client makes it; retried as it is after a kill.
struct Txn {
  std::string txn_id;
  std::string conversation_id;
  std::string body;
};

// An acknowledged message.
struct Acked {
  Txn txn;
  std::string id;
  std::int64_t seq = 0;
  int cycle = 0;  // the cycle that first acknowledged it
};

// Every acknowledgement and every anomaly, from all threads.
class Ledger {
 public:
  // Records a 201 answer to `txn` (in `cycle`); anything else is a problem.
  // True when the send is settled (acknowledged).
  bool Record(const Txn& txn, const HttpResponse& r, int cycle, const std::string& what) {
    if (r.status != 201) {
      Problem(what + " " + txn.txn_id + " in cycle " + std::to_string(cycle) + ": " +
              std::to_string(r.status) + " " + r.body);
      return false;
    }
    const json::object o = Parse(r.body);
    if (o.empty()) {
      Problem(what + " " + txn.txn_id + ": not a JSON object: " + r.body);
      return false;
    }
    Acked a;
    a.txn = txn;
    a.id = Field(o, "id");
    a.seq = Int(o, "seq");
    a.cycle = cycle;
    if (Field(o, "conversation_id") != txn.conversation_id || Field(o, "body") != txn.body ||
        a.id.rfind("msg_", 0) != 0 || a.seq < 1) {
      Problem(what + " " + txn.txn_id + ": answer does not match the request: " + r.body);
      return false;
    }
    std::lock_guard lock(mu_);
    auto it = by_txn_.find(txn.txn_id);
    if (it != by_txn_.end()) {
      ++repeats_;
      if (it->second.id != a.id || it->second.seq != a.seq) {
        problems_.push_back("client_txn_id " + txn.txn_id + " acknowledged as " + it->second.id +
                            " seq " + std::to_string(it->second.seq) + " in cycle " +
                            std::to_string(it->second.cycle) + ", then as " + a.id + " seq " +
                            std::to_string(a.seq) + " in cycle " + std::to_string(cycle) + " (" +
                            what + ")");
      }
      return true;
    }
    auto [other, fresh] = txn_by_id_.emplace(a.id, txn.txn_id);
    if (!fresh) {
      problems_.push_back("message " + a.id + " acknowledged for two client_txn_ids: " +
                          other->second + " and " + txn.txn_id);
    }
    auto [seq_owner, seq_fresh] = id_by_seq_.emplace(std::pair{txn.conversation_id, a.seq}, a.id);
    if (!seq_fresh && seq_owner->second != a.id) {
      problems_.push_back("seq " + std::to_string(a.seq) + " of " + txn.conversation_id +
                          " acknowledged for two messages: " + seq_owner->second + " and " + a.id);
    }
    by_txn_.emplace(txn.txn_id, a);
    ++acked_;
    return true;
  }

  void Problem(const std::string& text) {
    std::lock_guard lock(mu_);
    problems_.push_back(text);
  }

  std::vector<std::string> Problems() {
    std::lock_guard lock(mu_);
    return problems_;
  }

  std::vector<Acked> All() {
    std::lock_guard lock(mu_);
    std::vector<Acked> out;
    for (const auto& [txn, a] : by_txn_) out.push_back(a);
    return out;
  }

  std::int64_t acked() const { return acked_.load(); }
  std::int64_t repeats() const { return repeats_.load(); }

 private:
  std::mutex mu_;
  std::map<std::string, Acked> by_txn_;
  std::map<std::string, std::string> txn_by_id_;
  std::map<std::pair<std::string, std::int64_t>, std::string> id_by_seq_;
  std::vector<std::string> problems_;
  std::atomic<std::int64_t> acked_{0};
  std::atomic<std::int64_t> repeats_{0};
};

HttpResponse PostMessage(HttpsConnection& c, const std::string& token, const Txn& t) {
  return c.Send("POST", "/api/v1/conversations/" + t.conversation_id + "/messages",
                json::serialize(json::object{{"client_txn_id", t.txn_id}, {"body", t.body}}),
                BearerHeader(token));
}

// ---- senders -------------------------------------------------------------------------------

struct Sender {
  std::string name;
  std::string token;
  std::vector<std::string> conversations;
  std::mt19937 rng;
  std::optional<Txn> pending;     // sent, its answer lost to a kill
  std::vector<Txn> acknowledged;  // for repeats
  int next = 0;
  int cut_off = 0;  // sends whose answer a kill took
  // This cycle's answers to retried sends: conversation and seq.
  std::vector<std::pair<std::string, std::int64_t>> retried;
};

// One cycle of a sender: the cut-off send again, an acknowledged one again,
// then new ones until the server dies (or `stop`).
void RunSender(Sender& s, std::uint16_t port, int cycle, Ledger& ledger,
               std::atomic<int>& acked_this_cycle, const std::atomic<bool>& stop) {
  try {
    HttpsConnection c(port, {}, 10s);
    if (s.pending) {
      const HttpResponse r = PostMessage(c, s.token, *s.pending);
      if (ledger.Record(*s.pending, r, cycle, "retry after kill of")) {
        s.acknowledged.push_back(*s.pending);
        ++acked_this_cycle;
        s.retried.emplace_back(s.pending->conversation_id, Int(Parse(r), "seq"));
      }
      s.pending.reset();
    }
    if (!s.acknowledged.empty()) {
      const Txn again = s.acknowledged[s.rng() % s.acknowledged.size()];
      ledger.Record(again, PostMessage(c, s.token, again), cycle, "repeat of");
    }
    while (!stop) {
      Txn t;
      t.txn_id = s.name + "." + std::to_string(s.next++);
      t.conversation_id = s.conversations[s.rng() % s.conversations.size()];
      t.body = "cycle " + std::to_string(cycle) + ": " + s.name + " says " + t.txn_id;
      s.pending = t;
      const HttpResponse r = PostMessage(c, s.token, t);
      s.pending.reset();
      if (ledger.Record(t, r, cycle, "send of")) {
        s.acknowledged.push_back(t);
        ++acked_this_cycle;
      }
    }
  } catch (const std::exception&) {
    // The server died under the request: it stays pending, for a retry.
    if (s.pending) ++s.cut_off;
  }
}

// ---- event sockets -------------------------------------------------------------------------

struct Listener {
  std::string name;
  std::string token;
  std::set<std::string> conversations;  // the ones it belongs to
  int every = 1;                        // connects on cycles where cycle % every == every - 1
  std::int64_t last = 0;                // the last cursor received
  std::vector<std::int64_t> cursors;    // every event cursor, across all connections
  // Per conversation, the message.created frames as they came: seq and id.
  std::map<std::string, std::vector<std::pair<std::int64_t, std::string>>> seen;
  int connections = 0;
  int frames = 0;  // event frames received

  bool HasAll(const std::map<std::string, std::int64_t>& last_seq) const {
    for (const auto& c : conversations) {
      auto it = seen.find(c);
      const std::int64_t have =
          it == seen.end() || it->second.empty() ? 0 : it->second.back().first;
      if (have < last_seq.at(c)) return false;
    }
    return true;
  }
};

// Takes one event frame: its cursor must be past every earlier one, and a
// message.created must carry the next seq of its conversation.
void TakeFrame(Listener& l, const std::string& text, int cycle, Ledger& ledger) {
  const std::string where = l.name + " (cycle " + std::to_string(cycle) + ", connection " +
                            std::to_string(l.connections) + ")";
  const json::object frame = Parse(text);
  if (frame.empty()) {
    ledger.Problem(where + ": frame is not a JSON object: " + text);
    return;
  }
  const std::int64_t cursor = CursorOf(frame);
  if (cursor < 0) {
    ledger.Problem(where + ": frame without a cursor: " + text);
    return;
  }
  if (cursor <= l.last) {
    ledger.Problem(where + ": cursor " + std::to_string(cursor) + " after cursor " +
                   std::to_string(l.last) + " (duplicate or out of order): " + text);
  }
  l.cursors.push_back(cursor);
  l.last = std::max(l.last, cursor);
  if (Field(frame, "type") != "message.created") return;
  const auto* m = frame.if_contains("message");
  if (m == nullptr || !m->is_object()) {
    ledger.Problem(where + ": message.created without a message: " + text);
    return;
  }
  const std::string conversation = Field(m->as_object(), "conversation_id");
  const std::int64_t seq = Int(m->as_object(), "seq");
  const std::string id = Field(m->as_object(), "id");
  if (l.conversations.count(conversation) == 0) {
    ledger.Problem(where + ": a message of a conversation it is not in: " + text);
    return;
  }
  auto& got = l.seen[conversation];
  const std::int64_t before = got.empty() ? 0 : got.back().first;
  if (seq != before + 1) {
    ledger.Problem(where + ": in " + conversation + ", seq " + std::to_string(seq) + " (cursor " +
                   std::to_string(cursor) + ") after seq " + std::to_string(before) +
                   (seq <= before ? ": a duplicate" : ": a gap"));
  }
  got.emplace_back(seq, id);
}

// Connects, resumes from l.last and reads until the connection ends (a kill),
// `done` holds, or a read waits longer than `timeout`. Returns whether `done`
// held.
bool RunListener(Listener& l, std::uint16_t port, int cycle, Ledger& ledger,
                 const std::function<bool()>& done, std::chrono::milliseconds timeout) {
  try {
    WebSocketClient ws(port, "/api/v1/events", timeout);
    ++l.connections;
    ws.SendText(json::serialize(
        json::object{{"type", "auth"}, {"token", l.token}, {"cursor", std::to_string(l.last)}}));
    const auto ready = ws.ReadText();
    if (!ready) return false;
    const json::object r = Parse(*ready);
    if (Field(r, "type") != "ready" || CursorOf(r) != l.last) {
      ledger.Problem(l.name + " (cycle " + std::to_string(cycle) + "): resumed from " +
                     std::to_string(l.last) + ", answered " + *ready);
      return false;
    }
    while (!done()) {
      const auto text = ws.ReadText();
      if (!text) return false;
      ++l.frames;
      TakeFrame(l, *text, cycle, ledger);
    }
    return true;
  } catch (const std::exception&) {
    return false;  // the server died (or was not there yet)
  }
}

// ---- reading conversations back ------------------------------------------------------------

// Messages of a conversation after `after_seq`, through `through` (all when
// 0), paged by 200. Empty optional after a failed request (recorded).
std::optional<std::vector<json::object>> ReadMessages(std::uint16_t port, const std::string& token,
                                                      const std::string& conversation,
                                                      std::int64_t after_seq, std::int64_t through,
                                                      Ledger& ledger) {
  std::vector<json::object> out;
  HttpsConnection c(port, {}, 30s);
  for (;;) {
    const auto r = c.Send("GET",
                          "/api/v1/conversations/" + conversation +
                              "/messages?limit=200&after_seq=" + std::to_string(after_seq),
                          "", BearerHeader(token));
    const json::object o = r.status == 200 ? Parse(r) : json::object{};
    const auto* list = o.if_contains("messages");
    if (list == nullptr || !list->is_array()) {
      ledger.Problem("GET messages of " + conversation + " after " + std::to_string(after_seq) +
                     ": " + std::to_string(r.status) + " " + r.body);
      return std::nullopt;
    }
    if (list->as_array().empty()) return out;
    for (const auto& m : list->as_array()) {
      out.push_back(m.as_object());
      after_seq = Int(m.as_object(), "seq");
    }
    if (through != 0 && after_seq >= through) return out;
  }
}

// ---- the deployment ------------------------------------------------------------------------

TestAccount NewNurse(std::uint16_t port, const TestAccount& owner, const std::string& name) {
  const auto r = Fetch(
      port, "POST", "/api/v1/users",
      json::serialize(json::object{
          {"username", name}, {"display_name", "Nurse " + name}, {"roles", json::array{"nurse"}}}),
      BearerHeader(owner.token));
  EXPECT_EQ(r.status, 201) << r.body;
  return ActivateAccount(port, kOrg, name, Field(Parse(r), "one_time_password"), kPassword);
}

std::string NewConversation(std::uint16_t port, const TestAccount& creator, json::object body) {
  const auto r = Fetch(port, "POST", "/api/v1/conversations", json::serialize(body),
                       BearerHeader(creator.token));
  EXPECT_EQ(r.status, 201) << r.body;
  return Field(Parse(r), "id");
}

TEST(MessagingCrashTest, KillNineWhileSendingLosesDuplicatesAndSkipsNothing) {
  const int cycles = EnvInt("CW_CRASH_CYCLES", 50);
  const char* seed_text = std::getenv("CW_CRASH_SEED");  // NOLINT(concurrency-mt-unsafe)
  const unsigned seed = seed_text != nullptr && *seed_text != '\0'
                            ? static_cast<unsigned>(std::stoul(seed_text))
                            : std::random_device{}();
  ::testing::Test::RecordProperty("seed", static_cast<int>(seed & 0x7fffffff));
  std::cout << "seed " << seed << " (CW_CRASH_SEED), " << cycles << " cycles (CW_CRASH_CYCLES)\n";
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);

  Deployment d;
  const std::string otp = d.AddOrg(kOrg, "alice");
  ASSERT_FALSE(otp.empty());

  // Accounts and conversations.
  TestAccount alice, bob, carol, dave;
  std::string group, direct;
  {
    d.Start();
    const auto port = d.port();
    alice = ActivateAccount(port, kOrg, "alice", otp, kPassword);
    ASSERT_FALSE(alice.token.empty());
    bob = NewNurse(port, alice, "bob");
    carol = NewNurse(port, alice, "carol");
    dave = NewNurse(port, alice, "dave");
    ASSERT_FALSE(bob.token.empty() || carol.token.empty() || dave.token.empty());
    group = NewConversation(port, alice,
                            {{"kind", "group"},
                             {"title", "Ward 3 nights"},
                             {"members", json::array{bob.user_id.c_str(), carol.user_id.c_str(),
                                                     dave.user_id.c_str()}}});
    direct = NewConversation(port, bob,
                             {{"kind", "direct"}, {"members", json::array{carol.user_id.c_str()}}});
    ASSERT_FALSE(group.empty() || direct.empty());
    EXPECT_EQ(d.server().Stop(SIGTERM), 0) << d.server().Stderr();
  }
  // Who reads each conversation back.
  const std::map<std::string, std::string> reader = {{group, alice.token}, {direct, bob.token}};

  Ledger ledger;
  std::vector<Sender> senders;
  senders.push_back({"alice", alice.token, {group}, std::mt19937(rng()), {}, {}, 0, 0});
  senders.push_back({"bob", bob.token, {group, direct}, std::mt19937(rng()), {}, {}, 0, 0});
  senders.push_back({"carol", carol.token, {group, direct}, std::mt19937(rng()), {}, {}, 0, 0});
  senders.push_back({"dave", dave.token, {group}, std::mt19937(rng()), {}, {}, 0, 0});
  std::vector<Listener> listeners(3);
  listeners[0].name = "bob's socket";
  listeners[0].token = bob.token;
  listeners[0].conversations = {group, direct};
  listeners[1].name = "dave's socket";
  listeners[1].token = dave.token;
  listeners[1].conversations = {group};
  listeners[2].name = "carol's socket (every 4th cycle)";
  listeners[2].token = carol.token;
  listeners[2].conversations = {group, direct};
  listeners[2].every = 4;

  const auto started = std::chrono::steady_clock::now();
  std::vector<Acked> previous_cycle;
  int kills_without_ack = 0;
  // Retried sends the killed server had committed (the kill took only the
  // answer), and those it had not.
  int retried_committed = 0;
  int retried_new = 0;
  for (int cycle = 0; cycle < cycles; ++cycle) {
    SCOPED_TRACE("cycle " + std::to_string(cycle));
    d.Start();
    const auto port = d.port();
    std::map<std::string, std::int64_t> stored_before;  // last_seq after the restart
    for (const auto& [conversation, token] : reader) {
      const auto r =
          Fetch(port, "GET", "/api/v1/conversations/" + conversation, "", BearerHeader(token));
      stored_before[conversation] = Int(Parse(r), "last_seq");
      if (stored_before[conversation] < 0) ledger.Problem("GET conversation: " + r.body);
    }

    // The cheap check: what the last cycle acknowledged survived its kill.
    std::map<std::string, std::pair<std::int64_t, std::int64_t>> range;  // conversation: seqs
    for (const Acked& a : previous_cycle) {
      auto [it, fresh] = range.emplace(a.txn.conversation_id, std::pair{a.seq, a.seq});
      it->second.first = std::min(it->second.first, a.seq);
      it->second.second = std::max(it->second.second, a.seq);
    }
    for (const auto& [conversation, seqs] : range) {
      const auto got = ReadMessages(port, reader.at(conversation), conversation, seqs.first - 1,
                                    seqs.second, ledger);
      if (!got) continue;
      std::map<std::int64_t, std::string> at;
      std::int64_t expect = seqs.first;
      for (const auto& m : *got) {
        const std::int64_t seq = Int(m, "seq");
        if (seq != expect) {
          ledger.Problem("cycle " + std::to_string(cycle) + ": " + conversation + " has seq " +
                         std::to_string(seq) + " where " + std::to_string(expect) +
                         " was expected");
        }
        expect = seq + 1;
        at[seq] = Field(m, "id");
      }
      for (const Acked& a : previous_cycle) {
        if (a.txn.conversation_id != conversation) continue;
        auto it = at.find(a.seq);
        if (it == at.end() || it->second != a.id) {
          ledger.Problem("after the kill of cycle " + std::to_string(cycle - 1) + ": " + a.id +
                         " (seq " + std::to_string(a.seq) + ", " + a.txn.txn_id +
                         ") acknowledged, but the conversation has " +
                         (it == at.end() ? std::string("no such seq") : it->second));
        }
      }
    }

    std::atomic<int> acked_this_cycle{0};
    std::atomic<bool> stop{false};
    std::vector<std::thread> threads;
    for (Sender& s : senders) {
      threads.emplace_back(
          [&, cycle] { RunSender(s, port, cycle, ledger, acked_this_cycle, stop); });
    }
    for (Listener& l : listeners) {
      if (cycle % l.every != l.every - 1) continue;
      threads.emplace_back([&, cycle] {
        RunListener(
            l, port, cycle, ledger, [&] { return stop.load(); }, 10s);
      });
    }
    // Under load (the first acknowledgement of the cycle is in), then a
    // random moment.
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (acked_this_cycle == 0 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(1ms);
    }
    if (acked_this_cycle == 0) ++kills_without_ack;
    std::this_thread::sleep_for(std::chrono::milliseconds(20 + rng() % 231));
    d.server().Stop(SIGKILL);
    stop = true;
    for (auto& t : threads) t.join();
    for (Sender& s : senders) {
      for (const auto& [conversation, seq] : s.retried) {
        ++(seq <= stored_before[conversation] ? retried_committed : retried_new);
      }
      s.retried.clear();
    }

    previous_cycle.clear();
    for (const Acked& a : ledger.All()) {
      if (a.cycle == cycle) previous_cycle.push_back(a);
    }
    const auto problems = ledger.Problems();
    if (!problems.empty()) {
      ADD_FAILURE() << problems.size() << " problems by cycle " << cycle
                    << "; the first: " << problems.front();
      break;
    }
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  EXPECT_EQ(kills_without_ack, 0) << "cycles without an acknowledged send before the kill";
  if (cycles >= 10) {
    // The kills land where they matter: some after a commit, before its
    // answer (about half of the cut-off sends, usually).
    EXPECT_GT(retried_committed, 0) << "no send was committed and then cut off";
  }

  // The last start: every cut-off send again, then every message read back.
  d.Start();
  const auto port = d.port();
  int cut_off = 0;
  {
    HttpsConnection c(port, {}, 30s);
    for (Sender& s : senders) {
      cut_off += s.cut_off;
      if (!s.pending) continue;
      if (ledger.Record(*s.pending, PostMessage(c, s.token, *s.pending), cycles, "last retry of")) {
        s.pending.reset();
      }
    }
  }
  const std::vector<Acked> all = ledger.All();
  std::map<std::string, std::int64_t> last_seq;
  std::map<std::string, std::vector<json::object>> stored;
  std::set<std::string> stored_ids;
  for (const std::string& conversation : {group, direct}) {
    auto got = ReadMessages(port, reader.at(conversation), conversation, 0, 0, ledger);
    ASSERT_TRUE(got.has_value());
    last_seq[conversation] = static_cast<std::int64_t>(got->size());
    // Seqs 1..N, no gap, no repeat; no message twice.
    for (std::size_t i = 0; i < got->size(); ++i) {
      const json::object& m = (*got)[i];
      EXPECT_EQ(Int(m, "seq"), static_cast<std::int64_t>(i + 1))
          << conversation << ": " << json::serialize(m);
      EXPECT_TRUE(stored_ids.insert(Field(m, "id")).second)
          << "stored twice: " << json::serialize(m);
    }
    stored[conversation] = std::move(*got);
    const auto conv = Fetch(port, "GET", "/api/v1/conversations/" + conversation, "",
                            BearerHeader(reader.at(conversation)));
    EXPECT_EQ(Int(Parse(conv), "last_seq"), last_seq[conversation]) << conv.body;
  }
  // Every acknowledged message exactly once, where it was acknowledged; and,
  // since every send was retried to an acknowledgement, nothing else.
  std::int64_t total = 0;
  for (const auto& [conversation, messages] : stored) total += messages.size();
  EXPECT_EQ(static_cast<std::int64_t>(all.size()), total)
      << "acknowledged messages vs. stored messages";
  for (const Acked& a : all) {
    const auto& messages = stored[a.txn.conversation_id];
    if (a.seq < 1 || a.seq > static_cast<std::int64_t>(messages.size())) {
      ADD_FAILURE() << "acknowledged " << a.id << " seq " << a.seq << " (" << a.txn.txn_id
                    << ", cycle " << a.cycle << ") is missing: " << a.txn.conversation_id
                    << " ends at seq " << messages.size();
      continue;
    }
    const json::object& m = messages[a.seq - 1];
    EXPECT_EQ(Field(m, "id"), a.id) << "seq " << a.seq << " of " << a.txn.conversation_id << " ("
                                    << a.txn.txn_id << ", cycle " << a.cycle << ")";
    EXPECT_EQ(Field(m, "body"), a.txn.body) << a.id;
  }

  // Every socket resumes once more and catches up: then it has seen every
  // message of its conversations exactly once, in order.
  for (Listener& l : listeners) {
    const bool caught_up = RunListener(
        l, port, cycles, ledger, [&] { return l.HasAll(last_seq); }, 30s);
    EXPECT_TRUE(caught_up) << l.name << " did not catch up after its last resume from cursor "
                           << l.last;
    for (std::size_t i = 1; i < l.cursors.size(); ++i) {
      EXPECT_LT(l.cursors[i - 1], l.cursors[i]) << l.name << ": cursor " << i;
    }
    for (const auto& conversation : l.conversations) {
      const auto& got = l.seen[conversation];
      const auto& messages = stored[conversation];
      EXPECT_EQ(got.size(), messages.size()) << l.name << " in " << conversation;
      for (std::size_t i = 0; i < std::min(got.size(), messages.size()); ++i) {
        EXPECT_EQ(got[i].first, static_cast<std::int64_t>(i + 1)) << l.name;
        EXPECT_EQ(got[i].second, Field(messages[i], "id")) << l.name << " seq " << got[i].first;
      }
    }
  }
  for (const std::string& p : ledger.Problems()) ADD_FAILURE() << p;

  // The audit log: intact, and one message.sent per message.
  d.StopAndVerifyAudit();
  {
    Sql db(d.database(), false);
    std::map<std::string, int> sent;
    for (const auto& id :
         db.Column("SELECT target_id FROM audit_events WHERE action = 'message.sent'")) {
      ++sent[id];
    }
    EXPECT_EQ(static_cast<std::int64_t>(sent.size()), total);
    for (const auto& id : stored_ids) EXPECT_EQ(sent[id], 1) << "message.sent events of " << id;
    for (const auto& [id, n] : sent) {
      EXPECT_EQ(stored_ids.count(id), 1u) << "message.sent for a message not stored: " << id;
    }
    EXPECT_EQ(db.Column("SELECT count(*) FROM messages").at(0), std::to_string(total));
    // No client_txn_id of a sender names two stored messages.
    EXPECT_EQ(db.Column("SELECT count(*) FROM (SELECT 1 FROM messages GROUP BY sender_id, "
                        "client_txn_id HAVING count(*) > 1)")
                  .at(0),
              "0");
  }

  int connections = 0;
  int frames = 0;
  for (const Listener& l : listeners) {
    connections += l.connections;
    frames += l.frames;
  }
  std::cout << cycles << " kill -9 cycles in " << seconds << " s: " << total << " messages ("
            << last_seq[group] << " in the group, " << last_seq[direct] << " direct), " << cut_off
            << " sends cut off and retried (" << retried_committed
            << " of them committed before the kill, " << retried_new << " not, the rest retried"
            << " at the end), " << ledger.repeats() << " repeated client_txn_ids, " << connections
            << " socket connections with " << frames << " event frames\n";
  ::testing::Test::RecordProperty("messages", static_cast<int>(total));
}

}  // namespace
}  // namespace cw::testing
