#include "core/utf8.hpp"

#include <gtest/gtest.h>

namespace cw::core {
namespace {

TEST(Utf8Test, AcceptsWellFormedText) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("plain ascii"));
  EXPECT_TRUE(IsValidUtf8("caf\xc3\xa9"));       // é
  EXPECT_TRUE(IsValidUtf8("\xe2\x80\xae"));      // U+202E, valid though hostile
  EXPECT_TRUE(IsValidUtf8("\xf0\x9f\x98\x80"));  // U+1F600
  EXPECT_TRUE(IsValidUtf8("\xf4\x8f\xbf\xbf"));  // U+10FFFF
}

TEST(Utf8Test, RefusesMalformedText) {
  EXPECT_FALSE(IsValidUtf8("\xff"));
  EXPECT_FALSE(IsValidUtf8("\xc3"));              // truncated
  EXPECT_FALSE(IsValidUtf8("\xc3\x28"));          // bad continuation
  EXPECT_FALSE(IsValidUtf8("\xc0\xaf"));          // overlong '/'
  EXPECT_FALSE(IsValidUtf8("\xe0\x80\xaf"));      // overlong
  EXPECT_FALSE(IsValidUtf8("\xed\xa0\x80"));      // lone surrogate U+D800
  EXPECT_FALSE(IsValidUtf8("\xf4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(IsValidUtf8("\x80"));              // stray continuation
}

TEST(Utf8Test, FindsBidiControls) {
  EXPECT_FALSE(HasBidiControl("plain text, \xE2\x80\x8D joiner and \xE2\x80\x8F mark"));
  EXPECT_TRUE(HasBidiControl("scan\xE2\x80\xAE" "fdp.exe"));  // U+202E
  EXPECT_TRUE(HasBidiControl("\xE2\x80\xAAx"));             // U+202A
  EXPECT_TRUE(HasBidiControl("x\xE2\x81\xA6y\xE2\x81\xA9"));  // U+2066, U+2069
  EXPECT_FALSE(HasBidiControl("\xE2\x80\xA9"));             // U+2029, a separator
}

TEST(Utf8Test, CountsCodePoints) {
  EXPECT_EQ(CodePointCount(""), 0u);
  EXPECT_EQ(CodePointCount("abc"), 3u);
  EXPECT_EQ(CodePointCount("\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80"), 3u);
}

}  // namespace
}  // namespace cw::core
