#include "support/api.hpp"

#include <fstream>
#include <iomanip>
#include <mutex>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace cw::testing {

namespace json = boost::json;

std::string Describe(const ProcessResult& r) {
  return "exit " + std::to_string(r.exit_code) +
         (r.signal != 0 ? " signal " + std::to_string(r.signal) : "") + "\nstdout: " + r.out +
         "\nstderr: " + r.err;
}

std::string Str(const json::value& v) { return v.is_string() ? std::string(v.as_string()) : ""; }

std::string Str(const json::value* v) { return v != nullptr ? Str(*v) : ""; }

std::string Field(const json::object& o, const char* key) { return Str(o.if_contains(key)); }

std::int64_t Int(const json::object& o, const char* key) {
  const auto* v = o.if_contains(key);
  if (v == nullptr) return -1;
  if (v->is_int64()) return v->as_int64();
  // The parser makes an integer past INT64_MAX unsigned.
  if (v->is_uint64()) return static_cast<std::int64_t>(v->as_uint64());
  return -1;
}

json::object Parse(const std::string& text) {
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec || !v.is_object()) return {};
  return std::move(v.as_object());
}

json::object Parse(const HttpResponse& r) { return Parse(r.body); }

std::string Body(const json::object& o) { return json::serialize(o); }

std::string LoginBody(const std::string& org, const std::string& username,
                      const std::string& password) {
  return Body({{"org", org}, {"username", username}, {"password", password}});
}

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string RandomHex(std::size_t bytes) {
  // One generator for the process, guarded: tests call this from their
  // client threads.
  static std::mutex mu;
  static std::mt19937_64 rng(std::random_device{}());
  static constexpr char kHex[] = "0123456789abcdef";
  std::lock_guard lock(mu);
  std::string out;
  for (std::size_t i = 0; i < bytes; ++i) {
    const auto b = static_cast<unsigned>(rng() & 0xff);
    out += kHex[b >> 4];
    out += kHex[b & 0xf];
  }
  return out;
}

std::time_t ParseUtc(const std::string& text) {
  std::tm tm{};
  std::istringstream in(text);
  in >> std::get_time(&tm, "%Y-%m-%dT%H:%M:%S");
  if (in.fail() || text.empty() || text.back() != 'Z') {
    throw std::runtime_error("not an RFC 3339 UTC time: " + text);
  }
  return timegm(&tm);
}

bool Eventually(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

::testing::AssertionResult IsError(const HttpResponse& r, int status, const std::string& code) {
  if (r.status != status) {
    return ::testing::AssertionFailure()
           << "status " << r.status << ", expected " << status << ": " << r.body.substr(0, 400);
  }
  if (r.Header("content-type") != "application/json; charset=utf-8") {
    return ::testing::AssertionFailure() << "content-type " << r.Header("content-type");
  }
  const json::object v = Parse(r);
  // Checked before use: an "error" that is not an object must fail the
  // assertion, not throw out of it.
  if (!v.contains("error") || !v.at("error").is_object()) {
    return ::testing::AssertionFailure() << "not an error envelope: " << r.body.substr(0, 400);
  }
  const auto& e = v.at("error").as_object();
  if (Field(e, "code") != code) {
    return ::testing::AssertionFailure()
           << "code " << Field(e, "code") << ", expected " << code << ": " << r.body;
  }
  if (Field(e, "message").empty()) return ::testing::AssertionFailure() << "no message";
  if (Field(e, "request_id") != r.Header("x-request-id") || r.Header("x-request-id").empty()) {
    return ::testing::AssertionFailure() << "request_id does not match X-Request-Id: " << r.body;
  }
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult IsClientError(const HttpResponse& r) {
  if (r.status < 400 || r.status > 499) {
    return ::testing::AssertionFailure() << "status " << r.status << ": " << r.body.substr(0, 400);
  }
  const json::object v = Parse(r);
  if (!v.contains("error") || !v.at("error").is_object()) {
    return ::testing::AssertionFailure() << "not an error envelope: " << r.body.substr(0, 400);
  }
  return IsError(r, r.status, Field(v.at("error").as_object(), "code"));
}

}  // namespace cw::testing
