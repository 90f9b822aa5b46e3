// Secure messaging: conversations, their members and messages, receipts and
// recall. A conversation the caller does not belong to answers 404, like one
// that does not exist, on every route.

#include <sodium.h>

#include <boost/json/value.hpp>
#include <charconv>
#include <future>
#include <memory>
#include <utility>

#include "api/handler_support.hpp"
#include "api/query.hpp"
#include "api/routes.hpp"
#include "messaging/attachments.hpp"
#include "core/error.hpp"
#include "core/log.hpp"

namespace cw::api {
namespace {

using identity::Permission;

// The answer to a refused change: 400 names the problem, the rest are fixed
// texts that say nothing about the conversation.
Response Refusal(const std::string& request_id, const ErrorCode& error,
                 std::string_view problem) {
  if (error == core::Error::kInvalidArgument && !problem.empty()) {
    return ErrorResponse(request_id, ApiError::kBadRequest, SafeText::Trusted(problem));
  }
  if (error == core::Error::kPermissionDenied) {
    return ErrorResponse(request_id, ApiError::kForbidden,
                         "only the sender or a conversation admin may do that");
  }
  if (error == core::Error::kConflict) {
    return ErrorResponse(request_id, ApiError::kConflict,
                         problem.empty() ? SafeText("this message cannot be recalled now")
                                         : SafeText::Trusted(problem));
  }
  if (error == core::Error::kNotFound) {
    return ErrorResponse(request_id, ApiError::kNotFound, "not found");
  }
  return ErrorResponseFor(request_id, error);
}

// A string field, or nullopt with `error` set when present with another type.
bool ReadString(const Request& req, const boost::json::object& body, std::string_view key,
                std::string* out, Response* error) {
  const auto* v = body.if_contains(key);
  if (v == nullptr) return true;
  if (!v->is_string()) {
    *error = ErrorResponse(req.request_id, ApiError::kBadRequest,
                           "every field of this body is a string, except \"members\"");
    return false;
  }
  *out = std::string(v->as_string());
  return true;
}

std::optional<std::int64_t> ParseSeq(const std::map<std::string, std::string>& params) {
  auto it = params.find("after_seq");
  if (it == params.end()) return 0;
  const std::string& text = it->second;
  if (text.empty() || text.size() > 18) return std::nullopt;
  std::int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < 0) return std::nullopt;
  return value;
}

void CreateConversation(messaging::Messaging& messaging, core::WorkerPool& pool,
                        const JsonLimits& limits, Request& req, Reply reply) {
  Response error;
  auto body = ParseJsonObjectBody(req, limits, &error);
  if (!body) return reply(std::move(error));
  if (!OnlyKnownKeys(req, *body, {"kind", "members", "title"}, &error)) {
    return reply(std::move(error));
  }
  messaging::NewConversation request;
  if (!ReadString(req, *body, "kind", &request.kind, &error) ||
      !ReadString(req, *body, "title", &request.title, &error)) {
    return reply(std::move(error));
  }
  const auto* members = body->if_contains("members");
  if (request.kind.empty() || members == nullptr) {
    return reply(ErrorResponse(req.request_id, ApiError::kBadRequest,
                               "\"kind\" and \"members\" are required"));
  }
  auto list = StringList(*members, messaging::kMaxMembers);
  if (!list) {
    return reply(ErrorResponse(req.request_id, ApiError::kBadRequest,
                               "\"members\" is an array of 1 to 256 distinct user ids"));
  }
  request.members = std::move(*list);
  OnPool(pool, req, std::move(reply),
         [&messaging, caller = req.principal, origin = Origin(req), id = req.request_id,
          request = std::move(request)] {
           bool created = false;
           std::string problem;
           auto c = messaging.CreateConversation(caller, request, origin, &created, &problem);
           if (!c) return Refusal(id, c.error(), problem);
           return JsonResponse(created ? 201 : 200, messaging::ConversationJson(*c));
         });
}

void SendMessage(messaging::Messaging& messaging, const JsonLimits& limits, Request& req,
                 Reply reply) {
  Response error;
  auto body = ParseJsonObjectBody(req, limits, &error);
  if (!body) return reply(std::move(error));
  if (!OnlyKnownKeys(req, *body,
                     {"client_txn_id", "body", "priority", "reply_to", "do_not_forward",
                      "attachments"},
                     &error)) {
    return reply(std::move(error));
  }
  messaging::NewMessage request;
  if (!ReadString(req, *body, "client_txn_id", &request.client_txn_id, &error) ||
      !ReadString(req, *body, "body", &request.body, &error) ||
      !ReadString(req, *body, "priority", &request.priority, &error) ||
      !ReadString(req, *body, "reply_to", &request.reply_to, &error)) {
    return reply(std::move(error));
  }
  if (!body->contains("client_txn_id") || !body->contains("body")) {
    return reply(ErrorResponse(req.request_id, ApiError::kBadRequest,
                               "\"client_txn_id\" and \"body\" are required"));
  }
  if (!body->contains("priority")) request.priority = "routine";
  if (const auto* dnf = body->if_contains("do_not_forward")) {
    if (!dnf->is_bool()) {
      return reply(ErrorResponse(req.request_id, ApiError::kBadRequest,
                                 "\"do_not_forward\" is true or false"));
    }
    request.do_not_forward = dnf->as_bool();
  }
  if (const auto* attachments = body->if_contains("attachments")) {
    auto ids = attachments->is_array() && attachments->as_array().empty()
                   ? std::optional<std::vector<std::string>>(std::vector<std::string>())
                   : StringList(*attachments, messaging::kMaxAttachmentsPerMessage);
    if (!ids) {
      return reply(ErrorResponse(req.request_id, ApiError::kBadRequest,
                                 "\"attachments\" is an array of at most 10 distinct ids"));
    }
    request.attachment_ids = std::move(*ids);
  }
  messaging.Send(req.principal, std::string(req.Param("id")), std::move(request), Origin(req),
                 [reply = std::move(reply), id = req.request_id](Result<messaging::Message> m,
                                                                 SafeText problem) {
                   if (!m) return reply(Refusal(id, m.error(), problem.view()));
                   reply(JsonResponse(201, messaging::MessageJson(*m)));
                 });
}

void ForwardMessage(messaging::Messaging& messaging, core::WorkerPool& pool,
                    const JsonLimits& limits, Request& req, Reply reply) {
  Response error;
  auto fields = StringFields(req, limits, {"conversation_id", "client_txn_id"}, &error);
  if (!fields) return reply(std::move(error));
  // Reading and opening the source blocks: on the pool, never an I/O thread.
  OnPool(pool, req, std::move(reply),
         [&messaging, caller = req.principal, origin = Origin(req), id = req.request_id,
          message = std::string(req.Param("id")), to = (*fields)["conversation_id"],
          txn = (*fields)["client_txn_id"]] {
           std::promise<Response> answer;
           messaging.Forward(caller, message, to, txn, origin,
                             [&answer, &id](Result<messaging::Message> m, SafeText problem) {
                               if (!m && m.error() == core::Error::kPermissionDenied) {
                                 answer.set_value(ErrorResponse(
                                     id, ApiError::kForbidden,
                                     "this message is marked do not forward"));
                               } else if (!m) {
                                 answer.set_value(Refusal(id, m.error(), problem.view()));
                               } else {
                                 answer.set_value(JsonResponse(201, messaging::MessageJson(*m)));
                               }
                             });
           return answer.get_future().get();
         });
}

// A percent-encoded header value, decoded; nullopt on a bad escape.
std::optional<std::string> PercentDecoded(std::string_view text) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out.push_back(text[i]);
      continue;
    }
    if (i + 2 >= text.size()) return std::nullopt;
    unsigned value = 0;
    auto [end, ec] = std::from_chars(text.data() + i + 1, text.data() + i + 3, value, 16);
    if (ec != std::errc() || end != text.data() + i + 3) return std::nullopt;
    out.push_back(static_cast<char>(value));
    i += 2;
  }
  return out;
}

