#pragma once

// Emergency access ("break-glass"): a user holding the break_glass
// permission opens access outside their normal scope for their
// organization's break_glass_minutes, stating why. The reason is sealed (it
// may name a patient). Opening it is audited as such and raises an alert for
// everyone in the organization who receives security alerts (alerts.read:
// every privacy officer, and owners and admins); it ends by itself, and the
// end is audited too. While open, the user's principal carries the grant;
// the routes that reach beyond a user's normal scope consult it and name it
// in their audit events. Reasons are shown only to break_glass.review.

#include <string>
#include <string_view>
#include <vector>

#include "core/result.hpp"
#include "core/time.hpp"
#include "identity/principal.hpp"
#include "identity/sessions.hpp"
#include "keys/key_store.hpp"
#include "storage/database.hpp"

namespace cw::identity {

struct BreakGlassGrant {
  std::string id;
  std::string user_id;
  std::string reason;  // opened only for those who may read it
  std::string started_at;
  std::string expires_at;
  std::string ended_at;  // empty while open
};

struct Alert {
  std::string id;
  std::string kind;  // break_glass.started
  std::string user_id;
  std::string target_type;
  std::string target_id;
  std::string created_at;
  std::string acknowledged_at;
};

inline constexpr std::size_t kMinReasonChars = 10;
inline constexpr std::size_t kMaxReasonBytes = 2000;

class BreakGlass {
 public:
  BreakGlass(storage::Database& db, keys::KeyStore& keys, core::Clock clock = core::SystemClock());

  // kInvalidArgument (with `problem`) for a missing or too short reason;
  // kConflict when the user already has an open grant.
  Result<BreakGlassGrant> Start(const Principal& user, std::string_view reason,
                                const RequestOrigin& origin, std::string* problem);
  // Ends the caller's own open grant early. kNotFound otherwise.
  Status End(const Principal& user, std::string_view grant_id, const RequestOrigin& origin);
  // The organization's grants, newest first, reasons opened; each listing
  // is itself audited (reasons may carry PHI).
  Result<std::vector<BreakGlassGrant>> List(const Principal& viewer, int limit,
                                            const RequestOrigin& origin);

  // The caller's alerts, newest first.
  Result<std::vector<Alert>> Alerts(const Principal& viewer, bool unacknowledged_only, int limit);
  Status Acknowledge(const Principal& viewer, std::string_view alert_id,
                     const RequestOrigin& origin);

  // Marks grants past their end as ended, with an audit event each.
  Result<int> ExpireGrants();

 private:
  storage::Database& db_;
  keys::KeyStore& keys_;
  core::Clock clock_;
};

}  // namespace cw::identity
