#include "server/deployment.hpp"

#include <pwd.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <stdexcept>

#include "audit/audit_log.hpp"
#include "core/time.hpp"
#include "storage/sqlite/sqlite_database.hpp"

namespace cw::server {
namespace {

namespace fs = std::filesystem;

std::optional<std::string> MasterKeyFromEnvironment() {
  const char* value = std::getenv("CAREWIRE_MASTER_KEY");  // NOLINT(concurrency-mt-unsafe)
  if (value == nullptr || *value == '\0') return std::nullopt;
  return std::string(value);
}

}  // namespace

void PrepareDataDir(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw std::runtime_error("cannot create the data directory " + dir);
  // The data directory holds the database, keys and certificates: owner only.
  fs::permissions(dir, fs::perms::owner_all, fs::perm_options::replace, ec);
  if (ec) throw std::runtime_error("cannot restrict the data directory " + dir);
}

DeploymentPaths PathsFor(const core::Config& config) {
  const fs::path dir(config.server.data_dir);
  DeploymentPaths p;
  p.data_dir = config.server.data_dir;
  p.database = config.storage.sqlite_path.empty() ? (dir / "carewire.db").string()
                                                  : config.storage.sqlite_path;
  p.master_key = config.keys.master_key_file.empty() ? (dir / "master.key").string()
                                                     : config.keys.master_key_file;
  p.checkpoints = config.audit.checkpoint_file.empty() ? (dir / "audit-checkpoints.jsonl").string()
                                                       : config.audit.checkpoint_file;
  return p;
}

std::string OperatorActorId() {
  const struct passwd* pw = ::getpwuid(::geteuid());  // NOLINT(concurrency-mt-unsafe)
  return std::string("cli:") + (pw != nullptr ? pw->pw_name : std::to_string(::geteuid()));
}

Deployment OpenDeployment(const core::Config& config, OpenMode mode, metrics::Registry* metrics) {
  Deployment d;
  d.paths = PathsFor(config);
  const auto env_key = MasterKeyFromEnvironment();
  const bool database_exists = fs::exists(d.paths.database);
  if (mode == OpenMode::kExisting && !database_exists) {
    throw std::runtime_error("no Carewire database at " + d.paths.database +
                             " (run carewire init first)");
  }
  PrepareDataDir(d.paths.data_dir);

  storage::SqliteOptions options;
  options.path = d.paths.database;
  options.readers = static_cast<int>(config.storage.readers);
  options.max_batch = static_cast<int>(config.storage.max_batch);
  options.metrics = metrics;
  auto opened = storage::OpenSqlite(options);
  if (!opened) throw std::runtime_error("cannot open the database: " + opened.error().message());
  d.db = std::move(*opened);

  if (!env_key && !fs::exists(d.paths.master_key)) {
    bool has_keys = true;
    auto checked = d.db->Read([&](storage::Transaction& tx) -> Status {
      auto row = tx.QueryOne("SELECT 1 FROM deployment WHERE id = 1");
      if (!row) return row.error();
      has_keys = row->has_value();
      return Ok();
    });
    if (!checked || has_keys || mode == OpenMode::kExisting) {
      // A new key for a database with wrapped keys would lock its data away.
      throw std::runtime_error("the master key file " + d.paths.master_key +
                               " is missing (or set CAREWIRE_MASTER_KEY)");
    }
    crypto::CreateMasterKeyFile(d.paths.master_key);
    d.created = true;
  }
  d.kek = crypto::LoadMasterKey(d.paths.master_key, env_key);

  bool created_deployment = false;
  auto load = [&](storage::Transaction& tx) -> Status {
    auto loaded = keys::LoadDeploymentKeys(tx, *d.kek);
    if (!loaded) return loaded.error();
    d.keys = std::move(*loaded);
    return Ok();
  };
  // An existing deployment is only read, so tools such as `audit verify` also
  // work on a copy of the data directory on read-only storage.
  auto ensured = mode == OpenMode::kExisting
                     ? d.db->Read(load)
                     : d.db->Write([&](storage::Transaction& tx) -> Status {
                         const std::string now = core::NowRfc3339();
                         auto made = keys::EnsureDeploymentKeys(tx, *d.kek, now);
                         if (!made) return made.error();
                         created_deployment = *made;
                         if (created_deployment) {
                           audit::Event event;
                           event.action = "deployment.created";
                           event.target_type = "deployment";
                           event.target_id = "1";
                           if (auto appended = audit::Record(tx, event, now); !appended)
                             return appended.error();
                         }
                         return load(tx);
                       });
  if (!ensured) {
    if (ensured.error() == crypto::Error::kAuthentication ||
        ensured.error() == crypto::Error::kUnknownKeyVersion) {
      throw std::runtime_error("the master key does not open this deployment's keys");
    }
    throw std::runtime_error("cannot load the deployment's keys: " + ensured.error().message());
  }
  d.signing_key = audit::SigningKey::FromSeed(d.keys.audit_signing_seed->bytes());
  if (created_deployment) {
    d.created = true;
    auto checkpoint = audit::WriteCheckpointNow(*d.db, *d.signing_key, d.paths.checkpoints);
    if (!checkpoint) {
      throw std::runtime_error("cannot write the first audit checkpoint to " + d.paths.checkpoints);
    }
  }
  return d;
}

}  // namespace cw::server
