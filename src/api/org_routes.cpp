// The caller's organization: GET/PATCH /api/v1/org (settings), GET
// /api/v1/roles, PUT/DELETE /api/v1/roles/{name} (the organization's own
// roles) and POST /api/v1/org/keys/rotate (a new data-key version).
// Changing settings, roles and keys are sensitive: each needs a recent
// password check.

#include <boost/json/value.hpp>

#include "api/handler_support.hpp"
#include "api/routes.hpp"
#include "audit/audit_log.hpp"
#include "core/error.hpp"
#include "keys/key_store.hpp"

namespace cw::api {
namespace {

using identity::Permission;

boost::json::object OrgJson(const identity::OrgRecord& o) {
  const identity::OrgSettings& s = o.settings;
  boost::json::value lifespan = nullptr;
  if (s.message_lifespan_days) lifespan = *s.message_lifespan_days;
  return {{"id", o.id},
          {"slug", o.slug},
          {"name", o.name},
          {"created_at", o.created_at},
          {"settings",
           {{"mfa_required", s.mfa_required},
            {"idle_timeout_minutes", s.idle_timeout_minutes},
            {"absolute_timeout_hours", s.absolute_timeout_hours},
            {"message_lifespan_days", lifespan},
            {"dormant_after_days", s.dormant_after_days},
            {"break_glass_minutes", s.break_glass_minutes},
            {"do_not_forward_default", s.do_not_forward_default}}}};
}

boost::json::object RoleJson(const identity::RoleRecord& r) {
  return {{"name", r.name},
          {"description", r.description},
          {"built_in", r.built_in},
          {"permissions", JsonStrings(r.permissions)}};
}

// Reads {"settings":{...}} strictly: known keys, right types.
std::optional<identity::OrgSettingsChange> ParseSettings(const boost::json::object& body) {
  if (body.size() != 1) return std::nullopt;
  const auto* settings = body.if_contains("settings");
  if (!settings || !settings->is_object() || settings->as_object().empty()) return std::nullopt;
  identity::OrgSettingsChange c;
  for (const auto& [key, v] : settings->as_object()) {
    // Ranges are checked by the store, which names the field; here only
    // the type (an integer that fits) is.
    auto integer = [&v]() { return IntIn(v, INT32_MIN, INT32_MAX); };
    if (key == "mfa_required") {
      if (!v.is_bool()) return std::nullopt;
      c.mfa_required = v.as_bool();
    } else if (key == "do_not_forward_default") {
      if (!v.is_bool()) return std::nullopt;
      c.do_not_forward_default = v.as_bool();
    } else if (key == "idle_timeout_minutes") {
      if (!(c.idle_timeout_minutes = integer())) return std::nullopt;
    } else if (key == "absolute_timeout_hours") {
      if (!(c.absolute_timeout_hours = integer())) return std::nullopt;
    } else if (key == "dormant_after_days") {
      if (!(c.dormant_after_days = integer())) return std::nullopt;
    } else if (key == "break_glass_minutes") {
      if (!(c.break_glass_minutes = integer())) return std::nullopt;
    } else if (key == "message_lifespan_days") {
      if (v.is_null()) {
        c.clear_message_lifespan = true;
      } else if (!(c.message_lifespan_days = integer())) {
        return std::nullopt;
      }
    } else {
      return std::nullopt;
    }
  }
  return c;
}

}  // namespace

void AddOrgRoutes(Router& router, identity::OrgSettingsStore& orgs, storage::Database& db,
                  keys::KeyStore& keys, core::WorkerPool& pool, const JsonLimits& limits) {
  router.Add(Method::kGet, "/api/v1/org", Access::OwnAccount(),
             [&orgs, &pool](Request& req, Reply reply) {
               OnPool(pool, req, std::move(reply),
                      [&orgs, viewer = req.principal, id = req.request_id] {
                        auto org = orgs.Get(viewer);
                        if (!org) return ErrorResponseFor(id, org.error());
                        return JsonResponse(200, OrgJson(*org));
                      });
             });

  router.Add(Method::kPatch, "/api/v1/org", Access::Needs(Permission::kOrgManage).Sensitive(),
             [&orgs, &pool, limits](Request& req, Reply reply) {
               Response error;
               auto body = ParseJsonObjectBody(req, limits, &error);
               if (!body) return reply(std::move(error));
               auto change = ParseSettings(*body);
               if (!change) {
                 return reply(ErrorResponse(
                     req.request_id, ApiError::kBadRequest,
                     "the body is {\"settings\":{...}} with documented settings of the right "
                     "types"));
               }
               OnPool(pool, req, std::move(reply),
                      [&orgs, actor = req.principal, origin = Origin(req), c = *change] {
                        std::string problem;
                        auto org = orgs.Update(actor, c, origin, &problem);
                        if (!org) {
                          if (!problem.empty()) {
                            return ErrorResponse(origin.request_id, ApiError::kBadRequest,
                                                 SafeText::Trusted(problem));
                          }
                          return ErrorResponseFor(origin.request_id, org.error());
                        }
                        return JsonResponse(200, OrgJson(*org));
                      });
             });

  router.Add(Method::kGet, "/api/v1/roles", Access::Needs(Permission::kUsersRead),
             [&orgs, &pool](Request& req, Reply reply) {
               OnPool(pool, req, std::move(reply),
                      [&orgs, viewer = req.principal, id = req.request_id] {
                        auto roles = orgs.ListRoles(viewer);
                        if (!roles) return ErrorResponseFor(id, roles.error());
                        boost::json::array out;
                        for (const auto& r : *roles) out.push_back(RoleJson(r));
                        return JsonResponse(200, {{"roles", std::move(out)}});
                      });
             });

  router.Add(
      Method::kPut, "/api/v1/roles/{name}", Access::Needs(Permission::kRolesManage).Sensitive(),
      [&orgs, &pool, limits](Request& req, Reply reply) {
        Response error;
        auto body = ParseJsonObjectBody(req, limits, &error);
        if (!body) return reply(std::move(error));
        if (!OnlyKnownKeys(req, *body, {"description", "permissions"}, &error)) {
          return reply(std::move(error));
        }
        const auto* description = body->if_contains("description");
        const auto* permissions = body->if_contains("permissions");
        std::optional<std::vector<std::string>> names;
        if (permissions) names = StringList(*permissions, identity::kPermissionCount);
        if (!names || (description && !description->is_string())) {
          return reply(ErrorResponse(req.request_id, ApiError::kBadRequest,
                                     "permissions (distinct permission names) is required; "
                                     "description is a string"));
        }
        OnPool(pool, req, std::move(reply),
               [&orgs, actor = req.principal, origin = Origin(req),
                name = std::string(req.Param("name")),
                text = description ? std::string(description->as_string()) : "",
                names = std::move(*names)] {
                 std::string problem;
                 auto role = orgs.PutRole(actor, name, text, names, origin, &problem);
                 if (!role) {
                   if (!problem.empty()) {
                     return ErrorResponse(origin.request_id, ApiError::kBadRequest,
                                          SafeText::Trusted(problem));
                   }
                   if (role.error() == core::Error::kPermissionDenied) {
                     return ErrorResponse(origin.request_id, ApiError::kForbidden,
                                          "a role cannot grant permissions you do not hold");
                   }
                   return ErrorResponseFor(origin.request_id, role.error());
                 }
                 return JsonResponse(200, RoleJson(*role));
               });
      });

  router.Add(Method::kDelete, "/api/v1/roles/{name}",
             Access::Needs(Permission::kRolesManage).Sensitive(),
             [&orgs, &pool](Request& req, Reply reply) {
               OnPool(pool, req, std::move(reply),
                      [&orgs, actor = req.principal, origin = Origin(req),
                       name = std::string(req.Param("name"))] {
                        auto done = orgs.DeleteRole(actor, name, origin);
                        if (!done) {
                          if (done.error() == core::Error::kConflict) {
                            return ErrorResponse(origin.request_id, ApiError::kConflict,
                                                 "users still hold this role");
                          }
                          return ErrorResponseFor(origin.request_id, done.error());
                        }
                        return Response{.status = 204};
                      });
             });

  router.Add(Method::kPost, "/api/v1/org/keys/rotate",
             Access::Needs(Permission::kKeysRotate).Sensitive(),
             [&db, &keys, &pool](Request& req, Reply reply) {
               if (!req.body.empty()) {
                 return reply(ErrorResponse(req.request_id, ApiError::kBadRequest,
                                            "this route takes no body"));
               }
               OnPool(pool, req, std::move(reply),
                      [&db, &keys, actor = req.principal, origin = Origin(req)] {
                        std::uint32_t version = 0;
                        auto written = db.Write([&](storage::Transaction& tx) -> Status {
                          const std::string now = core::NowRfc3339();
                          auto added = keys::AddDataKeyVersion(tx, keys.kek(), actor.org_id, now);
                          if (!added) return added.error();
                          version = *added;
                          audit::Event e;
                          e.org_id = actor.org_id;
                          e.actor_type = audit::ActorType::kUser;
                          e.actor_id = actor.user_id;
                          e.action = "keys.rotated";
                          e.target_type = "data_key";
                          e.target_id = std::to_string(version);
                          e.request_id = origin.request_id;
                          e.source_address = origin.source_address;
                          return audit::Record(tx, e, now);
                        });
                        if (!written) return ErrorResponseFor(origin.request_id, written.error());
                        return JsonResponse(200, {{"key_version", version}});
                      });
             });
}

}  // namespace cw::api
