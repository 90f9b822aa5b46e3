#include "support/https_client.hpp"

#include <sys/socket.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <stdexcept>

namespace cw::testing {
namespace {

namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
namespace beast = boost::beast;
namespace http = boost::beast::http;
namespace websocket = boost::beast::websocket;
using tcp = net::ip::tcp;

std::unique_ptr<ssl::context> MakeContext(const TlsOptions& tls) {
  auto ctx = std::make_unique<ssl::context>(ssl::context::tls_client);
  ctx->set_verify_mode(ssl::verify_none);
  SSL_CTX* c = ctx->native_handle();
  // Allow old protocols here so tests can prove the server refuses them.
  SSL_CTX_set_security_level(c, 0);
  SSL_CTX_set_min_proto_version(c, tls.min_version);
  SSL_CTX_set_max_proto_version(c, tls.max_version);
  if (!tls.cipher_list.empty()) SSL_CTX_set_cipher_list(c, tls.cipher_list.c_str());
  return ctx;
}

void SetTimeouts(tcp::socket& socket, std::chrono::milliseconds timeout) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
  setsockopt(socket.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(socket.native_handle(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

HttpResponse Convert(http::response<http::string_body>& msg) {
  HttpResponse r;
  r.status = static_cast<int>(msg.result_int());
  for (const auto& f : msg) {
    std::string name(f.name_string());
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    r.headers[name] = std::string(f.value());
  }
  r.body = std::move(msg.body());
  r.keep_alive = msg.keep_alive();
  return r;
}

}  // namespace

std::string HttpResponse::Header(const std::string& lowercase_name) const {
  auto it = headers.find(lowercase_name);
  return it == headers.end() ? "" : it->second;
}

struct HttpsConnection::Impl {
  net::io_context ioc;
  std::unique_ptr<ssl::context> ctx;
  std::unique_ptr<ssl::stream<tcp::socket>> stream;
  beast::flat_buffer buffer;
};

HttpsConnection::HttpsConnection(std::uint16_t port, TlsOptions tls,
                                 std::chrono::milliseconds timeout)
    : impl_(std::make_unique<Impl>()) {
  impl_->ctx = MakeContext(tls);
  impl_->stream = std::make_unique<ssl::stream<tcp::socket>>(impl_->ioc, *impl_->ctx);
  auto& sock = impl_->stream->next_layer();
  sock.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
  // A request's header and body leave as two TLS records; with Nagle's
  // algorithm the body would wait for the server's delayed ACK (40 ms).
  sock.set_option(tcp::no_delay(true));
  SetTimeouts(sock, timeout);
  impl_->stream->handshake(ssl::stream_base::client);
}

HttpsConnection::~HttpsConnection() {
  beast::error_code ec;
  impl_->stream->next_layer().close(ec);
}

HttpResponse HttpsConnection::Send(
    const std::string& method, const std::string& target, const std::string& body,
    const std::vector<std::pair<std::string, std::string>>& headers) {
  http::request<http::string_body> req{http::string_to_verb(method), target, 11};
  req.set(http::field::host, "localhost");
  bool has_type = false;
  for (const auto& [k, v] : headers) {
    req.set(k, v);
    has_type = has_type || beast::iequals(k, "content-type");
  }
  if (!body.empty() && !has_type) req.set(http::field::content_type, "application/json");
  req.body() = body;
  req.prepare_payload();
  req.keep_alive(true);
  http::write(*impl_->stream, req);
  return ReadResponse();
}

void HttpsConnection::WriteRaw(const std::string& bytes) {
  net::write(*impl_->stream, net::buffer(bytes));
}

HttpResponse HttpsConnection::ReadResponse() {
  http::response_parser<http::string_body> parser;
  parser.body_limit(64 << 20);
  http::read(*impl_->stream, impl_->buffer, parser);
  return Convert(parser.get());
}

bool HttpsConnection::WaitClosed(std::chrono::milliseconds within) {
  SetTimeouts(impl_->stream->next_layer(), within);
  char byte;
  beast::error_code ec;
  // Any error other than a timeout means the server closed the connection.
  for (;;) {
    impl_->stream->read_some(net::buffer(&byte, 1), ec);
    if (!ec) continue;
    return ec != net::error::would_block && ec != net::error::try_again &&
           ec != net::error::timed_out;
  }
}

std::string HttpsConnection::TlsVersion() const {
  return SSL_get_version(impl_->stream->native_handle());
}

std::string HttpsConnection::PeerCertificateSha256() const {
  X509* cert = SSL_get1_peer_certificate(impl_->stream->native_handle());
  if (cert == nullptr) return "";
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  X509_digest(cert, EVP_sha256(), md, &len);
  X509_free(cert);
  std::string out;
  char hex[4];
  for (unsigned i = 0; i < len; ++i) {
    std::snprintf(hex, sizeof hex, i ? ":%02X" : "%02X", md[i]);
    out += hex;
  }
  return out;
}

HttpResponse Fetch(std::uint16_t port, const std::string& method, const std::string& target,
                   const std::string& body,
                   const std::vector<std::pair<std::string, std::string>>& headers) {
  HttpsConnection c(port);
  return c.Send(method, target, body, headers);
}

bool TlsHandshakeSucceeds(std::uint16_t port, const TlsOptions& tls) {
  try {
    HttpsConnection c(port, tls);
    return true;
  } catch (const std::exception&) {
    return false;
  }
}

struct WebSocketClient::Impl {
  net::io_context ioc;
  std::unique_ptr<ssl::context> ctx;
  std::unique_ptr<websocket::stream<ssl::stream<tcp::socket>>> ws;
  int close_code = 0;
};

WebSocketClient::WebSocketClient(std::uint16_t port, const std::string& target,
                                 std::chrono::milliseconds timeout)
    : impl_(std::make_unique<Impl>()) {
  impl_->ctx = MakeContext({});
  impl_->ws =
      std::make_unique<websocket::stream<ssl::stream<tcp::socket>>>(impl_->ioc, *impl_->ctx);
  auto& sock = beast::get_lowest_layer(*impl_->ws);
  sock.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
  // A request's header and body leave as two TLS records; with Nagle's
  // algorithm the body would wait for the server's delayed ACK (40 ms).
  sock.set_option(tcp::no_delay(true));
  SetTimeouts(sock, timeout);
  impl_->ws->next_layer().handshake(ssl::stream_base::client);
  impl_->ws->handshake("localhost", target);
}

WebSocketClient::~WebSocketClient() {
  beast::error_code ec;
  beast::get_lowest_layer(*impl_->ws).close(ec);
}

void WebSocketClient::SendText(const std::string& text) {
  impl_->ws->text(true);
  impl_->ws->write(net::buffer(text));
}

void WebSocketClient::SendBinary(const std::string& bytes) {
  impl_->ws->binary(true);
  impl_->ws->write(net::buffer(bytes));
}

std::optional<std::string> WebSocketClient::ReadText() {
  beast::flat_buffer buf;
  beast::error_code ec;
  impl_->ws->read(buf, ec);
  if (ec) {
    impl_->close_code = impl_->ws->reason().code;
    return std::nullopt;
  }
  return beast::buffers_to_string(buf.data());
}

int WebSocketClient::close_code() const { return impl_->close_code; }

}  // namespace cw::testing
