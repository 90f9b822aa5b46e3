#pragma once

// The audit event of something a signed-in user did: the actor, the action,
// its target, and where the request came from. Shared by the domain
// subsystems (identity, messaging).

#include <string_view>

#include "audit/audit_log.hpp"
#include "identity/principal.hpp"
#include "identity/sessions.hpp"

namespace cw::identity {

inline audit::Event ActorEvent(const Principal& actor, std::string_view action,
                               std::string_view target_type, std::string_view target_id,
                               const RequestOrigin& origin) {
  audit::Event e;
  e.org_id = actor.org_id;
  e.actor_type = audit::ActorType::kUser;
  e.actor_id = actor.user_id;
  e.action = std::string(action);
  e.target_type = std::string(target_type);
  e.target_id = std::string(target_id);
  e.request_id = origin.request_id;
  e.source_address = origin.source_address;
  return e;
}

}  // namespace cw::identity
