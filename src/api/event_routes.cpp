#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include "api/routes.hpp"

namespace cw::api {
namespace {

// The live event stream. Until sign-in exists no token is valid, so an
// "auth" frame is always refused with 4401, as the contract says for an
// invalid token. "ping" answers "pong" so clients can check the path end to
// end before they authenticate.
class EventStream final : public WebSocketHandler {
 public:
  EventStream(std::shared_ptr<WebSocketPeer> peer, JsonLimits limits)
      : peer_(std::move(peer)), limits_(limits) {}

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
      peer_->Close(4401, "unauthenticated");
    } else {
      SendError("bad_request", "unknown frame type");
    }
  }

 private:
  void SendError(SafeText code, SafeText message) {
    boost::json::value frame = {{"type", "error"},
                                {"error", {{"code", code.view()}, {"message", message.view()}}}};
    peer_->SendText(boost::json::serialize(frame));
  }

  std::shared_ptr<WebSocketPeer> peer_;
  JsonLimits limits_;
};

}  // namespace

void AddEventRoutes(Router& router, const JsonLimits& limits) {
  router.AddWebSocket("/api/v1/events", Access::kPublic,
                      [limits](const Request&, std::shared_ptr<WebSocketPeer> peer) {
                        return std::make_unique<EventStream>(std::move(peer), limits);
                      });
}

}  // namespace cw::api
