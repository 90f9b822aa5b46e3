#include "server/serve.hpp"

#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>

#include <filesystem>
#include <iostream>
#include <stdexcept>
#include <thread>

#include "api/routes.hpp"
#include "audit/audit_log.hpp"
#include "audit/checkpoint.hpp"
#include "audit/verify.hpp"
#include "core/log.hpp"
#include "core/periodic.hpp"
#include "core/metrics.hpp"
#include "core/time.hpp"
#include "keys/reencrypt.hpp"
#include "server/deployment.hpp"
#include "storage/sqlite/sqlite_database.hpp"
#include "transport/http_server.hpp"
#include "transport/tls_material.hpp"

namespace cw::server {
namespace {

namespace fs = std::filesystem;

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

// Verifies the events since the last checkpoint. A broken chain throws,
// unless the operator accepted it, which is recorded.
void VerifyAuditAtStart(Deployment& d, const ServeOptions& options) {
  auto report =
      audit::VerifySinceLastCheckpoint(*d.db, d.paths.checkpoints, d.keys.audit_public_key);
  std::string problem;
  std::int64_t first_bad = 0;
  if (!report) {
    problem = "cannot verify: " + report.error().message();
  } else if (!report->ok) {
    problem = report->problem;
    first_bad = report->first_bad_seq;
  } else {
    log::Info("audit.verified", {{log::Key::kCount, report->events}});
    return;
  }
  if (!options.accept_broken_audit_chain) {
    throw std::runtime_error("the audit log does not verify (sequence " +
                             std::to_string(first_bad) + ": " + problem +
                             "); run `carewire audit verify`, and start with "
                             "--accept-broken-audit-chain only to keep serving anyway (audited)");
  }
  log::Warn("audit.broken_chain_accepted", {{log::Key::kSequence, first_bad}});
  auto recorded = d.db->Write([&](storage::Transaction& tx) -> Status {
    audit::Event event;
    event.actor_id = OperatorActorId();
    event.action = "audit.broken_chain_accepted";
    event.target_type = "audit_log";
    event.outcome = audit::Outcome::kFailure;
    event.details = "{\"first_bad_seq\":" + std::to_string(first_bad) + "}";
    return audit::Record(tx, event, core::NowRfc3339());
  });
  if (!recorded) throw std::runtime_error("cannot record the accepted broken audit chain");
}

}  // namespace

void AddRoutes(api::Router& router, const core::Config& config, const Services& services) {
  const api::JsonLimits json{static_cast<std::size_t>(config.limits.max_json_depth)};
  router.SetAuthenticator(api::SessionAuthenticator(services.sessions));
  router.SetDenialRecorder([&db = services.db](const api::Route& route, const api::Request& req) {
    audit::Event e;
    e.org_id = req.principal.org_id;
    e.actor_type = audit::ActorType::kUser;
    e.actor_id = req.principal.user_id;
    e.action = "access.denied";
    e.target_type = "route";
    e.target_id = std::string(api::MethodName(route.method).view()) + " " + route.pattern;
    e.outcome = audit::Outcome::kDenied;
    e.request_id = req.request_id;
    e.source_address = req.peer_address;
    // The refusal does not wait for its record; a failed record is logged.
    db.SubmitWrite(
        [e](storage::Transaction& tx) -> Status {
          return audit::Record(tx, e, core::NowRfc3339());
        },
        [](Status done) {
          if (!done) log::Warn("audit.denial_not_recorded");
        });
  });
  api::AddHealthRoutes(router, services.db, services.metrics);
  api::AddEventRoutes(router, json, services.live_sockets,
                      {services.messaging, services.hub, services.stream_pool});
  api::AddMessagingRoutes(router, services.messaging, services.pool, json,
                          {.attachment_max_bytes = config.messaging.attachment_max_bytes});
  api::AddAuthRoutes(router, services.sessions, services.pool, json);
  api::AddUserRoutes(router, services.users, services.sessions, services.pool, json);
  api::AddOrgRoutes(router, services.orgs, services.db, services.keys, services.pool, json);
  api::AddBreakGlassRoutes(router, services.break_glass, services.pool, json);
  api::AddAuditRoutes(router, services.db, services.pool);
  if (config.diagnostics.write_probe) api::AddDiagnosticsRoutes(router, services.db, json);
  if (config.diagnostics.sealed_probe) {
    api::AddSealedProbeRoutes(router, services.db, services.keys, json);
  }
}

int Serve(const core::Config& config, const ServeOptions& options) {
  const sigset_t signals = BlockShutdownSignals();
  ApplyLogLevel(config);

  metrics::Registry metrics;
  Deployment d = OpenDeployment(config, OpenMode::kCreate, &metrics);
  storage::Database* db = d.db.get();
  log::Info("storage.opened", {{log::Key::kVersion, db->SchemaVersion()}});
  VerifyAuditAtStart(d, options);

  keys::KeyStore keys(*db, d.kek, std::chrono::milliseconds(config.keys.cache_ttl_ms));
  keys::Reencryptor reencryptor(*db, keys,
                                {std::chrono::milliseconds(config.keys.reencrypt_poll_ms),
                                 static_cast<int>(config.keys.reencrypt_batch)});
  audit::Checkpointer checkpointer(
      *db, *d.signing_key, d.paths.checkpoints,
      {.poll = std::chrono::milliseconds(
           std::min<std::int64_t>(1000, config.audit.checkpoint_interval_ms)),
       .every_events = config.audit.checkpoint_every_events,
       .interval = std::chrono::milliseconds(config.audit.checkpoint_interval_ms)});

  const transport::TlsMaterial tls = transport::PrepareTlsMaterial(
      config.server.data_dir, config.tls.cert_file, config.tls.key_file);

  identity::SessionOptions session_options;
  session_options.throttle = {
      .account_failures_per_hour = static_cast<int>(config.auth.account_failures_per_hour),
      .address_failures_per_hour = static_cast<int>(config.auth.address_failures_per_hour),
      .free_failures = static_cast<int>(config.auth.free_failures),
      .address_free_failures = static_cast<int>(config.auth.address_free_failures),
      .first_delay = std::chrono::milliseconds(config.auth.first_delay_ms),
      .max_delay = std::chrono::milliseconds(config.auth.max_delay_ms)};
  identity::Sessions sessions(*db, keys, session_options);
  identity::Users users(*db);
  identity::OrgSettingsStore orgs(*db);
  identity::BreakGlass break_glass(*db, keys);
  api::LiveSockets live_sockets;
  // Argon2id (64 MiB per hash), identity work and audit pages: one worker
  // per core, and a queue short enough that a burst is refused (503) rather
  // than piling up.
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  auto worker_pool =
      std::make_unique<core::WorkerPool>(cores, static_cast<std::size_t>(cores) * 16);

  messaging::LiveHub hub;
  // Push notifications go to the recording sink when one is configured (a
  // real APNs or FCM sender plugs in as another PushSender).
  std::unique_ptr<messaging::PushDispatcher> push;
  if (!config.messaging.push_sink_file.empty()) {
    push = std::make_unique<messaging::PushDispatcher>(
        std::make_unique<messaging::RecordingPushSink>(config.messaging.push_sink_file));
  }
  messaging::Messaging messaging(*db, keys, hub, push.get());
  // Event-stream replays read and open pages of messages and may wait for a
  // slow client: they have workers of their own, so they never hold up
  // sign-ins or requests.
  auto stream_pool = std::make_unique<core::WorkerPool>(4, 4096);

  api::Router router;
  AddRoutes(router, config,
            {*db, keys, sessions, users, orgs, break_glass, live_sockets, *worker_pool, metrics,
             messaging, hub, *stream_pool});

  // Dormant accounts and expired emergency access.
  core::Periodic housekeeping(
      std::chrono::milliseconds(config.auth.housekeeping_interval_ms), [&users, &break_glass] {
        if (auto n = users.DeactivateDormant(); !n) {
          log::Warn("identity.dormant_sweep_failed");
        } else if (*n > 0) {
          log::Info("identity.dormant_deactivated", {{log::Key::kCount, *n}});
        }
        if (auto n = break_glass.ExpireGrants(); !n) log::Warn("identity.break_glass_expiry_failed");
      });
  // Live sockets of ended sessions: revoked ones (from any process) and
  // expired ones. The look-back overlaps the previous poll by a few seconds,
  // for revocations committed late in their batch; closing twice is harmless.
  // Every tenth round, every live socket's session is checked in full
  // (idle, lifetime and status under the organization's current settings),
  // so a socket does not outlive its session's automatic logoff.
  core::Periodic revocations(
      std::chrono::milliseconds(config.auth.revocation_poll_ms),
      [&sessions, &live_sockets, since = std::chrono::system_clock::now(), round = 0]() mutable {
        const auto now = std::chrono::system_clock::now();
        if (live_sockets.size() == 0) {
          since = now;
          return;
        }
        auto revoked = sessions.RevokedSince(core::FormatRfc3339(since - std::chrono::seconds(5)));
        if (revoked) {
          since = now;
          live_sockets.CloseSessions(*revoked);
        }
        live_sockets.CloseExpired(now);
        if (++round % 10 == 0) {
          if (auto ended = sessions.EndedAmong(live_sockets.SessionIds())) {
            live_sockets.CloseSessions(*ended);
          }
        }
      });

  // Messages past their lifespan, and urgent messages nobody has read.
  core::Periodic messaging_jobs(
      std::chrono::milliseconds(config.messaging.jobs_interval_ms), [&messaging, &config] {
        const auto now = std::chrono::system_clock::now();
        auto purged = messaging.PurgeExpired(now);
        if (!purged) {
          log::Warn("messaging.purge_failed");
        } else if (purged->messages > 0) {
          log::Info("messaging.purged", {{log::Key::kCount, purged->messages}});
        }
        auto followed = messaging.FollowUpUrgent(
            now, std::chrono::milliseconds(config.messaging.urgent_remind_after_ms),
            std::chrono::milliseconds(config.messaging.urgent_escalate_after_ms));
        if (!followed) log::Warn("messaging.urgent_follow_up_failed");
      });

  transport::HttpServer http(config, tls, router, metrics);
  http.Start();
  reencryptor.Start();
  housekeeping.Start();
  revocations.Start();
  messaging_jobs.Start();

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

  revocations.Stop();
  housekeeping.Stop();
  messaging_jobs.Stop();
  const int cut = http.Shutdown();
  worker_pool.reset();  // finishes sign-ins already under way
  stream_pool.reset();
  reencryptor.Stop();
  checkpointer.Stop();  // signs a last checkpoint over everything written
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
  auto report = storage::MigrateSqlite(PathsFor(config).database);
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
