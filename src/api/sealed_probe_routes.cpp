// The sealed-probe diagnostics routes: the whole path a PHI value takes
// (seal for its organization and row, store, audit in the same transaction,
// open again, re-seal after a key rotation) before real PHI routes exist.
// Off unless the operator enables diagnostics.sealed_probe.

#include <sodium.h>

#include <boost/json/value.hpp>
#include <memory>

#include "api/errors.hpp"
#include "api/routes.hpp"
#include "audit/audit_log.hpp"
#include "core/error.hpp"
#include "core/random.hpp"
#include "core/time.hpp"
#include "core/utf8.hpp"

namespace cw::api {
namespace {

constexpr std::size_t kMaxValueBytes = 64 * 1024;
constexpr std::string_view kTable = "sealed_probes";
constexpr std::string_view kColumn = "value";

audit::Event ProbeEvent(std::string_view action, const std::string& org_id, const std::string& id,
                        const std::string& request_id) {
  audit::Event e;
  e.org_id = org_id;
  e.actor_id = "diagnostics";
  e.action = std::string(action);
  e.target_type = "sealed_probe";
  e.target_id = id;
  e.request_id = request_id;
  return e;
}

bool IsProbeId(std::string_view id) {
  if (id.size() != 36 || id.substr(0, 4) != "spr_") return false;
  for (const char c : id.substr(4)) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

void Create(storage::Database& db, keys::KeyStore& keys, const JsonLimits& limits, Request& req,
            Reply reply) {
  Response error;
  auto body = ParseJsonObjectBody(req, limits, &error);
  if (!body) {
    reply(std::move(error));
    return;
  }
  const boost::json::string* org = nullptr;
  const boost::json::string* value = nullptr;
  for (const auto& [key, field] : *body) {
    if (key == "org" && field.is_string()) {
      org = &field.get_string();
    } else if (key == "value" && field.is_string()) {
      value = &field.get_string();
    } else {
      reply(ErrorResponse(req.request_id, ApiError::kBadRequest,
                          "the body takes \"org\" and \"value\", both strings"));
      return;
    }
  }
  if (org == nullptr || value == nullptr || org->empty() || org->size() > 63) {
    reply(ErrorResponse(req.request_id, ApiError::kBadRequest,
                        "\"org\" (a slug) and \"value\" are required"));
    return;
  }
  if (value->size() > kMaxValueBytes) {
    reply(ErrorResponse(req.request_id, ApiError::kBadRequest,
                        "\"value\" is longer than 65536 bytes"));
    return;
  }
  struct State {
    std::string id = "spr_" + core::RandomHex(16);
    std::string request_id;
    std::string slug;
    std::string plaintext;
    std::uint32_t key_version = 0;
    ~State() { sodium_memzero(plaintext.data(), plaintext.size()); }
  };
  auto state = std::make_shared<State>();
  state->request_id = req.request_id;
  state->slug = std::string(*org);
  state->plaintext = std::string(*value);
  // The organization is looked up and the value sealed here, before the
  // write: the single writer thread only inserts. (The foreign key refuses an
  // organization removed in between.)
  std::string org_id;
  auto found = db.Read([&](storage::Transaction& tx) -> Status {
    auto row = tx.QueryOne("SELECT id FROM organizations WHERE slug = ?", {state->slug});
    if (!row) return row.error();
    if (!*row) return core::Error::kNotFound;
    org_id = (*row)->Text(0);
    return Ok();
  });
  if (!found) {
    reply(ErrorResponseFor(req.request_id, found.error()));
    return;
  }
  auto sealed = keys.Seal({org_id, kTable, kColumn, state->id}, state->plaintext);
  if (!sealed) {
    reply(ErrorResponseFor(req.request_id, sealed.error()));
    return;
  }
  state->key_version = *crypto::SealedKeyVersion(*sealed);
  db.SubmitWrite(
      [state, org_id,
       blob = storage::Blob(sealed->begin(), sealed->end())](storage::Transaction& tx) -> Status {
        auto inserted = tx.Execute(
            "INSERT INTO sealed_probes (id, org_id, value, created_at) VALUES (?, ?, ?, ?)",
            {state->id, org_id, blob, core::NowRfc3339()});
        if (!inserted) return inserted.error();
        return audit::Record(
            tx,
            ProbeEvent("diagnostics.sealed_probe_created", org_id, state->id, state->request_id),
            core::NowRfc3339());
      },
      [state, reply = std::move(reply)](Status status) {
        if (!status) {
          reply(ErrorResponseFor(state->request_id, status.error()));
          return;
        }
        reply(JsonResponse(
            201, {{"id", state->id}, {"key_version", state->key_version}, {"durable", true}}));
      });
}

void Read(storage::Database& db, keys::KeyStore& keys, Request& req, Reply reply) {
  const std::string id(req.Param("id"));
  if (!IsProbeId(id)) {
    reply(ErrorResponse(req.request_id, ApiError::kNotFound, "not found"));
    return;
  }
  struct State {
    std::string request_id;
    std::uint32_t key_version = 0;
    std::size_t length = 0;
  };
  auto state = std::make_shared<State>();
  state->request_id = req.request_id;
  // Opening a sealed value is an access: the answer goes out only once its
  // audit event is durable. The value is read and opened here, off the
  // single writer thread, which only appends the event.
  std::string org_id;
  storage::Blob sealed;
  Status read = db.Read([&](storage::Transaction& tx) -> Status {
    auto row = tx.QueryOne("SELECT org_id, value FROM sealed_probes WHERE id = ?", {id});
    if (!row) return row.error();
    if (!*row) return core::Error::kNotFound;
    org_id = (*row)->Text(0);
    sealed = (*row)->Bytes(1);
    return Ok();
  });
  if (!read) {
    reply(ErrorResponseFor(req.request_id, read.error()));
    return;
  }
  // Outside the read: the key store may read keys itself.
  auto plain = keys.Open({org_id, kTable, kColumn, id}, sealed);
  if (!plain) {
    reply(ErrorResponseFor(req.request_id, plain.error()));
    return;
  }
  state->length = plain->size();
  sodium_memzero(plain->data(), plain->size());
  state->key_version = *crypto::SealedKeyVersion(sealed);
  db.SubmitWrite(
      [state, id, org_id](storage::Transaction& tx) -> Status {
        return audit::Record(
            tx, ProbeEvent("diagnostics.sealed_probe_opened", org_id, id, state->request_id),
            core::NowRfc3339());
      },
      [state, id, reply = std::move(reply)](Status status) {
        if (!status) {
          reply(ErrorResponseFor(state->request_id, status.error()));
          return;
        }
        reply(JsonResponse(200, {{"id", id},
                                 {"opens", true},
                                 {"key_version", state->key_version},
                                 {"length", state->length}}));
      });
}

}  // namespace

void AddSealedProbeRoutes(Router& router, storage::Database& db, keys::KeyStore& keys,
                          const JsonLimits& limits) {
  router.Add(Method::kPost, "/api/v1/diagnostics/sealed-probe", Access::Public(),
             [&db, &keys, limits](Request& req, Reply reply) {
               Create(db, keys, limits, req, std::move(reply));
             });
  router.Add(Method::kGet, "/api/v1/diagnostics/sealed-probe/{id}", Access::Public(),
             [&db, &keys](Request& req, Reply reply) { Read(db, keys, req, std::move(reply)); });
}

}  // namespace cw::api
