#include "support/sql.hpp"

#include <sqlite3.h>

#include <stdexcept>

namespace cw::testing {

Sql::Sql(const std::filesystem::path& file, bool writable) {
  const int flags = writable ? SQLITE_OPEN_READWRITE : SQLITE_OPEN_READONLY;
  if (sqlite3_open_v2(file.c_str(), &db_, flags, nullptr) != SQLITE_OK) {
    const std::string msg = db_ ? sqlite3_errmsg(db_) : "out of memory";
    sqlite3_close(db_);
    throw std::runtime_error("cannot open " + file.string() + ": " + msg);
  }
  sqlite3_busy_timeout(db_, 10'000);
}

Sql::~Sql() { sqlite3_close(db_); }

std::vector<std::string> Sql::Column(const std::string& sql,
                                     const std::vector<std::string>& params) {
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) {
    throw std::runtime_error(sql + ": " + sqlite3_errmsg(db_));
  }
  for (std::size_t i = 0; i < params.size(); ++i) {
    sqlite3_bind_text(st, static_cast<int>(i + 1), params[i].data(),
                      static_cast<int>(params[i].size()), SQLITE_TRANSIENT);
  }
  std::vector<std::string> out;
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    const auto* text = sqlite3_column_text(st, 0);
    out.emplace_back(text ? reinterpret_cast<const char*>(text) : "",
                     static_cast<std::size_t>(sqlite3_column_bytes(st, 0)));
  }
  sqlite3_finalize(st);
  if (rc != SQLITE_DONE) throw std::runtime_error(sql + ": " + sqlite3_errmsg(db_));
  return out;
}

std::int64_t Sql::Count(const std::string& table) {
  return std::stoll(Column("SELECT count(*) FROM " + table).at(0));
}

}  // namespace cw::testing
