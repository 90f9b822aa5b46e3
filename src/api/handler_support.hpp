#pragma once

// Pieces the identity routes share: running work on the worker pool, the
// request's origin for the audit trail, and strict readers for JSON fields.
// Internal to api/.

#include <boost/json/value.hpp>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "api/errors.hpp"
#include "api/json_body.hpp"
#include "core/worker_pool.hpp"
#include "identity/sessions.hpp"

namespace cw::api {

// Runs `work` on the pool and answers with what it returns; 503 when the
// pool is full. Database work and password hashing both go there, off the
// I/O threads.
void OnPool(core::WorkerPool& pool, const Request& req, Reply reply,
            std::function<Response()> work);

identity::RequestOrigin Origin(const Request& req);

// Exactly the named string fields, each present once, non-empty and at most
// 1 KiB, or nullopt with `error` set. Names in `optional` may be absent.
std::optional<std::map<std::string, std::string>> StringFields(
    const Request& req, const JsonLimits& limits, std::initializer_list<std::string_view> names,
    Response* error, std::initializer_list<std::string_view> optional = {});

// A body's keys must all be in `allowed`; else `error` is set.
bool OnlyKnownKeys(const Request& req, const boost::json::object& body,
                   std::initializer_list<std::string_view> allowed, Response* error);

// An array of 1 to `max` distinct short strings, or nullopt.
std::optional<std::vector<std::string>> StringList(const boost::json::value& v, std::size_t max);

// A JSON integer within [lo, hi], or nullopt.
std::optional<int> IntIn(const boost::json::value& v, int lo, int hi);

// A `limit` query parameter: default when absent, else 1 to max, or nullopt.
std::optional<int> ParseLimit(const std::map<std::string, std::string>& params, int fallback,
                              int max);

boost::json::value OrNull(const std::string& s);
boost::json::array JsonStrings(const std::vector<std::string>& items);

}  // namespace cw::api
