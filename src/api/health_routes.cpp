#include <boost/json/value.hpp>

#include "api/errors.hpp"
#include "api/routes.hpp"

namespace cw::api {

void AddHealthRoutes(Router& router, storage::Database& db, metrics::Registry& metrics) {
  // Liveness: answers while the process runs, touching nothing else, so an
  // orchestrator restarts only a process that is truly stuck.
  router.Add(Method::kGet, "/healthz", Access::Public(), [](Request&, Reply reply) {
    reply(JsonResponse(200, {{"status", "ok"}}));
  });

  // Readiness: the database answers and still accepts writes.
  router.Add(Method::kGet, "/readyz", Access::Public(), [&db](Request& req, Reply reply) {
    if (const auto st = db.Ping(); !st) {
      reply(ErrorResponse(req.request_id, ApiError::kUnavailable, "database is not ready"));
      return;
    }
    reply(JsonResponse(200, {{"status", "ready"}}));
  });

  router.Add(Method::kGet, "/metrics", Access::Public(), [&metrics](Request&, Reply reply) {
    Response r;
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = metrics.RenderPrometheus();
    reply(std::move(r));
  });
}

}  // namespace cw::api
