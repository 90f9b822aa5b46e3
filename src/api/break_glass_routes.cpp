// Emergency access and the alerts it raises: POST/GET /api/v1/break-glass,
// POST /api/v1/break-glass/{id}/end, GET /api/v1/alerts and POST
// /api/v1/alerts/{id}/acknowledge. Opening emergency access is sensitive:
// it needs a recent password check as well as the break_glass permission.

#include <boost/json/value.hpp>

#include "api/handler_support.hpp"
#include "api/query.hpp"
#include "api/routes.hpp"
#include "core/error.hpp"

namespace cw::api {
namespace {

using identity::Permission;

boost::json::object GrantJson(const identity::BreakGlassGrant& g, bool with_reason) {
  boost::json::object o{{"id", g.id},
                        {"user_id", g.user_id},
                        {"started_at", g.started_at},
                        {"expires_at", g.expires_at},
                        {"ended_at", OrNull(g.ended_at)}};
  if (with_reason) o["reason"] = g.reason;
  return o;
}

}  // namespace

void AddBreakGlassRoutes(Router& router, identity::BreakGlass& break_glass,
                         core::WorkerPool& pool, const JsonLimits& limits) {
  router.Add(Method::kPost, "/api/v1/break-glass",
             Access::Needs(Permission::kBreakGlass).Sensitive(),
             [&break_glass, &pool, limits](Request& req, Reply reply) {
               Response error;
               auto body = ParseJsonObjectBody(req, limits, &error);
               if (!body) return reply(std::move(error));
               const auto* reason = body->if_contains("reason");
               if (body->size() != 1 || !reason || !reason->is_string()) {
                 return reply(ErrorResponse(req.request_id, ApiError::kBadRequest,
                                            "the body is {\"reason\":\"…\"}"));
               }
               OnPool(pool, req, std::move(reply),
                      [&break_glass, user = req.principal, origin = Origin(req),
                       text = std::string(reason->as_string())] {
                        std::string problem;
                        auto grant = break_glass.Start(user, text, origin, &problem);
                        if (!grant) {
                          if (!problem.empty()) {
                            return ErrorResponse(origin.request_id, ApiError::kBadRequest,
                                                 SafeText::Trusted(problem));
                          }
                          if (grant.error() == core::Error::kConflict) {
                            return ErrorResponse(origin.request_id, ApiError::kConflict,
                                                 "emergency access is already open");
                          }
                          return ErrorResponseFor(origin.request_id, grant.error());
                        }
                        // The reason is the caller's own words: not echoed.
                        return JsonResponse(201, GrantJson(*grant, false));
                      });
             });

  // The organization's emergency accesses with their reasons (which may
  // name patients), for those who review them.
  router.Add(Method::kGet, "/api/v1/break-glass", Access::Needs(Permission::kBreakGlassReview),
             [&break_glass, &pool](Request& req, Reply reply) {
               SafeText problem = "";
               auto params = ParseQuery(req.query, {"limit"}, &problem);
               if (!params) {
                 return reply(ErrorResponse(req.request_id, ApiError::kBadRequest, problem));
               }
               const auto limit = ParseLimit(*params, 100, 500);
               if (!limit) {
                 return reply(ErrorResponse(req.request_id, ApiError::kBadRequest,
                                            "limit must be an integer from 1 to 500"));
               }
               OnPool(pool, req, std::move(reply),
                      [&break_glass, viewer = req.principal, origin = Origin(req),
                       limit = *limit] {
                        auto grants = break_glass.List(viewer, limit, origin);
                        if (!grants) return ErrorResponseFor(origin.request_id, grants.error());
                        boost::json::array out;
                        for (const auto& g : *grants) out.push_back(GrantJson(g, true));
                        return JsonResponse(200, {{"grants", std::move(out)}});
                      });
             });

  router.Add(Method::kPost, "/api/v1/break-glass/{id}/end", Access::Needs(Permission::kBreakGlass),
             [&break_glass, &pool](Request& req, Reply reply) {
               OnPool(pool, req, std::move(reply),
                      [&break_glass, user = req.principal, origin = Origin(req),
                       id = std::string(req.Param("id"))] {
                        auto done = break_glass.End(user, id, origin);
                        if (!done) return ErrorResponseFor(origin.request_id, done.error());
                        return Response{.status = 204};
                      });
             });

  router.Add(Method::kGet, "/api/v1/alerts", Access::Needs(Permission::kAlertsRead),
             [&break_glass, &pool](Request& req, Reply reply) {
               SafeText problem = "";
               auto params = ParseQuery(req.query, {"limit", "unacknowledged"}, &problem);
               if (!params) {
                 return reply(ErrorResponse(req.request_id, ApiError::kBadRequest, problem));
               }
               const auto limit = ParseLimit(*params, 100, 500);
               const auto flag = params->find("unacknowledged");
               if (!limit || (flag != params->end() && flag->second != "true" &&
                              flag->second != "false")) {
                 return reply(ErrorResponse(req.request_id, ApiError::kBadRequest,
                                            "limit is 1 to 500; unacknowledged is true or false"));
               }
               const bool only_open = flag != params->end() && flag->second == "true";
               OnPool(pool, req, std::move(reply),
                      [&break_glass, viewer = req.principal, id = req.request_id, only_open,
                       limit = *limit] {
                        auto alerts = break_glass.Alerts(viewer, only_open, limit);
                        if (!alerts) return ErrorResponseFor(id, alerts.error());
                        boost::json::array out;
                        for (const auto& a : *alerts) {
                          out.push_back({{"id", a.id},
                                         {"kind", a.kind},
                                         {"user_id", OrNull(a.user_id)},
                                         {"target_type", OrNull(a.target_type)},
                                         {"target_id", OrNull(a.target_id)},
                                         {"created_at", a.created_at},
                                         {"acknowledged_at", OrNull(a.acknowledged_at)}});
                        }
                        return JsonResponse(200, {{"alerts", std::move(out)}});
                      });
             });

  router.Add(Method::kPost, "/api/v1/alerts/{id}/acknowledge",
             Access::Needs(Permission::kAlertsRead),
             [&break_glass, &pool](Request& req, Reply reply) {
               OnPool(pool, req, std::move(reply),
                      [&break_glass, viewer = req.principal, origin = Origin(req),
                       id = std::string(req.Param("id"))] {
                        auto done = break_glass.Acknowledge(viewer, id, origin);
                        if (!done) return ErrorResponseFor(origin.request_id, done.error());
                        return Response{.status = 204};
                      });
             });
}

}  // namespace cw::api
