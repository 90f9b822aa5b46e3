#include "transport/http_server.hpp"

#include <openssl/crypto.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <csignal>
#include <optional>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/serializer.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <iostream>
#include <stdexcept>
#include <thread>

#include "api/errors.hpp"
#include "core/log.hpp"
#include "core/random.hpp"
#include "transport/connection.hpp"

namespace cw::transport {
namespace detail {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
constexpr auto kNoDeadline = Clock::time_point::max();

// Bytes asked of the socket when waiting for the first byte of a request.
constexpr std::size_t kReadChunk = 16 << 10;
// After an error response on a request whose body was not read, read and drop
// what the client is still sending for this long (at most this much, and only
// while it keeps sending) before closing, so the client sees the response
// rather than a connection reset.
constexpr auto kLingerTime = 1s;
constexpr auto kLingerSilence = 100ms;
constexpr std::size_t kLingerBytes = 64 << 20;
// A TLS close_notify exchange should be quick; do not let it hold a slot.
constexpr auto kShutdownTime = 1s;

auto Awaitable() { return net::as_tuple(net::use_awaitable); }

api::Method ToMethod(http::verb verb) {
  switch (verb) {
    case http::verb::get:
      return api::Method::kGet;
    case http::verb::head:
      return api::Method::kHead;
    case http::verb::post:
      return api::Method::kPost;
    case http::verb::put:
      return api::Method::kPut;
    case http::verb::patch:
      return api::Method::kPatch;
    case http::verb::delete_:
      return api::Method::kDelete;
    case http::verb::options:
      return api::Method::kOptions;
    default:
      return api::Method::kOther;
  }
}

std::string Lowercase(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Fills everything but the body from a parsed header.
void ConvertHeader(const http::request<http::string_body>& msg, api::Request& req) {
  req.method = ToMethod(msg.method());
  const std::string_view target = msg.target();
  const std::size_t q = target.find('?');
  req.path = std::string(target.substr(0, q));
  if (q != std::string_view::npos) req.query = std::string(target.substr(q + 1));
  req.headers.reserve(16);
  for (const auto& field : msg) {
    req.headers.emplace_back(Lowercase(field.name_string()), std::string(field.value()));
  }
}

// A framing problem found while reading a request, as the error to answer.
api::ApiError ReadErrorToApi(const beast::error_code& ec) {
  if (ec == http::error::body_limit) return api::ApiError::kPayloadTooLarge;
  if (ec == http::error::header_limit) return api::ApiError::kHeadersTooLarge;
  return api::ApiError::kBadRequest;
}

SafeText ReadErrorMessage(const beast::error_code& ec) {
  if (ec == http::error::body_limit) return "request body is larger than the limit";
  if (ec == http::error::header_limit) return "request header is larger than the limit";
  if (ec == http::error::bad_transfer_encoding || ec == http::error::bad_content_length) {
    return "request framing is ambiguous or invalid";
  }
  return "malformed HTTP request";
}

bool IsTransportClosed(const beast::error_code& ec) {
  return ec == http::error::end_of_stream || ec == net::error::eof ||
         ec == net::error::operation_aborted || ec == net::error::connection_reset ||
         ec == net::ssl::error::stream_truncated || ec == net::error::bad_descriptor;
}

// One HTTPS connection.
class HttpSession : public Drainable, public std::enable_shared_from_this<HttpSession> {
 public:
  HttpSession(std::shared_ptr<ServerState> state, tcp::socket socket, ssl::context& ctx)
      : state_(std::move(state)),
        stream_(std::move(socket), ctx.native_handle()),
        timer_(stream_.get_executor()) {}

  ~HttpSession() override { state_->Unregister(handle_); }

  void Start(ServerState::Handle handle) {
    handle_ = handle;
    // Each coroutine keeps the session alive through its completion handler.
    // (Coroutines here never take a shared_ptr parameter: GCC 12 can destroy
    // a by-value coroutine parameter twice.)
    net::co_spawn(stream_.get_executor(), Watchdog(),
                  [self = shared_from_this()](std::exception_ptr) {});
    net::co_spawn(stream_.get_executor(), Run(), [self = shared_from_this()](std::exception_ptr e) {
      // Exceptions are bugs; they must never escape into Asio.
      if (e) log::Error("http.session_exception");
    });
  }

  void Drain() override {
    net::post(stream_.get_executor(), [self = shared_from_this()] { self->OnDrain(); });
  }

 private:
  enum class Phase { kHandshake, kIdle, kReading, kHandling, kWriting, kUpgraded, kClosing };

  void OnDrain() {
    if (phase_ == Phase::kUpgraded) {
      if (auto ws = websocket_.lock()) ws->Drain();
      return;
    }
    if (phase_ == Phase::kIdle || phase_ == Phase::kHandshake) {
      SetDeadline(std::min(
          deadline_, Clock::now() + std::chrono::milliseconds(state_->shutdown.idle_grace_ms)));
    }
  }

  // REQUIRES: running on the strand.
  void SetDeadline(Clock::time_point when) {
    const bool earlier = when < deadline_;
    deadline_ = when;
    if (earlier) timer_.cancel();
  }
  void SetTimeout(std::int64_t ms) { SetDeadline(Clock::now() + std::chrono::milliseconds(ms)); }

  net::awaitable<void> Watchdog() {
    while (!closed_) {
      if (deadline_ <= Clock::now()) {
        if (phase_ != Phase::kClosing) state_->connections_timed_out.Add();
        CloseSocket();
        co_return;
      }
      timer_.expires_at(deadline_);
      co_await timer_.async_wait(Awaitable());
    }
  }

  void CloseSocket() {
    if (closed_) return;
    closed_ = true;
    beast::error_code ignored;
    stream_.lowest_layer().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.lowest_layer().close(ignored);
    timer_.cancel();
  }

  net::awaitable<void> Run() {
    co_await Serve();
    if (phase_ != Phase::kUpgraded) co_await Finish();
    closed_ = true;
    timer_.cancel();
  }

  net::awaitable<void> Serve() {
    phase_ = Phase::kHandshake;
    SetTimeout(state_->limits.handshake_timeout_ms);
    if (state_->draining) OnDrain();
    auto [hs_ec] = co_await stream_.async_handshake(ssl::stream_base::server, Awaitable());
    if (hs_ec) co_return;

    for (;;) {
      phase_ = Phase::kIdle;
      SetTimeout(state_->limits.idle_timeout_ms);
      if (state_->draining) OnDrain();
      if (buffer_.size() == 0) {
        auto [ec, n] = co_await stream_.async_read_some(buffer_.prepare(kReadChunk), Awaitable());
        if (ec) co_return;
        buffer_.commit(n);
      }

      // The header timeout counts from the first byte, so a client trickling
      // a header one byte at a time is cut off after header_timeout_ms.
      phase_ = Phase::kReading;
      api::Request req;
      req.started = Clock::now();
      req.request_id = core::RandomHex(16);
      // The TCP peer, never a client-supplied header: X-Forwarded-For can be
      // forged by anyone.
      {
        beast::error_code peer_ec;
        const auto peer = stream_.lowest_layer().remote_endpoint(peer_ec);
        if (!peer_ec) req.peer_address = peer.address().to_string();
      }
      SetTimeout(state_->limits.header_timeout_ms);

      http::request_parser<http::string_body> parser;
      parser.header_limit(static_cast<std::uint32_t>(state_->limits.max_header_bytes));
      // Beast would check a Content-Length against the body limit while the
      // header is parsed, before the route (and so its limit) is known; the
      // length is checked below instead, before any of the body is read.
      parser.body_limit(boost::none);
      auto [hec, hn] = co_await http::async_read_header(stream_, buffer_, parser, Awaitable());
      if (hec) {
        if (closed_ || IsTransportClosed(hec)) co_return;
        co_await RejectAndClose(req, ReadErrorToApi(hec), ReadErrorMessage(hec));
        co_return;
      }
      ConvertHeader(parser.get(), req);
      auto match = state_->router.Find(req.method, req.path);

      if (beast::websocket::is_upgrade(parser.get())) {
        if (match.route != nullptr && match.route->websocket && parser.is_done()) {
          req.params = match.params;
          phase_ = Phase::kUpgraded;
          deadline_ = kNoDeadline;
          timer_.cancel();
          closed_ = true;  // the watchdog stops; the WebSocket keeps its own timers
          LogRequest(req, match.route, 101, 0);
          http::request<http::string_body> upgrade = parser.release();
          co_await RunWebSocket(state_, stream_, buffer_, upgrade, req, *match.route, websocket_);
          co_return;
        }
      }

      // A streamed route (uploads) has a limit of its own; every other body is
      // held to the server's. Checked on the Content-Length, before any of the
      // body is read.
      const bool streamed = match.route != nullptr && match.route->streamed;
      const std::int64_t limit =
          streamed ? match.route->max_body_bytes : state_->limits.max_body_bytes;
      const auto length = parser.content_length();
      if (length && *length > static_cast<std::uint64_t>(limit)) {
        co_await RejectAndClose(req, api::ApiError::kPayloadTooLarge,
                                "request body is larger than the limit");
        co_return;
      }
      parser.body_limit(static_cast<std::uint64_t>(limit));
      bool client_keep_alive = parser.get().keep_alive();
      if (streamed) {
        // The handler reads the body itself, once the router has
        // authenticated the caller (the first read takes a slot).
        expect_continue_ = beast::iequals(parser.get()[http::field::expect], "100-continue");
        body_parser_.emplace(std::move(parser));
        body_stream_ = std::make_shared<StreamedBody>(weak_from_this());
        req.body_stream = body_stream_;
      } else if (!parser.is_done()) {
        SetTimeout(state_->limits.body_timeout_ms);
        if (beast::iequals(parser.get()[http::field::expect], "100-continue")) {
          http::response<http::empty_body> cont{http::status::continue_, 11};
          auto [cec, cn] = co_await http::async_write(stream_, cont, Awaitable());
          if (cec) co_return;
        }
        auto [bec, bn] = co_await http::async_read(stream_, buffer_, parser, Awaitable());
        if (bec) {
          if (closed_ || IsTransportClosed(bec)) co_return;
          co_await RejectAndClose(req, ReadErrorToApi(bec), ReadErrorMessage(bec));
          co_return;
        }
      }
      if (!streamed) req.body = std::move(parser.get().body());

      phase_ = Phase::kHandling;
      deadline_ = kNoDeadline;
      const api::Route* route = nullptr;
      api::Response res = co_await Dispatch(req, match, &route);
      // The watchdog closed the connection meanwhile (a body that stalled):
      // there is no one to answer.
      if (closed_) co_return;

      // A streamed body the handler did not read to its end (it refused the
      // request early) leaves the connection mid-request: answer, then close.
      bool body_left = false;
      if (body_stream_) {
        body_stream_.reset();
        if (piece_done_) {
          // Answered while a read was still running (a handler bug): the
          // read owns the parser until it ends, so the connection just ends.
          CloseSocket();
          co_return;
        }
        body_left = !body_parser_->is_done();
      }
      const bool keep_alive =
          client_keep_alive && !body_left && !res.close && !state_->draining;
      phase_ = Phase::kWriting;
      SetTimeout(state_->limits.write_timeout_ms);
      const bool written = co_await WriteResponse(req, res, keep_alive);
      LogRequest(req, route, res.status,
                 res.body_source ? static_cast<std::size_t>(res.content_length) : res.body.size());
      body_parser_.reset();
      stream_slot_.reset();
      if (written && body_left) co_await Linger();
      if (!written || !keep_alive) co_return;
    }
  }

  // A streamed request body, read by the handler piece by piece on this
  // session's strand.
  struct StreamedBody : api::BodyStream {
    explicit StreamedBody(std::weak_ptr<HttpSession> s) : session(std::move(s)) {}
    void Read(std::size_t size, std::function<void(api::BodyPiece)> done) override {
      auto self = session.lock();
      if (!self) return done({});
      net::post(self->stream_.get_executor(),
                [self, from = this, size, done = std::move(done)]() mutable {
                  self->StartPiece(from, size, std::move(done));
                });
    }
    std::weak_ptr<HttpSession> session;
  };

  // Gives a streamed-body slot back when its request is done.
  struct StreamSlot {
    std::atomic<int>& count;
    explicit StreamSlot(std::atomic<int>& c) : count(c) {}
    ~StreamSlot() { count.fetch_sub(1); }
  };

  // REQUIRES: on the strand.
  void StartPiece(const StreamedBody* from, std::size_t size,
                  std::function<void(api::BodyPiece)> done) {
    // Only the current request's body while it is unanswered (body_stream_
    // is reset when the handler answers), one read at a time.
    if (from != body_stream_.get() || piece_done_ || closed_) {
      return done({});
    }
    // The first read, made once the caller is authorized, takes one of the
    // kMaxStreamedBodies slots: unauthenticated clients cannot use them up.
    if (!stream_slot_) {
      if (state_->streamed_bodies.fetch_add(1) >= ServerState::kMaxStreamedBodies) {
        state_->streamed_bodies.fetch_sub(1);
        return done({api::BodyPiece::State::kBusy, {}});
      }
      stream_slot_.emplace(state_->streamed_bodies);
    }
    piece_done_ = std::move(done);
    piece_.bytes.resize(size);
    piece_got_ = 0;
    // Each piece must arrive within the body timeout: a slow link may take
    // longer over a whole attachment, a stalled one cannot hold the slot.
    SetTimeout(state_->limits.body_timeout_ms);
    if (expect_continue_) {
      expect_continue_ = false;
      continue_.emplace(http::status::continue_, 11);
      http::async_write(stream_, *continue_,
                        [self = shared_from_this()](beast::error_code ec, std::size_t) {
                          if (ec) return self->EndPiece(api::BodyPiece::State::kBroken);
                          self->ContinuePiece();
                        });
      return;
    }
    ContinuePiece();
  }

  void ContinuePiece() {
    if (closed_) return EndPiece(api::BodyPiece::State::kBroken);
    const std::size_t size = piece_.bytes.size();
    if (body_parser_->is_done() || piece_got_ == size) {
      return EndPiece(body_parser_->is_done() ? api::BodyPiece::State::kEnd
                                              : api::BodyPiece::State::kMore);
    }
    auto& body = body_parser_->get().body();
    body.data = piece_.bytes.data() + piece_got_;
    body.size = size - piece_got_;
    body.more = true;
    http::async_read_some(
        stream_, buffer_, *body_parser_,
        [self = shared_from_this()](beast::error_code ec, std::size_t) {
          if (!self->body_parser_) return self->EndPiece(api::BodyPiece::State::kBroken);
          auto& b = self->body_parser_->get().body();
          self->piece_got_ = self->piece_.bytes.size() - b.size;
          if (ec == http::error::need_buffer) ec = {};
          if (ec == http::error::body_limit) return self->EndPiece(api::BodyPiece::State::kTooLarge);
          if (ec) return self->EndPiece(api::BodyPiece::State::kBroken);
          self->ContinuePiece();
        });
  }

  void EndPiece(api::BodyPiece::State state) {
    deadline_ = kNoDeadline;  // the handler's own time does not count
    piece_.state = state;
    const bool keep = state == api::BodyPiece::State::kMore || state == api::BodyPiece::State::kEnd;
    // What is dropped may be plaintext PHI.
    if (!keep) OPENSSL_cleanse(piece_.bytes.data(), piece_.bytes.size());
    piece_.bytes.resize(keep ? piece_got_ : 0);
    auto done = std::move(piece_done_);
    piece_done_ = nullptr;
    api::BodyPiece out = std::move(piece_);
    piece_ = {};
    done(std::move(out));
  }

  // Hands the request to the router and waits for its reply, which may come
  // from another thread (a storage commit, say). A reply that is never given
  // (a handler bug) becomes a 500 when the last copy of it is destroyed.
  net::awaitable<api::Response> Dispatch(api::Request& req, api::Router::Match& match,
                                         const api::Route** route) {
    struct Slot {
      std::function<void(api::Response)> complete;
      std::atomic<bool> done{false};
      std::string request_id;
      void Give(api::Response r) {
        if (!done.exchange(true)) complete(std::move(r));
      }
      ~Slot() {
        if (!done.load()) {
          complete(api::ErrorResponse(request_id, api::ApiError::kInternal, "internal error"));
        }
      }
    };
    const api::Router& router = state_->router;
    co_return co_await net::async_initiate<decltype(net::use_awaitable), void(api::Response)>(
        [&](auto handler) {
          auto shared = std::make_shared<decltype(handler)>(std::move(handler));
          auto slot = std::make_shared<Slot>();
          slot->request_id = req.request_id;
          slot->complete = [shared](api::Response r) {
            auto ex = net::get_associated_executor(*shared);
            net::post(ex, [shared, r = std::move(r)]() mutable { (*shared)(std::move(r)); });
          };
          *route = router.Dispatch(req, std::move(match),
                                   [slot](api::Response r) { slot->Give(std::move(r)); });
        },
        net::use_awaitable);
  }

  // Waits for the next piece of a streamed response body.
  net::awaitable<Result<std::string>> NextPiece(api::BodySource& source) {
    co_return co_await net::async_initiate<decltype(net::use_awaitable),
                                           void(Result<std::string>)>(
        [&](auto handler) {
          auto shared = std::make_shared<decltype(handler)>(std::move(handler));
          source.Next([shared](Result<std::string> piece) {
            auto ex = net::get_associated_executor(*shared);
            net::post(ex, [shared, piece = std::move(piece)]() mutable {
              (*shared)(std::move(piece));
            });
          });
        },
        net::use_awaitable);
  }

  // Writes a response whose body comes from a BodySource, piece by piece.
  // False when the source failed or gave other than content_length bytes:
  // the status is sent by then, so the connection is closed, cutting the
  // body short where the client can tell.
  net::awaitable<bool> WriteStreamed(http::response<http::buffer_body>& msg, api::Response& res) {
    msg.content_length(static_cast<std::uint64_t>(res.content_length));
    msg.body().data = nullptr;
    msg.body().more = true;
    http::response_serializer<http::buffer_body> serializer(msg);
    auto [hec, hn] = co_await http::async_write_header(stream_, serializer, Awaitable());
    if (hec) co_return false;
    std::int64_t sent = 0;
    for (;;) {
      // Producing a piece (storage, the pool) is the server's time, not the
      // client's: no deadline while it is made.
      deadline_ = kNoDeadline;
      Result<std::string> piece = co_await NextPiece(*res.body_source);
      if (closed_) co_return false;
      if (!piece) co_return false;
      if (piece->empty()) break;
      sent += static_cast<std::int64_t>(piece->size());
      if (sent > res.content_length) co_return false;
      msg.body().data = piece->data();
      msg.body().size = piece->size();
      SetTimeout(state_->limits.write_timeout_ms);
      auto [ec, n] = co_await http::async_write(stream_, serializer, Awaitable());
      OPENSSL_cleanse(piece->data(), piece->size());
      if (ec && ec != http::error::need_buffer) co_return false;
    }
    if (sent != res.content_length) co_return false;
    msg.body().data = nullptr;
    msg.body().size = 0;
    msg.body().more = false;
    auto [ec, n] = co_await http::async_write(stream_, serializer, Awaitable());
    co_return !ec;
  }

  net::awaitable<bool> WriteResponse(const api::Request& req, api::Response& res, bool keep_alive) {
    api::AddStandardHeaders(res, req.request_id);
    if (res.body_source) {
      http::response<http::buffer_body> msg{static_cast<http::status>(res.status), 11};
      if (!res.content_type.empty()) msg.set(http::field::content_type, res.content_type);
      for (const auto& [name, value] : res.headers) msg.set(name, value);
      msg.keep_alive(keep_alive);
      co_return co_await WriteStreamed(msg, res);
    }
    http::response<http::string_body> msg{static_cast<http::status>(res.status), 11};
    if (!res.content_type.empty()) msg.set(http::field::content_type, res.content_type);
    for (const auto& [name, value] : res.headers) msg.set(name, value);
    msg.keep_alive(keep_alive);
    msg.body() = std::move(res.body);
    msg.prepare_payload();
    auto [ec, n] = co_await http::async_write(stream_, msg, Awaitable());
    res.body = std::move(msg.body());
    co_return !ec;
  }

  // Answers a request that could not be read and closes the connection,
  // reading what the client still sends for a moment first.
  net::awaitable<void> RejectAndClose(api::Request& req, api::ApiError error, SafeText message) {
    api::Response res = api::ErrorResponse(req.request_id, error, message);
    phase_ = Phase::kWriting;
    SetTimeout(state_->limits.write_timeout_ms);
    const bool written = co_await WriteResponse(req, res, false);
    LogRequest(req, nullptr, res.status, res.body.size());
    if (written) co_await Linger();
  }

  // Reads and drops what the client still sends, for a moment, before the
  // connection closes (so the client reads the answer, not a reset).
  net::awaitable<void> Linger() {
    phase_ = Phase::kClosing;
    const auto linger_end = Clock::now() + kLingerTime;
    std::size_t drained = 0;
    std::array<char, 16 << 10> scratch;
    while (drained < kLingerBytes && !closed_) {
      SetDeadline(std::min(linger_end, Clock::now() + kLingerSilence));
      auto [ec, n] = co_await stream_.async_read_some(net::buffer(scratch), Awaitable());
      if (ec) break;
      drained += n;
    }
  }

  net::awaitable<void> Finish() {
    if (closed_) co_return;
    phase_ = Phase::kClosing;
    SetDeadline(Clock::now() + kShutdownTime);
    co_await stream_.async_shutdown(Awaitable());
    CloseSocket();
  }

  void LogRequest(const api::Request& req, const api::Route* route, int status,
                  std::size_t bytes_out) {
    const SafeText route_name = route ? SafeText::Trusted(route->pattern) : SafeText("unmatched");
    const double seconds = std::chrono::duration<double>(Clock::now() - req.started).count();
    state_->metrics
        .GetCounter(
            "carewire_http_requests_total", "HTTP requests by route template and status",
            {{"route", route_name}, {"method", api::MethodName(req.method)}, {"status", status}})
        .Add();
    state_->metrics
        .GetHistogram("carewire_http_request_duration_seconds",
                      "Time from the first header byte to the response written",
                      metrics::LatencyBuckets(), {{"route", route_name}})
        .Observe(seconds);
    log::Info("http.request", {{log::Key::kRequestId, SafeText::Trusted(req.request_id)},
                               {log::Key::kMethod, api::MethodName(req.method)},
                               {log::Key::kRoute, route_name},
                               {log::Key::kStatus, status},
                               {log::Key::kLatencyUs, static_cast<std::int64_t>(seconds * 1e6)},
                               {log::Key::kBytesIn, static_cast<std::int64_t>(req.body.size())},
                               {log::Key::kBytesOut, static_cast<std::int64_t>(bytes_out)}});
  }

  std::shared_ptr<ServerState> state_;
  TlsStream stream_;
  net::steady_timer timer_;
  beast::flat_buffer buffer_;
  Clock::time_point deadline_ = kNoDeadline;
  Phase phase_ = Phase::kHandshake;
  bool closed_ = false;
  ServerState::Handle handle_;
  std::weak_ptr<Drainable> websocket_;
  // A streamed request body being read by its handler.
  std::optional<http::request_parser<http::buffer_body>> body_parser_;
  std::shared_ptr<StreamedBody> body_stream_;
  std::optional<StreamSlot> stream_slot_;
  bool expect_continue_ = false;
  std::optional<http::response<http::empty_body>> continue_;
  api::BodyPiece piece_;
  std::size_t piece_got_ = 0;
  std::function<void(api::BodyPiece)> piece_done_;
};

}  // namespace

ServerState::ServerState(const core::Config& config, const api::Router& r, metrics::Registry& m)
    : limits(config.limits),
      shutdown(config.shutdown),
      router(r),
      metrics(m),
      connections_rejected(
          m.GetCounter("carewire_http_connections_rejected_total",
                       "Connections closed at once because max_connections were open")),
      connections_timed_out(m.GetCounter("carewire_http_connections_timed_out_total",
                                         "Connections closed because a phase deadline passed")),
      websocket_messages_in(m.GetCounter("carewire_websocket_messages_received_total",
                                         "WebSocket messages received from clients")),
      websocket_slow_consumers(
          m.GetCounter("carewire_websocket_slow_consumers_total",
                       "WebSocket connections closed because the client read too slowly")) {}

ServerState::Handle ServerState::Register(std::weak_ptr<Drainable> connection) {
  std::lock_guard lock(mu_);
  ++count_;
  return live_.insert(live_.end(), std::move(connection));
}

void ServerState::Unregister(Handle handle) {
  std::lock_guard lock(mu_);
  live_.erase(handle);
  if (--count_ == 0) idle_.notify_all();
}

int ServerState::Count() const {
  std::lock_guard lock(mu_);
  return count_;
}

void ServerState::DrainAll() {
  std::vector<std::shared_ptr<Drainable>> live;
  {
    std::lock_guard lock(mu_);
    for (auto& w : live_) {
      if (auto s = w.lock()) live.push_back(std::move(s));
    }
  }
  for (auto& s : live) s->Drain();
}

bool ServerState::WaitIdle(std::chrono::steady_clock::time_point deadline) {
  std::unique_lock lock(mu_);
  return idle_.wait_until(lock, deadline, [&] { return count_ == 0; });
}

}  // namespace detail

using namespace detail;

struct HttpServer::Impl {
  Impl(const core::Config& cfg, const TlsMaterial& tls, const api::Router& router,
       metrics::Registry& registry)
      : config(cfg),
        ssl_ctx(ssl::context::tls_server),
        acceptor(net::make_strand(ioc)),
        state(std::make_shared<ServerState>(cfg, router, registry)) {
    ConfigureTls(tls);
    registry.AddGauge("carewire_http_connections_open", "Open HTTP and WebSocket connections",
                      [s = state] { return static_cast<double>(s->Count()); });
  }

