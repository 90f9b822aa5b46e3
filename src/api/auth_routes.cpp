// Sign-in routes: POST /api/v1/auth/login, POST /api/v1/auth/logout,
// GET /api/v1/me and POST /api/v1/me/password. Password work (Argon2id) runs
// on the worker pool, never on an I/O thread; a full pool answers 503.

#include <boost/json/value.hpp>
#include <memory>

#include "api/errors.hpp"
#include "api/routes.hpp"
#include "core/error.hpp"

namespace cw::api {
namespace {

constexpr std::size_t kMaxFieldBytes = 1024;

// Exactly the named string fields, each present once and non-empty, or an
// error response.
std::optional<std::map<std::string, std::string>> StringFields(
    const Request& req, const JsonLimits& limits, std::initializer_list<std::string_view> names,
    Response* error) {
  auto body = ParseJsonObjectBody(req, limits, error);
  if (!body) return std::nullopt;
  std::map<std::string, std::string> out;
  for (const auto& [key, value] : *body) {
    bool known = false;
    for (std::string_view n : names) known = known || n == key;
    if (!known || !value.is_string() || value.get_string().empty() ||
        value.get_string().size() > kMaxFieldBytes) {
      *error = ErrorResponse(req.request_id, ApiError::kBadRequest,
                             "the body takes only the documented fields, each a non-empty string");
      return std::nullopt;
    }
    out.emplace(std::string(key), std::string(value.get_string()));
  }
  if (out.size() != names.size()) {
    *error = ErrorResponse(req.request_id, ApiError::kBadRequest, "a required field is missing");
    return std::nullopt;
  }
  return out;
}

boost::json::object UserJson(const Principal& p) {
  boost::json::array roles;
  for (const auto& r : p.roles) roles.emplace_back(r);
  return {{"id", p.user_id},
          {"username", p.username},
          {"display_name", p.display_name},
          {"org", p.org_slug},
          {"roles", std::move(roles)}};
}

identity::RequestOrigin Origin(const Request& req) { return {req.request_id, req.peer_address}; }

// Runs `work` on the pool and answers with what it returns; 503 when full.
void OnPool(core::WorkerPool& pool, const Request& req, Reply reply,
            std::function<Response()> work) {
  auto shared_reply = std::make_shared<Reply>(std::move(reply));
  if (!pool.Submit([shared_reply, work = std::move(work)] { (*shared_reply)(work()); })) {
    (*shared_reply)(ErrorResponse(req.request_id, ApiError::kUnavailable,
                                  "too many sign-ins in progress; try again shortly"));
  }
}

}  // namespace

Authenticator SessionAuthenticator(identity::Sessions& sessions) {
  return [&sessions](std::string_view token) { return sessions.Authenticate(token); };
}

void AddAuthRoutes(Router& router, identity::Sessions& sessions, core::WorkerPool& pool,
                   const JsonLimits& limits) {
  router.Add(Method::kPost, "/api/v1/auth/login", Access::kPublic,
             [&sessions, &pool, limits](Request& req, Reply reply) {
               Response error;
               auto fields = StringFields(req, limits, {"org", "username", "password"}, &error);
               if (!fields) {
                 reply(std::move(error));
                 return;
               }
               OnPool(pool, req, std::move(reply),
                      [&sessions, fields = std::move(*fields), origin = Origin(req)]() mutable {
                        auto session = sessions.Login(fields["org"], fields["username"],
                                                      fields["password"], origin);
                        std::fill(fields["password"].begin(), fields["password"].end(), '\0');
                        if (!session) {
                          if (session.error() == core::Error::kUnauthenticated) {
                            // One answer for unknown organization, unknown
                            // user and wrong password.
                            return ErrorResponse(origin.request_id, ApiError::kUnauthenticated,
                                                 "the organization, username or password is "
                                                 "not right");
                          }
                          return ErrorResponseFor(origin.request_id, session.error());
                        }
                        boost::json::object body{{"token", session->token},
                                                 {"expires_at", session->user.expires_at},
                                                 {"user", UserJson(session->user)}};
                        if (session->user.password_change_only) {
                          body["password_change_required"] = true;
                        }
                        return JsonResponse(200, body);
                      });
             });

  router.Add(Method::kPost, "/api/v1/auth/logout", Access::kPasswordChange,
             [&sessions](Request& req, Reply reply) {
               auto done = sessions.Logout(req.principal, Origin(req));
               if (!done) {
                 reply(ErrorResponseFor(req.request_id, done.error()));
                 return;
               }
               reply(Response{.status = 204});
             });

  router.Add(Method::kGet, "/api/v1/me", Access::kSignedIn,
             [](Request& req, Reply reply) { reply(JsonResponse(200, UserJson(req.principal))); });

  router.Add(
      Method::kPost, "/api/v1/me/password", Access::kPasswordChange,
      [&sessions, &pool, limits](Request& req, Reply reply) {
        Response error;
        auto fields = StringFields(req, limits, {"current_password", "new_password"}, &error);
        if (!fields) {
          reply(std::move(error));
          return;
        }
        OnPool(pool, req, std::move(reply),
               [&sessions, fields = std::move(*fields), user = req.principal,
                origin = Origin(req)]() mutable {
                 std::string problem;
                 auto changed = sessions.ChangePassword(user, fields["current_password"],
                                                        fields["new_password"], origin, &problem);
                 for (auto& [k, v] : fields) std::fill(v.begin(), v.end(), '\0');
                 if (!changed) {
                   if (changed.error() == core::Error::kInvalidArgument) {
                     return ErrorResponse(origin.request_id, ApiError::kBadRequest,
                                          SafeText::Trusted(problem));
                   }
                   if (changed.error() == core::Error::kUnauthenticated) {
                     return ErrorResponse(origin.request_id, ApiError::kUnauthenticated,
                                          "the current password is not right");
                   }
                   return ErrorResponseFor(origin.request_id, changed.error());
                 }
                 return Response{.status = 204};
               });
      });
}

}  // namespace cw::api
