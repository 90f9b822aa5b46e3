#pragma once

// The organization's staff: creating users, changing their roles,
// deactivating and reactivating them, resetting a lost second factor, and
// deactivating dormant accounts.
//
// Every lookup is scoped to the caller's organization: a user of another
// organization is kNotFound, never kPermissionDenied, so ids cannot be
// probed. Ids are random ("usr_" + 96 bits) and never reused: users are
// deactivated, never deleted, and a username stays taken.
//
// No one can grant more than they hold: the permissions of the roles given
// must be a subset of the actor's, and a user whose permissions exceed the
// actor's cannot be changed by them. No one changes their own roles or
// status, so an organization cannot lose its last owner by accident.
// Deactivation ends every session of the user in the same transaction.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.hpp"
#include "core/time.hpp"
#include "identity/principal.hpp"
#include "identity/sessions.hpp"
#include "storage/database.hpp"

namespace cw::identity {

struct UserRecord {
  std::string id;
  std::string username;
  std::string display_name;
  std::vector<std::string> roles;
  std::string status;  // active | deactivated
  bool mfa_enabled = false;
  bool password_change_required = false;
  std::string created_at;
  std::string last_sign_in_at;      // empty when never
  std::string deactivated_at;       // empty when active
  std::string deactivation_reason;  // admin | dormant
};

struct UserChange {
  std::optional<std::vector<std::string>> roles;
  std::optional<std::string> display_name;
  std::optional<std::string> status;  // "active" or "deactivated"
};

struct CreatedUser {
  UserRecord user;
  std::string one_time_password;  // shown once, never stored
};

class Users {
 public:
  Users(storage::Database& db, core::Clock clock = core::SystemClock());

  // kInvalidArgument (with `problem`), kConflict for a taken username,
  // kPermissionDenied for roles beyond the actor's own. Hashes the one-time
  // password: call from a worker thread.
  Result<CreatedUser> Create(const Principal& actor, std::string_view username,
                             std::string_view display_name, const std::vector<std::string>& roles,
                             const RequestOrigin& origin, std::string* problem);

  // At most `limit` users ordered by username, after `after` (a username).
  Result<std::vector<UserRecord>> List(const Principal& viewer, std::string_view after, int limit);
  Result<UserRecord> Get(const Principal& viewer, std::string_view user_id);

  Result<UserRecord> Update(const Principal& actor, std::string_view user_id,
                            const UserChange& change, const RequestOrigin& origin,
                            std::string* problem);

  // Removes the user's second factor and recovery codes and ends their
  // sessions: their next sign-in enrols again.
  Status ResetMfa(const Principal& actor, std::string_view user_id, const RequestOrigin& origin);

  // Deactivates every active user with no sign-in (or, never signed in, no
  // creation or reactivation) for their organization's dormant_after_days.
  // Owners are never deactivated this way, so an organization cannot lose
  // its last way in. Returns how many.
  Result<int> DeactivateDormant();

 private:
  storage::Database& db_;
  core::Clock clock_;
};

// users.roles is stored as a JSON array of role names.
std::vector<std::string> ParseRolesJson(std::string_view json);
std::string RolesJson(const std::vector<std::string>& roles);

// Checks role names against the built-in roles and the organization's own,
// and returns the permissions they grant. kInvalidArgument (with `problem`)
// for an empty list, a duplicate or an unknown name.
Result<PermissionSet> ResolveRoles(storage::Transaction& tx, const std::string& org_id,
                                   const std::vector<std::string>& roles, std::string* problem);

}  // namespace cw::identity
