#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include "api/live_sockets.hpp"
#include "api/routes.hpp"
#include "audit/timestamp.hpp"

namespace cw::api {
namespace {

// The live event stream. The first "auth" frame carries a bearer token: an
// invalid, expired or revoked one closes the socket with 4401; a valid one
// registers the socket with its session, so ending the session closes it.
// "ping" answers "pong" so clients can check the path end to end before
// they authenticate. Events themselves arrive with messaging.
class EventStream final : public WebSocketHandler {
 public:
  EventStream(std::shared_ptr<WebSocketPeer> peer, JsonLimits limits,
              const Authenticator& authenticator, LiveSockets& live)
      : peer_(std::move(peer)), limits_(limits), authenticator_(authenticator), live_(live) {}

  ~EventStream() override {
    if (handle_ != 0) live_.Remove(handle_);
  }

  void OnClose() override {
    if (handle_ != 0) live_.Remove(handle_);
    handle_ = 0;
  }

  void OnText(std::string_view message) override {
    SafeText problem = "frame is not valid JSON";
    auto value = ParseStrictJson(message, limits_, &problem);
    if (!value || !value->is_object()) {
      SendError("bad_request", value ? "frame must be a JSON object" : problem);
      return;
    }
    const auto* type = value->as_object().if_contains("type");
    if (type == nullptr || !type->is_string()) {
      SendError("bad_request", "frame needs a string \"type\"");
      return;
    }
    const auto& t = type->as_string();
    if (t == "ping") {
      peer_->SendText(R"({"type":"pong"})");
    } else if (t == "auth") {
      Authenticate(value->as_object());
    } else {
      SendError("bad_request", "unknown frame type");
    }
  }

 private:
  void Authenticate(const boost::json::object& frame) {
    if (handle_ != 0) {
      SendError("bad_request", "already authenticated");
      return;
    }
    const auto* token = frame.if_contains("token");
    if (token == nullptr || !token->is_string() || !authenticator_) {
      peer_->Close(4401, "unauthenticated");
      return;
    }
    auto principal = authenticator_(token->as_string());
    if (!principal || principal->scope != identity::SessionScope::kFull) {
      peer_->Close(4401, "unauthenticated");
      return;
    }
    auto expires = audit::ParseRfc3339(principal->expires_at);
    const auto until =
        expires ? std::chrono::time_point_cast<std::chrono::system_clock::duration>(*expires)
                : std::chrono::system_clock::now();
    handle_ = live_.Add(principal->session_id, peer_, until);
    peer_->SendText(R"({"type":"ready","cursor":"0"})");
  }

  void SendError(SafeText code, SafeText message) {
    boost::json::value frame = {{"type", "error"},
                                {"error", {{"code", code.view()}, {"message", message.view()}}}};
    peer_->SendText(boost::json::serialize(frame));
  }

  std::shared_ptr<WebSocketPeer> peer_;
  JsonLimits limits_;
  const Authenticator& authenticator_;
  LiveSockets& live_;
  std::uint64_t handle_ = 0;
};

}  // namespace

void AddEventRoutes(Router& router, const JsonLimits& limits, LiveSockets& live) {
  // Public at the HTTP level: the token arrives in the first frame, never in
  // the URL.
  router.AddWebSocket("/api/v1/events", Access::Public(),
                      [limits, &router, &live](const Request&, std::shared_ptr<WebSocketPeer> peer) {
                        return std::make_unique<EventStream>(std::move(peer), limits,
                                                             router.authenticator(), live);
                      });
}

}  // namespace cw::api