// RFC 5987 encoding of a file name for Content-Disposition's filename*.
std::string Rfc5987(std::string_view name) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (const char c : name) {
    const auto u = static_cast<unsigned char>(c);
    if ((u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') || (u >= '0' && u <= '9') ||
        c == '.' || c == '-' || c == '_') {
      out.push_back(c);
    } else {
      out.push_back('%');
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 15]);
    }
  }
  return out;
}

// An upload in progress. The body is read piece by piece on the I/O thread;
// each piece is sealed and stored on the worker pool before the next is
// read, so a slow disk slows the client rather than filling memory.
class UploadJob : public std::enable_shared_from_this<UploadJob> {
 public:
  // Bytes read from the client at a time.
  static constexpr std::size_t kPieceBytes = 512 << 10;

  UploadJob(messaging::Messaging& messaging, core::WorkerPool& pool, Request& req, Reply reply,
            std::string name)
      : messaging_(messaging),
        pool_(pool),
        body_(req.body_stream),
        reply_(std::move(reply)),
        request_id_(req.request_id),
        caller_(req.principal),
        origin_(Origin(req)),
        conversation_(req.Param("id")),
        name_(std::move(name)) {}

  void Start() {
    OnWorker([self = shared_from_this()] { self->Begin(); });
  }

 private:
  // Runs `work` on the pool; when the pool is full, the upload ends with 503.
  void OnWorker(std::function<void()> work) {
    auto guarded = [self = shared_from_this(), work = std::move(work)] {
      try {
        work();
      } catch (const std::exception&) {
        log::Error("http.handler_exception",
                   {{log::Key::kRequestId, SafeText::Trusted(self->request_id_)}});
        self->Answer(ErrorResponse(self->request_id_, ApiError::kInternal, "internal error"));
      }
    };
    if (!pool_.Submit(std::move(guarded))) {
      Answer(ErrorResponse(request_id_, ApiError::kUnavailable,
                           "the server is busy; try again shortly"));
    }
  }

