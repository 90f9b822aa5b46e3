#include "identity/organizations.hpp"

#include "audit/audit_log.hpp"
#include "core/error.hpp"
#include "core/random.hpp"
#include "core/utf8.hpp"
#include "identity/password.hpp"
#include "keys/key_store.hpp"
#include "storage/database.hpp"

namespace cw::identity {
namespace {

bool IsSlug(std::string_view s) {
  if (s.size() < 2 || s.size() > 63) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    const bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    if (!alnum && !(c == '-' && i > 0 && i + 1 < s.size())) return false;
  }
  return true;
}

}  // namespace

bool IsValidUsername(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  for (const char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
                    c == '-' || c == '@';
    if (!ok) return false;
  }
  return true;
}

bool IsPlainText(std::string_view s, std::size_t max_bytes) {
  if (s.empty() || s.size() > max_bytes || !core::IsValidUtf8(s)) return false;
  bool visible = false;
  for (const char c : s) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return false;
    visible = visible || c != ' ';
  }
  return visible;
}

bool IsValidDisplayName(std::string_view s) { return IsPlainText(s, 200); }

std::string NormalizeUsername(std::string_view username) {
  std::string out(username);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

Result<NewOrganization> PrepareOrganization(std::string_view slug, std::string_view name,
                                            std::string_view owner_username, std::string* problem) {
  if (!IsSlug(slug)) {
    *problem = "the organization slug must be 2 to 63 characters of a-z, 0-9 and inner hyphens";
    return core::Error::kInvalidArgument;
  }
  if (!IsValidDisplayName(name)) {
    *problem = "the organization name must be 1 to 200 bytes of UTF-8 without control characters";
    return core::Error::kInvalidArgument;
  }
  const std::string username = NormalizeUsername(owner_username);
  if (!IsValidUsername(username)) {
    *problem = "the username must be 1 to 64 characters of a-z, 0-9, '.', '_', '-' and '@'";
    return core::Error::kInvalidArgument;
  }
  NewOrganization org;
  org.org_id = "org_" + core::RandomHex(12);
  org.slug = std::string(slug);
  org.name = std::string(name);
  org.owner_id = "usr_" + core::RandomHex(12);
  org.owner_username = username;
  org.one_time_password = NewOneTimePassword();
  org.password_hash = HashPassword(org.one_time_password);
  return org;
}

Status InsertOrganization(storage::Transaction& tx, const crypto::KeyEncryptionKey& kek,
                          const NewOrganization& org, std::string_view actor_id,
                          std::string_view now) {
  auto taken = tx.QueryOne("SELECT 1 FROM organizations WHERE slug = ?", {org.slug});
  if (!taken) return taken.error();
  if (*taken) return core::Error::kConflict;
  auto inserted =
      tx.Execute("INSERT INTO organizations (id, slug, name, created_at) VALUES (?, ?, ?, ?)",
                 {org.org_id, org.slug, org.name, std::string(now)});
  if (!inserted) return inserted.error();
  if (auto keys = keys::CreateOrgKeys(tx, kek, org.org_id, now); !keys) return keys.error();
  inserted = tx.Execute(
      "INSERT INTO users (id, org_id, username, display_name, roles, password_hash, "
      "password_temporary, created_at) VALUES (?, ?, ?, ?, '[\"owner\"]', ?, 1, ?)",
      {org.owner_id, org.org_id, org.owner_username, org.owner_username, org.password_hash,
       std::string(now)});
  if (!inserted) return inserted.error();

  audit::Event created;
  created.org_id = org.org_id;
  created.actor_id = std::string(actor_id);
  created.action = "org.created";
  created.target_type = "organization";
  created.target_id = org.org_id;
  audit::Event keys_created = created;
  keys_created.action = "keys.created";
  keys_created.target_type = "data_key";
  keys_created.target_id = "1";
  audit::Event owner = created;
  owner.action = "user.created";
  owner.target_type = "user";
  owner.target_id = org.owner_id;
  owner.details = R"({"roles":["owner"],"credential":"one-time"})";
  for (const audit::Event* e : {&created, &keys_created, &owner}) {
    if (auto appended = audit::Record(tx, *e, now); !appended) return appended.error();
  }
  return Ok();
}

Result<std::string> FindOrganizationId(storage::Transaction& tx, std::string_view slug) {
  auto row = tx.QueryOne("SELECT id FROM organizations WHERE slug = ?", {std::string(slug)});
  if (!row) return row.error();
  if (!*row) return core::Error::kNotFound;
  return (*row)->Text(0);
}

}  // namespace cw::identity
