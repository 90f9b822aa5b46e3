// carewire-messaging-load: secure messaging under load, over live WebSockets.
//
// Reads a set-up file made by bench/run_messaging_bench.sh (signed-in users
// and the group conversations they share) and runs one of three modes
// against a local Carewire:
//
//   throughput  --clients C keep-alive HTTPS connections (times --connections
//               each) POST messages to shared conversations, closed loop with
//               --pipeline requests in flight each, while one WebSocket per
//               member user reads the event stream. Reports messages
//               acknowledged 201 (durable) per second over the measured
//               window, the acknowledgement latency and, in passing, the
//               delivery latency at saturation.
//   latency     open loop: --senders connections send --rate messages per
//               second in total on a fixed schedule, whatever the answers
//               do. Each body carries its scheduled send time (steady clock,
//               ns); the member sockets parse message.created and record
//               arrival minus send for every member but the sender.
//               Reports p50/p99/p99.9/max of delivery and of the
//               acknowledgement, and the achieved rate.
//   idle        opens --connections WebSockets, authenticates each (auth
//               frame, then "ready") and holds them open, answering the
//               server's pings, until SIGINT/SIGTERM or --hold seconds.
//               The driver measures the server's memory meanwhile.
//
// Only loopback targets are accepted: certificates are not verified (the
// development server is self-signed) and the program is built to overload
// what it points at. Everything runs on --threads io_contexts, one coroutine
// per connection, as in carewire-loadgen.
//
// The set-up file, one record per line, fields separated by spaces:
//   user <user_id> <bearer token>
//   conversation <conversation_id> <member> <member> ...   (indexes of users, from 0)

#include <sys/resource.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <exception>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_set>
#include <vector>

#include "net_load.hpp"

namespace cw::bench {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using TlsStream = beast::ssl_stream<beast::tcp_stream>;
using WsStream = websocket::stream<TlsStream>;

constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);

// Time requests, deliveries and receipts still in flight when the window
// closes get to arrive before the sockets are cut. Never counted as in the
// window's rate, but late deliveries of in-window messages are recorded.
constexpr auto kGrace = std::chrono::seconds(3);
constexpr auto kReconnectPause = std::chrono::milliseconds(50);
constexpr std::uint64_t kMaxResponseBody = 1 << 20;
// Most samples kept per kind per thread (4 bytes each).
constexpr std::size_t kMaxSamples = std::size_t{16} << 20;
// The marker the set-up's bodies start with, followed by the scheduled send
// time in steady-clock nanoseconds and a colon.
constexpr std::string_view kStampPrefix = "ts:";

std::int64_t Ns(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

std::uint32_t Us(Clock::duration d) {
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(d).count();
  return static_cast<std::uint32_t>(
      std::clamp<std::int64_t>(us, 0, std::numeric_limits<std::uint32_t>::max()));
}

// ---------------------------------------------------------------------------
// Set-up and options

struct User {
  std::string id;
  std::string token;
};

struct Conversation {
  std::string id;
  std::vector<int> members;  // indexes into Setup::users
};

struct Setup {
  std::vector<User> users;
  std::vector<Conversation> conversations;
};

bool ReadSetup(const std::string& path, Setup& setup) {
  std::ifstream in(path);
  if (!in) {
    std::fprintf(stderr, "carewire-messaging-load: cannot read %s\n", path.c_str());
    return false;
  }
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    std::istringstream fields(line);
    std::string kind;
    if (!(fields >> kind) || kind.starts_with('#')) continue;
    if (kind == "user") {
      User u;
      if (!(fields >> u.id >> u.token)) {
        std::fprintf(stderr, "carewire-messaging-load: %s:%d: bad user line\n", path.c_str(),
                     number);
        return false;
      }
      setup.users.push_back(std::move(u));
    } else if (kind == "conversation") {
      Conversation c;
      fields >> c.id;
      int member = 0;
      while (fields >> member) {
        if (member < 0 || static_cast<std::size_t>(member) >= setup.users.size()) {
          std::fprintf(stderr, "carewire-messaging-load: %s:%d: unknown member %d\n", path.c_str(),
                       number, member);
          return false;
        }
        c.members.push_back(member);
      }
      if (c.id.empty() || c.members.size() < 2) {
        std::fprintf(stderr, "carewire-messaging-load: %s:%d: bad conversation line\n",
                     path.c_str(), number);
        return false;
      }
      setup.conversations.push_back(std::move(c));
    } else {
      std::fprintf(stderr, "carewire-messaging-load: %s:%d: unknown record %s\n", path.c_str(),
                   number, kind.c_str());
      return false;
    }
  }
  if (setup.users.empty()) {
    std::fprintf(stderr, "carewire-messaging-load: %s holds no users\n", path.c_str());
    return false;
  }
  return true;
}

enum class Mode { kThroughput, kLatency, kIdle };

struct Options {
  Mode mode = Mode::kThroughput;
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;
  std::string setup_file;
  int threads = 1;
  double duration_s = 10;
  double warmup_s = 2;
  double connect_timeout_s = 10;
  int body_bytes = 100;
  int server_pid = 0;  // 0: no server CPU figures
  bool listen = true;  // one WebSocket per member user
  // throughput
  int clients = 64;
  int connections = 1;  // per client
  int pipeline = 1;     // requests in flight per connection
  // latency
  double rate = 5000;
  int senders = 16;
  // idle
  int idle_connections = 1000;
  int idle_concurrency = 64;
  double hold_s = 0;  // 0: until SIGINT or SIGTERM
};

// ---------------------------------------------------------------------------
// Per-thread state. Everything in a Worker is touched only by coroutines on
// its io_context, and read by the main thread after that thread has joined.

