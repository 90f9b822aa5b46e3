#pragma once

// The signed-in WebSockets of this process, by session, so that ending a
// session (logout, revocation, deactivation, password change, expiry) closes
// its live sockets too. The server polls the sessions revoked since its
// last look (which also catches revocations made by other processes) and
// closes their sockets with 4401. Thread-safe.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "api/router.hpp"

namespace cw::api {

class LiveSockets {
 public:
  // Registers a socket of `session_id` until `expires_at`; returns its handle.
  std::uint64_t Add(std::string session_id, std::weak_ptr<WebSocketPeer> peer,
                    std::chrono::system_clock::time_point expires_at);
  void Remove(std::uint64_t handle);

  // Closes (4401) every socket of these sessions; returns how many.
  int CloseSessions(const std::vector<std::string>& session_ids);
  // Closes (4401) every socket whose session has reached its end.
  int CloseExpired(std::chrono::system_clock::time_point now);

  std::size_t size() const;
  // The sessions that have live sockets here.
  std::vector<std::string> SessionIds() const;

 private:
  struct Entry {
    std::string session_id;
    std::weak_ptr<WebSocketPeer> peer;
    std::chrono::system_clock::time_point expires_at;
  };
  int CloseWhere(const std::function<bool(const Entry&)>& ended);
  mutable std::mutex mu_;
  std::uint64_t next_ = 1;
  std::map<std::uint64_t, Entry> sockets_;
};

}  // namespace cw::api
