// GET /api/v1/events: the live event stream.
//
// The first "auth" frame carries a bearer token and, to resume, the cursor
// of the last event the client has. An invalid, expired or revoked token
// closes the socket with 4401; a cursor that is not a number, with 4400.
// Then, in order:
//
//   1. the socket subscribes to the live hub, keeping what arrives;
//   2. "ready" is sent, with the cursor the stream starts from;
//   3. every event after that cursor is replayed from the database, page by
//      page, waiting while the client's queue is full;
//   4. what arrived meanwhile is sent, skipping what the replay covered,
//      and from then on events are sent as they commit.
//
// Subscribing before reading means an event is either in the database when
// the replay reads it or published afterwards: no gap; cursors only grow, so
// skipping those at or below the last one sent means no duplicate. A client
// too slow to keep up is closed with 1013 and resumes from its cursor.

#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <charconv>

#include "api/live_sockets.hpp"
#include "api/routes.hpp"
#include "audit/timestamp.hpp"

namespace cw::api {
namespace {

constexpr int kReplayPage = 256;
// A replay stops sending while more than this is queued for the client, and
// goes on once half of it has been written.
constexpr std::size_t kReplayQueueBytes = 256 * 1024;
// Live events kept for a socket that is still replaying; past this it is
// closed as too slow (it can resume).
constexpr std::size_t kMaxHeldEvents = 20000;

// What the hub and the replay share for one socket. Held by the stream and,
// weakly, by the hub and by a parked replay.
class Listener final : public messaging::Subscriber,
                       public std::enable_shared_from_this<Listener> {
 public:
  Listener(std::shared_ptr<WebSocketPeer> peer, messaging::Messaging& messaging,
           identity::Principal principal, core::WorkerPool& pool)
      : peer_(std::move(peer)),
        messaging_(messaging),
        principal_(std::move(principal)),
        pool_(pool) {}

  // From the hub, on the storage writer thread.
  void Push(const messaging::LiveEvent& event) override {
    std::unique_lock lock(mu_);
    if (closed_) return;
    if (replaying_) {
      if (held_.size() >= kMaxHeldEvents) {
        closed_ = true;
        lock.unlock();
        peer_->Close(1013, "client too slow; reconnect to resume");
        return;
      }
      held_.push_back(event);
      return;
    }
    if (event.cursor <= last_sent_) return;
    last_sent_ = event.cursor;
    SendLocked(*event.frame, event);
  }

  // On a worker: `ready`, then the replay from the cursor, then live events.
  void Start(std::optional<std::int64_t> cursor) {
    std::int64_t from = 0;
    if (cursor) {
      from = *cursor;
    } else {
      auto latest = messaging_.LatestCursor();
      if (!latest) return Fail();
      from = *latest;
    }
    {
      std::lock_guard lock(mu_);
      if (closed_) return;
      last_sent_ = from;
      peer_->SendText(boost::json::serialize(
          boost::json::object{{"type", "ready"}, {"cursor", std::to_string(from)}}));
    }
    from_ = from;
    complete_ = !cursor.has_value();
    Continue();
  }

  // On a worker: replays page by page. When the client's queue is full the
  // replay parks, giving its worker back, and goes on from where it stopped
  // once the client has read; a client that never reads holds a socket, not
  // a worker.
  void Continue() {
    for (;;) {
      if (next_ == page_.size()) {
        {
          std::lock_guard lock(mu_);
          if (closed_) return;
          last_sent_ = std::max(last_sent_, from_);
        }
        if (complete_) return GoLive();
        auto page = messaging_.Replay(principal_.org_id, principal_.user_id, from_, kReplayPage);
        if (!page) return Fail();
        page_ = std::move(page->frames);
        next_ = 0;
        from_ = page->through;
        complete_ = page->complete;
        continue;
      }
      if (peer_->QueuedBytes() > kReplayQueueBytes) return Park();
      const messaging::Frame& frame = page_[next_++];
      std::lock_guard lock(mu_);
      if (closed_) return;
      last_sent_ = frame.cursor;
      if (!peer_->SendText(frame.text)) {
        closed_ = true;
        return;
      }
      if (!frame.message_id.empty()) {
        messaging_.NoteDelivered({principal_.org_id, principal_.user_id, frame.message_id,
                                  frame.conversation_id, frame.sender_id});
      }
    }
  }

  void Stop() {
    std::lock_guard lock(mu_);
    closed_ = true;
    held_.clear();
  }

  // Ends the stream after a failure; the client resumes from its cursor.
  void Abort() { Fail(); }

 private:
  void Park() {
    peer_->WhenQueuedAtMost(kReplayQueueBytes / 2, [weak = weak_from_this()] {
      auto self = weak.lock();
      if (!self) return;
      const bool queued = self->pool_.Submit([self] {
        try {
          self->Continue();
        } catch (const std::exception&) {
          self->Abort();
        }
      });
      if (!queued) {
        self->Stop();
        self->peer_->Close(1013, "server busy; reconnect to resume");
      }
    });
  }

  // The replay is done: what arrived meanwhile goes out, then live events.
  void GoLive() {
    std::lock_guard lock(mu_);
    replaying_ = false;
    for (const messaging::LiveEvent& event : held_) {
      if (closed_) break;
      if (event.cursor <= last_sent_) continue;
      last_sent_ = event.cursor;
      SendLocked(*event.frame, event);
    }
    held_.clear();
    held_.shrink_to_fit();
    page_.clear();
    page_.shrink_to_fit();
  }

  // REQUIRES: mu_ held.
  void SendLocked(const std::string& frame, const messaging::LiveEvent& event) {
    if (!peer_->SendText(frame)) {
      closed_ = true;
      return;
    }
    if (!event.message_id.empty() && event.sender_id != principal_.user_id) {
      messaging_.NoteDelivered({principal_.org_id, principal_.user_id, event.message_id,
                                event.conversation_id, event.sender_id});
    }
  }

  void Fail() {
    Stop();
    peer_->Close(1011, "the event stream failed; reconnect to resume");
  }

  std::shared_ptr<WebSocketPeer> peer_;
  messaging::Messaging& messaging_;
  const identity::Principal principal_;
  core::WorkerPool& pool_;
  std::mutex mu_;
  bool replaying_ = true;
  bool closed_ = false;
  std::int64_t last_sent_ = 0;
  std::vector<messaging::LiveEvent> held_;
  // The replay's place, touched only by the one worker running it.
  std::vector<messaging::Frame> page_;
  std::size_t next_ = 0;
  std::int64_t from_ = 0;
  bool complete_ = false;
};

std::optional<std::int64_t> ParseCursor(std::string_view text) {
  if (text.empty() || text.size() > 18) return std::nullopt;
  std::int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < 0) return std::nullopt;
  return value;
}

class EventStream final : public WebSocketHandler {
 public:
  EventStream(std::shared_ptr<WebSocketPeer> peer, JsonLimits limits,
              const Authenticator& authenticator, LiveSockets& live, EventServices services)
      : peer_(std::move(peer)),
        limits_(limits),
        authenticator_(authenticator),
        live_(live),
        services_(services) {}

