#pragma once

// Internal to transport/: what the HTTP and WebSocket sessions share. This
// header includes Asio and Beast; nothing outside transport/ includes it.

#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <condition_variable>
#include <list>
#include <memory>
#include <mutex>

#include "api/router.hpp"
#include "core/config.hpp"
#include "core/metrics.hpp"
#include "transport/tls_socket.hpp"

namespace cw::transport::detail {

namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = boost::asio::ip::tcp;
using TlsStream = TlsSocket;

// Something that can be asked to wind down during shutdown. Drain() may be
// called from any thread; implementations post to their own strand.
class Drainable {
 public:
  virtual ~Drainable() = default;
  virtual void Drain() = 0;
};

// State shared by the listener and every connection.
struct ServerState {
  ServerState(const core::Config& config, const api::Router& router, metrics::Registry& metrics);

  const core::Config::Limits limits;
  const core::Config::Shutdown shutdown;
  const api::Router& router;
  metrics::Registry& metrics;

  std::atomic<bool> draining{false};
  // Requests to streamed routes (uploads) whose bodies are being read by
  // their handlers. Each holds about two pieces (2 MiB) while it is read, so
  // their number is capped: beyond kMaxStreamedBodies, 503.
  static constexpr int kMaxStreamedBodies = 32;
  std::atomic<int> streamed_bodies{0};

  metrics::Counter& connections_rejected;
  metrics::Counter& connections_timed_out;
  metrics::Counter& websocket_messages_in;
  metrics::Counter& websocket_slow_consumers;

  // Live connections, for draining. Register returns the handle to pass to
  // Unregister.
  using Handle = std::list<std::weak_ptr<Drainable>>::iterator;
  Handle Register(std::weak_ptr<Drainable> connection);
  void Unregister(Handle handle);
  int Count() const;
  // Calls Drain() on every live connection.
  void DrainAll();
  // Waits until no connection is open or the deadline passes; true if none is.
  bool WaitIdle(std::chrono::steady_clock::time_point deadline);

 private:
  mutable std::mutex mu_;
  std::condition_variable idle_;
  std::list<std::weak_ptr<Drainable>> live_;
  int count_ = 0;
};

// Runs an accepted WebSocket upgrade to completion: the handshake answer,
// then the message loop, until either side closes. Takes the TLS stream over
// (moving it out of `stream`) and stores the session in `websocket` so the
// owning HTTP session can forward Drain().
//
// Every parameter is a reference to the caller's coroutine frame, which
// outlives this call. GCC 12 may destroy by-value coroutine parameters and
// temporaries of a co_await expression twice, so coroutines here take none
// with a non-trivial destructor.
net::awaitable<void> RunWebSocket(const std::shared_ptr<ServerState>& state, TlsStream& stream,
                                  beast::flat_buffer& buffer,
                                  http::request<http::string_body>& upgrade, api::Request& request,
                                  const api::Route& route, std::weak_ptr<Drainable>& websocket);

}  // namespace cw::transport::detail
