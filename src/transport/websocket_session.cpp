#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/websocket/stream.hpp>
#include <deque>

#include "api/errors.hpp"
#include "core/log.hpp"
#include "transport/connection.hpp"

namespace cw::transport::detail {
namespace {

namespace websocket = boost::beast::websocket;

// Messages queued for a client that reads more slowly than events arrive.
// Past this the client is disconnected (it can reconnect and resume) rather
// than allowed to grow the server's memory.
constexpr std::size_t kMaxQueuedBytes = 1 << 20;

auto Awaitable() { return net::as_tuple(net::use_awaitable); }

class WebSocketSession final : public Drainable,
                               public api::WebSocketPeer,
                               public std::enable_shared_from_this<WebSocketSession> {
 public:
  WebSocketSession(std::shared_ptr<ServerState> state, TlsStream stream)
      : state_(std::move(state)), ws_(std::move(stream)) {}

  net::awaitable<void> Run(beast::flat_buffer& buffer, http::request<http::string_body>& upgrade,
                           const api::Request& request, const api::Route& route) {
    auto self = shared_from_this();
    websocket::stream_base::timeout timeouts;
    timeouts.handshake_timeout = std::chrono::milliseconds(state_->limits.handshake_timeout_ms);
    // Idle connections are pinged at half the idle timeout and closed when
    // nothing at all arrives within it, so dead peers do not hold a slot.
    timeouts.idle_timeout = std::chrono::milliseconds(state_->limits.idle_timeout_ms);
    timeouts.keep_alive_pings = true;
    ws_.set_option(timeouts);
    ws_.read_message_max(static_cast<std::uint64_t>(state_->limits.websocket_max_message_bytes));
    ws_.auto_fragment(false);
    const std::string request_id = request.request_id;
    ws_.set_option(websocket::stream_base::decorator([request_id](websocket::response_type& res) {
      api::Response extra;
      api::AddStandardHeaders(extra, request_id);
      for (const auto& [name, value] : extra.headers) res.set(name, value);
    }));

    // Bytes that arrived after the upgrade request belong to the WebSocket.
    auto [ec] = co_await ws_.async_accept(upgrade, Awaitable());
    if (ec) co_return;
    if (buffer.size() > 0) {
      // Beast's accept(req) does not take leftover bytes; a client may not
      // send frames before the 101 answer, so any leftover is a protocol error.
      co_await CloseNow(websocket::close_code::protocol_error);
      co_return;
    }
    // The HTTP read buffer stays alive with its connection but holds nothing
    // more: its memory goes back, as an idle socket should hold little.
    buffer.shrink_to_fit();

    handler_ = route.websocket(request, self);
    if (state_->draining) StartClose(websocket::close_code::going_away, "server shutting down");

    beast::flat_buffer in;
    for (;;) {
      auto [rec, n] = co_await ws_.async_read(in, Awaitable());
      if (rec) break;
      state_->websocket_messages_in.Add();
      if (!ws_.got_text()) {
        StartClose(websocket::close_code::unknown_data, "text frames only");
      } else if (!closing_ && handler_) {
        handler_->OnText(beast::buffers_to_string(in.data()));
      }
      in.consume(in.size());
      in.shrink_to_fit();  // between frames an idle socket keeps no buffer
    }
    closing_ = true;
    MaybeWake();
    if (handler_) {
      handler_->OnClose();
      handler_.reset();  // the handler holds this session as its peer
    }
  }

  bool SendText(std::string text) override {
    if (closing_flag_.load()) return false;
    pending_bytes_ += text.size();
    net::post(ws_.get_executor(), [self = shared_from_this(), t = std::move(text)]() mutable {
      self->Enqueue(std::move(t));
    });
    return true;
  }

  std::size_t QueuedBytes() const override { return pending_bytes_.load(); }

  void WhenQueuedAtMost(std::size_t bytes, std::function<void()> callback) override {
    net::post(ws_.get_executor(),
              [self = shared_from_this(), bytes, callback = std::move(callback)]() mutable {
                self->wake_at_ = bytes;
                self->wake_ = std::move(callback);
                self->MaybeWake();
              });
  }

  void Close(int code, SafeText reason) override {
    net::post(ws_.get_executor(), [self = shared_from_this(), code, reason] {
      self->StartClose(static_cast<std::uint16_t>(code), reason);
    });
  }

  void Drain() override {
    net::post(ws_.get_executor(), [self = shared_from_this()] {
      self->StartClose(websocket::close_code::going_away, "server shutting down");
    });
  }

 private:
  // REQUIRES: running on the strand (true of every method below).
  // Calls the WhenQueuedAtMost callback once its condition holds.
  void MaybeWake() {
    if (!wake_ || (!closing_ && pending_bytes_.load() > wake_at_)) return;
    std::exchange(wake_, nullptr)();
  }

  void Enqueue(std::string text) {
    if (closing_) {
      pending_bytes_ -= text.size();
      return;
    }
    queued_bytes_ += text.size();
    if (queued_bytes_ > kMaxQueuedBytes) {
      state_->websocket_slow_consumers.Add();
      outbox_.clear();
      pending_bytes_ -= queued_bytes_;
      queued_bytes_ = 0;
      StartClose(websocket::close_code::try_again_later, "client too slow; reconnect to resume");
      return;
    }
    outbox_.push_back(std::move(text));
    StartWriter();
  }

  void StartClose(std::uint16_t code, SafeText reason) {
    if (closing_) return;
    closing_ = true;
    closing_flag_ = true;
    MaybeWake();
    close_reason_ =
        websocket::close_reason(static_cast<websocket::close_code>(code), reason.view());
    StartWriter();
  }

  void StartWriter() {
    if (writing_) return;
    writing_ = true;
    // The completion handler keeps the session alive while the writer runs.
    net::co_spawn(ws_.get_executor(), Writer(), [self = shared_from_this()](std::exception_ptr) {});
  }

  // The only writer: Beast allows one write (or close) in flight at a time.
  net::awaitable<void> Writer() {
    while (!outbox_.empty()) {
      std::string msg = std::move(outbox_.front());
      outbox_.pop_front();
      queued_bytes_ -= msg.size();
      ws_.text(true);
      auto [ec, n] = co_await ws_.async_write(net::buffer(msg), Awaitable());
      pending_bytes_ -= msg.size();
      if (ec) {
        outbox_.clear();
        pending_bytes_ -= queued_bytes_;
        queued_bytes_ = 0;
        writing_ = false;
        closing_ = true;
        closing_flag_ = true;
        MaybeWake();
        co_return;
      }
      MaybeWake();
    }
    if (close_reason_ && ws_.is_open()) {
      auto reason = *close_reason_;
      close_reason_.reset();
      co_await ws_.async_close(reason, Awaitable());
    }
    writing_ = false;
  }

  net::awaitable<void> CloseNow(std::uint16_t code) {
    co_await ws_.async_close(websocket::close_reason(static_cast<websocket::close_code>(code)),
                             Awaitable());
  }

  std::shared_ptr<ServerState> state_;
  websocket::stream<TlsStream> ws_;
  std::unique_ptr<api::WebSocketHandler> handler_;
  std::deque<std::string> outbox_;
  std::size_t queued_bytes_ = 0;
  // Bytes handed to SendText and not yet written or dropped; any thread.
  std::atomic<std::size_t> pending_bytes_{0};
  bool writing_ = false;
  bool closing_ = false;
  std::atomic<bool> closing_flag_{false};  // closing_, readable from any thread
  std::optional<websocket::close_reason> close_reason_;
  std::size_t wake_at_ = 0;
  std::function<void()> wake_;  // WhenQueuedAtMost's callback, not yet called
};

}  // namespace

net::awaitable<void> RunWebSocket(const std::shared_ptr<ServerState>& state, TlsStream& stream,
                                  beast::flat_buffer& buffer,
                                  http::request<http::string_body>& upgrade, api::Request& request,
                                  const api::Route& route, std::weak_ptr<Drainable>& websocket) {
  auto session = std::make_shared<WebSocketSession>(state, std::move(stream));
  websocket = session;
  co_await session->Run(buffer, upgrade, request, route);
}

}  // namespace cw::transport::detail
