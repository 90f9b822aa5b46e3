#include "messaging/push.hpp"

#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

namespace cw::messaging {

std::string_view PushText(PushKind kind) {
  switch (kind) {
    case PushKind::kMessage:
      return "New secure message";
    case PushKind::kUrgent:
      return "New urgent secure message";
    case PushKind::kUrgentReminder:
      return "Urgent secure message waiting";
    case PushKind::kUrgentEscalation:
      return "An urgent message in your conversation is unread";
    case PushKind::kUrgentUnreadToSender:
      return "An urgent message you sent is still unread";
  }
  return "New secure message";
}

namespace {

std::string_view KindName(PushKind kind) {
  switch (kind) {
    case PushKind::kMessage:
      return "message";
    case PushKind::kUrgent:
      return "urgent";
    case PushKind::kUrgentReminder:
      return "urgent_reminder";
    case PushKind::kUrgentEscalation:
      return "urgent_escalation";
    case PushKind::kUrgentUnreadToSender:
      return "urgent_unread";
  }
  return "message";
}

}  // namespace

std::string PushPayload(const PushNotification& n) {
  return boost::json::serialize(boost::json::object{
      {"conversation_id", n.conversation_id}, {"kind", KindName(n.kind)}, {"text", PushText(n.kind)}});
}

RecordingPushSink::RecordingPushSink(const std::string& path) : out_(path, std::ios::app) {}

void RecordingPushSink::Send(const PushNotification& n) {
  out_ << boost::json::serialize(boost::json::object{{"to", n.user_id},
                                                     {"payload", PushPayload(n)}})
       << "\n";
  out_.flush();
}

PushDispatcher::PushDispatcher(std::unique_ptr<PushSender> sender, std::size_t max_queued)
    : sender_(std::move(sender)), max_queued_(max_queued), thread_([this] { Run(); }) {}

PushDispatcher::~PushDispatcher() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_one();
  thread_.join();
}

void PushDispatcher::Enqueue(PushNotification n) {
  {
    std::lock_guard lock(mu_);
    if (queue_.size() >= max_queued_) {
      ++dropped_;
      return;
    }
    queue_.push_back(std::move(n));
  }
  wake_.notify_one();
}

void PushDispatcher::Drain() {
  std::unique_lock lock(mu_);
  idle_.wait(lock, [this] { return queue_.empty() && !sending_; });
}

std::uint64_t PushDispatcher::dropped() const {
  std::lock_guard lock(mu_);
  return dropped_;
}

void PushDispatcher::Run() {
  std::unique_lock lock(mu_);
  for (;;) {
    wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopping, and everything sent
    PushNotification n = std::move(queue_.front());
    queue_.pop_front();
    sending_ = true;
    lock.unlock();
    if (sender_) sender_->Send(n);
    lock.lock();
    sending_ = false;
    if (queue_.empty()) idle_.notify_all();
  }
}

}  // namespace cw::messaging
