// The server as a client sees it: health, errors, headers, JSON input, TLS
// versions and the WebSocket path, against the real binary over TLS.

#include <gtest/gtest.h>
#include <openssl/ssl.h>

#include <boost/json/parse.hpp>

#include "support/https_client.hpp"
#include "support/server_process.hpp"

namespace cw::testing {
namespace {

namespace json = boost::json;

const std::map<std::string, std::string> kProbeEnv = {{"CAREWIRE_DIAGNOSTICS_WRITE_PROBE", "true"}};

class ServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { server_ = new ServerProcess({.env = kProbeEnv}); }
  static void TearDownTestSuite() {
    EXPECT_EQ(server_->Stop(SIGTERM), 0) << server_->Stderr();
    delete server_;
  }
  static std::uint16_t port() { return server_->port(); }

  static void ExpectError(const HttpResponse& r, int status, const std::string& code) {
    EXPECT_EQ(r.status, status) << r.body;
    EXPECT_EQ(r.Header("content-type"), "application/json; charset=utf-8");
    const auto v = json::parse(r.body);
    EXPECT_EQ(v.at("error").at("code").as_string(), code) << r.body;
    EXPECT_FALSE(v.at("error").at("message").as_string().empty());
    EXPECT_EQ(v.at("error").at("request_id").as_string(), r.Header("x-request-id"));
  }

  static HttpResponse Probe(const std::string& body, const std::string& type = "application/json") {
    return Fetch(port(), "POST", "/api/v1/diagnostics/write-probe", body, {{"content-type", type}});
  }