  void Begin() {
    std::string problem;
    auto upload = messaging_.BeginUpload(caller_, conversation_, name_, origin_, &problem);
    if (!upload) return Answer(Refusal(request_id_, upload.error(), problem));
    upload_ = std::move(*upload);
    ReadNext();
  }

  void ReadNext() {
    body_->Read(kPieceBytes, [self = shared_from_this()](BodyPiece piece) {
      auto shared = std::make_shared<BodyPiece>(std::move(piece));
      self->OnWorker([self, shared] { self->Take(*shared); });
    });
  }

  void Take(BodyPiece& piece) {
    using State = BodyPiece::State;
    struct Wipe {
      std::string& s;
      ~Wipe() { sodium_memzero(s.data(), s.size()); }
    } wipe{piece.bytes};
    if (piece.state == State::kTooLarge) {
      return Answer(ErrorResponse(request_id_, ApiError::kPayloadTooLarge,
                                  "the attachment is larger than the limit"));
    }
    if (piece.state == State::kBusy) {
      return Answer(ErrorResponse(request_id_, ApiError::kUnavailable,
                                  "too many uploads at once; try again shortly"));
    }
    if (piece.state == State::kBroken) {
      return Answer(
          ErrorResponse(request_id_, ApiError::kBadRequest, "the body could not be read"));
    }
    std::string problem;
    if (auto s = upload_->Append(piece.bytes, &problem); !s) {
      // The type comes from the bytes alone, never from Content-Type or
      // the name.
      if (s.error() == core::Error::kInvalidArgument) {
        return Answer(ErrorResponse(request_id_, ApiError::kUnsupportedMediaType,
                                    SafeText::Trusted(problem)));
      }
      return Answer(Refusal(request_id_, s.error(), ""));
    }
    if (piece.state == State::kMore) return ReadNext();
    auto a = upload_->Finish(&problem);
    if (!a) return Answer(Refusal(request_id_, a.error(), problem));
    Answer(JsonResponse(201, {{"id", a->id},
                              {"conversation_id", a->conversation_id},
                              {"content_type", a->content_type},
                              {"size", a->size}}));
  }

  // An unfinished upload removes what it stored as it is destroyed.
  void Answer(Response response) {
    upload_.reset();
    if (reply_) std::exchange(reply_, nullptr)(std::move(response));
  }

  messaging::Messaging& messaging_;
  core::WorkerPool& pool_;
  std::shared_ptr<BodyStream> body_;
  Reply reply_;
  const std::string request_id_;
  const Principal caller_;
  const identity::RequestOrigin origin_;
  const std::string conversation_;
  const std::string name_;
  std::unique_ptr<messaging::AttachmentUpload> upload_;
};

