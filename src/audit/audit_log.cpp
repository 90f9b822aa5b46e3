#include "audit/audit_log.hpp"

#include <sodium.h>

#include <algorithm>
#include <boost/json/parse.hpp>
#include <charconv>
#include <limits>
#include <utility>

#include "audit/event_rows.hpp"
#include "audit/timestamp.hpp"
#include "core/utf8.hpp"
#include "crypto/seal.hpp"

namespace cw::audit {
namespace {

using storage::Row;
using storage::Transaction;
using storage::Value;

constexpr std::string_view kChainTag = "carewire-audit-v1";

constexpr std::string_view kSelectLast =
    "SELECT seq, occurred_at, org_id, actor_type, actor_id, action, target_type, target_id, "
    "patient_id, outcome, source_address, request_id, details, hash "
    "FROM audit_events ORDER BY seq DESC LIMIT 1";
constexpr std::string_view kSelectBySeq =
    "SELECT seq, occurred_at, org_id, actor_type, actor_id, action, target_type, target_id, "
    "patient_id, outcome, source_address, request_id, details, hash "
    "FROM audit_events WHERE seq = ?";
constexpr std::string_view kInsert =
    "INSERT INTO audit_events (seq, occurred_at, org_id, actor_type, actor_id, action, "
    "target_type, target_id, patient_id, outcome, source_address, request_id, details, hash) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

ErrorCode Err(Error e) { return make_error_code(e); }

// ScanPages stops a Query early with this code; it never leaves this file.
class StopCategory final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "cw.audit.stop"; }
  std::string message(int) const override { return "stop"; }
};

const ErrorCode& StopCode() {
  static const StopCategory category;
  static const ErrorCode code(1, category);
  return code;
}

void HashItem(crypto_hash_sha256_state* state, std::string_view bytes) {
  // Valid events are far below 4 GiB; a tampered row that is not still
  // hashes to something, just never to the stored value.
  const auto n = static_cast<std::uint32_t>(
      std::min<std::size_t>(bytes.size(), std::numeric_limits<std::uint32_t>::max()));
  const std::uint8_t length[4] = {static_cast<std::uint8_t>(n >> 24),
                                  static_cast<std::uint8_t>(n >> 16),
                                  static_cast<std::uint8_t>(n >> 8), static_cast<std::uint8_t>(n)};
  crypto_hash_sha256_update(state, length, sizeof length);
  crypto_hash_sha256_update(state, reinterpret_cast<const unsigned char*>(bytes.data()), n);
}

// No C0 or C1 control characters and no DEL: they have no place in an id or a
// name, and would let a value break a CSV export or a terminal.
bool IsPlainText(std::string_view text) {
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x20 || c == 0x7f) return false;
    // U+0080 to U+009F are encoded as C2 80 to C2 9F.
    if (c == 0xc2 && i + 1 < text.size()) {
      const auto next = static_cast<unsigned char>(text[i + 1]);
      if (next >= 0x80 && next <= 0x9f) return false;
    }
  }
  return core::IsValidUtf8(text);
}

bool IsField(std::string_view text, std::size_t max_size) {
  return text.size() <= max_size && IsPlainText(text);
}

bool IsAction(std::string_view action) {
  if (action.empty() || action.size() > kMaxActionSize) return false;
  return std::all_of(action.begin(), action.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.';
  });
}

// Names a details key must not contain: a secret or content has no place in
// the log, and a key saying so is the likeliest way one would slip in.
bool IsForbiddenKey(std::string_view key) {
  std::string lower(key);
  for (char& c : lower) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  for (std::string_view word : {"password", "passphrase", "secret", "token", "body", "content"}) {
    if (lower.find(word) != std::string::npos) return true;
  }
  return false;
}

bool HasForbiddenKey(const boost::json::value& v) {
  if (v.is_object()) {
    for (const auto& [k, child] : v.get_object()) {
      if (IsForbiddenKey(k) || HasForbiddenKey(child)) return true;
    }
  } else if (v.is_array()) {
    for (const auto& child : v.get_array()) {
      if (HasForbiddenKey(child)) return true;
    }
  }
  return false;
}