  void ConfigureTls(const TlsMaterial& tls) {
    SSL_CTX* ctx = ssl_ctx.native_handle();
    // TLS 1.2 and 1.3 only; no compression (CRIME), no renegotiation.
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(
        ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    // An idle connection gives its read and write buffers (about 34 KiB)
    // back to the allocator: most live sockets are idle most of the time.
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    // OpenSSL writes the non-blocking socket itself (TlsSocket): a write may
    // end part way, and is resumed with the rest from the same bytes,
    // which need not stay at the same address.
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    // Reads take what the socket has, not one record header at a time.
    SSL_CTX_set_read_ahead(ctx, 1);
    // TLS 1.2: ECDHE (forward secrecy) with AEAD ciphers only. TLS 1.3's
    // suites are all AEAD and keep OpenSSL's defaults.
    if (SSL_CTX_set_cipher_list(ctx,
                                "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                                "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                                "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305") != 1) {
      throw std::runtime_error("cannot set TLS cipher list");
    }
    beast::error_code ec;
    ssl_ctx.use_certificate_chain_file(tls.cert_file, ec);
    if (ec) throw std::runtime_error("cannot load the TLS certificate file");
    ssl_ctx.use_private_key_file(tls.key_file, ssl::context::pem, ec);
    if (ec) throw std::runtime_error("cannot load the TLS key file");
    if (SSL_CTX_check_private_key(ctx) != 1) {
      throw std::runtime_error("the TLS key does not match the certificate");
    }
  }

  net::awaitable<void> Accept() {
    for (;;) {
      auto [ec, socket] = co_await acceptor.async_accept(net::make_strand(ioc), Awaitable());
      if (ec) {
        if (ec == net::error::operation_aborted || !acceptor.is_open()) co_return;
        // EMFILE and friends: back off briefly rather than spin.
        net::steady_timer t(acceptor.get_executor(), std::chrono::milliseconds(50));
        co_await t.async_wait(Awaitable());
        continue;
      }
      if (state->Count() >= config.limits.max_connections) {
        state->connections_rejected.Add();
        beast::error_code ignored;
        socket.close(ignored);
        continue;
      }
      socket.set_option(tcp::no_delay(true), ec);
      auto session = std::make_shared<HttpSession>(state, std::move(socket), ssl_ctx);
      session->Start(state->Register(session));
    }
  }

  const core::Config& config;
  net::io_context ioc;
  ssl::context ssl_ctx;
  tcp::acceptor acceptor;
  std::shared_ptr<ServerState> state;
  std::vector<std::thread> threads;
  tcp::endpoint bound;
};

HttpServer::HttpServer(const core::Config& config, const TlsMaterial& tls,
                       const api::Router& router, metrics::Registry& metrics)
    : impl_(std::make_unique<Impl>(config, tls, router, metrics)) {
  // OpenSSL writes the sockets itself (TlsSocket), with write(2): a client
  // gone away must be an EPIPE error for that connection, not a SIGPIPE
  // that ends the process.
  std::signal(SIGPIPE, SIG_IGN);
}

HttpServer::~HttpServer() {
  if (!impl_->threads.empty()) Shutdown();
}

void HttpServer::Start() {
  const std::string& listen = impl_->config.server.listen;
  const std::size_t colon = listen.rfind(':');
  std::string host = listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  const std::string port_text = listen.substr(colon + 1);
  unsigned long port = 0;
  try {
    std::size_t used = 0;
    port = std::stoul(port_text, &used);
    if (used != port_text.size() || port > 65535) throw std::out_of_range("port");
  } catch (const std::exception&) {
    throw core::ConfigError("server.listen", "port must be a number from 0 to 65535");
  }
  beast::error_code ec;
  const auto address = net::ip::make_address(host, ec);
  if (ec) throw core::ConfigError("server.listen", "host must be an IP address");

  auto& acceptor = impl_->acceptor;
  const tcp::endpoint endpoint(address, static_cast<unsigned short>(port));
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec) throw std::runtime_error("cannot listen on " + listen + ": " + ec.message());
  impl_->bound = acceptor.local_endpoint();

  net::co_spawn(acceptor.get_executor(), impl_->Accept(), net::detached);
  int threads = impl_->config.server.threads;
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  for (int i = 0; i < threads; ++i) {
    impl_->threads.emplace_back([this] { impl_->ioc.run(); });
  }
}

std::uint16_t HttpServer::port() const { return impl_->bound.port(); }

std::string HttpServer::host() const { return impl_->bound.address().to_string(); }

int HttpServer::ConnectionCount() const { return impl_->state->Count(); }

int HttpServer::Shutdown() {
  auto& impl = *impl_;
  impl.state->draining = true;
  net::post(impl.acceptor.get_executor(), [&impl] {
    beast::error_code ignored;
    impl.acceptor.close(ignored);
  });
  impl.state->DrainAll();
  const auto deadline =
      Clock::now() + std::chrono::milliseconds(impl.config.shutdown.drain_timeout_ms);
  int cut = 0;
  if (!impl.state->WaitIdle(deadline)) cut = impl.state->Count();
  impl.ioc.stop();
  for (auto& t : impl.threads) t.join();
  impl.threads.clear();
  return cut;
}

}  // namespace cw::transport
