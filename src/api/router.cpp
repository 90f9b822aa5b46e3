#include "api/router.hpp"

#include <algorithm>
#include <stdexcept>

#include "api/errors.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "core/utf8.hpp"

namespace cw::api {
namespace {

std::vector<std::string_view> SplitPath(std::string_view path) {
  std::vector<std::string_view> out;
  // The leading '/' is required; each later '/' starts a segment, so "/a//b"
  // has an empty segment and matches no template.
  std::size_t start = 1;
  while (true) {
    const std::size_t slash = path.find('/', start);
    if (slash == std::string_view::npos) {
      out.push_back(path.substr(start));
      return out;
    }
    out.push_back(path.substr(start, slash - start));
    start = slash + 1;
  }
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Percent-decodes one segment. Fails on bad escapes, NUL, and encoded '/'
// (so "..%2f" cannot become a path separator) and on invalid UTF-8.
bool DecodeSegment(std::string_view in, std::string* out) {
  out->clear();
  for (std::size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '%') {
      if (i + 2 >= in.size()) return false;
      const int hi = HexValue(in[i + 1]);
      const int lo = HexValue(in[i + 2]);
      if (hi < 0 || lo < 0) return false;
      c = static_cast<char>(hi * 16 + lo);
      if (c == '/' || c == '\\') return false;
      i += 2;
    }
    if (c == '\0') return false;
    out->push_back(c);
  }
  return core::IsValidUtf8(*out);
}

}  // namespace

SafeText MethodName(Method method) {
  switch (method) {
    case Method::kGet:
      return "GET";
    case Method::kHead:
      return "HEAD";
    case Method::kPost:
      return "POST";
    case Method::kPut:
      return "PUT";
    case Method::kPatch:
      return "PATCH";
    case Method::kDelete:
      return "DELETE";
    case Method::kOptions:
      return "OPTIONS";
    case Method::kOther:
      return "OTHER";
  }
  return "OTHER";
}

std::string_view Request::Header(std::string_view lowercase_name) const {
  for (const auto& [name, value] : headers) {
    if (name == lowercase_name) return value;
  }
  return {};
}

std::string_view Request::Param(std::string_view name) const {
  for (const auto& [n, value] : params) {
    if (n == name) return value;
  }
  return {};
}

Route& Router::AddRoute(Method method, SafeText pattern, Access access) {
  const std::string_view p = pattern.view();
  if (p.empty() || p.front() != '/') throw std::logic_error("route pattern must start with /");
  auto route = std::make_unique<Route>();
  route->method = method;
  route->pattern = std::string(p);
  route->access = access;
  for (std::string_view seg : SplitPath(p)) {
    if (seg.empty()) throw std::logic_error("route pattern has an empty segment");
    Route::Segment s;
    if (seg.front() == '{') {
      if (seg.back() != '}' || seg.size() < 3) throw std::logic_error("bad route parameter");
      s.text = std::string(seg.substr(1, seg.size() - 2));
      s.param = true;
    } else {
      s.text = std::string(seg);
    }
    route->segments.push_back(std::move(s));
  }
  for (const auto& r : routes_) {
    if (r->method == method && r->pattern == route->pattern) {
      throw std::logic_error("route registered twice");
    }
  }
  routes_.push_back(std::move(route));
  return *routes_.back();
}

void Router::Add(Method method, SafeText pattern, Access access, Handler handler) {
  AddRoute(method, pattern, access).handler = std::move(handler);
}

void Router::AddStreamed(Method method, SafeText pattern, Access access,
                         std::int64_t max_body_bytes, Handler handler) {
  Route& route = AddRoute(method, pattern, access);
  route.handler = std::move(handler);
  route.streamed = true;
  route.max_body_bytes = max_body_bytes;
}

void Router::AddWebSocket(SafeText pattern, Access access, WebSocketFactory factory) {
  AddRoute(Method::kGet, pattern, access).websocket = std::move(factory);
}

Router::Match Router::Find(Method method, std::string_view path) const {
  Match match;
  if (path.empty() || path.front() != '/') return match;
  const auto parts = SplitPath(path);
  std::vector<std::string> decoded(parts.size());
  for (std::size_t i = 0; i < parts.size(); ++i) {
    if (!DecodeSegment(parts[i], &decoded[i])) return match;
  }
  for (const auto& route : routes_) {
    if (route->segments.size() != decoded.size()) continue;
    bool ok = true;
    for (std::size_t i = 0; i < decoded.size() && ok; ++i) {
      const auto& seg = route->segments[i];
      // Literal segments compare against the raw text, so "%61pi" is not "api".
      ok = seg.param ? !decoded[i].empty() : seg.text == parts[i];
    }
    if (!ok) continue;
    if (route->method != method) {
      match.allowed.push_back(route->method);
      continue;
    }
    match.route = route.get();
    for (std::size_t i = 0; i < decoded.size(); ++i) {
      if (route->segments[i].param) {
        match.params.emplace_back(route->segments[i].text, std::move(decoded[i]));
      }
    }
    match.allowed.clear();
    return match;
  }
  return match;
}

bool Router::Authorize(const Route& route, Request& request, Reply& reply) const {
  using Scope = Access::Scope;
  const Access& access = route.access;
  if (access.scope == Scope::kPublic) return true;
  // Only the Authorization header carries a token: never the query string
  // (it would reach logs and browser history) and never a cookie.
  constexpr std::string_view kBearer = "Bearer ";
  const std::string_view header = request.Header("authorization");
  if (header.size() <= kBearer.size() || header.substr(0, kBearer.size()) != kBearer ||
      !authenticator_) {
    reply(ErrorResponse(request.request_id, ApiError::kUnauthenticated,
                        "a bearer token is required"));
    return false;
  }
  auto principal = authenticator_(header.substr(kBearer.size()));
  if (!principal) {
    if (principal.error() == core::Error::kUnauthenticated) {
      reply(
          ErrorResponse(request.request_id, ApiError::kUnauthenticated, "the token is not valid"));
    } else {
      reply(ErrorResponseFor(request.request_id, principal.error()));
    }
    return false;
  }
  request.principal = std::move(*principal);
  const Principal& p = request.principal;
  if (p.scope == identity::SessionScope::kPasswordChange && access.scope != Scope::kPasswordChange) {
    Deny(route, request, reply, "set a new password first (POST /api/v1/me/password)");
    return false;
  }
  if (p.scope == identity::SessionScope::kMfaEnrollment && access.scope != Scope::kPasswordChange &&
      access.scope != Scope::kMfaEnrollment) {
    Deny(route, request, reply, "set up a second factor first (POST /api/v1/me/mfa/totp)");
    return false;
  }
  if (access.scope == Scope::kSignedIn && !access.own_account && !p.Can(access.permission)) {
    Deny(route, request, reply, "your roles do not allow this");
    return false;
  }
  if (access.recent_reauth &&
      std::chrono::system_clock::now() - p.reauthenticated_at > identity::kReauthWindow) {
    reply(ErrorResponse(request.request_id, ApiError::kReauthRequired,
                        "confirm your password first (POST /api/v1/auth/reauth)"));
    return false;
  }
  return true;
}

void Router::Deny(const Route& route, const Request& request, Reply& reply,
                  SafeText message) const {
  if (denial_recorder_) denial_recorder_(route, request);
  reply(ErrorResponse(request.request_id, ApiError::kForbidden, message));
}

const Route* Router::Dispatch(Request& request, Reply reply) const {
  return Dispatch(request, Find(request.method, request.path), std::move(reply));
}

const Route* Router::Dispatch(Request& request, Match match, Reply reply) const {
  if (match.route == nullptr) {
    if (match.allowed.empty()) {
      reply(ErrorResponse(request.request_id, ApiError::kNotFound, "no such route"));
      return nullptr;
    }
    Response r = ErrorResponse(request.request_id, ApiError::kMethodNotAllowed,
                               "method not allowed on this route");
    std::string allow;
    for (Method m : match.allowed) {
      if (!allow.empty()) allow += ", ";
      allow += MethodName(m).view();
    }
    r.headers.emplace_back("allow", std::move(allow));
    reply(std::move(r));
    return nullptr;
  }
  const Route* route = match.route;
  request.params = std::move(match.params);
  if (route->websocket) {
    reply(ErrorResponse(request.request_id, ApiError::kUpgradeRequired,
                        "this route needs a WebSocket upgrade"));
    return route;
  }
  if (!Authorize(*route, request, reply)) return route;
  try {
    route->handler(request, std::move(reply));
  } catch (const std::exception&) {
    // The handler may or may not have replied; a bug either way. The reply
    // was moved into the handler, so the transport's own guard answers 500.
    log::Error("http.handler_exception",
               {{log::Key::kRoute, SafeText::Trusted(route->pattern)},
                {log::Key::kRequestId, SafeText::Trusted(request.request_id)}});
  }
  return route;
}

}  // namespace cw::api