bool IsDetails(std::string_view details) {
  if (details.empty()) return true;
  if (!IsField(details, kMaxDetailsSize)) return false;
  boost::system::error_code ec;
  const boost::json::value parsed = boost::json::parse(details, ec);
  return !ec && parsed.is_object() && !HasForbiddenKey(parsed);
}

Value OrNull(const std::string& text) {
  if (text.empty()) return nullptr;
  return text;
}

internal::RowText TextOf(std::string_view occurred_at, const Event& e) {
  return {occurred_at,   e.org_id,    ToString(e.actor_type), e.actor_id,          e.action,
          e.target_type, e.target_id, e.patient_id,           ToString(e.outcome), e.source_address,
          e.request_id,  e.details};
}

Result<std::optional<StoredEvent>> QueryEvent(Transaction& txn, std::string_view sql,
                                              const std::vector<Value>& params) {
  auto row = txn.QueryOne(sql, params);
  if (!row) return row.error();
  if (!*row) return std::optional<StoredEvent>();
  auto event = internal::ToStoredEvent(**row);
  if (!event) return event.error();
  return std::optional<StoredEvent>(std::move(*event));
}

// Appends " AND +column = ?" for each condition of `filter`. SQLite's unary
// + keeps the planner from using an index for the column, so every scan
// walks the rowid (seq) in order and stops after `limit` matches. With the
// org or time index instead, SQLite would collect and sort every matching
// row before returning the first: measured at 110 ms for a page of 100 of
// one organization's events among 200,000, against 0.2 ms in seq order.
Status AppendConditions(const Filter& filter, std::string* where, std::vector<Value>* params) {
  auto equal = [&](std::string_view column, const std::string& value) {
    if (value.empty()) return;
    where->append(" AND +").append(column).append(" = ?");
    params->push_back(value);
  };
  equal("org_id", filter.org_id);
  equal("actor_id", filter.actor_id);
  equal("action", filter.action);
  equal("target_id", filter.target_id);
  // Except the patient: its partial index (patient_id, seq) is itself in seq
  // order, and a patient's events are few among many, so the accounting of
  // disclosures reads them straight from it.
  if (!filter.patient_id.empty()) {
    where->append(" AND patient_id = ?");
    params->push_back(filter.patient_id);
  }
  if (!filter.from.empty()) {
    auto from = NormalizeRfc3339(filter.from);
    if (!from) return Err(Error::kInvalidFilter);
    where->append(" AND +occurred_at >= ?");
    params->push_back(std::move(*from));
  }
  if (!filter.to.empty()) {
    auto to = NormalizeRfc3339(filter.to);
    if (!to) return Err(Error::kInvalidFilter);
    where->append(" AND +occurred_at < ?");
    params->push_back(std::move(*to));
  }
  return Ok();
}

}  // namespace

std::string_view ToString(ActorType actor_type) {
  switch (actor_type) {
    case ActorType::kUser:
      return "user";
    case ActorType::kDevice:
      return "device";
    case ActorType::kPatient:
      return "patient";
    case ActorType::kSystem:
      return "system";
  }
  // An out-of-range value cast to the enum; ValidateEvent refuses it, and
  // the CHECK constraint would refuse the empty text.
  return "";
}

std::string_view ToString(Outcome outcome) {
  switch (outcome) {
    case Outcome::kSuccess:
      return "success";
    case Outcome::kFailure:
      return "failure";
    case Outcome::kDenied:
      return "denied";
  }
  return "";
}

std::optional<ActorType> ParseActorType(std::string_view text) {
  for (ActorType t :
       {ActorType::kUser, ActorType::kDevice, ActorType::kPatient, ActorType::kSystem}) {
    if (text == ToString(t)) return t;
  }
  return std::nullopt;
}

std::optional<Outcome> ParseOutcome(std::string_view text) {
  for (Outcome o : {Outcome::kSuccess, Outcome::kFailure, Outcome::kDenied}) {
    if (text == ToString(o)) return o;
  }
  return std::nullopt;
}

