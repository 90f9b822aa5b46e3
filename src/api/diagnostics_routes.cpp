#include <boost/json/value.hpp>
#include <chrono>
#include <memory>

#include "api/errors.hpp"
#include "api/routes.hpp"
#include "core/time.hpp"

namespace cw::api {
namespace {

// Probe rows kept; older ones are deleted by the probe itself so the table
// stays small however long a benchmark runs.
constexpr std::int64_t kProbeRowsKept = 1000;
// Largest padding a probe may ask for: a long secure message.
constexpr std::int64_t kMaxPaddingBytes = 4096;

}  // namespace

void AddDiagnosticsRoutes(Router& router, storage::Database& db, const JsonLimits& limits) {
  router.Add(
      Method::kPost, "/api/v1/diagnostics/write-probe", Access::Public(),
      [&db, limits](Request& req, Reply reply) {
        Response error;
        auto body = ParseJsonObjectBody(req, limits, &error);
        if (!body) {
          reply(std::move(error));
          return;
        }
        std::int64_t padding = 0;
        for (const auto& [key, value] : *body) {
          if (key != "padding_bytes") {
            reply(ErrorResponse(req.request_id, ApiError::kBadRequest,
                                "unknown field in request body"));
            return;
          }
          // Only an exact integer in range: 1.0, 1e2, -1, 2^63 and strings are refused.
          if (!value.is_int64() && !value.is_uint64()) {
            reply(ErrorResponse(req.request_id, ApiError::kBadRequest,
                                "padding_bytes must be an integer"));
            return;
          }
          if (value.is_uint64() || value.as_int64() < 0 || value.as_int64() > kMaxPaddingBytes) {
            reply(ErrorResponse(req.request_id, ApiError::kBadRequest,
                                "padding_bytes must be between 0 and 4096"));
            return;
          }
          padding = value.as_int64();
        }

        struct State {
          std::int64_t id = 0;
          std::chrono::steady_clock::time_point submitted = std::chrono::steady_clock::now();
          std::string request_id;
        };
        auto state = std::make_shared<State>();
        state->request_id = req.request_id;
        db.SubmitWrite(
            [state, padding](storage::Transaction& txn) -> Status {
              auto row = txn.QueryOne(
                  "INSERT INTO write_probes (created_at, padding) VALUES (?, ?) RETURNING id",
                  {core::NowRfc3339(), storage::Blob(static_cast<std::size_t>(padding), 0)});
              if (!row) return row.error();
              state->id = (*row)->Int(0);
              auto pruned = txn.Execute("DELETE FROM write_probes WHERE id <= ?",
                                        {state->id - kProbeRowsKept});
              if (!pruned) return pruned.error();
              return Ok();
            },
            [state, reply = std::move(reply)](Status status) {
              if (!status) {
                reply(ErrorResponseFor(state->request_id, status.error()));
                return;
              }
              const auto us = std::chrono::duration_cast<std::chrono::microseconds>(
                                  std::chrono::steady_clock::now() - state->submitted)
                                  .count();
              reply(JsonResponse(
                  201, {{"id", std::to_string(state->id)}, {"durable", true}, {"commit_us", us}}));
            });
      });
}

}  // namespace cw::api