struct Tally {
  // Senders.
  std::uint64_t sent = 0;                 // requests counted in the window
  std::uint64_t acked = 0;                // of those, answered 201
  std::uint64_t non_201 = 0;              // of those, answered otherwise
  std::uint64_t unanswered = 0;           // of those, no answer before the sockets were cut
  std::uint64_t expected_deliveries = 0;  // acked x listening members but the sender
  std::uint64_t io_errors = 0;
  std::uint64_t connects = 0;
  std::string first_error;
  std::string first_refusal;  // status and body of the first non-201
  std::vector<std::uint32_t> ack_us;
  std::vector<std::uint32_t> lag_us;  // latency mode: write start minus schedule
  // Listeners.
  std::uint64_t created_frames = 0;  // every message.created, window or not
  std::uint64_t receipt_frames = 0;  // every receipt
  std::uint64_t other_frames = 0;
  std::uint64_t created_in_window = 0;  // message.created arriving inside the window
  std::uint64_t receipts_in_window = 0;
  std::uint64_t deliveries = 0;      // to a member other than the sender, sent in window
  std::uint64_t listeners_lost = 0;  // sockets the server closed before the end
  std::string first_close;
  std::vector<std::uint32_t> delivery_us;
  bool truncated = false;
};

void NoteError(Tally& t, const char* stage, const boost::system::error_code& ec) {
  ++t.io_errors;
  if (t.first_error.empty()) t.first_error = std::string(stage) + ": " + ec.message();
}

void Sample(Tally& t, std::vector<std::uint32_t>& v, std::uint32_t value) {
  if (v.size() < kMaxSamples) {
    v.push_back(value);
  } else {
    t.truncated = true;
  }
}

struct Schedule {
  Clock::time_point start;
  Clock::time_point measure_from;
  Clock::time_point measure_until;
  Clock::time_point hard_stop;
};

struct Shared {
  const Options& options;
  const Setup& setup;
  std::vector<tcp::endpoint> endpoints;
  ssl::context tls{ssl::context::tls_client};
  std::string host_header;
  std::string run_id;                  // makes client_txn_ids unique across runs
  Schedule schedule;                   // set once before the senders start, then constant
  std::atomic<bool> scheduled{false};  // schedule is set (release / acquire)
  std::vector<char> listening;         // per user: a socket of theirs reads the stream
  std::atomic<int> listeners_ready{0};
  std::atomic<int> listeners_failed{0};
  std::atomic<int> senders_live{0};
  std::atomic<int> idle_next{0};
  std::atomic<int> idle_ready{0};
  std::atomic<int> idle_failed{0};
  std::atomic<int> idle_lost{0};
  std::atomic<bool> stopping{false};

  Shared(const Options& o, const Setup& s) : options(o), setup(s) {}
};

struct Worker {
  asio::io_context ioc{1};
  asio::executor_work_guard<asio::io_context::executor_type> guard{ioc.get_executor()};
  Tally tally;
  // Sockets of this thread's connections, closed when the run ends.
  std::unordered_set<beast::tcp_stream*> open;
  std::thread thread;
};

// Registers a connection's lowest layer for the final close, for as long as
// the coroutine holds it.
class Registration {
 public:
  Registration(Worker& w, beast::tcp_stream& s) : w_(w), s_(&s) { w_.open.insert(s_); }
  ~Registration() { w_.open.erase(s_); }
  Registration(const Registration&) = delete;
  Registration& operator=(const Registration&) = delete;

 private:
  Worker& w_;
  beast::tcp_stream* s_;
};

// TCP connect, TCP_NODELAY and the TLS handshake, bounded by the connect
// timeout; the stream's own timer is off afterwards.
asio::awaitable<bool> ConnectTls(Shared& shared, TlsStream& stream, Tally& tally) {
  beast::tcp_stream& lowest = beast::get_lowest_layer(stream);
  lowest.expires_after(std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(shared.options.connect_timeout_s)));
  if (auto [ec, ep] = co_await lowest.async_connect(shared.endpoints, kUseTuple); ec) {
    NoteError(tally, "connect", ec);
    co_return false;
  }
  boost::system::error_code ec;
  lowest.socket().set_option(tcp::no_delay(true), ec);
  if (auto [hec] = co_await stream.async_handshake(ssl::stream_base::client, kUseTuple); hec) {
    NoteError(tally, "tls handshake", hec);
    co_return false;
  }
  lowest.expires_never();
  ++tally.connects;
  co_return true;
}

// ---------------------------------------------------------------------------
// WebSocket listeners

// The value of "key":"..." in a flat JSON frame, without unescaping: the
// fields read here (type, sender, the start of the bench's own body) never
// hold escapes.
std::string_view Field(std::string_view frame, std::string_view key) {
  std::string pattern;
  pattern.reserve(key.size() + 4);
  pattern += '"';
  pattern += key;
  pattern += "\":\"";
  const auto at = frame.find(pattern);
  if (at == std::string_view::npos) return {};
  const auto from = at + pattern.size();
  const auto to = frame.find('"', from);
  if (to == std::string_view::npos) return {};
  return frame.substr(from, to - from);
}

// Connects, upgrades and authenticates; true once "ready" arrived.
asio::awaitable<bool> OpenStream(Shared& shared, WsStream& ws, const std::string& token,
                                 Tally& tally) {
  if (!co_await ConnectTls(shared, ws.next_layer(), tally)) co_return false;
  ws.set_option(websocket::stream_base::timeout::suggested(beast::role_type::client));
  if (auto [ec] = co_await ws.async_handshake(shared.host_header, "/api/v1/events", kUseTuple);
      ec) {
    NoteError(tally, "websocket upgrade", ec);
    co_return false;
  }
  ws.text(true);
  const std::string auth = R"({"type":"auth","token":")" + token + "\"}";
  if (auto [ec, n] = co_await ws.async_write(asio::buffer(auth), kUseTuple); ec) {
    NoteError(tally, "auth frame", ec);
    co_return false;
  }
  beast::flat_buffer buffer;
  for (;;) {
    if (auto [ec, n] = co_await ws.async_read(buffer, kUseTuple); ec) {
      NoteError(tally, ws.reason().code != 0 ? "closed before ready" : "read before ready", ec);
      if (ws.reason().code != 0 && tally.first_close.empty()) {
        tally.first_close = std::to_string(ws.reason().code) + " " + ws.reason().reason.c_str();
      }
      co_return false;
    }
    const std::string_view frame(static_cast<const char*>(buffer.data().data()), buffer.size());
    const bool ready = Field(frame, "type") == "ready";
    buffer.consume(buffer.size());
    if (ready) co_return true;
  }
}