std::string HexHash(const Hash& hash) {
  char hex[2 * sizeof(Hash) + 1];
  sodium_bin2hex(hex, sizeof hex, hash.data(), hash.size());
  return std::string(hex, 2 * sizeof(Hash));
}

namespace internal {

Hash ChainHashOfText(const Hash& previous, std::int64_t seq, const RowText& text) {
  crypto_hash_sha256_state state;
  crypto_hash_sha256_init(&state);
  crypto_hash_sha256_update(&state, previous.data(), previous.size());
  HashItem(&state, kChainTag);
  char digits[24];
  const auto [end, ec] = std::to_chars(digits, digits + sizeof digits, seq);
  HashItem(&state, std::string_view(digits, static_cast<std::size_t>(end - digits)));
  for (std::string_view field : text) HashItem(&state, field);
  Hash out;
  crypto_hash_sha256_final(&state, out.data());
  return out;
}

bool ReadRowText(const Row& row, std::int64_t* seq, RowText* text, Hash* hash) {
  if (row.size() != kColumnCount) return false;
  const auto* seq_value = std::get_if<std::int64_t>(&row.at(kSeqColumn));
  const auto* hash_value = std::get_if<storage::Blob>(&row.at(kHashColumn));
  if (seq_value == nullptr || hash_value == nullptr || hash_value->size() != hash->size()) {
    return false;
  }
  *seq = *seq_value;
  std::copy(hash_value->begin(), hash_value->end(), hash->begin());
  for (std::size_t i = 0; i < text->size(); ++i) {
    const Value& value = row.at(i + 1);
    if (const auto* s = std::get_if<std::string>(&value)) {
      (*text)[i] = *s;
    } else if (std::holds_alternative<std::nullptr_t>(value)) {
      (*text)[i] = std::string_view();
    } else {
      return false;
    }
  }
  return true;
}

Result<StoredEvent> ToStoredEvent(const Row& row) {
  StoredEvent out;
  RowText text;
  if (!ReadRowText(row, &out.seq, &text, &out.hash)) return Err(Error::kCorruptEvent);
  const auto actor_type = ParseActorType(text[2]);
  const auto outcome = ParseOutcome(text[8]);
  if (!actor_type || !outcome) return Err(Error::kCorruptEvent);
  out.occurred_at = text[0];
  Event& e = out.event;
  e.org_id = text[1];
  e.actor_type = *actor_type;
  e.actor_id = text[3];
  e.action = text[4];
  e.target_type = text[5];
  e.target_id = text[6];
  e.patient_id = text[7];
  e.outcome = *outcome;
  e.source_address = text[9];
  e.request_id = text[10];
  e.details = text[11];
  return out;
}

std::string ScanSql(const Scan& scan, bool descending) {
  std::string sql = "SELECT ";
  sql.append(kColumns).append(" FROM audit_events WHERE seq > ?");
  if (scan.last_seq != 0) sql.append(" AND seq <= ?");
  sql.append(scan.where)
      .append(descending ? " ORDER BY seq DESC LIMIT ?" : " ORDER BY seq LIMIT ?");
  return sql;
}

std::vector<Value> ScanParams(const Scan& scan, std::int64_t after_seq, std::int64_t limit) {
  std::vector<Value> params;
  params.reserve(scan.params.size() + 3);
  params.emplace_back(after_seq);
  if (scan.last_seq != 0) params.emplace_back(scan.last_seq);
  params.insert(params.end(), scan.params.begin(), scan.params.end());
  params.emplace_back(limit);
  return params;
}

Status ScanPages(storage::Database& db, const Scan& scan,
                 const std::function<Result<bool>(const Row&)>& on_row,
                 const std::function<Status()>& on_page) {
  const std::string sql = ScanSql(scan, /*descending=*/false);
  std::int64_t cursor = scan.after_seq;
  for (;;) {
    const std::vector<Value> params = ScanParams(scan, cursor, scan.page_rows);
    int rows = 0;
    bool stopped = false;
    Status read = db.Read([&](Transaction& txn) -> Status {
      return txn.Query(sql, params, [&](const Row& row) -> Status {
        ++rows;
        // seq is the INTEGER PRIMARY KEY (the rowid), so always an integer.
        if (const auto* seq = std::get_if<std::int64_t>(&row.at(kSeqColumn))) cursor = *seq;
        auto more = on_row(row);
        if (!more) return more.error();
        if (!*more) {
          stopped = true;
          return StopCode();
        }
        return Ok();
      });
    });
    if (!read && !(stopped && read.error() == StopCode())) return read;
    if (on_page) {
      if (Status s = on_page(); !s) return s;
    }
    if (stopped || rows < scan.page_rows) return Ok();
  }
}

Result<Scan> ScanForFilter(Transaction& txn, const Filter& filter, bool* empty) {
  *empty = false;
  if (filter.after_seq < 0 || filter.before_seq < 0) return Err(Error::kInvalidFilter);
  Scan scan;
  if (Status s = AppendConditions(filter, &scan.where, &scan.params); !s) return s.error();
  scan.after_seq = filter.after_seq;
  if (filter.before_seq != 0) {
    if (filter.before_seq <= 1) {
      *empty = true;
      return scan;
    }
    scan.last_seq = filter.before_seq - 1;
  }
  if (filter.from.empty() && filter.to.empty()) return scan;

  // Times need not rise with seq (an event may be stamped before its write
  // queues, and the command line runs on its own clock), so a time range is
  // not a seq range. The time index gives the exact lowest and highest seq
  // with a time in range; the scan then walks the rowid between the two and
  // tests the time on each row. (Reading the bound costs one pass over the
  // index entries on its side of the bound.)
  std::string org_condition;
  std::vector<Value> org_param;
  if (!filter.org_id.empty()) {
    // Narrows the bound through the (org_id, occurred_at) index.
    org_condition = " AND org_id = ?";
    org_param.emplace_back(filter.org_id);
  }
  auto bound = [&](std::string_view aggregate, std::string_view comparison,
                   const std::string& time) -> Result<std::optional<std::int64_t>> {
    std::string sql = "SELECT ";
    sql.append(aggregate).append("(seq) FROM audit_events WHERE occurred_at ");
    sql.append(comparison).append(" ?").append(org_condition);
    std::vector<Value> params = {*NormalizeRfc3339(time)};
    params.insert(params.end(), org_param.begin(), org_param.end());
    auto row = txn.QueryOne(sql, params);
    if (!row) return row.error();
    if (!*row || (*row)->IsNull(0)) return std::optional<std::int64_t>();
    return std::optional<std::int64_t>((*row)->Int(0));
  };
  if (!filter.from.empty()) {
    auto low = bound("min", ">=", filter.from);
    if (!low) return low.error();
    if (!*low) {
      *empty = true;
      return scan;
    }
    scan.after_seq = std::max(scan.after_seq, **low - 1);
  }
  if (!filter.to.empty()) {
    auto high = bound("max", "<", filter.to);
    if (!high) return high.error();
    if (!*high) {
      *empty = true;
      return scan;
    }
    scan.last_seq = scan.last_seq == 0 ? **high : std::min(scan.last_seq, **high);
  }
  if (scan.last_seq != 0 && scan.last_seq <= scan.after_seq) *empty = true;
  return scan;
}

}  // namespace internal

