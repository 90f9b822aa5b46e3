#pragma once

// Builds and wires every subsystem: the only place that knows them all.

#include <string>

#include "api/router.hpp"
#include "core/config.hpp"
#include "core/metrics.hpp"
#include "core/worker_pool.hpp"
#include "api/live_sockets.hpp"
#include "identity/break_glass.hpp"
#include "identity/org_settings.hpp"
#include "identity/sessions.hpp"
#include "identity/users.hpp"
#include "keys/key_store.hpp"
#include "messaging/live_hub.hpp"
#include "messaging/messaging.hpp"
#include "storage/database.hpp"

namespace cw::server {

// Runs the server until SIGTERM or SIGINT, then drains and returns the exit
// status (0 after a clean drain). Prints `listening on https://HOST:PORT` and
// the certificate fingerprint on stdout once serving. Throws ConfigError on a
// bad configuration and std::runtime_error on other start-up failures.
//
// At start the audit chain since the last checkpoint is verified; a broken
// chain stops the start unless `accept_broken_audit_chain` is set, and that
// override is itself recorded in the audit log.
struct ServeOptions {
  bool accept_broken_audit_chain = false;
};
int Serve(const core::Config& config, const ServeOptions& options = {});

// Applies pending migrations to the configured database and prints the
// schema versions. Returns the exit status.
int Migrate(const core::Config& config);

// What the routes are built on.
struct Services {
  storage::Database& db;
  keys::KeyStore& keys;
  identity::Sessions& sessions;
  identity::Users& users;
  identity::OrgSettingsStore& orgs;
  identity::BreakGlass& break_glass;
  api::LiveSockets& live_sockets;
  core::WorkerPool& pool;  // for password hashing, identity work and audit pages
  metrics::Registry& metrics;
  messaging::Messaging& messaging;
  messaging::LiveHub& hub;
  core::WorkerPool& stream_pool;  // event-stream replays
};

// Registers every route the configuration enables, the authenticator, and
// the recorder that audits refused requests.
void AddRoutes(api::Router& router, const core::Config& config, const Services& services);

// The effective configuration as TOML, for `carewire config show`.
std::string ShowConfiguration(const core::Config& config);

// The configuration reference (docs/configuration.md) in Markdown, generated
// from the schema so it cannot drift.
std::string ConfigurationReference();

}  // namespace cw::server
