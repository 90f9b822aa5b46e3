#pragma once

// A data directory opened for use: its database at the latest schema, the
// master key, and the deployment's audit-signing key. The server and every
// operator command start here, so they agree on paths and on first-time
// set-up.

#include <memory>
#include <string>

#include "audit/checkpoint.hpp"
#include "core/config.hpp"
#include "core/metrics.hpp"
#include "crypto/master_key.hpp"
#include "keys/key_store.hpp"
#include "storage/database.hpp"

namespace cw::server {

struct DeploymentPaths {
  std::string data_dir;
  std::string database;
  std::string master_key;
  std::string checkpoints;
};

DeploymentPaths PathsFor(const core::Config& config);

// Creates the data directory when missing and restricts it to its owner
// (0700): it holds the database, keys and certificates.
void PrepareDataDir(const std::string& dir);

struct Deployment {
  DeploymentPaths paths;
  std::unique_ptr<storage::Database> db;
  std::shared_ptr<const crypto::KeyEncryptionKey> kek;
  keys::DeploymentKeys keys;
  std::unique_ptr<audit::SigningKey> signing_key;
  bool created = false;  // this call created the master key or the deployment
};

enum class OpenMode {
  kCreate,    // create the data directory, master key and deployment when missing
  kExisting,  // refuse a data directory that was never set up
};

// Opens (and in kCreate mode, sets up) the deployment. A first set-up is
// audited and checkpointed. Throws std::runtime_error with an operator-facing
// message on failure.
Deployment OpenDeployment(const core::Config& config, OpenMode mode,
                          metrics::Registry* metrics = nullptr);

// The actor recorded for operator commands: the system, as the Unix user who
// ran the command.
std::string OperatorActorId();

}  // namespace cw::server