void UploadAttachment(messaging::Messaging& messaging, core::WorkerPool& pool, Request& req,
                      Reply reply) {
  auto name = PercentDecoded(req.Header("x-attachment-name"));
  if (!name || !messaging::IsValidAttachmentName(*name)) {
    return reply(ErrorResponse(req.request_id, ApiError::kBadRequest,
                               "X-Attachment-Name is a percent-encoded UTF-8 name of at most "
                               "255 bytes, without control characters or slashes"));
  }
  std::make_shared<UploadJob>(messaging, pool, req, std::move(reply), std::move(*name))->Start();
}

// A download's body: each piece is read from storage and opened on the pool.
class DownloadSource : public BodySource {
 public:
  DownloadSource(core::WorkerPool& pool, std::unique_ptr<messaging::AttachmentDownload> download)
      : pool_(pool), download_(std::move(download)) {}

  void Next(std::function<void(Result<std::string>)> done) override {
    auto shared = std::make_shared<std::function<void(Result<std::string>)>>(std::move(done));
    const bool queued = pool_.Submit([this, shared] {
      Result<std::string> piece = core::Error::kInternal;
      try {
        piece = download_->Next();
      } catch (const std::exception&) {
        log::Error("messaging.download_exception");
      }
      (*shared)(std::move(piece));
    });
    if (!queued) (*shared)(core::Error::kUnavailable);
  }

 private:
  core::WorkerPool& pool_;
  std::unique_ptr<messaging::AttachmentDownload> download_;
};

void DownloadAttachment(messaging::Messaging& messaging, core::WorkerPool& pool, Request& req,
                        Reply reply) {
  OnPool(pool, req, std::move(reply),
         [&messaging, &pool, caller = req.principal, origin = Origin(req), id = req.request_id,
          attachment = std::string(req.Param("id"))] {
           auto download = messaging.OpenDownload(caller, attachment, origin);
           if (!download) return Refusal(id, download.error(), "");
           Response r;
           r.status = 200;
           r.content_type = (*download)->info().content_type;
           // Always a download, never rendered by the browser in the app's
           // origin; the name only in the encoded form.
           std::string disposition = "attachment; filename=\"attachment." +
                                     std::string(messaging::ExtensionFor(r.content_type)) + "\"";
           if (!(*download)->name().empty()) {
             disposition += "; filename*=UTF-8''" + Rfc5987((*download)->name());
           }
           r.headers.emplace_back("content-disposition", std::move(disposition));
           r.content_length = (*download)->info().size;
           r.body_source = std::make_shared<DownloadSource>(pool, std::move(*download));
           return r;
         });
}

void ListMessages(messaging::Messaging& messaging, core::WorkerPool& pool, Request& req,
                  Reply reply) {
  SafeText problem = "";
  auto params = ParseQuery(req.query, {"after_seq", "limit"}, &problem);
  if (!params) return reply(ErrorResponse(req.request_id, ApiError::kBadRequest, problem));
  const auto after = ParseSeq(*params);
  if (!after) {
    return reply(ErrorResponse(req.request_id, ApiError::kBadRequest,
                               "after_seq must be an integer from 0"));
  }
  const auto limit = ParseLimit(*params, 50, 200);
  if (!limit) {
    return reply(ErrorResponse(req.request_id, ApiError::kBadRequest,
                               "limit must be an integer from 1 to 200"));
  }
  OnPool(pool, req, std::move(reply),
         [&messaging, caller = req.principal, origin = Origin(req), id = req.request_id,
          conversation = std::string(req.Param("id")), after = *after, limit = *limit] {
           auto list = messaging.ListMessages(caller, conversation, after, limit, origin);
           if (!list) return Refusal(id, list.error(), "");
           boost::json::array out;
           for (const auto& m : *list) out.push_back(messaging::MessageJson(m));
           return JsonResponse(200, {{"messages", std::move(out)}});
         });
}

}  // namespace

