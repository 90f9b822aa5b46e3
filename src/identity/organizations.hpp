#pragma once

// Creating an organization with its first user, the owner.
//
// Everything the organization needs is created in one transaction, with its
// audit events: the organization, its data and blind-index keys, and the
// owner with a one-time password (stored as an Argon2id hash and marked
// temporary, so the first sign-in must replace it). The expensive password
// hash is computed before the transaction, off the database's writer.

#include <string>
#include <string_view>

#include "core/result.hpp"
#include "crypto/master_key.hpp"
#include "storage/database.hpp"

namespace cw::identity {

struct NewOrganization {
  std::string org_id;
  std::string slug;
  std::string name;
  std::string owner_id;
  std::string owner_username;
  std::string one_time_password;  // shown once to the operator, never stored
  std::string password_hash;
};

// Checks the names and prepares ids, the one-time password and its hash.
// Errors are core::Error::kInvalidArgument with `problem` set to a fixed
// description of the first bad field.
Result<NewOrganization> PrepareOrganization(std::string_view slug, std::string_view name,
                                            std::string_view owner_username, std::string* problem);

// Inserts what PrepareOrganization made, in the caller's write transaction,
// with audit events naming `actor_id` (a system actor). An existing slug is
// core::Error::kConflict.
Status InsertOrganization(storage::Transaction& tx, const crypto::KeyEncryptionKey& kek,
                          const NewOrganization& org, std::string_view actor_id,
                          std::string_view now);

// The organization id for a slug; kNotFound when there is none.
Result<std::string> FindOrganizationId(storage::Transaction& tx, std::string_view slug);

// 1 to 64 characters of a-z, 0-9, '.', '_', '-' and '@' (after NormalizeUsername).
bool IsValidUsername(std::string_view username);
// 1 to `max_bytes` bytes of UTF-8 without control characters, and not only
// spaces: text shown to people (names, descriptions, reasons).
bool IsPlainText(std::string_view text, std::size_t max_bytes);
// Plain text of at most 200 bytes.
bool IsValidDisplayName(std::string_view name);

// Usernames are compared in lower case; this is the stored form.
std::string NormalizeUsername(std::string_view username);

}  // namespace cw::identity
