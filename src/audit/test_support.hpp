#pragma once

// Helpers for the audit tests only: a database in a temporary directory, a
// raw SQLite connection to tamper with it as an attacker with the file would,
// a fixed signing key and deterministic events.

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "audit/audit_log.hpp"
#include "audit/checkpoint.hpp"
#include "storage/database.hpp"
#include "storage/sqlite/sqlite_database.hpp"
#include "storage/sqlite/test_support.hpp"

namespace cw::audit::testing {

using storage::testing::TempDir;

inline std::array<std::uint8_t, SigningKey::kSeedSize> TestSeed(std::uint8_t first = 7) {
  std::array<std::uint8_t, SigningKey::kSeedSize> seed{};
  for (std::size_t i = 0; i < seed.size(); ++i) seed[i] = static_cast<std::uint8_t>(first + i);
  return seed;
}

inline std::unique_ptr<SigningKey> TestKey(std::uint8_t first = 7) {
  return SigningKey::FromSeed(TestSeed(first));
}

// A time in the stored form, `second` seconds after 2026-01-01T00:00:00Z.
inline std::string TimeAt(int second) {
  char text[40];
  std::snprintf(text, sizeof text, "2026-01-01T%02d:%02d:%02d.%06dZ", second / 3600 % 24,
                second / 60 % 60, second % 60, second % 7);
  return text;
}

// A varied, deterministic event; every field is set for some i and empty
// for others.
inline Event MakeEvent(int i) {
  Event e;
  e.org_id = i % 5 == 0 ? "" : "org-" + std::to_string(i % 3);
  e.actor_type = static_cast<ActorType>(i % 4);
  e.actor_id = "user-" + std::to_string(i % 7);
  e.action = i % 2 == 0 ? "message.read" : "auth.login";
  e.target_type = i % 3 == 0 ? "" : "conversation";
  e.target_id = "c-" + std::to_string(i);
  e.patient_id = i % 4 == 0 ? "p-" + std::to_string(i % 9) : "";
  e.outcome = static_cast<Outcome>(i % 3);
  e.source_address = "10.0.0." + std::to_string(i % 250);
  e.request_id = "req-" + std::to_string(i);
  e.details = i % 2 == 0 ? "{\"n\":" + std::to_string(i) + "}" : "";
  return e;
}

inline std::unique_ptr<storage::Database> OpenDatabase(const std::string& path) {
  storage::SqliteOptions options;
  options.path = path;
  auto db = storage::OpenSqlite(options);
  if (!db) {
    ADD_FAILURE() << "OpenSqlite: " << db.error().message();
    return nullptr;
  }
  return std::move(*db);
}

// Appends MakeEvent(first) .. MakeEvent(first + count - 1) in one write.
inline void AppendEvents(storage::Database& db, int first, int count) {
  ASSERT_TRUE(db.Write([&](storage::Transaction& txn) -> Status {
    for (int i = first; i < first + count; ++i) {
      auto seq = Append(txn, MakeEvent(i), TimeAt(i));
      if (!seq) return seq.error();
    }
    return Ok();
  }));
}

inline StoredEvent LastEvent(storage::Database& db) {
  StoredEvent out;
  EXPECT_TRUE(db.Read([&](storage::Transaction& txn) -> Status {
    auto last = Last(txn);
    if (!last) return last.error();
    if (*last) out = **last;
    return Ok();
  }));
  return out;
}

inline std::int64_t CountRows(storage::Database& db, const std::string& table) {
  std::int64_t count = -1;
  EXPECT_TRUE(db.Read([&](storage::Transaction& txn) -> Status {
    auto row = txn.QueryOne("SELECT count(*) FROM " + table);
    if (!row) return row.error();
    count = (*row)->Int(0);
    return Ok();
  }));
  return count;
}

// A plain sqlite3 connection to the same file, for what the application
// cannot do: tampering with the audit table.
class RawSqlite {
 public:
  explicit RawSqlite(const std::string& path) {
    if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
      ADD_FAILURE() << "sqlite3_open_v2 failed";
    }
    sqlite3_busy_timeout(db_, 5000);
  }
  ~RawSqlite() { sqlite3_close_v2(db_); }
  RawSqlite(const RawSqlite&) = delete;
  RawSqlite& operator=(const RawSqlite&) = delete;

  void Exec(const std::string& sql) {
    char* message = nullptr;
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &message) != SQLITE_OK) {
      ADD_FAILURE() << "sqlite3_exec(" << sql << "): " << (message ? message : "?");
    }
    sqlite3_free(message);
  }

  // Runs one statement with text or blob parameters bound in order.
  void Run(const std::string& sql, const std::vector<storage::Value>& params) {
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
      ADD_FAILURE() << "prepare(" << sql << "): " << sqlite3_errmsg(db_);
      return;
    }
    for (std::size_t i = 0; i < params.size(); ++i) {
      const int n = static_cast<int>(i + 1);
      const storage::Value& v = params[i];
      if (const auto* s = std::get_if<std::string>(&v)) {
        sqlite3_bind_text(stmt, n, s->data(), static_cast<int>(s->size()), SQLITE_TRANSIENT);
      } else if (const auto* b = std::get_if<storage::Blob>(&v)) {
        sqlite3_bind_blob(stmt, n, b->data(), static_cast<int>(b->size()), SQLITE_TRANSIENT);
      } else if (const auto* x = std::get_if<std::int64_t>(&v)) {
        sqlite3_bind_int64(stmt, n, *x);
      } else {
        sqlite3_bind_null(stmt, n);
      }
    }
    const int rc = sqlite3_step(stmt);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
      ADD_FAILURE() << "step(" << sql << "): " << sqlite3_errmsg(db_);
    }
    sqlite3_finalize(stmt);
  }

  void DropAppendOnlyTriggers() {
    Exec("DROP TRIGGER IF EXISTS audit_events_no_update");
    Exec("DROP TRIGGER IF EXISTS audit_events_no_delete");
  }

 private:
  sqlite3* db_ = nullptr;
};

}  // namespace cw::audit::testing
