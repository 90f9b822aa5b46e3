#include "core/log.hpp"

#include <unistd.h>

#include <atomic>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <string>

#include "core/time.hpp"

namespace cw::log {
namespace {

std::atomic<int> g_level{static_cast<int>(Level::kInfo)};

std::string_view KeyName(Key key) {
  switch (key) {
    case Key::kRequestId:
      return "request_id";
    case Key::kRoute:
      return "route";
    case Key::kMethod:
      return "method";
    case Key::kStatus:
      return "status";
    case Key::kLatencyUs:
      return "latency_us";
    case Key::kBytesIn:
      return "bytes_in";
    case Key::kBytesOut:
      return "bytes_out";
    case Key::kError:
      return "error";
    case Key::kErrorCode:
      return "error_code";
    case Key::kCount:
      return "count";
    case Key::kLimit:
      return "limit";
    case Key::kAddress:
      return "address";
    case Key::kPath:
      return "path";
    case Key::kFingerprint:
      return "fingerprint";
    case Key::kVersion:
      return "version";
    case Key::kConnections:
      return "connections";
    case Key::kConfigKey:
      return "config_key";
    case Key::kBatchSize:
      return "batch_size";
    case Key::kDurationMs:
      return "duration_ms";
    case Key::kSignal:
      return "signal";
    case Key::kSequence:
      return "seq";
  }
  return "unknown";
}

std::string_view LevelName(Level level) {
  switch (level) {
    case Level::kDebug:
      return "debug";
    case Level::kInfo:
      return "info";
    case Level::kWarn:
      return "warn";
    case Level::kError:
      return "error";
  }
  return "info";
}

// Safe text is chosen by the code, but it still goes through JSON escaping so
// a line is always one valid JSON object.
void AppendString(std::string& out, std::string_view text) {
  out.push_back('"');
  for (char c : text) {
    const auto u = static_cast<unsigned char>(c);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (u < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", u);
          out += buf;
        } else {
          out.push_back(c);
        }
    }
  }
  out.push_back('"');
}

void AppendTime(std::string& out) { out += core::NowRfc3339(); }

void AppendValue(std::string& out, const Value& value) {
  if (const auto* i = std::get_if<std::int64_t>(&value)) {
    char buf[24];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, *i);
    out.append(buf, end);
  } else if (const auto* d = std::get_if<double>(&value)) {
    if (!std::isfinite(*d)) {
      out += "null";
      return;
    }
    char buf[32];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, *d);
    out.append(buf, end);
  } else if (const auto* b = std::get_if<bool>(&value)) {
    out += *b ? "true" : "false";
  } else {
    AppendString(out, std::get<SafeText>(value).view());
  }
}

void Format(std::string& out, Level level, SafeText event, std::initializer_list<Field> fields) {
  out += "{\"time\":\"";
  AppendTime(out);
  out += "\",\"level\":\"";
  out += LevelName(level);
  out += "\",\"event\":";
  AppendString(out, event.view());
  for (const Field& f : fields) {
    out += ",\"";
    out += KeyName(f.key);
    out += "\":";
    AppendValue(out, f.value);
  }
  out += "}\n";
}

}  // namespace

void SetLevel(Level level) { g_level.store(static_cast<int>(level), std::memory_order_relaxed); }

Level GetLevel() { return static_cast<Level>(g_level.load(std::memory_order_relaxed)); }

bool Enabled(Level level) {
  return static_cast<int>(level) >= g_level.load(std::memory_order_relaxed);
}

bool ParseLevel(std::string_view text, Level* level) {
  for (Level l : {Level::kDebug, Level::kInfo, Level::kWarn, Level::kError}) {
    if (text == LevelName(l)) {
      *level = l;
      return true;
    }
  }
  return false;
}

void Write(Level level, SafeText event, std::initializer_list<Field> fields) {
  thread_local std::string line;
  line.clear();
  Format(line, level, event, fields);
  // One write(2) per line keeps lines whole when threads log at once. A failed
  // or short write of a log line is dropped: logging must never stop service.
  const ssize_t n = ::write(STDERR_FILENO, line.data(), line.size());
  (void)n;
}

std::string FormatLineForTest(Level level, SafeText event, std::initializer_list<Field> fields) {
  std::string line;
  Format(line, level, event, fields);
  return line;
}

}  // namespace cw::log
