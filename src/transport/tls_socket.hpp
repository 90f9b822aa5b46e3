#pragma once

// Internal to transport/: a TLS stream that runs OpenSSL directly on the
// TCP socket's descriptor, for Beast's HTTP and WebSocket code.
//
// Asio's ssl::stream puts OpenSSL behind a BIO pair and copies every record
// through buffers of its own: four 17 KiB buffers per connection, held for
// the connection's whole life, which made up most of an idle WebSocket's
// memory. Here OpenSSL reads and writes the non-blocking socket itself; with
// SSL_MODE_RELEASE_BUFFERS an idle connection holds no record buffers at all,
// and each record is written without the extra copies. When OpenSSL would
// block, the operation waits for the socket to become readable or writable
// (async_wait) and tries again.
//
// One read and one write may be outstanding at once (Beast's WebSocket does
// that); every operation of one connection runs on its strand, so OpenSSL is
// never entered from two threads for the same connection.

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <boost/asio/async_result.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/compose.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/stream_base.hpp>
#include <boost/beast/core/role.hpp>
#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

namespace cw::transport::detail {

class TlsSocket {
 public:
  using tcp = boost::asio::ip::tcp;
  using executor_type = tcp::socket::executor_type;
  using next_layer_type = tcp::socket;
  using lowest_layer_type = tcp::socket;
  using error_code = boost::system::error_code;

  // Takes the accepted socket; `ctx` configures the server side.
  TlsSocket(tcp::socket socket, SSL_CTX* ctx);
  ~TlsSocket();
  TlsSocket(TlsSocket&& other) noexcept;
  TlsSocket& operator=(TlsSocket&&) = delete;
  TlsSocket(const TlsSocket&) = delete;

  executor_type get_executor() { return socket_.get_executor(); }
  tcp::socket& next_layer() { return socket_; }
  tcp::socket& lowest_layer() { return socket_; }
  SSL* native_handle() { return ssl_; }

  template <class Token>
  auto async_handshake(boost::asio::ssl::stream_base::handshake_type, Token&& token) {
    return Start<void(error_code)>(Op<false>{this, Kind::kHandshake}, std::forward<Token>(token));
  }

  // Sends close_notify (it does not wait for the peer's).
  template <class Token>
  auto async_shutdown(Token&& token) {
    return Start<void(error_code)>(Op<false>{this, Kind::kShutdown}, std::forward<Token>(token));
  }

  template <class MutableBuffers, class Token>
  auto async_read_some(const MutableBuffers& buffers, Token&& token) {
    Op<true> op{this, Kind::kRead};
    for (auto it = boost::asio::buffer_sequence_begin(buffers);
         it != boost::asio::buffer_sequence_end(buffers); ++it) {
      const boost::asio::mutable_buffer b(*it);
      if (b.size() == 0) continue;
      op.read_to = b;
      break;
    }
    return Start<void(error_code, std::size_t)>(std::move(op), std::forward<Token>(token));
  }

  // Writes up to one record's worth. Several small buffers (a frame header
  // and its payload, an HTTP header and body) are gathered into one record,
  // so they leave in one write.
  template <class ConstBuffers, class Token>
  auto async_write_some(const ConstBuffers& buffers, Token&& token) {
    Op<true> op{this, Kind::kWrite};
    std::size_t total = 0;
    int count = 0;
    for (auto it = boost::asio::buffer_sequence_begin(buffers);
         it != boost::asio::buffer_sequence_end(buffers); ++it) {
      const boost::asio::const_buffer b(*it);
      if (b.size() == 0) continue;
      if (count++ == 0) op.write_from = b;
      total += b.size();
    }
    if (count > 1 && total <= kGatherBytes) {
      op.gathered.reserve(total);
      for (auto it = boost::asio::buffer_sequence_begin(buffers);
           it != boost::asio::buffer_sequence_end(buffers); ++it) {
        const boost::asio::const_buffer b(*it);
        op.gathered.append(static_cast<const char*>(b.data()), b.size());
      }
    }
    return Start<void(error_code, std::size_t)>(std::move(op), std::forward<Token>(token));
  }

