#include "core/config.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/random.hpp"

namespace cw::core {
namespace {

namespace fs = std::filesystem;

class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("cw-config-" + RandomHex(8));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string File(const std::string& text) {
    const auto p = dir_ / "c.toml";
    std::ofstream(p) << text;
    return p.string();
  }
  // The key named by the ConfigError `sources` raise.
  static std::string BadKey(const ConfigSources& sources) {
    try {
      LoadConfig(sources);
    } catch (const ConfigError& e) {
      return e.key();
    }
    return "(no error)";
  }
  fs::path dir_;
};

TEST_F(ConfigTest, DefaultsWithoutSources) {
  const Config c = LoadConfig({});
  EXPECT_EQ(c.server.listen, "127.0.0.1:8443");
  EXPECT_EQ(c.limits.max_body_bytes, 1 << 20);
  EXPECT_FALSE(c.diagnostics.write_probe);
}

TEST_F(ConfigTest, PrecedenceIsFileThenEnvironmentThenFlags) {
  ConfigSources s;
  s.file =
      File("[server]\nlisten = \"127.0.0.1:1\"\nthreads = 3\n[limits]\nmax_body_bytes = 4096\n");
  s.environment = {"CAREWIRE_SERVER_LISTEN=127.0.0.1:2", "CAREWIRE_LIMITS_MAX_BODY_BYTES=8192",
                   "PATH=/bin", "CAREWIRE_CONFIG=ignored", "CAREWIRE_MASTER_KEY=ignored"};
  s.flags = {{"server.listen", "127.0.0.1:3"}};
  const Config c = LoadConfig(s);
  EXPECT_EQ(c.server.listen, "127.0.0.1:3");
  EXPECT_EQ(c.limits.max_body_bytes, 8192);
  EXPECT_EQ(c.server.threads, 3);
}

TEST_F(ConfigTest, UnknownKeysAreErrorsWherever) {
  EXPECT_EQ(BadKey({.file = File("[server]\nlisten_ = \"x:1\"\n")}), "server.listen_");
  EXPECT_EQ(BadKey({.file = File("top = 1\n")}), "top");
  EXPECT_EQ(BadKey({.environment = {"CAREWIRE_SERVER_LISTN=x:1"}}), "CAREWIRE_SERVER_LISTN");
  EXPECT_EQ(BadKey({.flags = {{"server.nope", "1"}}}), "server.nope");
}

TEST_F(ConfigTest, WrongTypesAndRangesNameTheKey) {
  EXPECT_EQ(BadKey({.file = File("[limits]\nmax_body_bytes = 1.5\n")}), "limits.max_body_bytes");
  EXPECT_EQ(BadKey({.file = File("[limits]\nmax_body_bytes = 0\n")}), "limits.max_body_bytes");
  EXPECT_EQ(BadKey({.file = File("[server]\nlisten = 5\n")}), "server.listen");
  EXPECT_EQ(BadKey({.file = File("[server]\nlisten = \"nocolon\"\n")}), "server.listen");
  EXPECT_EQ(BadKey({.environment = {"CAREWIRE_SERVER_THREADS=2x"}}), "server.threads");
  EXPECT_EQ(BadKey({.environment = {"CAREWIRE_SERVER_THREADS="}}), "server.threads");
  EXPECT_EQ(BadKey({.environment = {"CAREWIRE_SERVER_THREADS=99999999999999999999"}}),
            "server.threads");
  EXPECT_EQ(BadKey({.environment = {"CAREWIRE_DIAGNOSTICS_WRITE_PROBE=yes"}}),
            "diagnostics.write_probe");
  EXPECT_EQ(BadKey({.flags = {{"storage.backend", "oracle"}}}), "storage.backend");
  EXPECT_EQ(BadKey({.flags = {{"tls.cert_file", "/c.pem"}}}), "tls.key_file");
}

TEST_F(ConfigTest, SyntaxErrorNamesTheLine) {
  try {
    LoadConfig({.file = File("[limits]\nmax_body_bytes = = 3\n")});
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("line 2"), std::string::npos) << e.what();
  }
}

TEST_F(ConfigTest, SchemaDocumentsEveryKey) {
  for (const auto& k : ConfigSchema()) {
    EXPECT_FALSE(k.doc.empty()) << k.name;
    EXPECT_EQ(k.env.rfind("CAREWIRE_", 0), 0u);
  }
  EXPECT_EQ(ConfigSchema().size(), ConfigSchemaValues(Config{}).size());
}

}  // namespace
}  // namespace cw::core
