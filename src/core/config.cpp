#include "core/config.hpp"

#include <toml++/toml.h>

#include <cctype>
#include <charconv>
#include <functional>

extern char** environ;  // NOLINT

namespace cw::core {
namespace {

enum class Type { kString, kInteger, kBoolean };

struct KeyDef {
  const char* name;
  Type type;
  const char* doc;
  // Reads the current value as text (for the documentation of defaults).
  std::function<std::string(const Config&)> get;
  // Stores a value that has already been converted to the key's type.
  std::function<void(Config&, const std::string*, std::int64_t, bool)> set;
  std::int64_t min = 0;
  std::int64_t max = 0;
  std::vector<std::string> choices = {};
};

template <class Section>
KeyDef Str(const char* name, Section Config::*section, std::string Section::*field, const char* doc,
           std::vector<std::string> choices = {}) {
  KeyDef d{name, Type::kString, doc, [=](const Config& c) { return (c.*section).*field; },
           [=](Config& c, const std::string* s, std::int64_t, bool) { (c.*section).*field = *s; }};
  d.choices = std::move(choices);
  return d;
}

template <class Section, class Num>
KeyDef Int(const char* name, Section Config::*section, Num Section::*field, std::int64_t min,
           std::int64_t max, const char* doc) {
  KeyDef d{name, Type::kInteger, doc,
           [=](const Config& c) { return std::to_string((c.*section).*field); },
           [=](Config& c, const std::string*, std::int64_t v, bool) {
             (c.*section).*field = static_cast<Num>(v);
           }};
  d.min = min;
  d.max = max;
  return d;
}

template <class Section>
KeyDef Bool(const char* name, Section Config::*section, bool Section::*field, const char* doc) {
  return KeyDef{
      name, Type::kBoolean, doc,
      [=](const Config& c) { return std::string((c.*section).*field ? "true" : "false"); },
      [=](Config& c, const std::string*, std::int64_t, bool b) { (c.*section).*field = b; }};
}

const std::vector<KeyDef>& Defs() {
  using C = Config;
  static const std::vector<KeyDef> defs = {
      Str("server.listen", &C::server, &C::Server::listen,
          "Address and port to listen on, HOST:PORT. Port 0 picks a free port; the chosen address "
          "is printed as `listening on https://HOST:PORT`."),
      Str("server.data_dir", &C::server, &C::Server::data_dir,
          "Directory for the database, the generated certificate and keys."),
      Int("server.threads", &C::server, &C::Server::threads, 0, 256,
          "I/O threads. 0 uses one per core."),
      Str("tls.cert_file", &C::tls, &C::Tls::cert_file,
          "PEM certificate chain. Empty: a self-signed certificate is created in the data "
          "directory on first start and its SHA-256 fingerprint printed."),
      Str("tls.key_file", &C::tls, &C::Tls::key_file,
          "PEM private key for `tls.cert_file`. Set both or neither."),
      Int("limits.max_body_bytes", &C::limits, &C::Limits::max_body_bytes, 1024, 1LL << 30,
          "Largest request body accepted; larger bodies get 413 before they are read, so a "
          "client cannot make the server buffer unbounded data."),
      Int("limits.max_header_bytes", &C::limits, &C::Limits::max_header_bytes, 1024, 1 << 20,
          "Largest request line plus headers; bounds per-connection memory before a request is "
          "even routed."),
      Int("limits.handshake_timeout_ms", &C::limits, &C::Limits::handshake_timeout_ms, 100, 600'000,
          "Time allowed for the TLS handshake; stops idle sockets holding a slot."),
      Int("limits.header_timeout_ms", &C::limits, &C::Limits::header_timeout_ms, 100, 600'000,
          "Time allowed to receive a whole request header once its first byte arrived; cuts off "
          "slowloris clients that trickle headers to hold connections open."),
      Int("limits.body_timeout_ms", &C::limits, &C::Limits::body_timeout_ms, 100, 3'600'000,
          "Time allowed to receive a request body."),
      Int("limits.write_timeout_ms", &C::limits, &C::Limits::write_timeout_ms, 100, 3'600'000,
          "Time allowed to write a response to a client that reads slowly."),
      Int("limits.idle_timeout_ms", &C::limits, &C::Limits::idle_timeout_ms, 100, 3'600'000,
          "How long a keep-alive connection may wait for its next request."),
      Int("limits.max_connections", &C::limits, &C::Limits::max_connections, 1, 1'000'000,
          "Open connections at most; further connections are closed at once, so a flood cannot "
          "exhaust file descriptors or memory."),
      Int("limits.max_json_depth", &C::limits, &C::Limits::max_json_depth, 4, 1024,
          "Deepest JSON nesting accepted in a body; deeper input is refused with 400 before it "
          "can exhaust the stack."),
      Int("limits.websocket_max_message_bytes", &C::limits, &C::Limits::websocket_max_message_bytes,
          128, 16 << 20, "Largest WebSocket message accepted from a client."),
      Int("shutdown.drain_timeout_ms", &C::shutdown, &C::Shutdown::drain_timeout_ms, 0, 600'000,
          "On SIGTERM or SIGINT, how long in-flight requests may take to finish before the "
          "process exits anyway."),
      Int("shutdown.idle_grace_ms", &C::shutdown, &C::Shutdown::idle_grace_ms, 0, 60'000,
          "On shutdown, how long an idle keep-alive connection is still read from, so a request "
          "already on its way is answered (with `Connection: close`) rather than dropped."),
      Str("storage.backend", &C::storage, &C::Storage::backend, "Database backend.", {"sqlite"}),
      Str("storage.sqlite_path", &C::storage, &C::Storage::sqlite_path,
          "SQLite database file. Empty: `carewire.db` in the data directory."),
      Int("storage.readers", &C::storage, &C::Storage::readers, 1, 64,
          "Read-only connections in the reader pool."),
      Int("storage.max_batch", &C::storage, &C::Storage::max_batch, 1, 100'000,
          "Most write transactions grouped into one commit (one fsync)."),
      Str("keys.master_key_file", &C::keys, &C::Keys::master_key_file,
          "Master key file (mode 0600; refused if group or others may read it). Empty: "
          "`master.key` in the data directory. `CAREWIRE_MASTER_KEY`, when set, is used instead "
          "of any file."),
      Int("keys.cache_ttl_ms", &C::keys, &C::Keys::cache_ttl_ms, 10, 3'600'000,
          "How long unwrapped organization keys are cached. A data key added by `carewire keys "
          "rotate` seals new values within this time; re-encryption waits for it to pass."),
      Int("keys.reencrypt_batch", &C::keys, &C::Keys::reencrypt_batch, 1, 100'000,
          "Values re-sealed per transaction after a data-key rotation; small batches keep "
          "each write short so traffic is not held up."),
      Int("keys.reencrypt_poll_ms", &C::keys, &C::Keys::reencrypt_poll_ms, 10, 3'600'000,
          "How often the re-encryption job looks for a new rotation."),
      Str("audit.checkpoint_file", &C::audit, &C::Audit::checkpoint_file,
          "File the signed audit checkpoints are appended to. Put it on other storage than the "
          "database (or ship it elsewhere) so that removing the log's tail is detected. Empty: "
          "`audit-checkpoints.jsonl` in the data directory."),
      Int("audit.checkpoint_every_events", &C::audit, &C::Audit::checkpoint_every_events, 1,
          10'000'000, "A checkpoint is signed once this many events follow the last one."),
      Int("audit.checkpoint_interval_ms", &C::audit, &C::Audit::checkpoint_interval_ms, 100,
          86'400'000,
          "A checkpoint is signed at least this often while events are being added, and at "
          "graceful shutdown."),
      Int("auth.account_failures_per_hour", &C::auth, &C::Auth::account_failures_per_hour, 1,
          10'000,
          "Failed sign-ins (passwords and codes) one account may have in an hour before it is "
          "locked until the oldest of them is an hour old (NIST SP 800-63B allows at most 100)."),
      Int("auth.address_failures_per_hour", &C::auth, &C::Auth::address_failures_per_hour, 1,
          1'000'000,
          "Failed sign-ins from one source address, across all accounts, in an hour. The address "
          "is the TCP peer; X-Forwarded-For is ignored, so it cannot be claimed."),
      Int("auth.free_failures", &C::auth, &C::Auth::free_failures, 0, 1'000,
          "An account's failed sign-ins (in the last hour) that cost nothing; each failure "
          "after them delays the next attempt."),
      Int("auth.address_free_failures", &C::auth, &C::Auth::address_free_failures, 0, 1'000'000,
          "The same for one source address, across accounts: higher, because a clinic's staff "
          "may share an address and one person's typos must not hold up the others."),
      Int("auth.first_delay_ms", &C::auth, &C::Auth::first_delay_ms, 0, 3'600'000,
          "The delay after the first failure beyond the free ones; it doubles with each further "
          "failure."),
      Int("auth.max_delay_ms", &C::auth, &C::Auth::max_delay_ms, 0, 3'600'000,
          "The longest delay between failed attempts (the hourly limit still applies)."),
      Int("auth.housekeeping_interval_ms", &C::auth, &C::Auth::housekeeping_interval_ms, 100,
          86'400'000,
          "How often dormant accounts are deactivated and expired emergency access is closed."),
      Int("auth.revocation_poll_ms", &C::auth, &C::Auth::revocation_poll_ms, 100, 10'000,
          "How often live WebSockets are checked against ended sessions; a revoked session's "
          "socket closes within about this time."),
      Int("messaging.attachment_max_bytes", &C::messaging, &C::Messaging::attachment_max_bytes,
          1, 1LL << 30,
          "The largest attachment, in bytes (25 MiB by default). Uploads are streamed and sealed "
          "as they arrive, about 2 MiB of memory each; at most 32 are read at once and more are "
          "refused with 503."),
      Int("messaging.urgent_remind_after_ms", &C::messaging,
          &C::Messaging::urgent_remind_after_ms, 1'000, 86'400'000,
          "An urgent message unread this long is notified again to the members who have not "
          "read it."),
      Int("messaging.urgent_escalate_after_ms", &C::messaging,
          &C::Messaging::urgent_escalate_after_ms, 1'000, 86'400'000,
          "An urgent message unread this long is escalated to its conversation's admins."),
      Int("messaging.jobs_interval_ms", &C::messaging, &C::Messaging::jobs_interval_ms, 100,
          86'400'000,
          "How often expired messages are purged and urgent messages followed up."),
      Str("messaging.push_sink_file", &C::messaging, &C::Messaging::push_sink_file,
          "A file where every push notification that would be sent is recorded as a JSON line "
          "(conversation id, kind and a fixed text; never PHI). Empty: none are recorded. For "
          "tests and for checking what leaves the server.",
          {}),
      Str("log.level", &C::log, &C::Log::level, "Least severe level written.",
          {"debug", "info", "warn", "error"}),
      Bool("diagnostics.write_probe", &C::diagnostics, &C::Diagnostics::write_probe,
           "Enables `POST /api/v1/diagnostics/write-probe`, which commits one row durably and "
           "reports the commit time. For measuring the write path; off in production."),
      Bool("diagnostics.sealed_probe", &C::diagnostics, &C::Diagnostics::sealed_probe,
           "Enables `/api/v1/diagnostics/sealed-probe`, which seals a value for an organization, "
           "stores it with its audit event, and later proves it still opens. For testing and "
           "measuring sealing, auditing and key rotation; off in production."),
  };
  return defs;
}

std::string EnvName(std::string_view key) {
  std::string env = "CAREWIRE_";
  for (char c : key) {
    env.push_back(c == '.' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
  }
  return env;
}

const char* TypeName(Type t) {
  switch (t) {
    case Type::kString:
      return "string";
    case Type::kInteger:
      return "integer";
    case Type::kBoolean:
      return "boolean";
  }
  return "string";
}

const KeyDef* FindKey(std::string_view name) {
  for (const KeyDef& d : Defs()) {
    if (name == d.name) return &d;
  }
  return nullptr;
}

void CheckAndSet(Config& config, const KeyDef& def, const std::string* s, std::int64_t i, bool b) {
  if (def.type == Type::kInteger && (i < def.min || i > def.max)) {
    throw ConfigError(
        def.name, "must be between " + std::to_string(def.min) + " and " + std::to_string(def.max));
  }
  if (def.type == Type::kString && !def.choices.empty()) {
    bool ok = false;
    std::string list;
    for (const auto& c : def.choices) {
      ok = ok || *s == c;
      list += (list.empty() ? "" : ", ") + c;
    }
    if (!ok) throw ConfigError(def.name, "must be one of: " + list);
  }
  if (def.type == Type::kString && s->find('\0') != std::string::npos) {
    throw ConfigError(def.name, "must not contain NUL");
  }
  def.set(config, s, i, b);
}

// Applies a value given as text (environment variable or flag).
void SetFromText(Config& config, const KeyDef& def, const std::string& text) {
  switch (def.type) {
    case Type::kString:
      CheckAndSet(config, def, &text, 0, false);
      return;
    case Type::kInteger: {
      std::int64_t v = 0;
      const char* end = text.data() + text.size();
      auto [ptr, ec] = std::from_chars(text.data(), end, v);
      if (text.empty() || ec != std::errc{} || ptr != end) {
        throw ConfigError(def.name, "must be an integer");
      }
      CheckAndSet(config, def, nullptr, v, false);
      return;
    }
    case Type::kBoolean:
      if (text == "true" || text == "1") {
        CheckAndSet(config, def, nullptr, 0, true);
      } else if (text == "false" || text == "0") {
        CheckAndSet(config, def, nullptr, 0, false);
      } else {
        throw ConfigError(def.name, "must be true or false");
      }
      return;
  }
}

void ApplyTable(Config& config, const toml::table& table, const std::string& prefix) {
  for (const auto& [k, node] : table) {
    const std::string name =
        prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
    if (const toml::table* sub = node.as_table()) {
      ApplyTable(config, *sub, name);
      continue;
    }
    const KeyDef* def = FindKey(name);
    if (def == nullptr) throw ConfigError(name, "unknown configuration key");
    switch (def->type) {
      case Type::kString: {
        const auto* v = node.as_string();
        if (v == nullptr) throw ConfigError(name, "must be a string");
        const std::string s = v->get();
        CheckAndSet(config, *def, &s, 0, false);
        break;
      }
      case Type::kInteger: {
        const auto* v = node.as_integer();
        if (v == nullptr) throw ConfigError(name, "must be an integer");
        CheckAndSet(config, *def, nullptr, v->get(), false);
        break;
      }
      case Type::kBoolean: {
        const auto* v = node.as_boolean();
        if (v == nullptr) throw ConfigError(name, "must be true or false");
        CheckAndSet(config, *def, nullptr, 0, v->get());
        break;
      }
    }
  }
}

}  // namespace

bool IsReservedEnvironmentName(std::string_view name) {
  // CAREWIRE_CONFIG names the configuration file itself; CAREWIRE_MASTER_KEY
  // carries a key and is read by the key store, never by this loader.
  return name == "CAREWIRE_CONFIG" || name == "CAREWIRE_MASTER_KEY";
}

const std::vector<ConfigKeyInfo>& ConfigSchema() {
  static const std::vector<ConfigKeyInfo> schema = [] {
    std::vector<ConfigKeyInfo> out;
    const Config defaults;
    for (const KeyDef& d : Defs()) {
      out.push_back({d.name, EnvName(d.name), TypeName(d.type), d.get(defaults), d.doc});
    }
    return out;
  }();
  return schema;
}

std::vector<ConfigValue> ConfigSchemaValues(const Config& config) {
  std::vector<ConfigValue> out;
  for (const KeyDef& d : Defs()) {
    std::string v = d.get(config);
    if (d.type == Type::kString) {
      std::string quoted = "\"";
      for (char c : v) {
        if (c == '"' || c == '\\') quoted.push_back('\\');
        quoted.push_back(c);
      }
      v = quoted + "\"";
    }
    out.push_back({d.name, v});
  }
  return out;
}

Config LoadConfig(const ConfigSources& sources) {
  Config config;

  if (!sources.file.empty()) {
    toml::table table;
    try {
      table = toml::parse_file(sources.file);
    } catch (const toml::parse_error& e) {
      const auto& where = e.source().begin;
      throw ConfigError("", "cannot read configuration file " + sources.file + " (line " +
                                std::to_string(where.line) + "): " + std::string(e.description()));
    }
    ApplyTable(config, table, "");
  }

  for (const std::string& entry : sources.environment) {
    const auto eq = entry.find('=');
    if (eq == std::string::npos) continue;
    const std::string name = entry.substr(0, eq);
    if (name.rfind("CAREWIRE_", 0) != 0 || IsReservedEnvironmentName(name)) continue;
    const KeyDef* def = nullptr;
    for (const KeyDef& d : Defs()) {
      if (EnvName(d.name) == name) def = &d;
    }
    if (def == nullptr) throw ConfigError(name, "unknown configuration variable");
    SetFromText(config, *def, entry.substr(eq + 1));
  }

  for (const auto& [name, value] : sources.flags) {
    const KeyDef* def = FindKey(name);
    if (def == nullptr) throw ConfigError(name, "unknown configuration key");
    SetFromText(config, *def, value);
  }

  if (config.tls.cert_file.empty() != config.tls.key_file.empty()) {
    throw ConfigError(config.tls.cert_file.empty() ? "tls.cert_file" : "tls.key_file",
                      "tls.cert_file and tls.key_file must be set together");
  }
  if (config.server.data_dir.empty()) throw ConfigError("server.data_dir", "must not be empty");
  if (config.server.listen.rfind(':') == std::string::npos) {
    throw ConfigError("server.listen", "must be HOST:PORT");
  }
  return config;
}

std::vector<std::string> ProcessEnvironment() {
  std::vector<std::string> out;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) out.emplace_back(*e);
  return out;
}

}  // namespace cw::core