// Reads the event stream of one member until the run ends, recording the
// delivery latency of other members' messages.
asio::awaitable<void> RunListener(Shared& shared, Worker& worker, int user) {
  Tally& tally = worker.tally;
  auto executor = co_await asio::this_coro::executor;
  WsStream ws(executor, shared.tls);
  Registration reg(worker, beast::get_lowest_layer(ws));
  const std::string& my_id = shared.setup.users[static_cast<std::size_t>(user)].id;
  if (!co_await OpenStream(shared, ws, shared.setup.users[static_cast<std::size_t>(user)].token,
                           tally)) {
    ++shared.listeners_failed;
    co_return;
  }
  ++shared.listeners_ready;

  beast::flat_buffer buffer;
  for (;;) {
    auto [ec, n] = co_await ws.async_read(buffer, kUseTuple);
    if (ec) {
      if (!shared.stopping.load()) {
        ++tally.listeners_lost;
        if (tally.first_close.empty()) {
          tally.first_close = ws.reason().code != 0 ? std::to_string(ws.reason().code) + " " +
                                                          ws.reason().reason.c_str()
                                                    : ec.message();
        }
      }
      co_return;
    }
    const auto now = Clock::now();
    const std::string_view frame(static_cast<const char*>(buffer.data().data()), buffer.size());
    const std::string_view type = Field(frame, "type");
    // Nothing is sent before the schedule is set.
    if (!shared.scheduled.load(std::memory_order_acquire)) {
      ++tally.other_frames;
      buffer.consume(buffer.size());
      continue;
    }
    const Schedule& s = shared.schedule;
    const bool in_window = now >= s.measure_from && now < s.measure_until;
    if (type == "message.created") {
      ++tally.created_frames;
      if (in_window) ++tally.created_in_window;
      const std::string_view body = Field(frame, "body");
      if (Field(frame, "sender") != my_id && body.starts_with(kStampPrefix)) {
        std::int64_t sent_ns = 0;
        const char* first = body.data() + kStampPrefix.size();
        auto [end, perr] = std::from_chars(first, body.data() + body.size(), sent_ns);
        if (perr == std::errc()) {
          const Clock::time_point sent{std::chrono::nanoseconds(sent_ns)};
          if (sent >= s.measure_from && sent < s.measure_until) {
            ++tally.deliveries;
            Sample(tally, tally.delivery_us, Us(now - sent));
          }
        }
      }
    } else if (type == "receipt") {
      ++tally.receipt_frames;
      if (in_window) ++tally.receipts_in_window;
    } else {
      ++tally.other_frames;
    }
    buffer.consume(buffer.size());
  }
}

// ---------------------------------------------------------------------------
// Senders

struct SenderPlan {
  int client = 0;
  int connection = 0;
  int conversation = 0;
  int sender = 0;                     // user index
  std::string prefix;                 // request line and headers up to Content-Length's value
  std::uint64_t other_listeners = 0;  // listening members but the sender
};

SenderPlan PlanSender(const Shared& shared, int client, int connection) {
  const Setup& setup = shared.setup;
  SenderPlan p;
  p.client = client;
  p.connection = connection;
  const int conversations = static_cast<int>(setup.conversations.size());
  p.conversation = client % conversations;
  const Conversation& c = setup.conversations[static_cast<std::size_t>(p.conversation)];
  // Clients of one conversation take its members in turn.
  p.sender = c.members[static_cast<std::size_t>(client / conversations) % c.members.size()];
  for (int m : c.members) {
    if (m != p.sender && shared.listening[static_cast<std::size_t>(m)]) ++p.other_listeners;
  }
  p.prefix = "POST /api/v1/conversations/" + c.id +
             "/messages HTTP/1.1\r\nHost: " + shared.host_header +
             "\r\nUser-Agent: carewire-messaging-load\r\nAuthorization: Bearer " +
             setup.users[static_cast<std::size_t>(p.sender)].token +
             "\r\nContent-Type: application/json\r\nContent-Length: ";
  return p;
}

// The whole request for one message stamped with `stamp`: its body is
// "ts:<steady-clock ns>:" padded with "x" to --body-bytes.
std::string BuildSend(const Shared& shared, const SenderPlan& p, std::uint64_t n,
                      Clock::time_point stamp) {
  std::string text = std::string(kStampPrefix) + std::to_string(Ns(stamp)) + ":";
  const auto want = static_cast<std::size_t>(shared.options.body_bytes);
  if (text.size() < want) text.append(want - text.size(), 'x');
  const std::string body = "{\"client_txn_id\":\"" + shared.run_id + "." +
                           std::to_string(p.client) + "." + std::to_string(p.connection) + "." +
                           std::to_string(n) + "\",\"body\":\"" + text + "\"}";
  return p.prefix + std::to_string(body.size()) + "\r\n\r\n" + body;
}

// Counts an answer to a send stamped `stamp` that was written at `written`.
void CountAnswer(Shared& shared, const SenderPlan& p, Tally& t, Clock::time_point stamp,
                 Clock::time_point answered, bool open_loop,
                 const http::response<http::string_body>& res) {
  const Schedule& s = shared.schedule;
  // Closed loop: the request and its answer inside the window. Open loop:
  // every send scheduled inside it, whenever answered (the grace bounds it).
  const bool stamped_in_window = stamp >= s.measure_from && stamp < s.measure_until;
  // Every message stamped inside the window is delivered and looked for,
  // answered in time or not.
  if (stamped_in_window && res.result_int() == 201) t.expected_deliveries += p.other_listeners;
  if (!stamped_in_window || !(open_loop || answered <= s.measure_until)) return;
  ++t.sent;
  if (res.result_int() == 201) {
    ++t.acked;
    Sample(t, t.ack_us, Us(answered - stamp));
  } else {
    ++t.non_201;
    if (t.first_refusal.empty()) {
      t.first_refusal = std::to_string(res.result_int()) + " " + res.body().substr(0, 300);
    }
  }
}