Hash ChainHash(const Hash& previous, std::int64_t seq, std::string_view occurred_at,
               const Event& event) {
  return internal::ChainHashOfText(previous, seq, TextOf(occurred_at, event));
}

Status ValidateEvent(const Event& e, std::string_view occurred_at) {
  const bool ok = IsStoredTimeForm(occurred_at) && IsAction(e.action) &&
                  !ToString(e.actor_type).empty() && !ToString(e.outcome).empty() &&
                  IsField(e.org_id, kMaxFieldSize) && IsField(e.actor_id, kMaxFieldSize) &&
                  IsField(e.target_type, kMaxFieldSize) && IsField(e.target_id, kMaxFieldSize) &&
                  IsField(e.patient_id, kMaxFieldSize) &&
                  IsField(e.source_address, kMaxFieldSize) &&
                  IsField(e.request_id, kMaxFieldSize) && IsDetails(e.details);
  if (!ok) return Err(Error::kInvalidEvent);
  return Ok();
}

Result<std::int64_t> Append(Transaction& txn, const Event& e, std::string_view occurred_at) {
  if (Status s = ValidateEvent(e, occurred_at); !s) return s.error();

  auto last = txn.QueryOne("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1");
  if (!last) return last.error();
  Hash previous{};
  std::int64_t seq = 1;
  if (*last) {
    const auto* last_seq = std::get_if<std::int64_t>(&(*last)->at(0));
    const auto* last_hash = std::get_if<storage::Blob>(&(*last)->at(1));
    if (last_seq == nullptr || last_hash == nullptr || last_hash->size() != previous.size() ||
        *last_seq == std::numeric_limits<std::int64_t>::max()) {
      return Err(Error::kCorruptEvent);
    }
    seq = *last_seq + 1;
    std::copy(last_hash->begin(), last_hash->end(), previous.begin());
  }

  const Hash hash = ChainHash(previous, seq, occurred_at, e);
  auto inserted = txn.Execute(
      kInsert,
      {seq, std::string(occurred_at), OrNull(e.org_id), std::string(ToString(e.actor_type)),
       OrNull(e.actor_id), e.action, OrNull(e.target_type), OrNull(e.target_id),
       OrNull(e.patient_id), std::string(ToString(e.outcome)), OrNull(e.source_address),
       OrNull(e.request_id), OrNull(e.details), storage::Blob(hash.begin(), hash.end())});
  if (!inserted) return inserted.error();
  return seq;
}

