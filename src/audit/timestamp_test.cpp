#include "audit/timestamp.hpp"

#include <gtest/gtest.h>

#include "core/time.hpp"

namespace cw::audit {
namespace {

TEST(AuditTimestampTest, NormalizesToTheStoredForm) {
  const std::pair<const char*, const char*> cases[] = {
      {"2026-11-21T21:36:20Z", "2026-11-21T21:36:20.000000Z"},
      {"2026-11-21t21:36:20.5z", "2026-11-21T21:36:20.500000Z"},
      {"2026-11-21T21:36:20.123456Z", "2026-11-21T21:36:20.123456Z"},
      {"2026-11-21T22:36:20+01:00", "2026-11-21T21:36:20.000000Z"},
      {"2026-11-21T00:30:00-05:30", "2026-11-21T06:00:00.000000Z"},
      {"2026-01-01T00:30:00+01:00", "2025-12-31T23:30:00.000000Z"},
      {"2024-02-29", "2024-02-29T00:00:00.000000Z"},
  };
  for (const auto& [in, out] : cases) {
    const auto normalized = NormalizeRfc3339(in);
    ASSERT_TRUE(normalized) << in;
    EXPECT_EQ(*normalized, out) << in;
  }
}

TEST(AuditTimestampTest, RefusesWhatIsNotRfc3339) {
  for (const char* bad :
       {"", "2026", "2026-11-21T21:36Z", "2026-11-21 21:36:20Z", "2026-11-21T21:36:20",
        "2026-11-21T21:36:20.Z", "2026-11-21T21:36:20.1234567Z", "2026-11-21T24:00:00Z",
        "2026-11-21T23:59:60Z", "2025-02-29", "2026-13-01", "2026-11-21T21:36:20+1:00",
        "2026-11-21T21:36:20Zjunk", "0000-01-01T00:00:00+01:00", "9999-12-31T23:00:00-02:00",
        "２０２６-11-21"}) {
    EXPECT_FALSE(NormalizeRfc3339(bad)) << bad;
  }
}

TEST(AuditTimestampTest, StoredFormIsWhatTheServerWrites) {
  EXPECT_TRUE(IsStoredTimeForm(core::NowRfc3339()));
  EXPECT_TRUE(IsStoredTimeForm("2026-11-21T21:36:20.000000Z"));
  EXPECT_FALSE(IsStoredTimeForm("2026-11-21T21:36:20Z"));
  EXPECT_FALSE(IsStoredTimeForm("2026-11-21T21:36:20.000000+00:00"));
  EXPECT_FALSE(IsStoredTimeForm("2026-11-21T21:36:20.000000z"));
}

}  // namespace
}  // namespace cw::audit
