#include "core/log.hpp"

#include <gtest/gtest.h>

#include <boost/json/parse.hpp>

namespace cw::log {
namespace {

TEST(LogTest, LineIsOneJsonObjectWithNamedFields) {
  const std::string line = FormatLineForTest(Level::kInfo, "http.request",
                                             {{Key::kRoute, SafeText("/api/v1/users/{id}")},
                                              {Key::kStatus, 200},
                                              {Key::kLatencyUs, 1234},
                                              {Key::kBytesIn, std::uint64_t{5}},
                                              {Key::kDurationMs, 1.5},
                                              {Key::kCount, true}});
  ASSERT_FALSE(line.empty());
  EXPECT_EQ(line.back(), '\n');
  EXPECT_EQ(line.find('\n'), line.size() - 1);
  const auto v = boost::json::parse(line);
  EXPECT_EQ(v.at("level").as_string(), "info");
  EXPECT_EQ(v.at("event").as_string(), "http.request");
  EXPECT_EQ(v.at("route").as_string(), "/api/v1/users/{id}");
  EXPECT_EQ(v.at("status").as_int64(), 200);
  EXPECT_EQ(v.at("latency_us").as_int64(), 1234);
  EXPECT_EQ(v.at("bytes_in").as_int64(), 5);
  EXPECT_DOUBLE_EQ(v.at("duration_ms").as_double(), 1.5);
  EXPECT_TRUE(v.at("count").as_bool());
  EXPECT_EQ(v.at("time").as_string().size(), 27u);  // 2026-11-21T21:36:20.123456Z
}

TEST(LogTest, TrustedTextIsEscapedSoTheLineStaysOneObject) {
  const std::string line =
      FormatLineForTest(Level::kError, "x", {{Key::kError, SafeText::Trusted("a\"b\\c\nd\x01")}});
  EXPECT_EQ(line.find('\n'), line.size() - 1);
  EXPECT_EQ(boost::json::parse(line).at("error").as_string(), "a\"b\\c\nd\x01");
}

TEST(LogTest, NonFiniteNumbersBecomeNull) {
  const std::string line = FormatLineForTest(Level::kWarn, "x", {{Key::kDurationMs, 1.0 / 0.0}});
  EXPECT_TRUE(boost::json::parse(line).at("duration_ms").is_null());
}

TEST(LogTest, LevelsFilter) {
  const Level before = GetLevel();
  SetLevel(Level::kWarn);
  EXPECT_FALSE(Enabled(Level::kInfo));
  EXPECT_TRUE(Enabled(Level::kWarn));
  EXPECT_TRUE(Enabled(Level::kError));
  SetLevel(before);
  Level parsed = Level::kInfo;
  EXPECT_TRUE(ParseLevel("debug", &parsed));
  EXPECT_EQ(parsed, Level::kDebug);
  EXPECT_FALSE(ParseLevel("loud", &parsed));
}

// SafeText has no constructor from std::string: text from a request cannot
// reach a log line without the explicit, reviewable SafeText::Trusted.
static_assert(!std::is_constructible_v<SafeText, std::string>);
static_assert(!std::is_constructible_v<SafeText, std::string_view>);
static_assert(!std::is_constructible_v<SafeText, const char*>);

}  // namespace
}  // namespace cw::log
