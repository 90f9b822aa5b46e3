#pragma once

// Builds and wires every subsystem: the only place that knows them all.

#include <string>

#include "api/router.hpp"
#include "core/config.hpp"
#include "core/metrics.hpp"
#include "storage/database.hpp"

namespace cw::server {

// Runs the server until SIGTERM or SIGINT, then drains and returns the exit
// status (0 after a clean drain). Prints `listening on https://HOST:PORT` and
// the certificate fingerprint on stdout once serving. Throws ConfigError on a
// bad configuration and std::runtime_error on other start-up failures.
int Serve(const core::Config& config);

// Applies pending migrations to the configured database and prints the
// schema versions. Returns the exit status.
int Migrate(const core::Config& config);

// Registers every route the configuration enables.
void AddRoutes(api::Router& router, const core::Config& config, storage::Database& db,
               metrics::Registry& metrics);

// The effective configuration as TOML, for `carewire config show`.
std::string ShowConfiguration(const core::Config& config);

// The configuration reference (docs/configuration.md) in Markdown, generated
// from the schema so it cannot drift.
std::string ConfigurationReference();

}  // namespace cw::server
