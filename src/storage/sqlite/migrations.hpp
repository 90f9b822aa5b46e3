#pragma once

// The SQLite schema as an ordered list of migrations. The schema version of a
// database file is kept in PRAGMA user_version: the number of the last
// migration applied to it.

#include <span>

namespace cw::storage::sqlite {

struct Migration {
  int version;       // 1, 2, 3... with no gaps
  const char* name;  // what the migration adds, for readers of this file
  const char* sql;   // one or more statements, run in one transaction
};

// Every migration, in order; the last one's version is the latest schema.
std::span<const Migration> Migrations();

}  // namespace cw::storage::sqlite
