#pragma once

// Internal to the audit library: how events are laid out in rows, the chain
// hash over a row's stored text, and the paged scan that ForEach, Verify and
// Export share. Not for callers outside src/audit/.

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "audit/audit_log.hpp"
#include "storage/database.hpp"

namespace cw::audit::internal {

// Every column of audit_events in table order; row accessors below use these
// positions.
inline constexpr std::string_view kColumns =
    "seq, occurred_at, org_id, actor_type, actor_id, action, target_type, target_id, "
    "patient_id, outcome, source_address, request_id, details, hash";
inline constexpr std::size_t kSeqColumn = 0;
inline constexpr std::size_t kHashColumn = 13;
inline constexpr std::size_t kColumnCount = 14;

// The text columns from occurred_at to details, as stored: NULL reads as "".
using RowText = std::array<std::string_view, 12>;

// The chain hash over a row given as its stored text; ChainHash and Verify
// both come here, so they cannot disagree about the canonical form.
Hash ChainHashOfText(const Hash& previous, std::int64_t seq, const RowText& text);

// Reads a row's seq, text columns and hash without throwing. False when a
// column has the wrong type or the hash the wrong size (only a file edited
// around the schema's STRICT checks can hold such a row).
bool ReadRowText(const storage::Row& row, std::int64_t* seq, RowText* text, Hash* hash);

// Converts a row to a StoredEvent; kCorruptEvent when it does not read back.
Result<StoredEvent> ToStoredEvent(const storage::Row& row);

// A range of rows to scan in seq order, with extra conditions. `where` is
// SQL text built from fixed fragments ("AND +org_id = ?"), its values in
// `params`: never text from input.
struct Scan {
  std::int64_t after_seq = 0;  // scan seq > after_seq
  std::int64_t last_seq = 0;   // and seq <= last_seq; 0 for no bound
  std::string where;
  std::vector<storage::Value> params;
  int page_rows = 1000;
};

// The statement for one page of `scan`, in seq order (descending or not);
// its parameters are ScanParams'.
std::string ScanSql(const Scan& scan, bool descending);
std::vector<storage::Value> ScanParams(const Scan& scan, std::int64_t after_seq,
                                       std::int64_t limit);

// Runs `scan` in pages, each in its own read transaction (so no snapshot is
// held for long). `on_row` is called inside the transaction and returns
// false to stop; `on_page` (may be empty) after each page's transaction has
// ended, for work that must not hold a snapshot.
Status ScanPages(storage::Database& db, const Scan& scan,
                 const std::function<Result<bool>(const storage::Row&)>& on_row,
                 const std::function<Status()>& on_page);

// The seq range and conditions for `filter`, resolving from/to to seq
// bounds through the time index in `txn`. Sets *empty when no event can
// match. kInvalidFilter for negative cursors or a time that does not parse.
Result<Scan> ScanForFilter(storage::Transaction& txn, const Filter& filter, bool* empty);

}  // namespace cw::audit::internal