Status Record(Transaction& txn, const Event& event, std::string_view occurred_at) {
  auto seq = Append(txn, event, occurred_at);
  if (!seq) return seq.error();
  return Ok();
}

Result<std::optional<StoredEvent>> Last(Transaction& txn) {
  return QueryEvent(txn, kSelectLast, {});
}

Result<std::optional<StoredEvent>> Find(Transaction& txn, std::int64_t seq) {
  return QueryEvent(txn, kSelectBySeq, {seq});
}

Result<std::vector<StoredEvent>> Query(Transaction& txn, const Filter& filter) {
  if (filter.limit < 1 || filter.limit > kMaxQueryLimit) return Err(Error::kInvalidFilter);
  bool empty = false;
  auto scan = internal::ScanForFilter(txn, filter, &empty);
  if (!scan) return scan.error();
  std::vector<StoredEvent> events;
  if (empty) return events;
  Status status = txn.Query(internal::ScanSql(*scan, filter.newest_first),
                            internal::ScanParams(*scan, scan->after_seq, filter.limit),
                            [&events](const Row& row) -> Status {
                              auto event = internal::ToStoredEvent(row);
                              if (!event) return event.error();
                              events.push_back(std::move(*event));
                              return Ok();
                            });
  if (!status) return status.error();
  return events;
}

Status ForEach(storage::Database& db, const Filter& filter,
               const std::function<Status(const StoredEvent&)>& fn) {
  bool empty = false;
  Result<internal::Scan> scan = internal::Scan();
  Status read = db.Read([&](Transaction& txn) -> Status {
    scan = internal::ScanForFilter(txn, filter, &empty);
    return Ok();
  });
  if (!read) return read.error();
  if (!scan) return scan.error();
  if (empty) return Ok();

  std::vector<StoredEvent> page;
  page.reserve(static_cast<std::size_t>(scan->page_rows));
  return internal::ScanPages(
      db, *scan,
      [&page](const Row& row) -> Result<bool> {
        auto event = internal::ToStoredEvent(row);
        // Result<bool> from an error_code is ambiguous without the tag.
        if (!event) return Result<bool>(boost::system::in_place_error, event.error());
        page.push_back(std::move(*event));
        return true;
      },
      [&page, &fn]() -> Status {
        for (const StoredEvent& event : page) {
          if (Status s = fn(event); !s) return s;
        }
        page.clear();
        return Ok();
      });
}

}  // namespace cw::audit
