#pragma once

// The live half of the event stream: who is listening in this process, and
// the events to hand them as they commit.
//
// Events are published from the storage writer's completion callbacks, which
// run in commit order, so each subscriber sees cursors in increasing order.
// A subscriber that is still replaying older events from the database keeps
// what arrives meanwhile and sends it afterwards, skipping what the replay
// already sent (see api/event_routes.cpp). Thread-safe.

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace cw::messaging {

// One committed event, rendered once for everyone it is for.
struct LiveEvent {
  std::int64_t cursor = 0;
  std::string org_id;
  std::vector<std::string> audience;         // user ids
  std::shared_ptr<const std::string> frame;  // the JSON frame, cursor included
  // For message.created: the message, its conversation and its sender, so
  // a member's socket can record that it reached them.
  std::string message_id;
  std::string conversation_id;
  std::string sender_id;
};

class Subscriber {
 public:
  virtual ~Subscriber() = default;
  // Called on the storage writer thread: must be quick and must not block.
  virtual void Push(const LiveEvent& event) = 0;
};

class LiveHub {
 public:
  // Registers `subscriber` for the events of `user_id`; returns its handle.
  std::uint64_t Subscribe(const std::string& user_id, std::weak_ptr<Subscriber> subscriber);
  void Unsubscribe(std::uint64_t handle);

  // Hands each event to the live subscribers of its audience, in order.
  void Publish(const std::vector<LiveEvent>& events);

  std::size_t size() const;

 private:
  struct Entry {
    std::string user_id;
    std::weak_ptr<Subscriber> subscriber;
  };
  mutable std::mutex mu_;
  std::uint64_t next_ = 1;
  std::map<std::uint64_t, Entry> entries_;
  std::unordered_multimap<std::string, std::uint64_t> by_user_;
};

}  // namespace cw::messaging
