#pragma once

// Small helpers the integration tests share for reading the API's JSON,
// checking its error envelope and describing a command's result. Readers
// never throw on a missing or mistyped member: they answer "" or -1, so a
// test compares the value and reports the body rather than crashing midway.

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <chrono>
#include <cstdint>
#include <ctime>
#include <filesystem>
#include <functional>
#include <string>

#include "support/https_client.hpp"
#include "support/server_process.hpp"

namespace cw::testing {

// Exit code, signal (when there was one) and both outputs, for a failure message.
std::string Describe(const ProcessResult& r);

// A JSON string's text; "" for any other value or for no value.
std::string Str(const boost::json::value& v);
std::string Str(const boost::json::value* v);
// The string member `key` of an object, or "".
std::string Field(const boost::json::object& o, const char* key);
// The integer member `key` of an object, or -1.
std::int64_t Int(const boost::json::object& o, const char* key);

// A text, or a response's body, as a JSON object; an empty object when it is
// not one.
boost::json::object Parse(const std::string& text);
boost::json::object Parse(const HttpResponse& r);

// A request body.
std::string Body(const boost::json::object& o);
// The body of POST /api/v1/auth/login.
std::string LoginBody(const std::string& org, const std::string& username,
                      const std::string& password);

// A file's bytes ("" when it cannot be read).
std::string ReadFile(const std::filesystem::path& path);

// `bytes` random bytes as lowercase hex; safe to call from several threads.
std::string RandomHex(std::size_t bytes);

// Seconds since the epoch of an RFC 3339 UTC time "YYYY-MM-DDTHH:MM:SS[.f]Z";
// throws std::runtime_error on anything else.
std::time_t ParseUtc(const std::string& text);

// Polls until `done` holds or `timeout` passes; for effects the server
// records without holding up its answer (audit events of refusals, say).
bool Eventually(const std::function<bool()>& done,
                std::chrono::milliseconds timeout = std::chrono::seconds(5));

// An error response in the documented envelope: the status, JSON, the code,
// a message and the request id of the X-Request-Id header.
::testing::AssertionResult IsError(const HttpResponse& r, int status, const std::string& code);

// A 4xx error in the envelope, whatever the code.
::testing::AssertionResult IsClientError(const HttpResponse& r);

}  // namespace cw::testing
