// GET /api/v1/audit: the caller's organization's audit events, newest first,
// with filters and cursor pagination, for holders of `audit.read` (the
// router refuses, and records, everyone else). Reading the log is itself an
// access: the page goes out only once its own audit event is durable. The page is
// read on the worker pool, off both the I/O threads and the writer.

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <charconv>
#include <memory>
#include <ostream>
#include <streambuf>

#include "api/errors.hpp"
#include "api/handler_support.hpp"
#include "api/query.hpp"
#include "api/routes.hpp"
#include "audit/audit_log.hpp"
#include "audit/export.hpp"
#include "audit/timestamp.hpp"
#include "core/error.hpp"
#include "core/time.hpp"

namespace cw::api {
namespace {

constexpr int kDefaultLimit = 100;
constexpr int kMaxLimit = 500;

std::optional<std::int64_t> ParsePositive(const std::string& text, std::int64_t max) {
  std::int64_t v = 0;
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || ptr != text.data() + text.size() || v < 1 || v > max) {
    return std::nullopt;
  }
  return v;
}

boost::json::object EventJson(const audit::StoredEvent& e) {
  boost::json::value details = nullptr;
  if (!e.event.details.empty()) {
    boost::system::error_code ec;
    details = boost::json::parse(e.event.details, ec);
    if (ec) details = nullptr;
  }
  return {{"seq", e.seq},
          {"occurred_at", e.occurred_at},
          {"actor_type", std::string(audit::ToString(e.event.actor_type))},
          {"actor_id", OrNull(e.event.actor_id)},
          {"action", e.event.action},
          {"target_type", OrNull(e.event.target_type)},
          {"target_id", OrNull(e.event.target_id)},
          {"patient_id", OrNull(e.event.patient_id)},
          {"outcome", std::string(audit::ToString(e.event.outcome))},
          {"source_address", OrNull(e.event.source_address)},
          {"request_id", OrNull(e.event.request_id)},
          {"details", details},
          {"hash", audit::HexHash(e.hash)}};
}

// Collects an export in memory up to a cap; past it the stream fails, and
// the export stops.
class CappedBuffer final : public std::streambuf {
 public:
  explicit CappedBuffer(std::size_t cap) : cap_(cap) {}
  std::string& text() { return text_; }

 protected:
  std::streamsize xsputn(const char* s, std::streamsize n) override {
    if (text_.size() + static_cast<std::size_t>(n) > cap_) return 0;
    text_.append(s, static_cast<std::size_t>(n));
    return n;
  }
  int_type overflow(int_type c) override {
    if (traits_type::eq_int_type(c, traits_type::eof())) return traits_type::not_eof(c);
    const char ch = traits_type::to_char_type(c);
    return xsputn(&ch, 1) == 1 ? c : traits_type::eof();
  }

 private:
  const std::size_t cap_;
  std::string text_;
};

// An API export is answered whole; larger ones go through `carewire audit
// export` (or a narrower time window).
constexpr std::size_t kMaxExportBytes = 32u << 20;

}  // namespace

