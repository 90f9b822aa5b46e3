#pragma once

// The event stream's frames, as JSON text with their cursor. Internal to
// messaging/.

#include <cstdint>
#include <string>

#include "messaging/messaging.hpp"

namespace cw::messaging::render {

std::string MessageCreated(std::int64_t cursor, const Message& m);
std::string MessageRecalled(std::int64_t cursor, const std::string& conversation_id,
                            const std::string& message_id);
std::string MessageExpired(std::int64_t cursor, const std::string& conversation_id,
                           const std::string& message_id);
std::string ReceiptFrame(std::int64_t cursor, const std::string& conversation_id,
                         const std::string& message_id, const std::string& user_id,
                         const std::string& status);
std::string ConversationUpdated(std::int64_t cursor, const Conversation& c);
std::string ConversationRemoved(std::int64_t cursor, const std::string& conversation_id);

}  // namespace cw::messaging::render