void AddMessagingRoutes(Router& router, messaging::Messaging& messaging, core::WorkerPool& pool,
                        const JsonLimits& limits, const MessagingRouteOptions& options) {
  router.Add(Method::kPost, "/api/v1/conversations", Access::Needs(Permission::kMessagesSend),
             [&messaging, &pool, limits](Request& req, Reply reply) {
               CreateConversation(messaging, pool, limits, req, std::move(reply));
             });

  router.Add(Method::kGet, "/api/v1/conversations", Access::Needs(Permission::kMessagesRead),
             [&messaging, &pool](Request& req, Reply reply) {
               SafeText problem = "";
               if (!ParseQuery(req.query, {}, &problem)) {
                 return reply(ErrorResponse(req.request_id, ApiError::kBadRequest, problem));
               }
               OnPool(pool, req, std::move(reply),
                      [&messaging, caller = req.principal, id = req.request_id] {
                        auto list = messaging.ListConversations(caller);
                        if (!list) return Refusal(id, list.error(), "");
                        boost::json::array out;
                        for (const auto& c : *list) out.push_back(messaging::ConversationJson(c));
                        return JsonResponse(200, {{"conversations", std::move(out)}});
                      });
             });

  router.Add(Method::kGet, "/api/v1/conversations/{id}", Access::Needs(Permission::kMessagesRead),
             [&messaging, &pool](Request& req, Reply reply) {
               OnPool(pool, req, std::move(reply),
                      [&messaging, caller = req.principal, id = req.request_id,
                       conversation = std::string(req.Param("id"))] {
                        auto c = messaging.GetConversation(caller, conversation);
                        if (!c) return Refusal(id, c.error(), "");
                        return JsonResponse(200, messaging::ConversationJson(*c));
                      });
             });

  router.Add(Method::kPatch, "/api/v1/conversations/{id}",
             Access::Needs(Permission::kMessagesSend),
             [&messaging, &pool, limits](Request& req, Reply reply) {
               Response error;
               auto body = ParseJsonObjectBody(req, limits, &error);
               if (!body) return reply(std::move(error));
               if (!OnlyKnownKeys(req, *body, {"title", "message_lifespan_days"}, &error)) {
                 return reply(std::move(error));
               }
               messaging::ConversationChange change;
               if (const auto* t = body->if_contains("title")) {
                 if (!t->is_string()) {
                   return reply(ErrorResponse(req.request_id, ApiError::kBadRequest,
                                              "\"title\" is a string"));
                 }
                 change.title = std::string(t->as_string());
               }
               if (const auto* d = body->if_contains("message_lifespan_days")) {
                 if (d->is_null()) {
                   change.message_lifespan_days = std::optional<int>();
                 } else if (auto days = IntIn(*d, 1, 36500)) {
                   change.message_lifespan_days = days;
                 } else {
                   return reply(ErrorResponse(req.request_id, ApiError::kBadRequest,
                                              "message_lifespan_days must be 1 to 36500, or null"));
                 }
               }
               if (!change.title && !change.message_lifespan_days) {
                 return reply(ErrorResponse(req.request_id, ApiError::kBadRequest,
                                            "nothing to change"));
               }
               OnPool(pool, req, std::move(reply),
                      [&messaging, caller = req.principal, origin = Origin(req),
                       id = req.request_id, conversation = std::string(req.Param("id")),
                       change = std::move(change)] {
                        std::string problem;
                        auto c = messaging.Update(caller, conversation, change, origin, &problem);
                        if (!c) return Refusal(id, c.error(), problem);
                        return JsonResponse(200, messaging::ConversationJson(*c));
                      });
             });

  router.Add(Method::kPut, "/api/v1/conversations/{id}/legal-hold",
             Access::Needs(Permission::kOrgManage).Sensitive(),
             [&messaging, &pool, limits](Request& req, Reply reply) {
               Response error;
               auto body = ParseJsonObjectBody(req, limits, &error);
               if (!body) return reply(std::move(error));
               const auto* hold = body->if_contains("legal_hold");
               if (body->size() != 1 || hold == nullptr || !hold->is_bool()) {
                 return reply(ErrorResponse(req.request_id, ApiError::kBadRequest,
                                            "the body is {\"legal_hold\": true or false}"));
               }
               OnPool(pool, req, std::move(reply),
                      [&messaging, caller = req.principal, origin = Origin(req),
                       id = req.request_id, conversation = std::string(req.Param("id")),
                       on = hold->as_bool()] {
                        auto c = messaging.SetLegalHold(caller, conversation, on, origin);
                        if (!c) return Refusal(id, c.error(), "");
                        return JsonResponse(200, {{"id", c->id}, {"legal_hold", c->legal_hold}});
                      });
             });

  router.Add(Method::kPost, "/api/v1/conversations/{id}/members",
             Access::Needs(Permission::kMessagesSend),
             [&messaging, &pool, limits](Request& req, Reply reply) {
               Response error;
               auto fields = StringFields(req, limits, {"user_id"}, &error);
               if (!fields) return reply(std::move(error));
               OnPool(pool, req, std::move(reply),
                      [&messaging, caller = req.principal, origin = Origin(req),
                       id = req.request_id, conversation = std::string(req.Param("id")),
                       user = (*fields)["user_id"]] {
                        std::string problem;
                        auto c = messaging.AddMember(caller, conversation, user, origin, &problem);
                        if (!c) return Refusal(id, c.error(), problem);
                        return JsonResponse(200, messaging::ConversationJson(*c));
                      });
             });

  router.Add(Method::kDelete, "/api/v1/conversations/{id}/members/{user_id}",
             Access::Needs(Permission::kMessagesRead),
             [&messaging, &pool](Request& req, Reply reply) {
               OnPool(pool, req, std::move(reply),
                      [&messaging, caller = req.principal, origin = Origin(req),
                       id = req.request_id, conversation = std::string(req.Param("id")),
                       user = std::string(req.Param("user_id"))] {
                        std::string problem;
                        auto s = messaging.RemoveMember(caller, conversation, user, origin, &problem);
                        if (!s) return Refusal(id, s.error(), problem);
                        Response r;
                        r.status = 204;
                        return r;
                      });
             });

  router.Add(Method::kPost, "/api/v1/conversations/{id}/messages",
             Access::Needs(Permission::kMessagesSend),
             [&messaging, limits](Request& req, Reply reply) {
               SendMessage(messaging, limits, req, std::move(reply));
             });

  router.Add(Method::kPost, "/api/v1/messages/{id}/forward",
             Access::Needs(Permission::kMessagesSend),
             [&messaging, &pool, limits](Request& req, Reply reply) {
               ForwardMessage(messaging, pool, limits, req, std::move(reply));
             });

  router.AddStreamed(Method::kPost, "/api/v1/conversations/{id}/attachments",
                     Access::Needs(Permission::kMessagesSend), options.attachment_max_bytes,
                     [&messaging, &pool](Request& req, Reply reply) {
                       UploadAttachment(messaging, pool, req, std::move(reply));
                     });

  router.Add(Method::kGet, "/api/v1/attachments/{id}", Access::Needs(Permission::kMessagesRead),
             [&messaging, &pool](Request& req, Reply reply) {
               DownloadAttachment(messaging, pool, req, std::move(reply));
             });

  router.Add(Method::kGet, "/api/v1/conversations/{id}/messages",
             Access::Needs(Permission::kMessagesRead),
             [&messaging, &pool](Request& req, Reply reply) {
               ListMessages(messaging, pool, req, std::move(reply));
             });

  auto message_action = [&messaging, &pool](bool recall) {
    return [&messaging, &pool, recall](Request& req, Reply reply) {
      if (!req.body.empty()) {
        return reply(ErrorResponse(req.request_id, ApiError::kBadRequest,
                                   "this request takes no body"));
      }
      OnPool(pool, req, std::move(reply),
             [&messaging, recall, caller = req.principal, origin = Origin(req),
              id = req.request_id, message = std::string(req.Param("id"))] {
               auto s = recall ? messaging.Recall(caller, message, origin)
                               : messaging.MarkRead(caller, message, origin);
               if (!s) return Refusal(id, s.error(), "");
               Response r;
               r.status = 204;
               return r;
             });
    };
  };
  router.Add(Method::kPost, "/api/v1/messages/{id}/read",
             Access::Needs(Permission::kMessagesRead), message_action(false));
  router.Add(Method::kPost, "/api/v1/messages/{id}/recall",
             Access::Needs(Permission::kMessagesSend), message_action(true));

  router.Add(Method::kGet, "/api/v1/messages/{id}/receipts",
             Access::Needs(Permission::kMessagesRead),
             [&messaging, &pool](Request& req, Reply reply) {
               OnPool(pool, req, std::move(reply),
                      [&messaging, caller = req.principal, id = req.request_id,
                       message = std::string(req.Param("id"))] {
                        auto list = messaging.Receipts(caller, message);
                        if (!list) return Refusal(id, list.error(), "");
                        boost::json::array out;
                        for (const auto& r : *list) {
                          out.push_back({{"user_id", r.user_id},
                                         {"delivered_at", OrNull(r.delivered_at)},
                                         {"read_at", OrNull(r.read_at)}});
                        }
                        return JsonResponse(200, {{"receipts", std::move(out)}});
                      });
             });
}

}  // namespace cw::api
