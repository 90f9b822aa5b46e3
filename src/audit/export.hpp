#pragma once

// Export of the audit log for auditors and their tools, streamed in seq order
// with constant memory.
//
// Fields, in this order: seq, occurred_at, org_id, actor_type, actor_id,
// action, target_type, target_id, patient_id, outcome, source_address,
// request_id, details, hash (64 lowercase hex digits).
//
// kJsonLines: one JSON object per line, with the fields above as keys. Empty
// (NULL) fields are null; details is the stored JSON text as a string, byte
// for byte, so an export can be re-verified against the chain.
//
// kCsv: RFC 4180. A header row of the field names, then one record per event,
// CRLF line ends. A field holding a comma, a double quote, CR or LF is
// enclosed in double quotes with its quotes doubled. Empty (NULL) fields are
// empty. To keep a spreadsheet from running a cell as a formula (CSV
// injection), a field that starts with =, +, -, @, a tab or CR is written with
// a leading apostrophe ('): the CSV is for people and their spreadsheets, and
// such a field no longer matches its hash byte for byte; re-verify from JSON
// lines instead.

#include <ostream>
#include <string>
#include <string_view>

#include "audit/audit_log.hpp"
#include "core/result.hpp"
#include "storage/database.hpp"

namespace cw::audit {

enum class ExportFormat { kJsonLines, kCsv };

// Writes the events with from <= occurred_at < to (RFC 3339, see Filter; an
// empty bound is open) to `out`. kInvalidFilter for a bound that does not
// parse, kExportWrite when `out` fails; on any error `out` holds a prefix of
// the export. Reads the database in short transactions (see ForEach), so a
// slow `out` holds no snapshot.
// With `org_id` set, only that organization's events.
Status Export(storage::Database& db, ExportFormat format, std::string_view from,
              std::string_view to, std::ostream& out, std::string_view org_id = {});

// One CSV field as Export writes it (quoted and neutralized as above).
std::string CsvField(std::string_view value);

}  // namespace cw::audit