// Closed loop with `pipeline` requests in flight on one keep-alive
// connection: write until that many are out, read one answer, repeat.
asio::awaitable<void> RunClosedLoopSender(Shared& shared, Worker& worker, SenderPlan plan) {
  Tally& t = worker.tally;
  auto executor = co_await asio::this_coro::executor;
  const Schedule& s = shared.schedule;
  const std::size_t depth = static_cast<std::size_t>(shared.options.pipeline);
  std::uint64_t n = 0;
  asio::steady_timer pause(executor);
  while (Clock::now() < s.measure_until && !shared.stopping.load()) {
    TlsStream stream(executor, shared.tls);
    Registration reg(worker, beast::get_lowest_layer(stream));
    if (!co_await ConnectTls(shared, stream, t)) {
      pause.expires_after(kReconnectPause);
      co_await pause.async_wait(kUseTuple);
      continue;
    }
    std::deque<Clock::time_point> in_flight;
    beast::flat_buffer buffer;
    bool failed = false;
    for (;;) {
      while (in_flight.size() < depth && Clock::now() < s.measure_until) {
        const auto now = Clock::now();
        const std::string request = BuildSend(shared, plan, n++, now);
        in_flight.push_back(now);
        if (auto [ec, w] = co_await asio::async_write(stream, asio::buffer(request), kUseTuple);
            ec) {
          NoteError(t, "write", ec);
          failed = true;
          break;
        }
      }
      if (failed || in_flight.empty()) break;
      http::response_parser<http::string_body> parser;
      parser.body_limit(kMaxResponseBody);
      if (auto [ec, r] = co_await http::async_read(stream, buffer, parser, kUseTuple); ec) {
        if (!shared.stopping.load()) NoteError(t, "read", ec);
        failed = true;
        break;
      }
      const auto now = Clock::now();
      CountAnswer(shared, plan, t, in_flight.front(), now, false, parser.get());
      in_flight.pop_front();
      if (!parser.keep_alive()) break;
    }
    boost::system::error_code ignored;
    beast::get_lowest_layer(stream).socket().close(ignored);
    if (failed && Clock::now() < s.measure_until && !shared.stopping.load()) {
      pause.expires_after(kReconnectPause);
      co_await pause.async_wait(kUseTuple);
    }
  }
}

// What the two halves of an open-loop connection share.
struct OpenLoopState {
  std::deque<Clock::time_point> in_flight;  // scheduled times, in request order
  bool writer_done = false;
  bool failed = false;
  asio::steady_timer wake;  // the reader waits on it for work
  explicit OpenLoopState(asio::any_io_executor ex) : wake(ex, Clock::time_point::max()) {}
};

// Writes requests on their schedule, never waiting for answers.
asio::awaitable<void> OpenLoopWriter(Shared& shared, Worker& worker, const SenderPlan& plan,
                                     TlsStream& stream, OpenLoopState& st, Clock::duration interval,
                                     Clock::duration offset) {
  Tally& t = worker.tally;
  auto executor = co_await asio::this_coro::executor;
  const Schedule& s = shared.schedule;
  asio::steady_timer timer(executor);
  for (std::uint64_t k = 0;; ++k) {
    const Clock::time_point at = s.start + offset + interval * static_cast<std::int64_t>(k);
    if (at >= s.measure_until || shared.stopping.load() || st.failed) break;
    if (Clock::now() < at) {
      timer.expires_at(at);
      co_await timer.async_wait(kUseTuple);
    }
    const auto now = Clock::now();
    if (at >= s.measure_from && at < s.measure_until) Sample(t, t.lag_us, Us(now - at));
    const std::string request = BuildSend(shared, plan, k, at);
    st.in_flight.push_back(at);
    st.wake.cancel();
    if (auto [ec, w] = co_await asio::async_write(stream, asio::buffer(request), kUseTuple); ec) {
      NoteError(t, "write", ec);
      st.failed = true;
      break;
    }
  }
  st.writer_done = true;
  st.wake.cancel();
}

// Reads the answers in order, matching each to its scheduled time.
asio::awaitable<void> OpenLoopReader(Shared& shared, Worker& worker, const SenderPlan& plan,
                                     TlsStream& stream, OpenLoopState& st) {
  Tally& t = worker.tally;
  beast::flat_buffer buffer;
  for (;;) {
    if (st.in_flight.empty()) {
      if (st.writer_done || st.failed) break;
      st.wake.expires_at(Clock::time_point::max());
      co_await st.wake.async_wait(kUseTuple);
      continue;
    }
    http::response_parser<http::string_body> parser;
    parser.body_limit(kMaxResponseBody);
    if (auto [ec, r] = co_await http::async_read(stream, buffer, parser, kUseTuple); ec) {
      if (!shared.stopping.load()) NoteError(t, "read", ec);
      st.failed = true;
      break;
    }
    CountAnswer(shared, plan, t, st.in_flight.front(), Clock::now(), true, parser.get());
    st.in_flight.pop_front();
  }
  // Sends of the window that never got an answer.
  const Schedule& s = shared.schedule;
  for (const auto at : st.in_flight) {
    if (at >= s.measure_from && at < s.measure_until) {
      ++t.sent;
      ++t.unanswered;
    }
  }
  st.in_flight.clear();
}

// One open-loop connection: a writer on the schedule and a reader, at once
// (a TLS stream allows one read and one write in flight together).
asio::awaitable<void> RunOpenLoopSender(Shared& shared, Worker& worker, SenderPlan plan,
                                        Clock::duration interval, Clock::duration offset) {
  Tally& t = worker.tally;
  auto executor = co_await asio::this_coro::executor;
  TlsStream stream(executor, shared.tls);
  Registration reg(worker, beast::get_lowest_layer(stream));
  if (!co_await ConnectTls(shared, stream, t)) co_return;
  OpenLoopState st(executor);
  int halves = 2;
  asio::steady_timer both_done(executor, Clock::time_point::max());
  auto finished = [&](const std::exception_ptr&) {
    if (--halves == 0) both_done.cancel();
  };
  asio::co_spawn(executor, OpenLoopWriter(shared, worker, plan, stream, st, interval, offset),
                 finished);
  asio::co_spawn(executor, OpenLoopReader(shared, worker, plan, stream, st), finished);
  while (halves > 0) co_await both_done.async_wait(kUseTuple);
}

// ---------------------------------------------------------------------------
// Idle connections

