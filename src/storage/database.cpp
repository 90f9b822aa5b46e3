#include "storage/database.hpp"

#include <future>
#include <stdexcept>
#include <utility>

namespace cw::storage {
namespace {

class Category final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "cw.storage"; }
  std::string message(int ev) const override {
    switch (static_cast<Error>(ev)) {
      case Error::kOk:
        return "ok";
      case Error::kConstraint:
        return "constraint violated";
      case Error::kIo:
        return "storage i/o error";
      case Error::kCorrupt:
        return "database corrupt";
      case Error::kFailed:
        return "storage failed: writes stopped";
      case Error::kClosed:
        return "database closed";
      case Error::kSchemaTooNew:
        return "database schema newer than this binary";
      case Error::kBadStatement:
        return "bad sql statement";
      case Error::kTypeMismatch:
        return "column type mismatch";
      case Error::kBusy:
        return "database busy";
      case Error::kInternal:
        return "internal storage error";
    }
    return "unknown storage error";
  }
};

// QueryOne stops Query after the first row by returning this code from
// on_row; it never leaves this file.
class StopCategory final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "cw.storage.stop"; }
  std::string message(int) const override { return "stop"; }
};

const ErrorCode& StopCode() {
  static const StopCategory category;
  static const ErrorCode code(1, category);
  return code;
}

[[noreturn]] void ThrowMismatch(const char* wanted) {
  throw std::logic_error(std::string("storage: column is not ") + wanted);
}

template <class T>
const T& Get(const std::vector<Value>& values, std::size_t i, const char* wanted) {
  // at() throws std::out_of_range, a std::logic_error, for a bad index.
  const T* v = std::get_if<T>(&values.at(i));
  if (v == nullptr) ThrowMismatch(wanted);
  return *v;
}

}  // namespace

const boost::system::error_category& ErrorCategory() {
  static const Category category;
  return category;
}

bool Row::IsNull(std::size_t i) const {
  return std::holds_alternative<std::nullptr_t>(values_.at(i));
}

std::int64_t Row::Int(std::size_t i) const { return Get<std::int64_t>(values_, i, "an integer"); }

double Row::Real(std::size_t i) const { return Get<double>(values_, i, "a real"); }

const std::string& Row::Text(std::size_t i) const { return Get<std::string>(values_, i, "text"); }

const Blob& Row::Bytes(std::size_t i) const { return Get<Blob>(values_, i, "a blob"); }

Result<std::optional<Row>> Transaction::QueryOne(std::string_view sql,
                                                 const std::vector<Value>& params) {
  std::optional<Row> first;
  Status status = Query(sql, params, [&first](const Row& row) -> Status {
    first = row;
    return StopCode();
  });
  if (!status && status.error() != StopCode()) return status.error();
  return first;
}

Result<std::vector<Row>> Transaction::QueryAll(std::string_view sql,
                                               const std::vector<Value>& params) {
  std::vector<Row> rows;
  Status status = Query(sql, params, [&rows](const Row& row) -> Status {
    rows.push_back(row);
    return Ok();
  });
  if (!status) return status.error();
  return rows;
}

Status Database::Write(WriteWork work) {
  // Shared with `done`: the writer thread may still be inside set_value (and
  // later destroys the callback) after get() has returned here.
  auto outcome = std::make_shared<std::promise<Status>>();
  std::future<Status> result = outcome->get_future();
  SubmitWrite(std::move(work), [outcome](Status status) { outcome->set_value(status); });
  return result.get();
}

}  // namespace cw::storage
