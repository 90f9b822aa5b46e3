#pragma once

// The server's SQLite database, opened from a test beside the running server
// (WAL lets a reader in; a writer waits for the server's write lock), to
// check what was stored or to age a row on purpose.

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

struct sqlite3;

namespace cw::testing {

class Sql {
 public:
  // Throws std::runtime_error when the file cannot be opened.
  Sql(const std::filesystem::path& file, bool writable);
  ~Sql();
  Sql(const Sql&) = delete;
  Sql& operator=(const Sql&) = delete;

  // The first column of each row, as text; parameters bound as text.
  // Throws std::runtime_error on an SQL error.
  std::vector<std::string> Column(const std::string& sql,
                                  const std::vector<std::string>& params = {});

  // count(*) of a table (or of "table WHERE …").
  std::int64_t Count(const std::string& table);

 private:
  sqlite3* db_ = nullptr;
};

}  // namespace cw::testing
