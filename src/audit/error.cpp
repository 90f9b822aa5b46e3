#include "audit/error.hpp"

namespace cw::audit {
namespace {

class Category final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "cw.audit"; }
  std::string message(int ev) const override {
    switch (static_cast<Error>(ev)) {
      case Error::kOk:
        return "ok";
      case Error::kInvalidEvent:
        return "invalid audit event";
      case Error::kInvalidFilter:
        return "invalid audit filter";
      case Error::kCorruptEvent:
        return "stored audit event is unreadable";
      case Error::kCheckpointFileMissing:
        return "audit checkpoint file missing";
      case Error::kCheckpointMalformed:
        return "audit checkpoint file malformed";
      case Error::kCheckpointIo:
        return "audit checkpoint file i/o error";
      case Error::kCheckpointStale:
        return "audit checkpoint not after the file's last";
      case Error::kCheckpointAhead:
        return "audit checkpoint beyond the end of the log";
      case Error::kCheckpointMismatch:
        return "audit log differs from its last checkpoint";
      case Error::kNoSuchCheckpoint:
        return "no audit checkpoint at the starting sequence";
      case Error::kExportWrite:
        return "audit export output failed";
    }
    return "unknown audit error";
  }
};

}  // namespace

const boost::system::error_category& ErrorCategory() {
  static const Category category;
  return category;
}

}  // namespace cw::audit