// Keeps one authenticated socket open, answering pings (Beast answers them
// while a read is pending), until the run ends.
asio::awaitable<void> HoldIdle(Shared& shared, Worker& worker, std::unique_ptr<WsStream> ws) {
  Registration reg(worker, beast::get_lowest_layer(*ws));
  beast::flat_buffer buffer;
  for (;;) {
    auto [ec, n] = co_await ws->async_read(buffer, kUseTuple);
    if (ec) {
      if (!shared.stopping.load()) {
        ++shared.idle_lost;
        Tally& t = worker.tally;
        if (t.first_close.empty()) {
          t.first_close = ws->reason().code != 0 ? std::to_string(ws->reason().code) + " " +
                                                       ws->reason().reason.c_str()
                                                 : ec.message();
        }
      }
      co_return;
    }
    buffer.consume(buffer.size());
  }
}

// Opens idle sockets one after another until --connections are open.
asio::awaitable<void> IdleOpener(Shared& shared, Worker& worker) {
  auto executor = co_await asio::this_coro::executor;
  const int total = shared.options.idle_connections;
  const auto users = shared.setup.users.size();
  for (;;) {
    const int i = shared.idle_next.fetch_add(1);
    if (i >= total || shared.stopping.load()) co_return;
    auto ws = std::make_unique<WsStream>(executor, shared.tls);
    bool ok;
    {
      Registration reg(worker, beast::get_lowest_layer(*ws));
      ok = co_await OpenStream(
          shared, *ws, shared.setup.users[static_cast<std::size_t>(i) % users].token, worker.tally);
    }
    if (!ok) {
      ++shared.idle_failed;
      continue;
    }
    ++shared.idle_ready;
    asio::co_spawn(executor, HoldIdle(shared, worker, std::move(ws)), asio::detached);
  }
}

// ---------------------------------------------------------------------------
// Measuring the server and this process

struct CpuSnapshot {
  double self_s = 0;                     // this process, user + system
  double server_s = -1;                  // the server, user + system; -1 when unknown
  std::map<int, double> server_threads;  // tid -> user + system seconds
  double busy_s = 0;                     // the whole machine, all CPUs
  double wall_s = 0;
};

double ClockTicks() { return static_cast<double>(sysconf(_SC_CLK_TCK)); }

// utime + stime of a /proc/.../stat file, in seconds; -1 when unreadable.
double ProcCpuSeconds(const std::string& path) {
  std::ifstream stat(path);
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  // Fields after the command name in parentheses: utime is the 14th field.
  const auto close = text.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream rest(text.substr(close + 2));
  std::string field;
  double utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::stod(field);
    if (i == 15) stime = std::stod(field);
  }
  return (utime + stime) / ClockTicks();
}

CpuSnapshot TakeCpu(int server_pid) {
  CpuSnapshot c;
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  c.self_s = static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
             static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
  if (server_pid > 0) {
    const std::string proc = "/proc/" + std::to_string(server_pid);
    c.server_s = ProcCpuSeconds(proc + "/stat");
    // The server's threads, to tell the storage writer from the I/O threads.
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(proc + "/task", ec)) {
      const std::string name = entry.path().filename().string();
      const double seconds = ProcCpuSeconds(entry.path().string() + "/stat");
      if (seconds >= 0) c.server_threads[std::atoi(name.c_str())] = seconds;
    }
  }
  std::ifstream proc_stat("/proc/stat");
  std::string cpu;
  proc_stat >> cpu;
  double v[8] = {};
  for (double& x : v) proc_stat >> x;
  // user nice system idle iowait irq softirq steal
  c.busy_s = (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / ClockTicks();
  c.wall_s = std::chrono::duration<double>(Clock::now().time_since_epoch()).count();
  return c;
}

// Figures scraped from GET /metrics.
struct ServerMetrics {
  bool ok = false;
  double commit_seconds_sum = 0;
  double commits = 0;
  double batch_sum = 0;  // write works committed
  double slow_consumers = 0;
};

ServerMetrics ScrapeMetrics(Shared& shared) {
  ServerMetrics m;
  try {
    asio::io_context ioc;
    TlsStream stream(ioc, shared.tls);
    beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(5));
    beast::get_lowest_layer(stream).connect(shared.endpoints.front());
    stream.handshake(ssl::stream_base::client);
    http::request<http::empty_body> req{http::verb::get, "/metrics", 11};
    req.set(http::field::host, shared.host_header);
    req.keep_alive(false);
    http::write(stream, req);
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(16 << 20);
    http::read(stream, buffer, parser);
    std::istringstream lines(parser.get().body());
    std::string line;
    while (std::getline(lines, line)) {
      if (line.empty() || line[0] == '#') continue;
      const auto space = line.rfind(' ');
      if (space == std::string::npos) continue;
      const std::string name = line.substr(0, space);
      const double value = std::strtod(line.c_str() + space + 1, nullptr);
      if (name == "carewire_storage_commit_seconds_sum") m.commit_seconds_sum = value;
      if (name == "carewire_storage_commit_seconds_count") m.commits = value;
      if (name == "carewire_storage_commit_batch_size_sum") m.batch_sum = value;
      if (name == "carewire_websocket_slow_consumers_total") m.slow_consumers = value;
    }
    m.ok = true;
    boost::system::error_code ignored;
    beast::get_lowest_layer(stream).socket().close(ignored);
  } catch (const std::exception&) {
  }
  return m;
}

// ---------------------------------------------------------------------------
// Running and reporting

void PrintLatency(const char* label, std::vector<std::uint32_t>& v) {
  std::sort(v.begin(), v.end());
  std::printf("  %-22s %9s %9s %9s %9s %9s %9s   (n=%zu)\n", label, "p50", "p90", "p99", "p99.9",
              "max", "mean", v.size());
  double sum = 0;
  for (auto x : v) sum += x;
  std::printf("  %-22s %9u %9u %9u %9u %9u %9.0f\n", "", Percentile(v, 50), Percentile(v, 90),
              Percentile(v, 99), Percentile(v, 99.9), v.empty() ? 0u : v.back(),
              v.empty() ? 0.0 : sum / static_cast<double>(v.size()));
}

std::string RandomRunId() {
  std::random_device rd;
  char out[17];
  std::snprintf(out, sizeof out, "%08x%08x", rd(), rd());
  return std::string("r") + out;
}