void AddAuditRoutes(Router& router, storage::Database& db, core::WorkerPool& pool) {
  router.Add(
      Method::kGet, "/api/v1/audit", Access::Needs(identity::Permission::kAuditRead), [&db, &pool](Request& req, Reply reply) {
        SafeText problem = "";
        auto params = ParseQuery(
            req.query, {"actor", "action", "target", "patient", "from", "to", "cursor", "limit"},
            &problem);
        if (!params) {
          reply(ErrorResponse(req.request_id, ApiError::kBadRequest, problem));
          return;
        }
        audit::Filter filter;
        filter.org_id = req.principal.org_id;  // never another organization's events
        filter.newest_first = true;
        filter.limit = kDefaultLimit;
        for (const auto& [name, value] : *params) {
          if (value.empty() || value.size() > audit::kMaxFieldSize) {
            reply(ErrorResponse(req.request_id, ApiError::kBadRequest,
                                "a query parameter is empty or too long"));
            return;
          }
          if (name == "actor") filter.actor_id = value;
          if (name == "action") filter.action = value;
          if (name == "target") filter.target_id = value;
          if (name == "patient") filter.patient_id = value;
          if (name == "from" || name == "to") {
            if (!audit::ParseRfc3339(value)) {
              reply(ErrorResponse(req.request_id, ApiError::kBadRequest,
                                  "from and to take RFC 3339 times"));
              return;
            }
            (name == "from" ? filter.from : filter.to) = value;
          }
          if (name == "limit") {
            auto limit = ParsePositive(value, kMaxLimit);
            if (!limit) {
              reply(ErrorResponse(req.request_id, ApiError::kBadRequest,
                                  "limit must be an integer from 1 to 500"));
              return;
            }
            filter.limit = static_cast<int>(*limit);
          }
          if (name == "cursor") {
            auto seq = value.size() > 1 && value[0] == 'b'
                           ? ParsePositive(value.substr(1), INT64_MAX)
                           : std::nullopt;
            if (!seq) {
              reply(
                  ErrorResponse(req.request_id, ApiError::kBadRequest, "the cursor is not valid"));
              return;
            }
            filter.before_seq = *seq;
          }
        }

        struct State {
          std::vector<audit::StoredEvent> events;
          std::string request_id;
        };
        auto state = std::make_shared<State>();
        state->request_id = req.request_id;
        audit::Event access;
        access.org_id = req.principal.org_id;
        access.actor_type = audit::ActorType::kUser;
        access.actor_id = req.principal.user_id;
        access.action = "audit.read";
        access.target_type = "audit_log";
        access.source_address = req.peer_address;
        access.request_id = req.request_id;
        const int limit = filter.limit;
        auto finish = [state, limit, reply = std::move(reply)](Status status) {
          if (!status) {
            reply(ErrorResponseFor(state->request_id, status.error()));
            return;
          }
          boost::json::array events;
          for (const auto& e : state->events) events.push_back(EventJson(e));
          boost::json::value next = nullptr;
          if (static_cast<int>(state->events.size()) == limit) {
            next = "b" + std::to_string(state->events.back().seq);
          }
          reply(JsonResponse(200, {{"events", std::move(events)}, {"next_cursor", next}}));
        };
        auto record = [&db, state, access, finish](Status read) mutable {
          if (!read) {
            finish(read);
            return;
          }
          access.details = "{\"events\":" + std::to_string(state->events.size()) + "}";
          db.SubmitWrite(
              [access](storage::Transaction& tx) -> Status {
                return audit::Record(tx, access, core::NowRfc3339());
              },
              std::move(finish));
        };
        auto shared_record = std::make_shared<decltype(record)>(std::move(record));
        const bool queued = pool.Submit([&db, state, filter, shared_record] {
          (*shared_record)(db.Read([&](storage::Transaction& tx) -> Status {
            auto page = audit::Query(tx, filter);
            if (!page) return page.error();
            state->events = std::move(*page);
            return Ok();
          }));
        });
        if (!queued) (*shared_record)(Status(core::Error::kResourceExhausted));
      });

  // GET /api/v1/audit/export: the organization's events in a time window as
  // JSON lines or CSV (see audit/export.hpp), for audit.export holders after
  // a recent re-authentication. The export is recorded, and durable, before
  // a byte of it goes out.
  router.Add(
      Method::kGet, "/api/v1/audit/export",
      Access::Needs(identity::Permission::kAuditExport).Sensitive(),
      [&db, &pool](Request& req, Reply reply) {
        SafeText problem = "";
        auto params = ParseQuery(req.query, {"format", "from", "to"}, &problem);
        if (!params) return reply(ErrorResponse(req.request_id, ApiError::kBadRequest, problem));
        const std::string format = params->count("format") ? (*params)["format"] : "";
        const std::string from = params->count("from") ? (*params)["from"] : "";
        const std::string to = params->count("to") ? (*params)["to"] : "";
        if ((format != "jsonl" && format != "csv") || from.empty() || to.empty() ||
            !audit::ParseRfc3339(from) || !audit::ParseRfc3339(to)) {
          return reply(ErrorResponse(req.request_id, ApiError::kBadRequest,
                                     "format (jsonl or csv), from and to (RFC 3339) are required"));
        }
        OnPool(pool, req, std::move(reply),
               [&db, actor = req.principal, origin = Origin(req), format, from, to] {
                 CappedBuffer buffer(kMaxExportBytes);
                 std::ostream out(&buffer);
                 auto exported = audit::Export(
                     db, format == "csv" ? audit::ExportFormat::kCsv : audit::ExportFormat::kJsonLines,
                     from, to, out, actor.org_id);
                 if (!exported) {
                   if (exported.error() == audit::Error::kExportWrite) {
                     return ErrorResponse(origin.request_id, ApiError::kPayloadTooLarge,
                                          "the export is over 32 MiB; narrow the time window or "
                                          "use carewire audit export");
                   }
                   return ErrorResponseFor(origin.request_id, exported.error());
                 }
                 audit::Event e;
                 e.org_id = actor.org_id;
                 e.actor_type = audit::ActorType::kUser;
                 e.actor_id = actor.user_id;
                 e.action = "audit.exported";
                 e.target_type = "audit_log";
                 e.request_id = origin.request_id;
                 e.source_address = origin.source_address;
                 boost::json::object details{{"format", format},
                                             {"from", from},
                                             {"to", to},
                                             {"bytes", buffer.text().size()}};
                 e.details = boost::json::serialize(details);
                 auto recorded = db.Write([&](storage::Transaction& tx) -> Status {
                   return audit::Record(tx, e, core::NowRfc3339());
                 });
                 if (!recorded) return ErrorResponseFor(origin.request_id, recorded.error());
                 Response r;
                 r.status = 200;
                 r.content_type =
                     format == "csv" ? "text/csv; charset=utf-8" : "application/x-ndjson";
                 r.body = std::move(buffer.text());
                 r.headers.emplace_back("content-disposition",
                                        format == "csv" ? "attachment; filename=\"audit.csv\""
                                                        : "attachment; filename=\"audit.jsonl\"");
                 return r;
               });
      });
}

}  // namespace cw::api