  ~EventStream() override { Release(); }

  void OnClose() override { Release(); }

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
    for (const auto& [key, v] : frame) {
      if (key != "type" && key != "token" && key != "cursor") {
        peer_->Close(4400, "the auth frame takes type, token and cursor");
        return;
      }
    }
    const auto* token = frame.if_contains("token");
    if (token == nullptr || !token->is_string() || !authenticator_) {
      peer_->Close(4401, "unauthenticated");
      return;
    }
    std::optional<std::int64_t> cursor;
    if (const auto* c = frame.if_contains("cursor"); c != nullptr && !c->is_null()) {
      cursor = c->is_string() ? ParseCursor(c->as_string()) : std::nullopt;
      if (!cursor) {
        peer_->Close(4400, "cursor must be a cursor from an earlier frame");
        return;
      }
    }
    auto principal = authenticator_(token->as_string());
    if (!principal || principal->scope != identity::SessionScope::kFull) {
      peer_->Close(4401, "unauthenticated");
      return;
    }
    if (!principal->Can(identity::Permission::kMessagesRead)) {
      peer_->Close(4403, "forbidden");
      return;
    }
    auto expires = audit::ParseRfc3339(principal->expires_at);
    const auto until =
        expires ? std::chrono::time_point_cast<std::chrono::system_clock::duration>(*expires)
                : std::chrono::system_clock::now();
    handle_ = live_.Add(principal->session_id, peer_, until);
    listener_ = std::make_shared<Listener>(peer_, services_.messaging, *principal, services_.pool);
    subscription_ = services_.hub.Subscribe(principal->user_id, listener_);
    const bool queued = services_.pool.Submit([listener = listener_, cursor] {
      try {
        listener->Start(cursor);
      } catch (const std::exception&) {
        // A bug or an exhausted machine: this socket ends, it may resume.
        listener->Abort();
      }
    });
    if (!queued) {
      listener_->Stop();
      peer_->Close(1013, "server busy; reconnect to resume");
    }
  }

  void Release() {
    if (subscription_ != 0) services_.hub.Unsubscribe(subscription_);
    subscription_ = 0;
    if (listener_) listener_->Stop();
    if (handle_ != 0) live_.Remove(handle_);
    handle_ = 0;
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
  EventServices services_;
  std::uint64_t handle_ = 0;
  std::uint64_t subscription_ = 0;
  std::shared_ptr<Listener> listener_;
};

}  // namespace

void AddEventRoutes(Router& router, const JsonLimits& limits, LiveSockets& live,
                    EventServices services) {
  // Public at the HTTP level: the token arrives in the first frame, never in
  // the URL.
  router.AddWebSocket(
      "/api/v1/events", Access::Public(),
      [limits, &router, &live, services](const Request&, std::shared_ptr<WebSocketPeer> peer) {
        return std::make_unique<EventStream>(std::move(peer), limits, router.authenticator(), live,
                                             services);
      });
}

}  // namespace cw::api
