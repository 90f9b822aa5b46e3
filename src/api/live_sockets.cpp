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
  std::vector<std::shared_ptr<WebSocketPeer>> to_close;
  {
    std::lock_guard lock(mu_);
    for (auto it = sockets_.begin(); it != sockets_.end();) {
      if (ended.count(it->second.session_id)) {
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

int LiveSockets::CloseExpired(std::chrono::system_clock::time_point now) {
  std::vector<std::shared_ptr<WebSocketPeer>> to_close;
  {
    std::lock_guard lock(mu_);
    for (auto it = sockets_.begin(); it != sockets_.end();) {
      if (it->second.expires_at <= now) {
        if (auto peer = it->second.peer.lock()) to_close.push_back(std::move(peer));
        it = sockets_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& peer : to_close) peer->Close(4401, "session ended");
  return static_cast<int>(to_close.size());
}

std::size_t LiveSockets::size() const {
  std::lock_guard lock(mu_);
  return sockets_.size();
}

}  // namespace cw::api
