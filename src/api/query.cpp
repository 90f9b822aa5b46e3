#include "api/query.hpp"

#include "core/utf8.hpp"

namespace cw::api {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::optional<std::string> Decode(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '+') {
      c = ' ';
    } else if (c == '%') {
      if (i + 2 >= in.size()) return std::nullopt;
      const int hi = HexValue(in[i + 1]);
      const int lo = HexValue(in[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      c = static_cast<char>(hi * 16 + lo);
      i += 2;
    }
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return std::nullopt;
    out += c;
  }
  if (!core::IsValidUtf8(out)) return std::nullopt;
  return out;
}

}  // namespace

std::optional<std::map<std::string, std::string>> ParseQuery(
    std::string_view query, std::initializer_list<std::string_view> allowed, SafeText* problem) {
  std::map<std::string, std::string> params;
  while (!query.empty()) {
    const std::size_t amp = query.find('&');
    const std::string_view part = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (part.empty()) continue;
    const std::size_t eq = part.find('=');
    auto name = Decode(part.substr(0, eq));
    auto value = Decode(eq == std::string_view::npos ? std::string_view() : part.substr(eq + 1));
    if (!name || !value) {
      *problem = "the query string is not valid percent-encoded UTF-8";
      return std::nullopt;
    }
    bool known = false;
    for (std::string_view a : allowed) known = known || a == *name;
    if (!known) {
      *problem = "unknown query parameter";
      return std::nullopt;
    }
    if (!params.emplace(std::move(*name), std::move(*value)).second) {
      *problem = "a query parameter is repeated";
      return std::nullopt;
    }
  }
  return params;
}

}  // namespace cw::api
