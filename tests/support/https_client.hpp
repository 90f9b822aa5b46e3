#pragma once

// A small blocking HTTPS and WebSocket client for integration tests. It does
// not verify the server's certificate (tests run against a self-signed one)
// and every read is bounded by a socket timeout, so a test cannot hang on a
// silent server.

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace cw::testing {

struct HttpResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // lowercase names
  std::string body;
  bool keep_alive = false;

  std::string Header(const std::string& lowercase_name) const;
};

struct TlsOptions {
  // 0: any. Otherwise e.g. TLS1_VERSION, TLS1_1_VERSION, TLS1_2_VERSION.
  int min_version = 0;
  int max_version = 0;
  std::string cipher_list;  // TLS 1.2 ciphers to offer; empty for defaults
};

// One TLS connection that may carry several requests (keep-alive).
class HttpsConnection {
 public:
  explicit HttpsConnection(std::uint16_t port, TlsOptions tls = {},
                           std::chrono::milliseconds timeout = std::chrono::seconds(10));
  ~HttpsConnection();

  HttpResponse Send(const std::string& method, const std::string& target,
                    const std::string& body = "",
                    const std::vector<std::pair<std::string, std::string>>& headers = {});

  // Writes bytes as they are, for malformed or slow requests.
  void WriteRaw(const std::string& bytes);
  // Reads one response; throws on timeout or close.
  HttpResponse ReadResponse();
  // True when the server closes the connection within `within`.
  bool WaitClosed(std::chrono::milliseconds within);

  std::string TlsVersion() const;
  // SHA-256 of the server's certificate, colon-separated uppercase hex.
  std::string PeerCertificateSha256() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// One request on a new connection.
HttpResponse Fetch(std::uint16_t port, const std::string& method, const std::string& target,
                   const std::string& body = "",
                   const std::vector<std::pair<std::string, std::string>>& headers = {});

// True when a TLS handshake with these options succeeds.
bool TlsHandshakeSucceeds(std::uint16_t port, const TlsOptions& tls);

class WebSocketClient {
 public:
  WebSocketClient(std::uint16_t port, const std::string& target,
                  std::chrono::milliseconds timeout = std::chrono::seconds(10));
  ~WebSocketClient();

  void SendText(const std::string& text);
  void SendBinary(const std::string& bytes);
  // The next text message, or nullopt when the server closed the connection
  // (close_code() then tells why).
  std::optional<std::string> ReadText();
  int close_code() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cw::testing
