#pragma once

// The route groups that exist so far. Each Add*Routes registers its routes on
// the router with their access rule; docs/openapi.yaml documents every one
// (a test compares the two).

#include "api/json_body.hpp"
#include "api/router.hpp"
#include "core/metrics.hpp"
#include "core/worker_pool.hpp"
#include "identity/sessions.hpp"
#include "keys/key_store.hpp"
#include "storage/database.hpp"

namespace cw::api {

// GET /healthz, GET /readyz, GET /metrics.
void AddHealthRoutes(Router& router, storage::Database& db, metrics::Registry& metrics);

// POST /api/v1/diagnostics/write-probe {"padding_bytes":N}: commits one row
// (with N bytes of padding, 0 to 4096, to stand in for a message of that
// size) durably and answers with the time the commit took. Registered only
// when the operator enables diagnostics.write_probe.
void AddDiagnosticsRoutes(Router& router, storage::Database& db, const JsonLimits& limits);

// POST /api/v1/diagnostics/sealed-probe {"org":"slug","value":"..."} seals
// the value for the organization, stores it and audits it in one
// transaction; GET /api/v1/diagnostics/sealed-probe/{id} opens it (audited)
// and answers whether it opened and with which key version, never the value.
// Registered only when the operator enables diagnostics.sealed_probe.
void AddSealedProbeRoutes(Router& router, storage::Database& db, keys::KeyStore& keys,
                          const JsonLimits& limits);

// POST /api/v1/auth/login, POST /api/v1/auth/logout, GET /api/v1/me,
// POST /api/v1/me/password. Password hashing runs on `pool`.
void AddAuthRoutes(Router& router, identity::Sessions& sessions, core::WorkerPool& pool,
                   const JsonLimits& limits);

// The router's authenticator: bearer tokens checked against `sessions`.
Authenticator SessionAuthenticator(identity::Sessions& sessions);

// GET /api/v1/audit: the caller's organization's events (owners only until
// permissions exist), filtered and paginated; each read is audited. Pages
// are read on `pool`.
void AddAuditRoutes(Router& router, storage::Database& db, core::WorkerPool& pool);

// GET /api/v1/events: the live event stream (WebSocket).
void AddEventRoutes(Router& router, const JsonLimits& limits);

}  // namespace cw::api
