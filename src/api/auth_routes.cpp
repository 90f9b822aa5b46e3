// Sign-in and one's own account: POST /api/v1/auth/login, /auth/mfa,
// /auth/logout and /auth/reauth; GET /api/v1/me, POST /me/password, the two
// TOTP enrolment routes and the list of one's own sessions. Everything runs
// on the worker pool: password work (Argon2id) and database writes stay off
// the I/O threads; a full pool answers 503.

#include <boost/json/value.hpp>

#include "api/handler_support.hpp"
#include "api/routes.hpp"
#include "core/error.hpp"

namespace cw::api {
namespace {

using identity::Permission;

void Wipe(std::map<std::string, std::string>& fields) {
  for (auto& [k, v] : fields) std::fill(v.begin(), v.end(), '\0');
}

boost::json::object SignInJson(const identity::SignIn& s) {
  if (s.mfa_challenge) return {{"mfa_required", true}, {"mfa_token", s.token}};
  boost::json::object body{
      {"token", s.token}, {"expires_at", s.user.expires_at}, {"user", PrincipalJson(s.user)}};
  if (s.user.scope == identity::SessionScope::kPasswordChange) {
    body["password_change_required"] = true;
  }
  if (s.user.scope == identity::SessionScope::kMfaEnrollment) {
    body["mfa_enrollment_required"] = true;
  }
  return body;
}

// The answer to a refused sign-in step: one message for every wrong
// credential, 429 with Retry-After when throttled.
Response SignInFailure(const std::string& request_id, const ErrorCode& error,
                       const identity::Refusal& refusal, SafeText wrong) {
  if (error == core::Error::kUnauthenticated) {
    return ErrorResponse(request_id, ApiError::kUnauthenticated, wrong);
  }
  if (error == core::Error::kResourceExhausted) {
    return RateLimitedResponse(request_id, refusal.retry_after);
  }
  return ErrorResponseFor(request_id, error);
}

boost::json::object SessionJson(const identity::SessionInfo& s) {
  return {{"id", s.id},
          {"scope", s.scope},
          {"created_at", s.created_at},
          {"last_used_at", s.last_used_at},
          {"expires_at", s.expires_at},
          {"source_address", OrNull(s.source_address)},
          {"user_agent", OrNull(s.user_agent)},
          {"current", s.current}};
}

}  // namespace

boost::json::object PrincipalJson(const Principal& p) {
  boost::json::object o{{"id", p.user_id},
                        {"username", p.username},
                        {"display_name", p.display_name},
                        {"org", p.org_slug},
                        {"roles", JsonStrings(p.roles)},
                        {"permissions", JsonStrings(identity::PermissionNames(p.permissions))},
                        {"mfa_enabled", p.mfa_enabled}};
  if (!p.break_glass_until.empty()) {
    o["break_glass"] = {{"id", p.break_glass_id}, {"until", p.break_glass_until}};
  }
  return o;
}

Authenticator SessionAuthenticator(identity::Sessions& sessions) {
  return [&sessions](std::string_view token) { return sessions.Authenticate(token); };
}

boost::json::array SessionsJson(const std::vector<identity::SessionInfo>& sessions) {
  boost::json::array out;
  for (const auto& s : sessions) out.push_back(SessionJson(s));
  return out;
}

void AddAuthRoutes(Router& router, identity::Sessions& sessions, core::WorkerPool& pool,
                   const JsonLimits& limits) {
  router.Add(Method::kPost, "/api/v1/auth/login", Access::Public(),
             [&sessions, &pool, limits](Request& req, Reply reply) {
               Response error;
               auto fields = StringFields(req, limits, {"org", "username", "password"}, &error);
               if (!fields) return reply(std::move(error));
               OnPool(pool, req, std::move(reply),
                      [&sessions, fields = std::move(*fields), origin = Origin(req)]() mutable {
                        identity::Refusal refusal;
                        auto signed_in = sessions.Login(fields["org"], fields["username"],
                                                        fields["password"], origin, &refusal);
                        Wipe(fields);
                        if (!signed_in) {
                          // One answer for unknown organization, unknown
                          // user and wrong password.
                          return SignInFailure(origin.request_id, signed_in.error(), refusal,
                                               "the organization, username or password is not "
                                               "right");
                        }
                        return JsonResponse(200, SignInJson(*signed_in));
                      });
             });

  router.Add(Method::kPost, "/api/v1/auth/mfa", Access::Public(),
             [&sessions, &pool, limits](Request& req, Reply reply) {
               Response error;
               auto fields = StringFields(req, limits, {"mfa_token", "code"}, &error);
               if (!fields) return reply(std::move(error));
               OnPool(pool, req, std::move(reply),
                      [&sessions, fields = std::move(*fields), origin = Origin(req)]() mutable {
                        identity::Refusal refusal;
                        auto signed_in =
                            sessions.CompleteMfa(fields["mfa_token"], fields["code"], origin,
                                                 &refusal);
                        Wipe(fields);
                        if (!signed_in) {
                          return SignInFailure(origin.request_id, signed_in.error(), refusal,
                                               "the code is not right, or the sign-in expired");
                        }
                        return JsonResponse(200, SignInJson(*signed_in));
                      });
             });

  router.Add(Method::kPost, "/api/v1/auth/logout", Access::PasswordChange(),
             [&sessions, &pool](Request& req, Reply reply) {
               OnPool(pool, req, std::move(reply),
                      [&sessions, user = req.principal, origin = Origin(req)] {
                        auto done = sessions.Logout(user, origin);
                        if (!done) return ErrorResponseFor(origin.request_id, done.error());
                        return Response{.status = 204};
                      });
             });

  router.Add(Method::kPost, "/api/v1/auth/reauth", Access::OwnAccount(),
             [&sessions, &pool, limits](Request& req, Reply reply) {
               Response error;
               auto fields = StringFields(req, limits, {"password"}, &error, {"code"});
               if (!fields) return reply(std::move(error));
               OnPool(pool, req, std::move(reply),
                      [&sessions, fields = std::move(*fields), user = req.principal,
                       origin = Origin(req)]() mutable {
                        identity::Refusal refusal;
                        auto done = sessions.Reauthenticate(user, fields["password"],
                                                            fields["code"], origin, &refusal);
                        Wipe(fields);
                        if (!done) {
                          return SignInFailure(origin.request_id, done.error(), refusal,
                                               "the password or code is not right");
                        }
                        return Response{.status = 204};
                      });
             });

  router.Add(Method::kGet, "/api/v1/me", Access::OwnAccount(),
             [](Request& req, Reply reply) { reply(JsonResponse(200, PrincipalJson(req.principal))); });

  router.Add(
      Method::kPost, "/api/v1/me/password", Access::PasswordChange(),
      [&sessions, &pool, limits](Request& req, Reply reply) {
        Response error;
        auto fields = StringFields(req, limits, {"current_password", "new_password"}, &error);
        if (!fields) return reply(std::move(error));
        OnPool(pool, req, std::move(reply),
               [&sessions, fields = std::move(*fields), user = req.principal,
                origin = Origin(req)]() mutable {
                 identity::Refusal refusal;
                 auto changed = sessions.ChangePassword(user, fields["current_password"],
                                                        fields["new_password"], origin, &refusal);
                 Wipe(fields);
                 if (!changed) {
                   if (changed.error() == core::Error::kInvalidArgument) {
                     return ErrorResponse(origin.request_id, ApiError::kBadRequest,
                                          SafeText::Trusted(refusal.problem));
                   }
                   return SignInFailure(origin.request_id, changed.error(), refusal,
                                        "the current password is not right");
                 }
                 return Response{.status = 204};
               });
      });

  router.Add(Method::kPost, "/api/v1/me/mfa/totp", Access::MfaEnrollment(),
             [&sessions, &pool, limits](Request& req, Reply reply) {
               Response error;
               auto fields = StringFields(req, limits, {"password"}, &error);
               if (!fields) return reply(std::move(error));
               OnPool(pool, req, std::move(reply),
                      [&sessions, fields = std::move(*fields), user = req.principal,
                       origin = Origin(req)]() mutable {
                        identity::Refusal refusal;
                        auto started =
                            sessions.BeginTotp(user, fields["password"], origin, &refusal);
                        Wipe(fields);
                        if (!started) {
                          if (started.error() == core::Error::kConflict) {
                            return ErrorResponse(origin.request_id, ApiError::kConflict,
                                                 "a second factor is already set up; an "
                                                 "administrator can reset it");
                          }
                          return SignInFailure(origin.request_id, started.error(), refusal,
                                               "the password is not right");
                        }
                        return JsonResponse(200, {{"secret", started->secret_base32},
                                                  {"otpauth_uri", started->otpauth_uri},
                                                  {"qr_svg", started->qr_svg}});
                      });
             });

  router.Add(Method::kPost, "/api/v1/me/mfa/totp/confirm", Access::MfaEnrollment(),
             [&sessions, &pool, limits](Request& req, Reply reply) {
               Response error;
               auto fields = StringFields(req, limits, {"code"}, &error);
               if (!fields) return reply(std::move(error));
               OnPool(pool, req, std::move(reply),
                      [&sessions, fields = std::move(*fields), user = req.principal,
                       origin = Origin(req)]() mutable {
                        identity::Refusal refusal;
                        auto codes = sessions.ConfirmTotp(user, fields["code"], origin, &refusal);
                        if (!codes) {
                          if (codes.error() == core::Error::kNotFound) {
                            return ErrorResponse(origin.request_id, ApiError::kConflict,
                                                 "start with POST /api/v1/me/mfa/totp");
                          }
                          return SignInFailure(origin.request_id, codes.error(), refusal,
                                               "the code is not right");
                        }
                        return JsonResponse(200, {{"recovery_codes", JsonStrings(*codes)}});
                      });
             });

  router.Add(Method::kGet, "/api/v1/me/sessions", Access::OwnAccount(),
             [&sessions, &pool](Request& req, Reply reply) {
               OnPool(pool, req, std::move(reply), [&sessions, user = req.principal,
                                                    id = req.request_id] {
                 auto list = sessions.ListSessions(user, user.user_id);
                 if (!list) return ErrorResponseFor(id, list.error());
                 return JsonResponse(200, {{"sessions", SessionsJson(*list)}});
               });
             });

  router.Add(Method::kDelete, "/api/v1/me/sessions", Access::OwnAccount(),
             [&sessions, &pool](Request& req, Reply reply) {
               OnPool(pool, req, std::move(reply),
                      [&sessions, user = req.principal, origin = Origin(req)] {
                        auto done = sessions.LogoutEverywhere(user, origin);
                        if (!done) return ErrorResponseFor(origin.request_id, done.error());
                        return Response{.status = 204};
                      });
             });

  router.Add(Method::kDelete, "/api/v1/me/sessions/{id}", Access::OwnAccount(),
             [&sessions, &pool](Request& req, Reply reply) {
               OnPool(pool, req, std::move(reply),
                      [&sessions, user = req.principal, id = std::string(req.Param("id")),
                       origin = Origin(req)]() mutable {
                        // Only one's own sessions through this route, even
                        // for someone who may revoke others'.
                        user.permissions.reset();
                        auto done = sessions.RevokeSession(user, id, origin);
                        if (!done) return ErrorResponseFor(origin.request_id, done.error());
                        return Response{.status = 204};
                      });
             });
}

}  // namespace cw::api
