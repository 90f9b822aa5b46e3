#include "api/json_body.hpp"

#include <boost/json/basic_parser_impl.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value_stack.hpp>
#include <cmath>
#include <string>
#include <unordered_set>
#include <vector>

#include "api/errors.hpp"

namespace cw::api {
namespace {

namespace json = boost::json;

// A basic_parser handler that builds a value like boost::json::parser does,
// but refuses duplicate keys and non-finite numbers.
class StrictHandler {
 public:
  static constexpr std::size_t max_array_size = static_cast<std::size_t>(-1);
  static constexpr std::size_t max_object_size = static_cast<std::size_t>(-1);
  static constexpr std::size_t max_string_size = static_cast<std::size_t>(-1);
  static constexpr std::size_t max_key_size = static_cast<std::size_t>(-1);

  json::value_stack st;
  bool duplicate_key = false;
  bool non_finite = false;

  bool on_document_begin(json::error_code&) { return true; }
  bool on_document_end(json::error_code&) { return true; }
  bool on_object_begin(json::error_code&) {
    keys_.emplace_back();
    return true;
  }
  bool on_object_end(std::size_t n, json::error_code&) {
    keys_.pop_back();
    st.push_object(n);
    return true;
  }
  bool on_array_begin(json::error_code&) { return true; }
  bool on_array_end(std::size_t n, json::error_code&) {
    st.push_array(n);
    return true;
  }
  bool on_key_part(json::string_view s, std::size_t, json::error_code&) {
    key_.append(s.data(), s.size());
    st.push_chars(s);
    return true;
  }
  bool on_key(json::string_view s, std::size_t, json::error_code& ec) {
    key_.append(s.data(), s.size());
    if (!keys_.back().insert(std::move(key_)).second) {
      duplicate_key = true;
      ec = json::error::syntax;
      return false;
    }
    key_.clear();
    st.push_key(s);
    return true;
  }
  bool on_string_part(json::string_view s, std::size_t, json::error_code&) {
    st.push_chars(s);
    return true;
  }
  bool on_string(json::string_view s, std::size_t, json::error_code&) {
    st.push_string(s);
    return true;
  }
  bool on_number_part(json::string_view, json::error_code&) { return true; }
  bool on_int64(std::int64_t i, json::string_view, json::error_code&) {
    st.push_int64(i);
    return true;
  }
  bool on_uint64(std::uint64_t u, json::string_view, json::error_code&) {
    st.push_uint64(u);
    return true;
  }
  bool on_double(double d, json::string_view, json::error_code& ec) {
    if (!std::isfinite(d)) {
      non_finite = true;
      ec = json::error::syntax;
      return false;
    }
    st.push_double(d);
    return true;
  }
  bool on_bool(bool b, json::error_code&) {
    st.push_bool(b);
    return true;
  }
  bool on_null(json::error_code&) {
    st.push_null();
    return true;
  }
  bool on_comment_part(json::string_view, json::error_code&) { return true; }
  bool on_comment(json::string_view, json::error_code&) { return true; }

 private:
  std::vector<std::unordered_set<std::string>> keys_;
  std::string key_;
};

bool IsJsonContentType(std::string_view value) {
  // application/json, optionally with parameters; the only charset allowed
  // is utf-8. Case-insensitive per RFC 9110.
  auto lower = [](std::string_view s) {
    std::string out(s);
    for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
  };
  const std::string v = lower(value);
  const std::size_t semi = v.find(';');
  std::string type = v.substr(0, semi);
  while (!type.empty() && type.back() == ' ') type.pop_back();
  if (type != "application/json") return false;
  if (semi == std::string::npos) return true;
  std::string params = v.substr(semi + 1);
  params.erase(0, params.find_first_not_of(' '));
  return params == "charset=utf-8" || params == "charset=\"utf-8\"";
}

}  // namespace

std::optional<json::value> ParseStrictJson(std::string_view text, const JsonLimits& limits,
                                           SafeText* problem) {
  json::parse_options opt;
  opt.max_depth = limits.max_depth;
  opt.allow_comments = false;
  opt.allow_trailing_commas = false;
  opt.allow_invalid_utf8 = false;
  json::basic_parser<StrictHandler> parser(opt);
  parser.handler().st.reset();
  json::error_code ec;
  const std::size_t n = parser.write_some(false, text.data(), text.size(), ec);
  if (!ec && n < text.size()) ec = json::error::extra_data;
  if (ec) {
    if (parser.handler().duplicate_key) {
      *problem = "request body repeats a key in an object";
    } else if (parser.handler().non_finite) {
      *problem = "request body holds a number out of range";
    } else if (ec == json::error::too_deep) {
      *problem = "request body is nested too deeply";
    } else if (ec == json::error::syntax || ec == json::error::extra_data ||
               ec == json::error::incomplete || ec == json::error::exponent_overflow) {
      *problem = "request body is not valid JSON";
    } else {
      *problem = "request body is not valid JSON text in UTF-8";
    }
    return std::nullopt;
  }
  return parser.handler().st.release();
}

std::optional<json::object> ParseJsonObjectBody(const Request& request, const JsonLimits& limits,
                                                Response* error) {
  if (!IsJsonContentType(request.Header("content-type"))) {
    *error = ErrorResponse(request.request_id, ApiError::kUnsupportedMediaType,
                           "request body must be application/json in UTF-8");
    return std::nullopt;
  }
  if (request.body.empty()) {
    *error = ErrorResponse(request.request_id, ApiError::kBadRequest, "request body is missing");
    return std::nullopt;
  }
  SafeText problem = "request body is not valid JSON";
  auto value = ParseStrictJson(request.body, limits, &problem);
  if (!value) {
    *error = ErrorResponse(request.request_id, ApiError::kBadRequest, problem);
    return std::nullopt;
  }
  if (!value->is_object()) {
    *error = ErrorResponse(request.request_id, ApiError::kBadRequest,
                           "request body must be a JSON object");
    return std::nullopt;
  }
  return std::move(value->as_object());
}

Response JsonResponse(int status, const json::value& body) {
  Response r;
  r.status = status;
  r.content_type = "application/json; charset=utf-8";
  r.body = json::serialize(body);
  return r;
}

}  // namespace cw::api
