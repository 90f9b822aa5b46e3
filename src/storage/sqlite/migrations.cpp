#include "storage/sqlite/migrations.hpp"

namespace cw::storage::sqlite {
namespace {

// APPEND-ONLY. A migration that has shipped is never edited, reordered or
// removed: databases in the field are at its version already and would never
// see the change. To alter the schema, add a new migration at the end with
// the next version number. Each one runs in its own transaction together with
// the user_version bump, so a crash leaves a database at a whole version.
//
// Tables are STRICT, so a value of the wrong type is refused rather than
// silently stored.
constexpr Migration kMigrations[] = {
    {1, "write_probes", R"sql(
      -- One row per diagnostics probe: the route commits a row durably to
      -- prove the write path (group commit, fsync) works end to end; the
      -- padding stands in for a message body of a chosen size.
      CREATE TABLE write_probes (
        id INTEGER PRIMARY KEY,
        created_at TEXT NOT NULL,
        padding BLOB NOT NULL DEFAULT x''
      ) STRICT;
    )sql"},
};

constexpr bool VersionsAreContiguous() {
  int expected = 1;
  for (const Migration& m : kMigrations) {
    if (m.version != expected++) return false;
  }
  return true;
}
static_assert(VersionsAreContiguous(), "migration versions must be 1, 2, 3... in order");

}  // namespace

std::span<const Migration> Migrations() { return kMigrations; }

}  // namespace cw::storage::sqlite
