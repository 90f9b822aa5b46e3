// The command line an operator uses: configuration checks and precedence,
// migrations, refusing a newer schema, and the certificate fingerprint.

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include <fstream>

#include "support/https_client.hpp"
#include "support/server_process.hpp"

namespace cw::testing {
namespace {

std::string WriteFile(const TempDir& dir, const std::string& name, const std::string& text) {
  const auto path = dir.path() / name;
  std::ofstream(path) << text;
  return path.string();
}

TEST(CliTest, ConfigCheckAcceptsAValidFile) {
  TempDir dir;
  const auto file = WriteFile(dir, "ok.toml", R"(
[server]
listen = "127.0.0.1:9443"
[limits]
max_body_bytes = 2097152
[diagnostics]
write_probe = true
)");
  const auto r = RunCarewire({"config", "check", "--config", file});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "configuration ok\n");
}

TEST(CliTest, ConfigCheckNamesTheBadKey) {
  TempDir dir;
  struct Case {
    std::string toml;
    std::string key;
  };
  for (const Case& c : std::vector<Case>{
           {"[server]\nlisen = \"x:1\"\n", "server.lisen"},
           {"[limits]\nmax_body_bytes = \"big\"\n", "limits.max_body_bytes"},
           {"[limits]\nmax_body_bytes = -1\n", "limits.max_body_bytes"},
           {"[limits]\nmax_connections = 9223372036854775807\n", "limits.max_connections"},
           {"[log]\nlevel = \"loud\"\n", "log.level"},
           {"[diagnostics]\nwrite_probe = \"yes\"\n", "diagnostics.write_probe"},
           {"[tls]\ncert_file = \"/x.pem\"\n", "tls.key_file"},
           {"[nonsense]\nx = 1\n", "nonsense.x"},
       }) {
    const auto file = WriteFile(dir, "bad.toml", c.toml);
    const auto check = RunCarewire({"config", "check", "--config", file});
    EXPECT_EQ(check.exit_code, 2) << c.toml;
    EXPECT_NE(check.err.find(c.key), std::string::npos) << check.err;
    // The server refuses to start with the same message.
    const auto serve = RunCarewire({"serve", "--config", file, "--data-dir",
                                    (dir.path() / "d").string(), "--listen", "127.0.0.1:0"});
    EXPECT_EQ(serve.exit_code, 2) << c.toml;
    EXPECT_EQ(serve.err, check.err);
  }
}

TEST(CliTest, ConfigFileSyntaxErrorIsExit2) {
  TempDir dir;
  const auto file = WriteFile(dir, "broken.toml", "[server\nlisten = 1\n");
  const auto r = RunCarewire({"config", "check", "--config", file});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("line 1"), std::string::npos) << r.err;
}

TEST(CliTest, UnknownEnvironmentVariableIsAnError) {
  const auto r = RunCarewire({"config", "check"}, {{"CAREWIRE_LIMITS_MAX_BODYBYTES", "5"}});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("CAREWIRE_LIMITS_MAX_BODYBYTES"), std::string::npos) << r.err;
}

TEST(CliTest, FlagsBeatEnvironmentWhichBeatsTheFile) {
  TempDir dir;
  const auto file = WriteFile(dir, "c.toml",
                              "[server]\nlisten = \"127.0.0.1:1111\"\n"
                              "[limits]\nmax_body_bytes = 5000\nidle_timeout_ms = 7000\n");
  const auto r = RunCarewire(
      {"config", "show", "--config", file, "--listen", "127.0.0.1:3333"},
      {{"CAREWIRE_SERVER_LISTEN", "127.0.0.1:2222"}, {"CAREWIRE_LIMITS_MAX_BODY_BYTES", "6000"}});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("listen = \"127.0.0.1:3333\""), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("max_body_bytes = 6000"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("idle_timeout_ms = 7000"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("header_timeout_ms = 10000"), std::string::npos) << r.out;
}

TEST(CliTest, ConfigShowRoundTrips) {
  TempDir dir;
  const auto first = RunCarewire({"config", "show", "--listen", "127.0.0.1:4444"});
  ASSERT_EQ(first.exit_code, 0);
  const auto file = WriteFile(dir, "shown.toml", first.out);
  const auto second = RunCarewire({"config", "show", "--config", file});
  EXPECT_EQ(second.exit_code, 0) << second.err;
  EXPECT_EQ(second.out, first.out);
}

TEST(CliTest, MigrateReportsVersionsAndIsIdempotent) {
  TempDir dir;
  const std::string data = (dir.path() / "data").string();
  const auto first = RunCarewire({"migrate", "--data-dir", data});
  ASSERT_EQ(first.exit_code, 0) << first.err;
  EXPECT_EQ(first.out.rfind("schema version 0 -> ", 0), 0u) << first.out;
  const auto second = RunCarewire({"migrate", "--data-dir", data});
  ASSERT_EQ(second.exit_code, 0);
  const std::string to = first.out.substr(first.out.find("-> ") + 3);
  EXPECT_EQ(second.out, "schema version " + to.substr(0, to.size() - 1) + " -> " + to);
}

TEST(CliTest, ServerRefusesANewerSchema) {
  TempDir dir;
  const std::string data = (dir.path() / "data").string();
  ASSERT_EQ(RunCarewire({"migrate", "--data-dir", data}).exit_code, 0);
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((data + "/carewire.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "PRAGMA user_version = 9999", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  const auto r = RunCarewire({"serve", "--data-dir", data, "--listen", "127.0.0.1:0"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("newer"), std::string::npos) << r.err;
  EXPECT_EQ(r.out.find("listening"), std::string::npos);
}

TEST(CliTest, SelfSignedCertificateFingerprintIsPrintedAndStable) {
  TempDir dir;
  const std::string data = (dir.path() / "data").string();
  std::string first_fp;
  for (int i = 0; i < 2; ++i) {
    ServerProcess server({.data_dir = data});
    const std::string out = server.Stdout();
    const std::string prefix = "tls certificate sha256 fingerprint ";
    const auto at = out.find(prefix);
    ASSERT_NE(at, std::string::npos) << out;
    const std::string fp = out.substr(at + prefix.size(), 95);
    if (i == 0) {
      first_fp = fp;
      EXPECT_NE(out.find("(self-signed, created now)"), std::string::npos);
    } else {
      EXPECT_EQ(fp, first_fp);
      EXPECT_EQ(out.find("created now"), std::string::npos);
    }
    // The fingerprint is that of the certificate the server presents.
    HttpsConnection c(server.port());
    EXPECT_EQ(c.PeerCertificateSha256(), fp);
    EXPECT_EQ(server.Stop(SIGTERM), 0);
  }
}

TEST(CliTest, DataDirectoryIsPrivate) {
  TempDir dir;
  const std::string data = (dir.path() / "data").string();
  ServerProcess server({.data_dir = data});
  struct stat st {};
  ASSERT_EQ(::stat(data.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  ASSERT_EQ(::stat((data + "/tls/key.pem").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat((data + "/carewire.db").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0077, 0u);
}

}  // namespace
}  // namespace cw::testing
