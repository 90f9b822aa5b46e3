#include "messaging/live_hub.hpp"

namespace cw::messaging {

std::uint64_t LiveHub::Subscribe(const std::string& user_id,
                                 std::weak_ptr<Subscriber> subscriber) {
  std::lock_guard lock(mu_);
  const std::uint64_t handle = next_++;
  entries_.emplace(handle, Entry{user_id, std::move(subscriber)});
  by_user_.emplace(user_id, handle);
  return handle;
}

void LiveHub::Unsubscribe(std::uint64_t handle) {
  std::lock_guard lock(mu_);
  auto it = entries_.find(handle);
  if (it == entries_.end()) return;
  auto [first, last] = by_user_.equal_range(it->second.user_id);
  for (auto u = first; u != last; ++u) {
    if (u->second == handle) {
      by_user_.erase(u);
      break;
    }
  }
  entries_.erase(it);
}

void LiveHub::Publish(const std::vector<LiveEvent>& events) {
  // Subscribers are collected under the lock and called outside it, so a
  // subscriber may unsubscribe (or a socket close) while being called.
  std::vector<std::shared_ptr<Subscriber>> targets;
  for (const LiveEvent& event : events) {
    targets.clear();
    {
      std::lock_guard lock(mu_);
      for (const std::string& user : event.audience) {
        auto [first, last] = by_user_.equal_range(user);
        for (auto it = first; it != last; ++it) {
          auto entry = entries_.find(it->second);
          if (entry == entries_.end()) continue;
          if (auto s = entry->second.subscriber.lock()) targets.push_back(std::move(s));
        }
      }
    }
    for (const auto& target : targets) target->Push(event);
  }
}

std::size_t LiveHub::size() const {
  std::lock_guard lock(mu_);
  return entries_.size();
}

}  // namespace cw::messaging
