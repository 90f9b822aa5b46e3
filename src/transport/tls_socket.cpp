#include "transport/tls_socket.hpp"

#include <stdexcept>

namespace cw::transport::detail {

TlsSocket::TlsSocket(tcp::socket socket, SSL_CTX* ctx) : socket_(std::move(socket)) {
  ssl_ = SSL_new(ctx);
  if (ssl_ == nullptr) throw std::bad_alloc();
  // Asio's sockets are non-blocking already; OpenSSL reads and writes the
  // descriptor and reports when it would block.
  error_code ignored;
  socket_.non_blocking(true, ignored);
  SSL_set_fd(ssl_, static_cast<int>(socket_.native_handle()));
  SSL_set_accept_state(ssl_);
}

TlsSocket::TlsSocket(TlsSocket&& other) noexcept
    : socket_(std::move(other.socket_)), ssl_(std::exchange(other.ssl_, nullptr)) {}

TlsSocket::~TlsSocket() {
  if (ssl_ != nullptr) SSL_free(ssl_);
}

TlsSocket::error_code TlsSocket::ErrorFor(int ssl_error) {
  namespace net = boost::asio;
  if (ssl_error == SSL_ERROR_ZERO_RETURN) return net::error::eof;
  const unsigned long queued = ERR_peek_error();
  if (ssl_error == SSL_ERROR_SYSCALL && queued == 0) {
    // The peer closed the connection without close_notify, or the socket
    // failed.
    if (errno == 0 || errno == EPIPE || errno == ECONNRESET) {
      return errno == ECONNRESET ? error_code(net::error::connection_reset)
                                 : error_code(net::ssl::error::stream_truncated);
    }
    return error_code(errno, boost::system::system_category());
  }
  if (ERR_GET_LIB(queued) == ERR_LIB_SSL &&
      ERR_GET_REASON(queued) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
    ERR_clear_error();
    return net::ssl::error::stream_truncated;
  }
  const unsigned long code = ERR_get_error();
  ERR_clear_error();
  return error_code(static_cast<int>(code), net::error::get_ssl_category());
}

void teardown(boost::beast::role_type, TlsSocket& socket, boost::system::error_code& ec) {
  ERR_clear_error();
  if (socket.next_layer().is_open()) SSL_shutdown(socket.native_handle());
  ERR_clear_error();
  ec = {};
}

}  // namespace cw::transport::detail
