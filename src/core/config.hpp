#pragma once

// Carewire's configuration: defaults, then a TOML file, then CAREWIRE_*
// environment variables, then command-line flags, each layer overriding the
// one before. Every key is declared once in the schema (config.cpp), which
// drives parsing, validation, the environment variable names and the table in
// docs/configuration.md. An unknown key is an error, never ignored.

#include <chrono>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace cw::core {

struct Config {
  struct Server {
    std::string listen = "127.0.0.1:8443";
    std::string data_dir = "./var/data";
    int threads = 0;  // 0: one per core
  } server;

  struct Tls {
    std::string cert_file;  // empty: a self-signed certificate in the data directory
    std::string key_file;
  } tls;

  struct Limits {
    std::int64_t max_body_bytes = 1 << 20;
    std::int64_t max_header_bytes = 16 << 10;
    std::int64_t handshake_timeout_ms = 10'000;
    std::int64_t header_timeout_ms = 10'000;
    std::int64_t body_timeout_ms = 30'000;
    std::int64_t write_timeout_ms = 30'000;
    std::int64_t idle_timeout_ms = 60'000;
    std::int64_t max_connections = 10'000;
    std::int64_t max_json_depth = 64;
    std::int64_t websocket_max_message_bytes = 64 << 10;
  } limits;

  struct Shutdown {
    std::int64_t drain_timeout_ms = 30'000;
    std::int64_t idle_grace_ms = 500;
  } shutdown;

  struct Storage {
    std::string backend = "sqlite";
    std::string sqlite_path;  // empty: carewire.db in the data directory
    std::int64_t readers = 4;
    std::int64_t max_batch = 1024;
  } storage;

  struct Keys {
    std::string master_key_file;  // empty: master.key in the data directory
    std::int64_t cache_ttl_ms = 5'000;
    std::int64_t reencrypt_batch = 500;
    std::int64_t reencrypt_poll_ms = 2'000;
  } keys;

  struct Audit {
    std::string checkpoint_file;  // empty: audit-checkpoints.jsonl in the data directory
    std::int64_t checkpoint_every_events = 1'000;
    std::int64_t checkpoint_interval_ms = 60'000;
  } audit;

  struct Auth {
    std::int64_t account_failures_per_hour = 100;
    std::int64_t address_failures_per_hour = 1'000;
    std::int64_t free_failures = 5;
    std::int64_t address_free_failures = 100;
    std::int64_t first_delay_ms = 1'000;
    std::int64_t max_delay_ms = 900'000;
    std::int64_t housekeeping_interval_ms = 60'000;
    std::int64_t revocation_poll_ms = 1'000;
  } auth;

  struct Messaging {
    std::int64_t attachment_max_bytes = 25 << 20;
    std::int64_t urgent_remind_after_ms = 300'000;
    std::int64_t urgent_escalate_after_ms = 900'000;
    std::int64_t jobs_interval_ms = 10'000;
    std::string push_sink_file;  // empty: notifications are not recorded
  } messaging;

  struct Log {
    std::string level = "info";
  } log;

  struct Diagnostics {
    bool write_probe = false;
    bool sealed_probe = false;
  } diagnostics;
};

// A configuration problem, naming the key at fault ("" when the problem is the
// file itself). The server refuses to start on it and exits with status 2.
class ConfigError : public std::runtime_error {
 public:
  ConfigError(std::string key, const std::string& message)
      : std::runtime_error(key.empty() ? message : key + ": " + message), key_(std::move(key)) {}
  const std::string& key() const { return key_; }

 private:
  std::string key_;
};

// One documented key of the schema.
struct ConfigKeyInfo {
  std::string name;  // dotted, e.g. "limits.max_body_bytes"
  std::string env;   // e.g. "CAREWIRE_LIMITS_MAX_BODY_BYTES"
  std::string type;  // "string", "integer" or "boolean"
  std::string default_text;
  std::string doc;
};

const std::vector<ConfigKeyInfo>& ConfigSchema();

struct ConfigValue {
  std::string name;        // dotted key
  std::string toml_value;  // the value as TOML text ("x", 5, true)
};

// Every key's value in `config`, in schema order.
std::vector<ConfigValue> ConfigSchemaValues(const Config& config);

struct ConfigSources {
  std::string file;                          // "" for none
  std::vector<std::string> environment;      // "NAME=value" entries, as in environ
  std::map<std::string, std::string> flags;  // dotted key -> value
};

// Builds the configuration from the layers. Throws ConfigError.
Config LoadConfig(const ConfigSources& sources);

// The process environment as ConfigSources::environment expects it.
std::vector<std::string> ProcessEnvironment();

// Environment variables with the CAREWIRE_ prefix that are not configuration
// keys but are read elsewhere (so they are not rejected as unknown).
bool IsReservedEnvironmentName(std::string_view name);

}  // namespace cw::core