 private:
  // Buffers totalling at most this much are gathered into one record.
  static constexpr std::size_t kGatherBytes = 16 << 10;

  enum class Kind { kHandshake, kRead, kWrite, kShutdown };

  // One operation: calls OpenSSL, and when it would block, waits for the
  // socket and calls it again. Never completes inline, so a read loop over
  // data OpenSSL already holds cannot recurse without bound. kWithSize: the
  // completion also carries the bytes moved (reads and writes).
  template <bool kWithSize>
  struct Op {
    TlsSocket* s;
    Kind kind;
    boost::asio::mutable_buffer read_to;
    boost::asio::const_buffer write_from;
    std::string gathered;  // several small buffers, as one
    bool waited = false;

    template <class Self>
    void operator()(Self& self, error_code ec = {}) {
      if (ec) return Complete(self, ec, 0);
      // Once the socket is closed its descriptor number may already belong
      // to another connection or file: OpenSSL must not touch it again.
      if (!s->socket_.is_open()) return Complete(self, boost::asio::error::bad_descriptor, 0);
      std::size_t n = 0;
      ERR_clear_error();
      int rc = 0;
      switch (kind) {
        case Kind::kHandshake:
          rc = SSL_do_handshake(s->ssl_);
          break;
        case Kind::kRead:
          if (read_to.size() == 0) return Complete(self, {}, 0);
          rc = SSL_read_ex(s->ssl_, read_to.data(), read_to.size(), &n);
          break;
        case Kind::kWrite: {
          const void* data = gathered.empty() ? write_from.data() : gathered.data();
          const std::size_t size = gathered.empty() ? write_from.size() : gathered.size();
          if (size == 0) return Complete(self, {}, 0);
          rc = SSL_write_ex(s->ssl_, data, size, &n);
          break;
        }
        case Kind::kShutdown:
          rc = SSL_shutdown(s->ssl_);
          // 0: our close_notify is sent; the peer's is not awaited.
          if (rc >= 0) return Complete(self, {}, 0);
          break;
      }
      if (rc == 1) return Complete(self, {}, n);
      const int error = SSL_get_error(s->ssl_, rc);
      if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) {
        if (kind == Kind::kShutdown && error == SSL_ERROR_WANT_READ) {
          return Complete(self, {}, 0);
        }
        waited = true;
        s->socket_.async_wait(
            error == SSL_ERROR_WANT_READ ? tcp::socket::wait_read : tcp::socket::wait_write,
            std::move(self));
        return;
      }
      Complete(self, ErrorFor(error), 0);
    }

    template <class Self>
    void Complete(Self& self, error_code ec, std::size_t n) {
      // The gathered copy is plaintext (a response, a frame).
      if (!gathered.empty()) OPENSSL_cleanse(gathered.data(), gathered.size());
      if (waited) return Finish(self, ec, n);
      // Nothing was waited for: complete through the executor rather than
      // inside the caller's initiating call.
      auto executor = s->socket_.get_executor();
      boost::asio::post(executor, [self = std::move(self), ec, n]() mutable {
        Finish(self, ec, n);
      });
    }

    template <class Self>
    static void Finish(Self& self, error_code ec, std::size_t n) {
      if constexpr (kWithSize) {
        self.complete(ec, n);
      } else {
        self.complete(ec);
      }
    }
  };

  template <class Signature, class Operation, class Token>
  auto Start(Operation op, Token&& token) {
    return boost::asio::async_compose<Token, Signature>(std::move(op), token, socket_);
  }

  // The error for an OpenSSL failure: eof for the peer's close_notify,
  // stream_truncated for a peer gone without one, else the OpenSSL or
  // system error.
  static error_code ErrorFor(int ssl_error);

  tcp::socket socket_;
  SSL* ssl_ = nullptr;
};

// WebSocket closing: Beast finds these by argument-dependent lookup.
template <class Handler>
void async_teardown(boost::beast::role_type, TlsSocket& socket, Handler&& handler) {
  socket.async_shutdown(std::forward<Handler>(handler));
}
void teardown(boost::beast::role_type, TlsSocket& socket, boost::system::error_code& ec);

}  // namespace cw::transport::detail
