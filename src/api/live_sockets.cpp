#include "api/live_sockets.hpp"

#include <set>

namespace cw::api {

std::uint64_t LiveSockets::Add(std::string session_id, std::weak_ptr<WebSocketPeer> peer,
                               std::chrono::system_clock::time_point expires_at) {
  std::lock_guard lock(mu_);
  const std::uint64_t handle = next_++;
  sockets_.emplace(handle, Entry{std::move(session_id), std::move(peer), expires_at});
  return handle;
}

void LiveSockets::Remove(std::uint64_t handle) {
  std::lock_guard lock(mu_);
  sockets_.erase(handle);
}

int LiveSockets::CloseSessions(const std::vector<std::string>& session_ids) {
  if (session_ids.empty()) return 0;
  const std::set<std::string> ended(session_ids.begin(), session_ids.end());
  return CloseWhere([&ended](const Entry& e) { return ended.count(e.session_id) > 0; });
}

int LiveSockets::CloseExpired(std::chrono::system_clock::time_point now) {
  return CloseWhere([now](const Entry& e) { return e.expires_at <= now; });
}

int LiveSockets::CloseWhere(const std::function<bool(const Entry&)>& ended) {
  std::vector<std::shared_ptr<WebSocketPeer>> to_close;
  {
    std::lock_guard lock(mu_);
    for (auto it = sockets_.begin(); it != sockets_.end();) {
      if (ended(it->second)) {
        if (auto peer = it->second.peer.lock()) to_close.push_back(std::move(peer));
        it = sockets_.erase(it);
      } else {
        ++it;
      }
    }
  }
  // Closed outside the lock: a close may call back into Remove.
  for (auto& peer : to_close) peer->Close(4401, "session ended");
  return static_cast<int>(to_close.size());
}

std::size_t LiveSockets::size() const {
  std::lock_guard lock(mu_);
  return sockets_.size();
}

std::vector<std::string> LiveSockets::SessionIds() const {
  std::set<std::string> ids;
  {
    std::lock_guard lock(mu_);
    for (const auto& [handle, entry] : sockets_) ids.insert(entry.session_id);
  }
  return {ids.begin(), ids.end()};
}

}  // namespace cw::api
