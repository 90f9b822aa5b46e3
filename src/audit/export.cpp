#include "audit/export.hpp"

#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

namespace cw::audit {
namespace {

constexpr std::string_view kHeader =
    "seq,occurred_at,org_id,actor_type,actor_id,action,target_type,target_id,patient_id,outcome,"
    "source_address,request_id,details,hash\r\n";

boost::json::value OrNull(const std::string& text) {
  if (text.empty()) return nullptr;
  return boost::json::value(text);
}

std::string JsonLine(const StoredEvent& stored) {
  const Event& e = stored.event;
  boost::json::object line;
  line.reserve(14);
  line["seq"] = stored.seq;
  line["occurred_at"] = stored.occurred_at;
  line["org_id"] = OrNull(e.org_id);
  line["actor_type"] = ToString(e.actor_type);
  line["actor_id"] = OrNull(e.actor_id);
  line["action"] = e.action;
  line["target_type"] = OrNull(e.target_type);
  line["target_id"] = OrNull(e.target_id);
  line["patient_id"] = OrNull(e.patient_id);
  line["outcome"] = ToString(e.outcome);
  line["source_address"] = OrNull(e.source_address);
  line["request_id"] = OrNull(e.request_id);
  line["details"] = OrNull(e.details);
  line["hash"] = HexHash(stored.hash);
  std::string text = boost::json::serialize(line);
  text.push_back('\n');
  return text;
}

std::string CsvRecord(const StoredEvent& stored) {
  const Event& e = stored.event;
  const std::string seq = std::to_string(stored.seq);
  const std::string_view fields[] = {seq,
                                     stored.occurred_at,
                                     e.org_id,
                                     ToString(e.actor_type),
                                     e.actor_id,
                                     e.action,
                                     e.target_type,
                                     e.target_id,
                                     e.patient_id,
                                     ToString(e.outcome),
                                     e.source_address,
                                     e.request_id,
                                     e.details};
  std::string record;
  for (std::string_view field : fields) {
    record.append(CsvField(field)).push_back(',');
  }
  record.append(HexHash(stored.hash)).append("\r\n");
  return record;
}

}  // namespace

std::string CsvField(std::string_view value) {
  std::string field;
  if (!value.empty() &&
      std::string_view("=+-@\t\r").find(value.front()) != std::string_view::npos) {
    field.push_back('\'');
  }
  field.append(value);
  if (field.find_first_of(",\"\r\n") == std::string::npos) return field;
  std::string quoted = "\"";
  for (char c : field) {
    if (c == '"') quoted.push_back('"');
    quoted.push_back(c);
  }
  quoted.push_back('"');
  return quoted;
}

Status Export(storage::Database& db, ExportFormat format, std::string_view from,
              std::string_view to, std::ostream& out, std::string_view org_id) {
  Filter filter;
  filter.from = from;
  filter.to = to;
  filter.org_id = org_id;
  if (format == ExportFormat::kCsv) {
    out << kHeader;
    if (!out) return make_error_code(Error::kExportWrite);
  }
  return ForEach(db, filter, [&](const StoredEvent& event) -> Status {
    out << (format == ExportFormat::kJsonLines ? JsonLine(event) : CsvRecord(event));
    if (!out) return make_error_code(Error::kExportWrite);
    return Ok();
  });
}

}  // namespace cw::audit
