#pragma once

// Routes requests to handlers by method and path template.
//
// A template is a path whose segments are literal or a parameter in braces:
// "/api/v1/users/{id}". The template, never the concrete path, names the
// route in logs and metrics, so ids and anything else in a path stay out of
// both. Every route states who may call it when it is registered; there is no
// default, so a route cannot be added without a decision about access.
//
// Routes are added during start-up, before the server serves; Find and the
// handlers are then called from many threads at once.

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "api/http.hpp"
#include "identity/permissions.hpp"

namespace cw::api {

// Who may call a route. Every route states it at registration, and there is
// no default: a route cannot be added without a decision about access.
// Deny by default: a signed-in route names the permission it needs, or says
// it concerns only the caller's own account.
struct Access {
  enum class Scope {
    kPublic,          // no credentials; must reveal nothing about any organization
    kPasswordChange,  // own account, any session (also one that may only set a password)
    kMfaEnrollment,   // own account, a full session or one that may only enrol MFA
    kSignedIn,        // a full session, holding `permission` unless `own_account`
  };
  Scope scope = Scope::kPublic;
  identity::Permission permission = identity::Permission::kMessagesRead;
  bool own_account = false;  // kSignedIn without a permission: the caller's own data
  bool recent_reauth = false;  // a sensitive action: a password check within 5 minutes

  static Access Public() { return {Scope::kPublic}; }
  static Access PasswordChange() { return {Scope::kPasswordChange, {}, true}; }
  static Access MfaEnrollment() { return {Scope::kMfaEnrollment, {}, true}; }
  static Access OwnAccount() { return {Scope::kSignedIn, {}, true}; }
  static Access Needs(identity::Permission p) { return {Scope::kSignedIn, p, false}; }
  // The same, and the caller must have re-authenticated within the last
  // identity::kReauthWindow (else 401 reauth_required).
  Access Sensitive() const {
    Access a = *this;
    a.recent_reauth = true;
    return a;
  }
};

// Resolves a bearer token to its principal: core::Error::kUnauthenticated
// when the token is unknown, revoked or expired.
using Authenticator = std::function<Result<Principal>(std::string_view token)>;

// A live WebSocket connection as a handler sees it. Thread-safe.
class WebSocketPeer {
 public:
  virtual ~WebSocketPeer() = default;
  // Queues a text message. Returns false when the connection is closing.
  virtual bool SendText(std::string text) = 0;
  // Starts a close handshake with an application close code (4000-4999) or a
  // standard one.
  virtual void Close(int code, SafeText reason) = 0;
  // Bytes queued and not yet written to the client, so a sender of many
  // messages (a replay) can wait for a slow client instead of overflowing
  // its queue.
  virtual std::size_t QueuedBytes() const { return 0; }
  // Calls `callback` once, from an I/O thread, when at most `bytes` are
  // queued, or when the connection closes: at once if that is so already.
  // It must not block. A later call replaces an earlier one not yet made.
  virtual void WhenQueuedAtMost(std::size_t bytes, std::function<void()> callback) {
    static_cast<void>(bytes);
    callback();
  }
};

// The server side of one WebSocket connection. Calls arrive on one thread at a
// time, in order.
class WebSocketHandler {
 public:
  virtual ~WebSocketHandler() = default;
  virtual void OnText(std::string_view message) = 0;
  virtual void OnClose() {}
};

using Handler = std::function<void(Request&, Reply)>;
using WebSocketFactory = std::function<std::unique_ptr<WebSocketHandler>(
    const Request&, std::shared_ptr<WebSocketPeer>)>;

struct Route {
  Method method = Method::kGet;
  std::string pattern;
  Access access;
  Handler handler;             // for plain requests
  WebSocketFactory websocket;  // set for routes that upgrade to a WebSocket
  // Set for routes whose body is streamed to the handler (Request::
  // body_stream) rather than read whole first; max_body_bytes is its limit,
  // instead of the server's limits.max_body_bytes.
  bool streamed = false;
  std::int64_t max_body_bytes = 0;

  // Parsed pattern: literal segments and parameter names ("{id}" -> "id").
  struct Segment {
    std::string text;
    bool param = false;
  };
  std::vector<Segment> segments;
};

class Router {
 public:
  // Registers a route. Throws std::logic_error on a malformed pattern or a
  // duplicate (method, pattern): both are programming errors found at start.
  void Add(Method method, SafeText pattern, Access access, Handler handler);
  // The same, for a route whose body is streamed to the handler, once the
  // caller is authorized, instead of being read whole before (uploads). Its
  // body may be up to max_body_bytes long.
  void AddStreamed(Method method, SafeText pattern, Access access, std::int64_t max_body_bytes,
                   Handler handler);
  void AddWebSocket(SafeText pattern, Access access, WebSocketFactory factory);

  struct Match {
    const Route* route = nullptr;  // null when nothing matched
    std::vector<std::pair<std::string, std::string>> params;
    std::vector<Method> allowed;  // when the path matched but the method did not
  };

  // Matches a percent-encoded path. Parameters are percent-decoded; a path
  // whose segments do not decode to valid, NUL-free text matches nothing.
  Match Find(Method method, std::string_view path) const;

  // Routes `request` and answers it through `reply`: 404 or 405 (with
  // Allow) as JSON errors when nothing matches, 426 for a WebSocket route
  // reached without an upgrade, 500 when a handler throws (a bug; logged
  // without detail). Fills request.params. Returns the matched route, or null.
  const Route* Dispatch(Request& request, Reply reply) const;
  // The same for a request already matched with Find (the transport matches
  // once, to learn the route's body handling, before dispatching).
  const Route* Dispatch(Request& request, Match match, Reply reply) const;

  const std::vector<std::unique_ptr<Route>>& routes() const { return routes_; }

  // Set once at start-up, before serving; routes other than public answer
  // 401 until it is set.
  void SetAuthenticator(Authenticator authenticator) { authenticator_ = std::move(authenticator); }
  const Authenticator& authenticator() const { return authenticator_; }

  // Called for every signed-in request refused for its scope or
  // permissions, so refusals reach the audit trail. Set once at start-up.
  using DenialRecorder = std::function<void(const Route&, const Request&)>;
  void SetDenialRecorder(DenialRecorder recorder) { denial_recorder_ = std::move(recorder); }

 private:
  // Fills request.principal for a route that needs one; false after it has
  // answered 401 or 403.
  bool Authorize(const Route& route, Request& request, Reply& reply) const;

  void Deny(const Route& route, const Request& request, Reply& reply, SafeText message) const;

  Authenticator authenticator_;
  DenialRecorder denial_recorder_;
  Route& AddRoute(Method method, SafeText pattern, Access access);
  std::vector<std::unique_ptr<Route>> routes_;
};

}  // namespace cw::api