void RaiseFileLimit() {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }
}

void SpawnOn(Worker& w, std::function<asio::awaitable<void>()> make,
             std::atomic<int>* live = nullptr) {
  if (live != nullptr) ++*live;
  asio::post(w.ioc, [&w, make = std::move(make), live] {
    asio::co_spawn(w.ioc, make(), [&w, live](const std::exception_ptr& error) {
      if (error) {
        ++w.tally.io_errors;
        try {
          std::rethrow_exception(error);
        } catch (const std::exception& e) {
          if (w.tally.first_error.empty()) w.tally.first_error = e.what();
        }
      }
      if (live != nullptr) --*live;
    });
  });
}

// Closes every registered socket on each worker, lets the io_contexts run
// dry and joins them; stops them outright after `patience`.
void StopWorkers(Shared& shared, std::vector<std::unique_ptr<Worker>>& workers,
                 Clock::duration patience) {
  shared.stopping = true;
  for (auto& w : workers) {
    asio::post(w->ioc, [&w = *w] {
      for (beast::tcp_stream* s : std::vector<beast::tcp_stream*>(w.open.begin(), w.open.end())) {
        boost::system::error_code ignored;
        s->socket().close(ignored);
      }
    });
    w->guard.reset();
  }
  const auto deadline = Clock::now() + patience;
  for (auto& w : workers) {
    while (!w->ioc.stopped() && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    w->ioc.stop();
    w->thread.join();
  }
}

// Waits until `done` holds or `limit` passes; false on timeout.
template <typename F>
bool WaitFor(F done, Clock::duration limit) {
  const auto until = Clock::now() + limit;
  while (!done()) {
    if (Clock::now() >= until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

int RunIdle(Shared& shared, std::vector<std::unique_ptr<Worker>>& workers) {
  const Options& o = shared.options;
  const auto started = Clock::now();
  const int openers = std::max(1, o.idle_concurrency / static_cast<int>(workers.size()));
  for (auto& w : workers) {
    for (int i = 0; i < openers; ++i) {
      Worker& worker = *w;
      SpawnOn(worker, [&shared, &worker] { return IdleOpener(shared, worker); });
    }
  }
  WaitFor([&] { return shared.idle_ready + shared.idle_failed >= o.idle_connections; },
          std::chrono::hours(1));
  const double took = std::chrono::duration<double>(Clock::now() - started).count();
  std::printf(
      "idle: %d WebSockets open and authenticated, %d failed, in %.1f s (%d users' tokens)\n",
      shared.idle_ready.load(), shared.idle_failed.load(), took,
      static_cast<int>(shared.setup.users.size()));
  std::printf("IDLE READY\n");
  std::fflush(stdout);

  // Hold until a signal (blocked in every thread, taken here) or --hold.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  const auto hold_until = o.hold_s > 0 ? Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                                            std::chrono::duration<double>(o.hold_s))
                                       : Clock::time_point::max();
  while (Clock::now() < hold_until) {
    timespec ts{0, 200'000'000};
    if (sigtimedwait(&set, nullptr, &ts) > 0) break;
  }
  const int lost = shared.idle_lost.load();
  StopWorkers(shared, workers, std::chrono::seconds(5));
  std::printf("idle: held; %d sockets closed by the server while held\n", lost);
  Tally total;
  for (auto& w : workers) {
    total.io_errors += w->tally.io_errors;
    if (total.first_error.empty()) total.first_error = w->tally.first_error;
    if (total.first_close.empty()) total.first_close = w->tally.first_close;
  }
  if (!total.first_error.empty()) std::printf("  first io error: %s\n", total.first_error.c_str());
  if (!total.first_close.empty()) std::printf("  first close: %s\n", total.first_close.c_str());
  return shared.idle_ready.load() > 0 ? 0 : 1;
}

int RunTraffic(Shared& shared, std::vector<std::unique_ptr<Worker>>& workers) {
  const Options& o = shared.options;
  const Setup& setup = shared.setup;
  const bool open_loop = o.mode == Mode::kLatency;
  const auto nworkers = workers.size();

  // 1. One listening socket per member user, spread over the threads.
  std::vector<int> members;
  for (const Conversation& c : setup.conversations) {
    for (int m : c.members) {
      if (!shared.listening[static_cast<std::size_t>(m)]) members.push_back(m);
      shared.listening[static_cast<std::size_t>(m)] = 1;
    }
  }
  if (!o.listen) std::fill(shared.listening.begin(), shared.listening.end(), 0);
  const int want_listeners = o.listen ? static_cast<int>(members.size()) : 0;
  for (int i = 0; i < want_listeners; ++i) {
    Worker& worker = *workers[static_cast<std::size_t>(i) % nworkers];
    const int user = members[static_cast<std::size_t>(i)];
    SpawnOn(worker, [&shared, &worker, user] { return RunListener(shared, worker, user); });
  }
  if (!WaitFor([&] { return shared.listeners_ready + shared.listeners_failed >= want_listeners; },
               std::chrono::seconds(60)) ||
      shared.listeners_failed > 0) {
    std::fprintf(stderr, "carewire-messaging-load: %d of %d listeners failed to start\n",
                 want_listeners - shared.listeners_ready.load(), want_listeners);
  }

  // 2. The schedule, then the senders.
  const auto to_clock = [](double seconds) {
    return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  };
  Schedule& s = shared.schedule;
  s.start = Clock::now() + std::chrono::milliseconds(200);
  s.measure_from = s.start + to_clock(o.warmup_s);
  s.measure_until = s.measure_from + to_clock(o.duration_s);
  s.hard_stop = s.measure_until + kGrace;
  shared.scheduled.store(true, std::memory_order_release);

  int connections = 0;
  if (open_loop) {
    connections = o.senders;
    const auto interval = to_clock(static_cast<double>(o.senders) / o.rate);
    for (int i = 0; i < o.senders; ++i) {
      Worker& worker = *workers[static_cast<std::size_t>(i) % nworkers];
      SenderPlan plan = PlanSender(shared, i, 0);
      const auto offset = interval * i / o.senders;
      SpawnOn(
          worker,
          [&shared, &worker, plan, interval, offset] {
            return RunOpenLoopSender(shared, worker, plan, interval, offset);
          },
          &shared.senders_live);
    }
  } else {
    for (int c = 0; c < o.clients; ++c) {
      for (int k = 0; k < o.connections; ++k) {
        Worker& worker = *workers[static_cast<std::size_t>(connections++) % nworkers];
        SenderPlan plan = PlanSender(shared, c, k);
        SpawnOn(
            worker, [&shared, &worker, plan] { return RunClosedLoopSender(shared, worker, plan); },
            &shared.senders_live);
      }
    }
  }

  // 3. Server figures at the edges of the window.
  std::this_thread::sleep_until(s.measure_from);
  const CpuSnapshot cpu0 = TakeCpu(o.server_pid);
  const ServerMetrics m0 = ScrapeMetrics(shared);
  std::this_thread::sleep_until(s.measure_until);
  const CpuSnapshot cpu1 = TakeCpu(o.server_pid);
  const ServerMetrics m1 = ScrapeMetrics(shared);

  // 4. Answers and deliveries in flight get the grace period.
  WaitFor([&] { return shared.senders_live.load() == 0; }, s.hard_stop - Clock::now());
  // Deliveries of the last messages arrive shortly after their answers.
  std::this_thread::sleep_until(
      std::min(s.hard_stop, Clock::now() + std::chrono::milliseconds(500)));
  StopWorkers(shared, workers, std::chrono::seconds(3));

  Tally total;
  for (auto& w : workers) {
    Tally& t = w->tally;
    total.sent += t.sent;
    total.acked += t.acked;
    total.non_201 += t.non_201;
    total.unanswered += t.unanswered;
    total.expected_deliveries += t.expected_deliveries;
    total.io_errors += t.io_errors;
    total.connects += t.connects;
    total.created_frames += t.created_frames;
    total.receipt_frames += t.receipt_frames;
    total.other_frames += t.other_frames;
    total.created_in_window += t.created_in_window;
    total.receipts_in_window += t.receipts_in_window;
    total.deliveries += t.deliveries;
    total.listeners_lost += t.listeners_lost;
    total.truncated = total.truncated || t.truncated;
    if (total.first_error.empty()) total.first_error = t.first_error;
    if (total.first_refusal.empty()) total.first_refusal = t.first_refusal;
    if (total.first_close.empty()) total.first_close = t.first_close;
    total.ack_us.insert(total.ack_us.end(), t.ack_us.begin(), t.ack_us.end());
    total.lag_us.insert(total.lag_us.end(), t.lag_us.begin(), t.lag_us.end());
    total.delivery_us.insert(total.delivery_us.end(), t.delivery_us.begin(), t.delivery_us.end());
    t = Tally{};
  }

  const double window = o.duration_s;
  std::size_t max_members = 0;
  for (const Conversation& c : setup.conversations)
    max_members = std::max(max_members, c.members.size());
  if (open_loop) {
    std::printf("latency: open loop at %.0f msgs/s over %d connections (%.2f ms apart each)\n",
                o.rate, o.senders, 1000.0 * o.senders / o.rate);
  } else {
    std::printf("throughput: %d clients x %d connection(s) x pipeline %d, closed loop\n", o.clients,
                o.connections, o.pipeline);
  }
  std::printf(
      "  %zu conversations of up to %zu members, %d listening sockets (%s), %d io thread(s), "
      "body %d bytes\n",
      setup.conversations.size(), max_members, want_listeners,
      o.listen ? "one per member user" : "none", o.threads, o.body_bytes);
  std::printf("  window %.1f s after %.1f s warm-up\n", window, o.warmup_s);
  std::printf("  acked msgs/s (201)     %.1f   (%llu acknowledged durable in the window)\n",
              static_cast<double>(total.acked) / window,
              static_cast<unsigned long long>(total.acked));
  if (open_loop) {
    std::printf("  offered msgs/s         %.1f   (%llu scheduled in the window)\n",
                static_cast<double>(total.sent) / window,
                static_cast<unsigned long long>(total.sent));
  }
  std::printf("  non-201 / unanswered   %llu / %llu\n",
              static_cast<unsigned long long>(total.non_201),
              static_cast<unsigned long long>(total.unanswered));
  std::printf("  io errors              %llu (TLS connections made: %llu)\n",
              static_cast<unsigned long long>(total.io_errors),
              static_cast<unsigned long long>(total.connects));
  PrintLatency(open_loop ? "ack latency (us)*" : "ack latency (us)", total.ack_us);
  PrintLatency("delivery latency (us)", total.delivery_us);
  if (open_loop) PrintLatency("sender lag (us)", total.lag_us);
  std::printf(
      "  deliveries             %llu of %llu expected (sent in the window, to members "
      "other than the sender)\n",
      static_cast<unsigned long long>(total.deliveries),
      static_cast<unsigned long long>(total.expected_deliveries));
  std::printf(
      "  frames/s in window     message.created %.0f, receipt %.0f (all run: %llu, %llu, "
      "other %llu)\n",
      static_cast<double>(total.created_in_window) / window,
      static_cast<double>(total.receipts_in_window) / window,
      static_cast<unsigned long long>(total.created_frames),
      static_cast<unsigned long long>(total.receipt_frames),
      static_cast<unsigned long long>(total.other_frames));
  if (total.listeners_lost > 0) {
    std::printf("  listeners closed by the server: %llu (first: %s)\n",
                static_cast<unsigned long long>(total.listeners_lost), total.first_close.c_str());
  }
  const double wall = cpu1.wall_s - cpu0.wall_s;
  std::printf("  CPU in window          load generator %.2f s", cpu1.self_s - cpu0.self_s);
  if (cpu1.server_s >= 0) std::printf(", server %.2f s", cpu1.server_s - cpu0.server_s);
  std::printf(", whole machine %.2f s of %.2f s (%u CPUs)\n", cpu1.busy_s - cpu0.busy_s,
              wall * std::thread::hardware_concurrency(), std::thread::hardware_concurrency());
  if (!cpu1.server_threads.empty()) {
    std::vector<std::pair<double, int>> busiest;
    for (const auto& [tid, seconds] : cpu1.server_threads) {
      const auto before = cpu0.server_threads.find(tid);
      busiest.emplace_back(seconds - (before == cpu0.server_threads.end() ? 0 : before->second),
                           tid);
    }
    std::sort(busiest.rbegin(), busiest.rend());
    std::printf("  server threads, CPU s  ");
    for (std::size_t i = 0; i < busiest.size() && i < 6; ++i) {
      std::printf("%s%d: %.2f", i == 0 ? "" : ", ", busiest[i].second, busiest[i].first);
    }
    std::printf("  (tid: seconds; the storage writer is the thread that runs SQLite)\n");
  }
  if (m0.ok && m1.ok) {
    const double commits = m1.commits - m0.commits;
    const double works = m1.batch_sum - m0.batch_sum;
    const double commit_s = m1.commit_seconds_sum - m0.commit_seconds_sum;
    std::printf(
        "  server writer          %.0f commits/s, %.0f write works/s, mean batch %.1f, "
        "%.3f ms per commit, BEGIN..COMMIT %.0f%% of the window, %.1f us per work\n",
        commits / wall, works / wall, commits > 0 ? works / commits : 0.0,
        commits > 0 ? 1000 * commit_s / commits : 0.0, 100 * commit_s / wall,
        works > 0 ? 1e6 * commit_s / works : 0.0);
    if (m1.slow_consumers > m0.slow_consumers) {
      std::printf("  slow WebSocket consumers closed in window: %.0f\n",
                  m1.slow_consumers - m0.slow_consumers);
    }
  }
  if (open_loop) {
    std::printf("  * from the scheduled send time, so it includes any sender lag\n");
  }
  if (total.truncated) std::printf("  note: percentiles use the first samples only\n");
  if (!total.first_error.empty()) std::printf("  first io error: %s\n", total.first_error.c_str());
  if (!total.first_refusal.empty()) {
    std::printf("  first non-201: %s\n", total.first_refusal.c_str());
  }
  std::fflush(stdout);
  return total.acked > 0 ? 0 : 1;
}

int Main(int argc, char** argv) {
  Options o;
  CLI::App app{"Secure messaging over live WebSockets against a local Carewire."};
  app.require_subcommand(1);
  app.add_option("--host", o.host, "Server address (loopback only)")->capture_default_str();
  app.add_option("--port", o.port, "Server port")->required()->check(CLI::Range(1, 65535));
  app.add_option("--setup", o.setup_file, "Set-up file (users, tokens, conversations)")->required();
  app.add_option("--threads", o.threads, "I/O threads")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  app.add_option("--server-pid", o.server_pid, "The server's pid, for its CPU time");
  app.add_option("--connect-timeout", o.connect_timeout_s, "Seconds per connect and handshake")
      ->capture_default_str();

  auto add_traffic = [&](CLI::App* cmd) {
    cmd->add_option("--duration", o.duration_s, "Measured seconds")
        ->check(CLI::Range(0.1, 3600.0))
        ->capture_default_str();
    cmd->add_option("--warmup", o.warmup_s, "Uncounted seconds before measuring")
        ->check(CLI::Range(0.0, 600.0))
        ->capture_default_str();
    cmd->add_option("--body-bytes", o.body_bytes, "Message body length")
        ->check(CLI::Range(40, 10000))
        ->capture_default_str();
    cmd->add_flag(
        "--no-listen", [&o](std::int64_t) { o.listen = false; },
        "Open no WebSockets (for comparison: no live delivery)");
  };
  auto* tp = app.add_subcommand("throughput", "closed loop: acknowledged messages per second");
  add_traffic(tp);
  tp->add_option("--clients", o.clients, "Sending clients")
      ->check(CLI::Range(1, 10000))
      ->capture_default_str();
  tp->add_option("--connections", o.connections, "Connections per client")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  tp->add_option("--pipeline", o.pipeline, "Requests in flight per connection")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  auto* lat = app.add_subcommand("latency", "open loop at a fixed rate: delivery latency");
  add_traffic(lat);
  lat->add_option("--rate", o.rate, "Messages per second, all senders together")
      ->check(CLI::Range(1.0, 1e6))
      ->capture_default_str();
  lat->add_option("--senders", o.senders, "Sending connections")
      ->check(CLI::Range(1, 10000))
      ->capture_default_str();
  auto* idle = app.add_subcommand("idle", "hold authenticated idle WebSockets open");
  idle->add_option("--connections", o.idle_connections, "WebSockets to open")
      ->check(CLI::Range(1, 1000000))
      ->capture_default_str();
  idle->add_option("--concurrency", o.idle_concurrency, "Sockets being opened at once")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  idle->add_option("--hold", o.hold_s, "Seconds to hold them; 0: until SIGINT or SIGTERM")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  o.mode = lat->parsed() ? Mode::kLatency : idle->parsed() ? Mode::kIdle : Mode::kThroughput;

  // Signals are taken by the main thread (idle mode), never by an io thread.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  if (o.mode == Mode::kIdle) pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  RaiseFileLimit();

  Setup setup;
  if (!ReadSetup(o.setup_file, setup)) return 2;
  if (o.mode != Mode::kIdle && setup.conversations.empty()) {
    std::fprintf(stderr, "carewire-messaging-load: the set-up file holds no conversations\n");
    return 2;
  }
  Shared shared(o, setup);
  shared.endpoints = ResolveLoopback("carewire-messaging-load", o.host, o.port);
  if (shared.endpoints.empty()) return 2;
  shared.tls.set_verify_mode(ssl::verify_none);
  shared.host_header = o.host + ":" + std::to_string(o.port);
  shared.run_id = RandomRunId();
  shared.listening.assign(setup.users.size(), 0);

  std::vector<std::unique_ptr<Worker>> workers;
  for (int i = 0; i < o.threads; ++i) {
    workers.push_back(std::make_unique<Worker>());
    Worker& w = *workers.back();
    w.thread = std::thread([&w] { w.ioc.run(); });
  }
  return o.mode == Mode::kIdle ? RunIdle(shared, workers) : RunTraffic(shared, workers);
}

}  // namespace
}  // namespace cw::bench

int main(int argc, char** argv) { return cw::bench::Main(argc, argv); }
