// The organization's staff: GET/POST /api/v1/users, GET/PATCH
// /api/v1/users/{id}, DELETE /api/v1/users/{id}/mfa, GET
// /api/v1/users/{id}/sessions and DELETE /api/v1/sessions/{id}. Another
// organization's ids answer 404, like ids that do not exist.

#include <boost/json/value.hpp>

#include "api/handler_support.hpp"
#include "api/query.hpp"
#include "api/routes.hpp"
#include "core/error.hpp"

namespace cw::api {
namespace {

using identity::Permission;

boost::json::object UserJson(const identity::UserRecord& u) {
  return {{"id", u.id},
          {"username", u.username},
          {"display_name", u.display_name},
          {"roles", JsonStrings(u.roles)},
          {"status", u.status},
          {"mfa_enabled", u.mfa_enabled},
          {"password_change_required", u.password_change_required},
          {"created_at", u.created_at},
          {"last_sign_in_at", OrNull(u.last_sign_in_at)},
          {"deactivated_at", OrNull(u.deactivated_at)},
          {"deactivation_reason", OrNull(u.deactivation_reason)}};
}

// The answer to a refused change: 400 names the problem, 403 and 404 are
// fixed texts.
Response ChangeFailure(const std::string& request_id, const ErrorCode& error,
                       const std::string& problem) {
  if (error == core::Error::kInvalidArgument && !problem.empty()) {
    return ErrorResponse(request_id, ApiError::kBadRequest, SafeText::Trusted(problem));
  }
  if (error == core::Error::kPermissionDenied) {
    return ErrorResponse(request_id, ApiError::kForbidden,
                         "you cannot grant or change more than your own roles allow, nor "
                         "change your own roles or status");
  }
  if (error == core::Error::kConflict) {
    return ErrorResponse(request_id, ApiError::kConflict, "that username is taken");
  }
  return ErrorResponseFor(request_id, error);
}

}  // namespace

void AddUserRoutes(Router& router, identity::Users& users, identity::Sessions& sessions,
                   core::WorkerPool& pool, const JsonLimits& limits) {
  router.Add(Method::kGet, "/api/v1/users", Access::Needs(Permission::kUsersRead),
             [&users, &pool](Request& req, Reply reply) {
               SafeText problem = "";
               auto params = ParseQuery(req.query, {"after", "limit"}, &problem);
               if (!params) {
                 return reply(ErrorResponse(req.request_id, ApiError::kBadRequest, problem));
               }
               const auto limit = ParseLimit(*params, 100, 500);
               if (!limit) {
                 return reply(ErrorResponse(req.request_id, ApiError::kBadRequest,
                                            "limit must be an integer from 1 to 500"));
               }
               const std::string after = params->count("after") ? (*params)["after"] : "";
               OnPool(pool, req, std::move(reply),
                      [&users, user = req.principal, id = req.request_id, after, limit = *limit] {
                        auto list = users.List(user, after, limit);
                        if (!list) return ErrorResponseFor(id, list.error());
                        boost::json::array out;
                        for (const auto& u : *list) out.push_back(UserJson(u));
                        boost::json::value next = nullptr;
                        if (static_cast<int>(list->size()) == limit) next = list->back().username;
                        return JsonResponse(200, {{"users", std::move(out)}, {"next_after", next}});
                      });
             });

  router.Add(
      Method::kPost, "/api/v1/users", Access::Needs(Permission::kUsersManage),
      [&users, &pool, limits](Request& req, Reply reply) {
        Response error;
        auto body = ParseJsonObjectBody(req, limits, &error);
        if (!body) return reply(std::move(error));
        if (!OnlyKnownKeys(req, *body, {"username", "display_name", "roles"}, &error)) {
          return reply(std::move(error));
        }
        const auto* username = body->if_contains("username");
        const auto* display = body->if_contains("display_name");
        const auto* roles_value = body->if_contains("roles");
        std::optional<std::vector<std::string>> roles;
        if (roles_value) roles = StringList(*roles_value, 10);
        if (!username || !username->is_string() || username->as_string().size() > 64 ||
            (display && (!display->is_string() || display->as_string().size() > 200)) || !roles) {
          return reply(ErrorResponse(req.request_id, ApiError::kBadRequest,
                                     "username (a string), roles (1 to 10 distinct role names) "
                                     "and optionally display_name (a string) are required"));
        }
        std::string name(username->as_string());
        std::string display_name = display ? std::string(display->as_string()) : name;
        OnPool(pool, req, std::move(reply),
               [&users, actor = req.principal, origin = Origin(req), name, display_name,
                roles = std::move(*roles)] {
                 std::string problem;
                 auto created = users.Create(actor, name, display_name, roles, origin, &problem);
                 if (!created) return ChangeFailure(origin.request_id, created.error(), problem);
                 boost::json::object out = UserJson(created->user);
                 out["one_time_password"] = created->one_time_password;
                 return JsonResponse(201, out);
               });
      });

  router.Add(Method::kGet, "/api/v1/users/{id}", Access::Needs(Permission::kUsersRead),
             [&users, &pool](Request& req, Reply reply) {
               OnPool(pool, req, std::move(reply),
                      [&users, viewer = req.principal, id = std::string(req.Param("id")),
                       request_id = req.request_id] {
                        auto user = users.Get(viewer, id);
                        if (!user) return ErrorResponseFor(request_id, user.error());
                        return JsonResponse(200, UserJson(*user));
                      });
             });

  router.Add(
      Method::kPatch, "/api/v1/users/{id}", Access::Needs(Permission::kUsersManage),
      [&users, &pool, limits](Request& req, Reply reply) {
        Response error;
        auto body = ParseJsonObjectBody(req, limits, &error);
        if (!body) return reply(std::move(error));
        if (!OnlyKnownKeys(req, *body, {"roles", "display_name", "status"}, &error)) {
          return reply(std::move(error));
        }
        identity::UserChange change;
        if (const auto* v = body->if_contains("roles")) {
          change.roles = StringList(*v, 10);
          if (!change.roles) {
            return reply(ErrorResponse(req.request_id, ApiError::kBadRequest,
                                       "roles must list 1 to 10 distinct role names"));
          }
        }
        if (const auto* v = body->if_contains("display_name")) {
          if (!v->is_string()) {
            return reply(ErrorResponse(req.request_id, ApiError::kBadRequest,
                                       "display_name must be a string"));
          }
          change.display_name = std::string(v->as_string());
        }
        if (const auto* v = body->if_contains("status")) {
          if (!v->is_string()) {
            return reply(ErrorResponse(req.request_id, ApiError::kBadRequest,
                                       "status must be \"active\" or \"deactivated\""));
          }
          change.status = std::string(v->as_string());
        }
        if (!change.roles && !change.display_name && !change.status) {
          return reply(ErrorResponse(req.request_id, ApiError::kBadRequest,
                                     "the body names nothing to change"));
        }
        // Changing roles is a sensitive action: it needs a recent password check.
        if (change.roles &&
            std::chrono::system_clock::now() - req.principal.reauthenticated_at >
                identity::kReauthWindow) {
          return reply(ErrorResponse(req.request_id, ApiError::kReauthRequired,
                                     "confirm your password first (POST /api/v1/auth/reauth)"));
        }
        OnPool(pool, req, std::move(reply),
               [&users, actor = req.principal, id = std::string(req.Param("id")),
                origin = Origin(req), change = std::move(change)] {
                 std::string problem;
                 auto updated = users.Update(actor, id, change, origin, &problem);
                 if (!updated) return ChangeFailure(origin.request_id, updated.error(), problem);
                 return JsonResponse(200, UserJson(*updated));
               });
      });

  router.Add(Method::kDelete, "/api/v1/users/{id}/mfa",
             Access::Needs(Permission::kUsersManage).Sensitive(),
             [&users, &pool](Request& req, Reply reply) {
               OnPool(pool, req, std::move(reply),
                      [&users, actor = req.principal, id = std::string(req.Param("id")),
                       origin = Origin(req)] {
                        auto done = users.ResetMfa(actor, id, origin);
                        if (!done) return ChangeFailure(origin.request_id, done.error(), "");
                        return Response{.status = 204};
                      });
             });

  router.Add(Method::kGet, "/api/v1/users/{id}/sessions",
             Access::Needs(Permission::kSessionsManage),
             [&users, &sessions, &pool](Request& req, Reply reply) {
               OnPool(pool, req, std::move(reply),
                      [&users, &sessions, viewer = req.principal,
                       id = std::string(req.Param("id")), request_id = req.request_id] {
                        // Another organization's user is not found, not an empty list.
                        if (auto user = users.Get(viewer, id); !user) {
                          return ErrorResponseFor(request_id, user.error());
                        }
                        auto list = sessions.ListSessions(viewer, id);
                        if (!list) return ErrorResponseFor(request_id, list.error());
                        return JsonResponse(200, {{"sessions", SessionsJson(*list)}});
                      });
             });

  router.Add(Method::kDelete, "/api/v1/sessions/{id}", Access::Needs(Permission::kSessionsManage),
             [&sessions, &pool](Request& req, Reply reply) {
               OnPool(pool, req, std::move(reply),
                      [&sessions, actor = req.principal, id = std::string(req.Param("id")),
                       origin = Origin(req)] {
                        auto done = sessions.RevokeSession(actor, id, origin);
                        if (!done) return ErrorResponseFor(origin.request_id, done.error());
                        return Response{.status = 204};
                      });
             });
}

}  // namespace cw::api
