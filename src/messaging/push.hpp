#pragma once

// Push notifications, which leave the deployment for Apple's and Google's
// services and land on lock screens: they carry no PHI. A notification names
// a conversation by its opaque id and says one of a few fixed texts ("New
// secure message"); never a sender's name, a body, a title or an attachment
// name. The app fetches the rest over its authenticated connection.
//
// PushSender is the seam where an APNs or FCM sender plugs in. The
// dispatcher hands notifications to it on a thread of its own, so the
// storage writer that produces them never waits on the network or a disk.

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

namespace cw::messaging {

enum class PushKind {
  kMessage,          // a new message
  kUrgent,           // a new urgent message
  kUrgentReminder,   // an urgent message still unread
  kUrgentEscalation,     // to a conversation's admins: an urgent message is unread
  kUrgentUnreadToSender  // to the sender, when the conversation has no admins
};

struct PushNotification {
  std::string user_id;  // who the device belongs to: chooses devices, never sent
  std::string conversation_id;
  PushKind kind = PushKind::kMessage;
};

// The fixed text for a kind.
std::string_view PushText(PushKind kind);

// The payload as it would leave the server: conversation id, kind and the
// fixed text, as JSON.
std::string PushPayload(const PushNotification& n);

class PushSender {
 public:
  virtual ~PushSender() = default;
  // Called on the dispatcher's thread.
  virtual void Send(const PushNotification& n) = 0;
};

// Records each payload as a JSON line (with the recipient's user id, which a
// real sender uses to choose devices) in a file: what tests and operators
// read to see what would have been sent.
class RecordingPushSink final : public PushSender {
 public:
  explicit RecordingPushSink(const std::string& path);
  void Send(const PushNotification& n) override;

 private:
  std::ofstream out_;
};

// A queue in front of a sender, with one thread. Past `max_queued`
// notifications are dropped (and counted): a notification is a hint, the
// messages themselves are durable.
class PushDispatcher {
 public:
  PushDispatcher(std::unique_ptr<PushSender> sender, std::size_t max_queued = 100000);
  ~PushDispatcher();  // sends what is queued, then stops

  void Enqueue(PushNotification n);
  // Waits until everything queued so far has been handed to the sender.
  void Drain();
  std::uint64_t dropped() const;

 private:
  void Run();
  std::unique_ptr<PushSender> sender_;
  const std::size_t max_queued_;
  mutable std::mutex mu_;
  std::condition_variable wake_;
  std::condition_variable idle_;
  bool sending_ = false;
  std::deque<PushNotification> queue_;
  bool stopping_ = false;
  std::uint64_t dropped_ = 0;
  std::thread thread_;
};

}  // namespace cw::messaging