  static ServerProcess* server_;
};

ServerProcess* ServerTest::server_ = nullptr;

TEST_F(ServerTest, HealthzAnswersOk) {
  const auto r = Fetch(port(), "GET", "/healthz");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(json::parse(r.body), json::parse(R"({"status":"ok"})"));
}

TEST_F(ServerTest, ReadyzAnswersReadyWhileTheDatabaseAnswers) {
  const auto r = Fetch(port(), "GET", "/readyz");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(json::parse(r.body), json::parse(R"({"status":"ready"})"));
}

TEST_F(ServerTest, EveryResponseCarriesTheSecurityHeaders) {
  for (const auto& r :
       {Fetch(port(), "GET", "/healthz"), Fetch(port(), "GET", "/nope"), Probe("{bad")}) {
    EXPECT_EQ(r.Header("x-request-id").size(), 32u);
    EXPECT_EQ(r.Header("strict-transport-security"), "max-age=63072000; includeSubDomains");
    EXPECT_EQ(r.Header("cache-control"), "no-store");
    EXPECT_EQ(r.Header("x-content-type-options"), "nosniff");
    EXPECT_EQ(r.Header("referrer-policy"), "no-referrer");
    const std::string csp = r.Header("content-security-policy");
    EXPECT_NE(csp.find("default-src 'none'"), std::string::npos);
    EXPECT_EQ(csp.find("unsafe-inline"), std::string::npos);
    EXPECT_EQ(r.Header("server"), "");
  }
}

TEST_F(ServerTest, RequestIdsAreUnique) {
  std::set<std::string> ids;
  for (int i = 0; i < 20; ++i) ids.insert(Fetch(port(), "GET", "/healthz").Header("x-request-id"));
  EXPECT_EQ(ids.size(), 20u);
}

TEST_F(ServerTest, KeepAliveCarriesManyRequests) {
  HttpsConnection c(port());
  for (int i = 0; i < 50; ++i) {
    const auto r = c.Send("GET", "/healthz");
    ASSERT_EQ(r.status, 200);
    ASSERT_TRUE(r.keep_alive);
  }
}

TEST_F(ServerTest, UnknownRouteIs404Json) {
  ExpectError(Fetch(port(), "GET", "/api/v1/nothing-here"), 404, "not_found");
  ExpectError(Fetch(port(), "GET", "/healthz/"), 404, "not_found");
  ExpectError(Fetch(port(), "GET", "/../../etc/passwd"), 404, "not_found");
  ExpectError(Fetch(port(), "GET", "/api/v1/..%2f..%2fetc%2fpasswd"), 404, "not_found");
}

TEST_F(ServerTest, WrongMethodIs405JsonWithAllow) {
  const auto r = Fetch(port(), "DELETE", "/healthz");
  ExpectError(r, 405, "method_not_allowed");
  EXPECT_EQ(r.Header("allow"), "GET");
  ExpectError(Fetch(port(), "GET", "/api/v1/diagnostics/write-probe"), 405, "method_not_allowed");
}

TEST_F(ServerTest, WriteProbeCommitsDurably) {
  const auto r = Probe(R"({"padding_bytes":200})");
  ASSERT_EQ(r.status, 201) << r.body;
  const auto v = json::parse(r.body);
  EXPECT_TRUE(v.at("durable").as_bool());
  EXPECT_FALSE(v.at("id").as_string().empty());
}

TEST_F(ServerTest, MalformedJsonIs400) {
  ExpectError(Probe("{"), 400, "bad_request");
  ExpectError(Probe("{\"padding_bytes\":1,}"), 400, "bad_request");
  ExpectError(Probe("not json"), 400, "bad_request");
  ExpectError(Probe("null"), 400, "bad_request");
  ExpectError(Probe("[]"), 400, "bad_request");
  ExpectError(Probe(""), 400, "bad_request");
}

TEST_F(ServerTest, DeeplyNestedJsonIs400) {
  const std::string deep = std::string(10'000, '[') + std::string(10'000, ']');
  ExpectError(Probe("{\"padding_bytes\":" + deep + "}"), 400, "bad_request");
  std::string objects;
  for (int i = 0; i < 10'000; ++i) objects += "{\"a\":";
  objects += "1" + std::string(10'000, '}');
  ExpectError(Probe(objects), 400, "bad_request");
}

TEST_F(ServerTest, InvalidUtf8AndLoneSurrogatesAre400) {
  ExpectError(Probe("{\"padding_bytes\":1,\"x\":\"\xc3\x28\"}"), 400, "bad_request");
  ExpectError(Probe("{\"\xff\":1}"), 400, "bad_request");
  ExpectError(Probe(R"({"x":"\udead"})"), 400, "bad_request");
  ExpectError(Probe(std::string("{\"x\":\"a\0b\"}", 11)), 400, "bad_request");
}

TEST_F(ServerTest, WrongTypesAndNumericEdgesAre400) {
  for (const char* body :
       {R"({"padding_bytes":"10"})", R"({"padding_bytes":true})", R"({"padding_bytes":null})",
        R"({"padding_bytes":[1]})", R"({"padding_bytes":-1})", R"({"padding_bytes":4097})",
        R"({"padding_bytes":2147483648})", R"({"padding_bytes":9007199254740993})",
        R"({"padding_bytes":9223372036854775808})", R"({"padding_bytes":1.5})",
        R"({"padding_bytes":1e2})", R"({"padding_bytes":NaN})", R"({"padding_bytes":1e999})",
        R"({"padding_bytes":1,"padding_bytes":2})", R"({"other":1})"}) {
    ExpectError(Probe(body), 400, "bad_request");
  }
  EXPECT_EQ(Probe(R"({"padding_bytes":0})").status, 201);
  EXPECT_EQ(Probe("{}").status, 201);
}

TEST_F(ServerTest, WrongContentTypeIs415) {
  ExpectError(Probe("{}", "text/plain"), 415, "unsupported_media_type");
  ExpectError(Probe("{}", "application/x-www-form-urlencoded"), 415, "unsupported_media_type");
}

TEST_F(ServerTest, ErrorsNeverEchoInput) {
  const std::string canary = "PHI-CANARY-Jane-Doe-1970-01-01";
  for (const auto& r : {Probe("{\"" + canary + "\":1}"), Probe("{\"x\":\"" + canary),
                        Fetch(port(), "GET", "/api/v1/" + canary),
                        Fetch(port(), "GET", "/healthz?name=" + canary)}) {
    EXPECT_EQ(r.body.find(canary), std::string::npos) << r.body;
  }
  EXPECT_EQ(server_->Stderr().find(canary), std::string::npos);
  EXPECT_EQ(server_->Stdout().find(canary), std::string::npos);
}

TEST_F(ServerTest, LogsAreJsonLinesWithRouteTemplates) {
  Fetch(port(), "GET", "/healthz?q=secret-query");
  // The log line for a request is written after its response; wait briefly.
  std::string err;
  for (int i = 0; i < 100 && err.find("secret") == std::string::npos &&
                  err.find("\"route\":\"/healthz\"") == std::string::npos;
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    err = server_->Stderr();
  }
  EXPECT_EQ(err.find("secret-query"), std::string::npos);
  std::istringstream lines(err);
  std::string line;
  int requests = 0;
  while (std::getline(lines, line)) {
    const auto v = json::parse(line);  // throws if any line is not JSON
    ASSERT_TRUE(v.as_object().contains("time"));
    ASSERT_TRUE(v.as_object().contains("level"));
    if (v.at("event").as_string() == "http.request") {
      ++requests;
      EXPECT_TRUE(v.as_object().contains("request_id"));
      EXPECT_TRUE(v.as_object().contains("status"));
      EXPECT_TRUE(v.as_object().contains("latency_us"));
      const auto route = v.at("route").as_string();
      EXPECT_TRUE(route == "unmatched" || route.starts_with("/")) << line;
    }
  }
  EXPECT_GT(requests, 0);
}

TEST_F(ServerTest, MetricsCountRequestsByRouteTemplate) {
  Fetch(port(), "GET", "/healthz");
  Probe("{}");
  const auto r = Fetch(port(), "GET", "/metrics");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.Header("content-type").rfind("text/plain", 0), 0u);
  EXPECT_NE(
      r.body.find(R"(carewire_http_requests_total{route="/healthz",method="GET",status="200"})"),
      std::string::npos)
      << r.body;
  EXPECT_NE(r.body.find("carewire_http_request_duration_seconds_bucket{route=\"/healthz\",le="),
            std::string::npos);
  EXPECT_NE(r.body.find("carewire_storage_commit_batch_size_bucket"), std::string::npos);
  EXPECT_NE(r.body.find("carewire_http_connections_open"), std::string::npos);
}

TEST_F(ServerTest, OnlyTls12And13AreAccepted) {
  EXPECT_FALSE(
      TlsHandshakeSucceeds(port(), {.min_version = TLS1_VERSION, .max_version = TLS1_VERSION}));
  EXPECT_FALSE(
      TlsHandshakeSucceeds(port(), {.min_version = TLS1_1_VERSION, .max_version = TLS1_1_VERSION}));
  EXPECT_TRUE(
      TlsHandshakeSucceeds(port(), {.min_version = TLS1_2_VERSION, .max_version = TLS1_2_VERSION}));
  EXPECT_TRUE(
      TlsHandshakeSucceeds(port(), {.min_version = TLS1_3_VERSION, .max_version = TLS1_3_VERSION}));
  HttpsConnection c(port());
  EXPECT_EQ(c.TlsVersion(), "TLSv1.3");
}

TEST_F(ServerTest, WeakTls12SuitesAreRefused) {
  for (const char* weak :
       {"AES128-SHA", "AES256-GCM-SHA384", "ECDHE-RSA-AES128-SHA", "ECDHE-ECDSA-AES128-SHA",
        "DES-CBC3-SHA", "NULL-SHA256", "ECDHE-ECDSA-AES128-SHA256"}) {
    EXPECT_FALSE(TlsHandshakeSucceeds(
        port(),
        {.min_version = TLS1_2_VERSION, .max_version = TLS1_2_VERSION, .cipher_list = weak}))
        << weak;
  }
  EXPECT_TRUE(TlsHandshakeSucceeds(port(), {.min_version = TLS1_2_VERSION,
                                            .max_version = TLS1_2_VERSION,
                                            .cipher_list = "ECDHE-ECDSA-AES128-GCM-SHA256"}));
}

TEST_F(ServerTest, WebSocketAnswersPingAndRefusesBadFrames) {
  WebSocketClient ws(port(), "/api/v1/events");
  ws.SendText(R"({"type":"ping"})");
  EXPECT_EQ(ws.ReadText(), std::optional<std::string>(R"({"type":"pong"})"));
  ws.SendText("{not json");
  auto err = ws.ReadText();
  ASSERT_TRUE(err);
  EXPECT_EQ(json::parse(*err).at("error").at("code").as_string(), "bad_request");
  ws.SendText(R"({"type":"ping","type":"auth"})");
  err = ws.ReadText();
  ASSERT_TRUE(err);
  EXPECT_EQ(json::parse(*err).at("type").as_string(), "error");
  // Still usable after bad frames.
  ws.SendText(R"({"type":"ping"})");
  EXPECT_EQ(ws.ReadText(), std::optional<std::string>(R"({"type":"pong"})"));
}

TEST_F(ServerTest, WebSocketRefusesAnInvalidTokenWith4401) {
  WebSocketClient ws(port(), "/api/v1/events");
  ws.SendText(R"({"type":"auth","token":"not-a-token"})");
  EXPECT_EQ(ws.ReadText(), std::nullopt);
  EXPECT_EQ(ws.close_code(), 4401);
}

TEST_F(ServerTest, WebSocketRefusesBinaryFrames) {
  WebSocketClient ws(port(), "/api/v1/events");
  ws.SendBinary("\x01\x02");
  EXPECT_EQ(ws.ReadText(), std::nullopt);
  EXPECT_EQ(ws.close_code(), 1003);
}

TEST_F(ServerTest, EventsWithoutUpgradeIs426) {
  ExpectError(Fetch(port(), "GET", "/api/v1/events"), 426, "upgrade_required");
}

}  // namespace
}  // namespace cw::testing
