#pragma once

// The route groups that exist so far. Each Add*Routes registers its routes on
// the router with their access rule; docs/openapi.yaml documents every one
// (a test compares the two).

#include <boost/json/value.hpp>

#include "api/json_body.hpp"
#include "api/router.hpp"
#include "core/metrics.hpp"
#include "core/worker_pool.hpp"
#include "identity/break_glass.hpp"
#include "identity/org_settings.hpp"
#include "identity/sessions.hpp"
#include "identity/users.hpp"
#include "keys/key_store.hpp"
#include "messaging/live_hub.hpp"
#include "messaging/messaging.hpp"
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

class LiveSockets;

// Sign-in (login, MFA, logout, re-authentication) and one's own account
// (profile, password, TOTP enrolment, sessions). Work runs on `pool`.
void AddAuthRoutes(Router& router, identity::Sessions& sessions, core::WorkerPool& pool,
                   const JsonLimits& limits);

// The organization's users and other users' sessions.
void AddUserRoutes(Router& router, identity::Users& users, identity::Sessions& sessions,
                   core::WorkerPool& pool, const JsonLimits& limits);

// The organization's settings, roles and data-key rotation.
void AddOrgRoutes(Router& router, identity::OrgSettingsStore& orgs, storage::Database& db,
                  keys::KeyStore& keys, core::WorkerPool& pool, const JsonLimits& limits);

// Emergency access and security alerts.
void AddBreakGlassRoutes(Router& router, identity::BreakGlass& break_glass,
                         core::WorkerPool& pool, const JsonLimits& limits);

// A principal as GET /api/v1/me and sign-in answers show it.
boost::json::object PrincipalJson(const Principal& p);
// Sessions as the session lists show them.
boost::json::array SessionsJson(const std::vector<identity::SessionInfo>& sessions);

// The router's authenticator: bearer tokens checked against `sessions`.
Authenticator SessionAuthenticator(identity::Sessions& sessions);

// GET /api/v1/audit: the caller's organization's events (audit.read),
// filtered and paginated; each read is audited. Pages are read on `pool`.
void AddAuditRoutes(Router& router, storage::Database& db, core::WorkerPool& pool);

// Conversations, messages, receipts and recall (docs/openapi.yaml). Reads
// run on `pool`; sends are sealed on the I/O thread and answered from the
// writer once durable.
struct MessagingRouteOptions {
  std::int64_t attachment_max_bytes = 25 << 20;
};
void AddMessagingRoutes(Router& router, messaging::Messaging& messaging, core::WorkerPool& pool,
                        const JsonLimits& limits, const MessagingRouteOptions& options);

// What the event stream is built on. Replays run on `pool`, which should
// not be the pool sign-ins wait for.
struct EventServices {
  messaging::Messaging& messaging;
  messaging::LiveHub& hub;
  core::WorkerPool& pool;
};

// GET /api/v1/events: the live event stream (WebSocket). Authenticated
// sockets are registered in `live`, so ending a session closes them.
void AddEventRoutes(Router& router, const JsonLimits& limits, LiveSockets& live,
                    EventServices services);

}  // namespace cw::api
