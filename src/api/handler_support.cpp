#include "api/handler_support.hpp"

#include <charconv>
#include <memory>
#include <set>

#include "core/log.hpp"

namespace cw::api {
namespace {

constexpr std::size_t kMaxFieldBytes = 1024;

bool Contains(std::initializer_list<std::string_view> names, std::string_view key) {
  for (std::string_view n : names) {
    if (n == key) return true;
  }
  return false;
}

}  // namespace

void OnPool(core::WorkerPool& pool, const Request& req, Reply reply,
            std::function<Response()> work) {
  auto shared_reply = std::make_shared<Reply>(std::move(reply));
  auto guarded = [shared_reply, work = std::move(work), request_id = req.request_id] {
    Response response;
    try {
      response = work();
    } catch (const std::exception&) {
      // A bug or an exhausted machine (an Argon2id hash that cannot get its
      // memory): this request fails, the server goes on.
      log::Error("http.handler_exception", {{log::Key::kRequestId, SafeText::Trusted(request_id)}});
      response = ErrorResponse(request_id, ApiError::kInternal, "internal error");
    }
    (*shared_reply)(std::move(response));
  };
  if (!pool.Submit(std::move(guarded))) {
    (*shared_reply)(ErrorResponse(req.request_id, ApiError::kUnavailable,
                                  "the server is busy; try again shortly"));
  }
}

identity::RequestOrigin Origin(const Request& req) {
  return {req.request_id, req.peer_address, std::string(req.Header("user-agent"))};
}

std::optional<std::map<std::string, std::string>> StringFields(
    const Request& req, const JsonLimits& limits, std::initializer_list<std::string_view> names,
    Response* error, std::initializer_list<std::string_view> optional) {
  auto body = ParseJsonObjectBody(req, limits, error);
  if (!body) return std::nullopt;
  std::map<std::string, std::string> out;
  for (const auto& [key, value] : *body) {
    if (!(Contains(names, key) || Contains(optional, key)) || !value.is_string() ||
        value.get_string().empty() || value.get_string().size() > kMaxFieldBytes) {
      *error = ErrorResponse(req.request_id, ApiError::kBadRequest,
                             "the body takes only the documented fields, each a non-empty string");
      return std::nullopt;
    }
    out.emplace(std::string(key), std::string(value.get_string()));
  }
  for (std::string_view n : names) {
    if (!out.count(std::string(n))) {
      *error = ErrorResponse(req.request_id, ApiError::kBadRequest, "a required field is missing");
      return std::nullopt;
    }
  }
  return out;
}

bool OnlyKnownKeys(const Request& req, const boost::json::object& body,
                   std::initializer_list<std::string_view> allowed, Response* error) {
  for (const auto& [key, value] : body) {
    if (!Contains(allowed, key)) {
      *error = ErrorResponse(req.request_id, ApiError::kBadRequest,
                             "the body has a field this route does not take");
      return false;
    }
  }
  return true;
}

std::optional<std::vector<std::string>> StringList(const boost::json::value& v, std::size_t max) {
  if (!v.is_array() || v.as_array().empty() || v.as_array().size() > max) return std::nullopt;
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (const auto& item : v.as_array()) {
    if (!item.is_string() || item.as_string().empty() || item.as_string().size() > 64) {
      return std::nullopt;
    }
    if (!seen.insert(std::string(item.as_string())).second) return std::nullopt;
    out.emplace_back(item.as_string());
  }
  return out;
}

std::optional<int> IntIn(const boost::json::value& v, int lo, int hi) {
  std::int64_t n = 0;
  if (v.is_int64()) {
    n = v.as_int64();
  } else if (v.is_uint64() && v.as_uint64() <= static_cast<std::uint64_t>(hi)) {
    n = static_cast<std::int64_t>(v.as_uint64());
  } else {
    return std::nullopt;
  }
  if (n < lo || n > hi) return std::nullopt;
  return static_cast<int>(n);
}

std::optional<int> ParseLimit(const std::map<std::string, std::string>& params, int fallback,
                              int max) {
  auto it = params.find("limit");
  if (it == params.end()) return fallback;
  int v = 0;
  const std::string& text = it->second;
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || ptr != text.data() + text.size() || v < 1 || v > max) {
    return std::nullopt;
  }
  return v;
}

boost::json::value OrNull(const std::string& s) {
  if (s.empty()) return nullptr;
  return boost::json::value(s);
}

boost::json::array JsonStrings(const std::vector<std::string>& items) {
  boost::json::array a;
  for (const auto& s : items) a.emplace_back(s);
  return a;
}

}  // namespace cw::api
