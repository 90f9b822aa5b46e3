// Limits that protect the server from abusive clients: body and header size,
// slow clients, ambiguous framing, connection count and idle keep-alive.

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include "support/https_client.hpp"
#include "support/server_process.hpp"

namespace cw::testing {
namespace {

using namespace std::chrono_literals;

ServerProcess::Options WithEnv(std::map<std::string, std::string> env) {
  env["CAREWIRE_DIAGNOSTICS_WRITE_PROBE"] = "true";
  return {.env = std::move(env)};
}

TEST(LimitsTest, TenMegabyteBodyIs413) {
  ServerProcess server(WithEnv({}));
  const std::string body(10 << 20, 'x');
  const auto r = Fetch(server.port(), "POST", "/api/v1/diagnostics/write-probe", body);
  EXPECT_EQ(r.status, 413);
  EXPECT_NE(r.body.find("payload_too_large"), std::string::npos);
  EXPECT_FALSE(r.keep_alive);

  // Refused on the header alone, before any of the body is sent.
  HttpsConnection c(server.port());
  c.WriteRaw(
      "POST /api/v1/diagnostics/write-probe HTTP/1.1\r\nHost: x\r\n"
      "Content-Type: application/json\r\nContent-Length: 10485760\r\n\r\n");
  EXPECT_EQ(c.ReadResponse().status, 413);

  // A chunked body is counted as it arrives.
  HttpsConnection chunked(server.port());
  std::string req =
      "POST /api/v1/diagnostics/write-probe HTTP/1.1\r\nHost: x\r\n"
      "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
  const std::string chunk(1 << 20, 'x');
  char size[16];
  std::snprintf(size, sizeof size, "%zx\r\n", chunk.size());
  for (int i = 0; i < 2; ++i) req += size + chunk + "\r\n";
  chunked.WriteRaw(req);
  EXPECT_EQ(chunked.ReadResponse().status, 413);
  EXPECT_EQ(server.Stop(SIGTERM), 0);
}

TEST(LimitsTest, HugeHeaderIs431) {
  ServerProcess server(WithEnv({}));
  const auto r =
      Fetch(server.port(), "GET", "/healthz", "", {{"x-filler", std::string(32 << 10, 'a')}});
  EXPECT_EQ(r.status, 431);
  EXPECT_NE(r.body.find("headers_too_large"), std::string::npos);
}

TEST(LimitsTest, ContentLengthWithTransferEncodingIs400) {
  ServerProcess server(WithEnv({}));
  HttpsConnection c(server.port());
  c.WriteRaw(
      "POST /api/v1/diagnostics/write-probe HTTP/1.1\r\nHost: x\r\n"
      "Content-Type: application/json\r\nContent-Length: 2\r\n"
      "Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n");
  const auto r = c.ReadResponse();
  EXPECT_EQ(r.status, 400);
  EXPECT_FALSE(r.keep_alive);
  EXPECT_TRUE(c.WaitClosed(3s));
}

TEST(LimitsTest, GarbageRequestLineIs400AndCloses) {
  ServerProcess server(WithEnv({}));
  for (const char* raw :
       {"GARBAGE\r\n\r\n", "GET /healthz HTTP/9.9\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nBad Header\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        // CR/LF smuggling inside a header, a NUL in the target.
        "GET /healthz HTTP/1.1\r\nHost: x\rInjected: 1\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nHost: x\nInjected: 1\r\n\r\n",
        "GET /hea\x01lthz HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nHo st: x\r\n\r\n"}) {
    HttpsConnection c(server.port());
    c.WriteRaw(raw);
    const auto r = c.ReadResponse();
    EXPECT_EQ(r.status, 400) << raw;
    EXPECT_TRUE(c.WaitClosed(3s)) << raw;
  }
  EXPECT_EQ(Fetch(server.port(), "GET", "/healthz").status, 200);
}

TEST(LimitsTest, SlowlorisIsCutOffWhileOthersAreServed) {
  ServerProcess server(WithEnv({{"CAREWIRE_LIMITS_HEADER_TIMEOUT_MS", "1000"}}));
  std::vector<std::unique_ptr<HttpsConnection>> slow;
  for (int i = 0; i < 8; ++i) {
    slow.push_back(std::make_unique<HttpsConnection>(server.port()));
    slow.back()->WriteRaw("GET /healthz HTTP/1.1\r\n");
  }
  const auto start = std::chrono::steady_clock::now();
  // Trickle a header byte every 200 ms: each byte is "progress", but the
  // header as a whole must arrive within the header timeout.
  bool all_closed = false;
  std::vector<bool> closed(slow.size(), false);
  while (!all_closed && std::chrono::steady_clock::now() - start < 5s) {
    EXPECT_EQ(Fetch(server.port(), "GET", "/healthz").status, 200);
    all_closed = true;
    for (std::size_t i = 0; i < slow.size(); ++i) {
      if (closed[i]) continue;
      try {
        slow[i]->WriteRaw("X");
        closed[i] = slow[i]->WaitClosed(200ms);
      } catch (const std::exception&) {
        closed[i] = true;
      }
      all_closed = all_closed && closed[i];
    }
  }
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_TRUE(all_closed);
  EXPECT_LT(elapsed, 4s);
  EXPECT_EQ(Fetch(server.port(), "GET", "/healthz").status, 200);
}

TEST(LimitsTest, IdleKeepAliveConnectionIsClosed) {
  ServerProcess server(WithEnv({{"CAREWIRE_LIMITS_IDLE_TIMEOUT_MS", "300"}}));
  HttpsConnection c(server.port());
  EXPECT_EQ(c.Send("GET", "/healthz").status, 200);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(c.WaitClosed(5s));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
}

TEST(LimitsTest, SilentConnectionWithoutHandshakeIsClosed) {
  ServerProcess server(WithEnv({{"CAREWIRE_LIMITS_HANDSHAKE_TIMEOUT_MS", "300"}}));
  // A raw TCP connection that never starts TLS.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(server.port());
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  const auto start = std::chrono::steady_clock::now();
  char b;
  EXPECT_LE(::read(fd, &b, 1), 0);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
  ::close(fd);
}

TEST(LimitsTest, ConnectionsBeyondTheLimitAreClosed) {
  ServerProcess server(WithEnv({{"CAREWIRE_LIMITS_MAX_CONNECTIONS", "4"}}));
  std::vector<std::unique_ptr<HttpsConnection>> held;
  for (int i = 0; i < 4; ++i) {
    held.push_back(std::make_unique<HttpsConnection>(server.port()));
    ASSERT_EQ(held.back()->Send("GET", "/healthz").status, 200);
  }
  EXPECT_FALSE(TlsHandshakeSucceeds(server.port(), {}));
  held.pop_back();
  // The slot is freed once the server sees the close.
  bool served = false;
  for (int i = 0; i < 50 && !served; ++i) {
    std::this_thread::sleep_for(20ms);
    served = TlsHandshakeSucceeds(server.port(), {});
  }
  EXPECT_TRUE(served);
}

}  // namespace
}  // namespace cw::testing
