#include "server/serve.hpp"

#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>

#include <filesystem>
#include <iostream>
#include <stdexcept>

#include "api/routes.hpp"
#include "core/log.hpp"
#include "core/metrics.hpp"
#include "storage/sqlite/sqlite_database.hpp"
#include "transport/http_server.hpp"
#include "transport/tls_material.hpp"

namespace cw::server {
namespace {

namespace fs = std::filesystem;

void PrepareDataDir(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw std::runtime_error("cannot create the data directory " + dir);
  // The data directory holds the database, keys and certificates: owner only.
  fs::permissions(dir, fs::perms::owner_all, fs::perm_options::replace, ec);
  if (ec) throw std::runtime_error("cannot restrict the data directory " + dir);
}

std::string DatabasePath(const core::Config& config) {
  if (!config.storage.sqlite_path.empty()) return config.storage.sqlite_path;
  return (fs::path(config.server.data_dir) / "carewire.db").string();
}

void ApplyLogLevel(const core::Config& config) {
  log::Level level = log::Level::kInfo;
  log::ParseLevel(config.log.level, &level);
  log::SetLevel(level);
}

// Blocks SIGTERM and SIGINT in this thread and every thread it starts, so they
// are delivered only to sigwait() below and never interrupt an I/O thread.
sigset_t BlockShutdownSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  return set;
}

std::string ErrorText(const ErrorCode& ec) { return ec.message(); }

}  // namespace

void AddRoutes(api::Router& router, const core::Config& config, storage::Database& db,
               metrics::Registry& metrics) {
  const api::JsonLimits json{static_cast<std::size_t>(config.limits.max_json_depth)};
  api::AddHealthRoutes(router, db, metrics);
  api::AddEventRoutes(router, json);
  if (config.diagnostics.write_probe) api::AddDiagnosticsRoutes(router, db, json);
}

int Serve(const core::Config& config) {
  const sigset_t signals = BlockShutdownSignals();
  ApplyLogLevel(config);
  PrepareDataDir(config.server.data_dir);

  metrics::Registry metrics;
  storage::SqliteOptions db_options;
  db_options.path = DatabasePath(config);
  db_options.readers = static_cast<int>(config.storage.readers);
  db_options.max_batch = static_cast<int>(config.storage.max_batch);
  db_options.metrics = &metrics;
  auto opened = storage::OpenSqlite(db_options);
  if (!opened) {
    throw std::runtime_error("cannot open the database: " + ErrorText(opened.error()));
  }
  std::unique_ptr<storage::Database> db = std::move(*opened);
  log::Info("storage.opened", {{log::Key::kVersion, db->SchemaVersion()}});

  const transport::TlsMaterial tls = transport::PrepareTlsMaterial(
      config.server.data_dir, config.tls.cert_file, config.tls.key_file);

  api::Router router;
  AddRoutes(router, config, *db, metrics);

  transport::HttpServer http(config, tls, router, metrics);
  http.Start();

  std::cout << "tls certificate sha256 fingerprint " << tls.fingerprint_sha256
            << (tls.generated ? " (self-signed, created now)" : "") << "\n";
  std::cout << "listening on https://"
            << (http.host().find(':') != std::string::npos ? "[" + http.host() + "]" : http.host())
            << ":" << http.port() << std::endl;
  log::Info("server.started",
            {{log::Key::kConnections, static_cast<std::int64_t>(config.limits.max_connections)}});

  int signal_number = 0;
  sigwait(&signals, &signal_number);
  log::Info("server.draining", {{log::Key::kSignal, signal_number}});

  const int cut = http.Shutdown();
  db->Close();
  if (cut > 0) {
    log::Warn("server.drain_timeout", {{log::Key::kConnections, cut}});
  }
  log::Info("server.stopped");
  return 0;
}

int Migrate(const core::Config& config) {
  ApplyLogLevel(config);
  PrepareDataDir(config.server.data_dir);
  auto report = storage::MigrateSqlite(DatabasePath(config));
  if (!report) {
    std::cerr << "migration failed: " << ErrorText(report.error()) << "\n";
    return 1;
  }
  std::cout << "schema version " << report->from << " -> " << report->to << "\n";
  return 0;
}

std::string ShowConfiguration(const core::Config& config) {
  // Every value comes from the schema's own reader, so the output is
  // complete and in the file format `--config` reads back.
  std::string out;
  std::string section;
  for (const auto& k : core::ConfigSchemaValues(config)) {
    const std::string sec = k.name.substr(0, k.name.find('.'));
    if (sec != section) {
      out += (section.empty() ? "[" : "\n[") + sec + "]\n";
      section = sec;
    }
    out += k.name.substr(k.name.find('.') + 1) + " = " + k.toml_value + "\n";
  }
  return out;
}

std::string ConfigurationReference() {
  std::string out =
      "# Configuration\n\n"
      "Carewire reads its settings from, in rising order of precedence: the defaults below, a\n"
      "TOML file (`--config FILE` or `CAREWIRE_CONFIG`), `CAREWIRE_*` environment variables, and\n"
      "command-line flags (`--listen`, `--data-dir`, `--log-level`). An unknown key in the file\n"
      "or an unknown `CAREWIRE_*` variable is an error, and so is a value of the wrong type or\n"
      "out of range: `carewire config check` names the key, and `carewire serve` refuses to\n"
      "start with the same message (exit status 2).\n\n"
      "In the file, a key `section.name` is written as `name` under `[section]`. Its environment\n"
      "variable is the key in capitals with `_` for `.`, after `CAREWIRE_`.\n\n"
      "This page is generated from the schema in `src/core/config.cpp` by\n"
      "`carewire config reference`; a test fails when the two differ.\n\n"
      "| key | environment variable | type | default | meaning |\n"
      "| --- | --- | --- | --- | --- |\n";
  for (const auto& k : core::ConfigSchema()) {
    out += "| `" + k.name + "` | `" + k.env + "` | " + k.type + " | " +
           (k.default_text.empty() ? "(empty)" : "`" + k.default_text + "`") + " | " + k.doc +
           " |\n";
  }
  out +=
      "\nTwo further variables are not settings: `CAREWIRE_CONFIG` names the configuration\n"
      "file, and `CAREWIRE_MASTER_KEY` is reserved for the master key.\n";
  return out;
}

}  // namespace cw::server
