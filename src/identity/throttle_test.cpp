#include "identity/throttle.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace cw::identity {
namespace {

using namespace std::chrono_literals;
using std::chrono::milliseconds;
using Time = std::chrono::system_clock::time_point;

class ThrottleTest : public ::testing::Test {
 protected:
  Clock FakeClock() {
    return [this] { return now_; };
  }

  // Only the hourly limits: no free failures run out before them.
  static ThrottleOptions NoDelays() {
    ThrottleOptions options;
    options.free_failures = 1'000'000;
    options.address_free_failures = 1'000'000;
    return options;
  }

  // Addresses delayed as soon as accounts are (the default lets an address
  // fail far more often, for staff behind one NAT).
  static ThrottleOptions SameFreeFailures() {
    ThrottleOptions options;
    options.address_free_failures = options.free_failures;
    return options;
  }

  static std::string Address(int i) { return "2001:db8::" + std::to_string(i); }

  Time now_ = std::chrono::sys_days{std::chrono::year{2024} / 3 / 1} + 9h;
  const std::string account_ = AccountKey("lakeside", "jsmith");
};

TEST_F(ThrottleTest, FreeFailuresPassThenTheFirstDelayApplies) {
  SignInThrottle throttle({}, FakeClock());
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(throttle.Check(account_, "10.0.0.1"), 0ms) << i;
    EXPECT_FALSE(throttle.RecordFailure(account_, "10.0.0.1"));
  }
  EXPECT_EQ(throttle.Check(account_, "10.0.0.1"), 0ms);
  throttle.RecordFailure(account_, "10.0.0.1");
  EXPECT_EQ(throttle.Check(account_, "10.0.0.1"), 1000ms);
  now_ += 999ms;
  EXPECT_EQ(throttle.Check(account_, "10.0.0.1"), 1ms);
  now_ += 1ms;
  EXPECT_EQ(throttle.Check(account_, "10.0.0.1"), 0ms);
}

TEST_F(ThrottleTest, DelaysDoubleWithEachFailureUpToTheCap) {
  SignInThrottle throttle({}, FakeClock());
  // A new address each time: only the account's delay applies.
  for (int failures = 1; failures <= 20; ++failures) {
    throttle.RecordFailure(account_, Address(failures));
    const milliseconds expected =
        failures <= 5 ? 0ms : std::min<milliseconds>(1000ms * (1 << (failures - 6)), 15min);
    EXPECT_EQ(throttle.Check(account_, Address(1000 + failures)), expected) << failures;
  }
  // Waiting part of the delay leaves the rest.
  now_ += 5min;
  EXPECT_EQ(throttle.Check(account_, Address(2000)), 10min);
  now_ += 10min;
  EXPECT_EQ(throttle.Check(account_, Address(2000)), 0ms);
}

TEST_F(ThrottleTest, HourlyLimitLocksUntilTheOldestFailureIsAnHourOld) {
  SignInThrottle throttle(NoDelays(), FakeClock());
  const Time start = now_;
  for (int i = 0; i < 100; ++i) {
    now_ = start + i * 10s;
    EXPECT_EQ(throttle.Check(account_, Address(i)), 0ms) << i;
    throttle.RecordFailure(account_, Address(i));
  }
  const milliseconds wait = throttle.Check(account_, Address(500));
  EXPECT_EQ(wait, start + 1h - now_);
  EXPECT_EQ(RetryAfter(wait), 2610s);

  now_ = start + 1h - 1ms;
  EXPECT_EQ(throttle.Check(account_, Address(500)), 1ms);
  EXPECT_EQ(RetryAfter(throttle.Check(account_, Address(500))), 1s);
  now_ = start + 1h;
  EXPECT_EQ(throttle.Check(account_, Address(500)), 0ms);

  // One more failure fills the window again, until the next oldest is an hour old.
  EXPECT_TRUE(throttle.RecordFailure(account_, Address(500)));
  EXPECT_EQ(throttle.Check(account_, Address(501)), 10s);
}

TEST_F(ThrottleTest, TheWindowSlides) {
  SignInThrottle throttle(NoDelays(), FakeClock());
  const Time start = now_;
  for (int i = 0; i < 60; ++i) throttle.RecordFailure(account_, Address(i));
  now_ = start + 30min;
  EXPECT_EQ(throttle.Check(account_, "10.0.0.1"), 0ms);
  for (int i = 0; i < 40; ++i) throttle.RecordFailure(account_, Address(i));
  EXPECT_EQ(throttle.Check(account_, "10.0.0.1"), 30min);

  // The first 60 leave the window; the 40 remain and 60 more fill it.
  now_ = start + 1h;
  EXPECT_EQ(throttle.Check(account_, "10.0.0.1"), 0ms);
  for (int i = 0; i < 59; ++i) throttle.RecordFailure(account_, Address(i));
  EXPECT_EQ(throttle.Check(account_, "10.0.0.1"), 0ms);
  throttle.RecordFailure(account_, Address(59));
  EXPECT_EQ(throttle.Check(account_, "10.0.0.1"), 30min);
  now_ = start + 90min;
  EXPECT_EQ(throttle.Check(account_, "10.0.0.1"), 0ms);
}

TEST_F(ThrottleTest, SuccessClearsTheAccountButNotTheAddress) {
  SignInThrottle throttle(SameFreeFailures(), FakeClock());
  for (int i = 0; i < 10; ++i) throttle.RecordFailure(account_, "10.0.0.1");
  EXPECT_EQ(throttle.Check(account_, "10.0.0.2"), 16s);

  throttle.RecordSuccess(account_, "10.0.0.1");
  EXPECT_EQ(throttle.Check(account_, "10.0.0.2"), 0ms);
  // The address's failures stay, whichever account it tries next.
  EXPECT_EQ(throttle.Check(account_, "10.0.0.1"), 16s);
  EXPECT_EQ(throttle.Check(AccountKey("lakeside", "mlee"), "10.0.0.1"), 16s);
}

TEST_F(ThrottleTest, AnAddressIsLimitedAcrossAccounts) {
  {
    SignInThrottle throttle(SameFreeFailures(), FakeClock());
    for (int i = 0; i < 6; ++i) {
      throttle.RecordFailure(AccountKey("lakeside", "u" + std::to_string(i)), "203.0.113.9");
    }
    EXPECT_EQ(throttle.Check(AccountKey("lakeside", "new"), "203.0.113.9"), 1s);
    EXPECT_EQ(throttle.Check(AccountKey("lakeside", "new"), "203.0.113.10"), 0ms);
  }
  SignInThrottle throttle(NoDelays(), FakeClock());
  for (int i = 0; i < 1000; ++i) {
    const std::string account = AccountKey("lakeside", "user" + std::to_string(i));
    ASSERT_EQ(throttle.Check(account, "203.0.113.9"), 0ms) << i;
    EXPECT_FALSE(throttle.RecordFailure(account, "203.0.113.9"));
  }
  EXPECT_EQ(throttle.Check(AccountKey("lakeside", "new"), "203.0.113.9"), 1h);
  EXPECT_EQ(throttle.Check(AccountKey("lakeside", "new"), "203.0.113.10"), 0ms);
}

TEST_F(ThrottleTest, ColleaguesBehindOneAddressAreNotHeldUpByOnesTypos) {
  SignInThrottle throttle({}, FakeClock());
  // One person at the clinic's shared address fails ten times...
  for (int i = 0; i < 10; ++i) throttle.RecordFailure(account_, "198.51.100.7");
  EXPECT_GT(throttle.Check(account_, "198.51.100.7"), 0ms);
  // ...and everyone else there signs in without delay, up to the address's
  // own free failures.
  EXPECT_EQ(throttle.Check(AccountKey("lakeside", "mlee"), "198.51.100.7"), 0ms);
  for (int i = 0; i < 89; ++i) {
    throttle.RecordFailure(AccountKey("lakeside", "u" + std::to_string(i)), "198.51.100.7");
  }
  EXPECT_EQ(throttle.Check(AccountKey("lakeside", "mlee"), "198.51.100.7"), 0ms);
  throttle.RecordFailure(AccountKey("lakeside", "u89"), "198.51.100.7");
  EXPECT_EQ(throttle.Check(AccountKey("lakeside", "mlee"), "198.51.100.7"), 0ms);  // 100: free
  throttle.RecordFailure(AccountKey("lakeside", "u90"), "198.51.100.7");
  EXPECT_EQ(throttle.Check(AccountKey("lakeside", "mlee"), "198.51.100.7"), 1s);
}

TEST_F(ThrottleTest, RotatingAddressesDoesNotEscapeTheAccountLimit) {
  {
    SignInThrottle throttle({}, FakeClock());
    for (int i = 0; i < 6; ++i) throttle.RecordFailure(account_, Address(i));
    EXPECT_EQ(throttle.Check(account_, Address(6)), 1s);
  }
  SignInThrottle throttle(NoDelays(), FakeClock());
  int recorded = 0;
  int lockouts = 0;
  for (int i = 0; i < 1000; ++i) {
    now_ += 1s;
    if (throttle.Check(account_, Address(i)) > 0ms) continue;
    ++recorded;
    lockouts += throttle.RecordFailure(account_, Address(i));
  }
  EXPECT_EQ(recorded, 100);
  EXPECT_EQ(lockouts, 1);
}

TEST_F(ThrottleTest, LockoutIsReportedOnceAtTheLimit) {
  SignInThrottle throttle(NoDelays(), FakeClock());
  for (int i = 1; i < 100; ++i) EXPECT_FALSE(throttle.RecordFailure(account_, "10.0.0.1")) << i;
  EXPECT_TRUE(throttle.RecordFailure(account_, "10.0.0.1"));
  // Attempts that passed Check before the lock and failed after it.
  for (int i = 0; i < 10; ++i) EXPECT_FALSE(throttle.RecordFailure(account_, "10.0.0.1"));
  EXPECT_EQ(throttle.Check(account_, "10.0.0.2"), 1h);
}

TEST_F(ThrottleTest, CheckAloneRemembersNothing) {
  SignInThrottle throttle({}, FakeClock());
  for (int i = 0; i < 1000; ++i) {
    EXPECT_EQ(throttle.Check(AccountKey("x", std::to_string(i)), Address(i)), 0ms);
  }
  EXPECT_EQ(throttle.TrackedKeysForTest(), 0u);
}

TEST_F(ThrottleTest, AFloodOfMadeUpKeysStaysBoundedAndKeepsTheAttackedAccount) {
  ThrottleOptions options;
  options.max_tracked = 1000;
  SignInThrottle throttle(options, FakeClock());
  for (int i = 0; i < 50; ++i) throttle.RecordFailure(account_, Address(i % 5));

  // 10,000 failures with a new 1 KiB junk username and a new address each:
  // 20,000 keys, twenty times the table.
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> byte('!', '~');
  std::string junk(1024, ' ');
  std::size_t most = 0;
  for (int i = 0; i < 10'000; ++i) {
    for (char& c : junk) c = static_cast<char>(byte(rng));
    throttle.RecordFailure(AccountKey("lakeside", junk), "198.51.100." + std::to_string(i));
    most = std::max(most, throttle.TrackedKeysForTest());
  }
  EXPECT_LE(most, 1000u);
  EXPECT_GT(most, 900u);
  // 50 failures: the capped delay since the last one, from any address.
  EXPECT_EQ(throttle.Check(account_, "192.0.2.1"), 15min);
}

TEST_F(ThrottleTest, KeysWithOnlyStaleFailuresAreDroppedFirst) {
  ThrottleOptions options;
  options.max_tracked = 4;
  SignInThrottle throttle(options, FakeClock());
  const std::string heavy = AccountKey("lakeside", "heavy");
  for (int i = 0; i < 50; ++i) throttle.RecordFailure(heavy, "10.0.0.1");
  now_ += 1h;
  const std::string a = AccountKey("lakeside", "a");
  const std::string b = AccountKey("lakeside", "b");
  for (int i = 0; i < 6; ++i) throttle.RecordFailure(a, "10.0.0.2");
  for (int i = 0; i < 6; ++i) throttle.RecordFailure(b, "10.0.0.3");
  EXPECT_EQ(throttle.TrackedKeysForTest(), 4u);
  // Fewer failures than the stale key, yet both kept.
  EXPECT_EQ(throttle.Check(a, "192.0.2.1"), 1s);
  EXPECT_EQ(throttle.Check(b, "192.0.2.1"), 1s);
}

TEST_F(ThrottleTest, ConcurrentCallsKeepTheCountsWhole) {
  ThrottleOptions options = NoDelays();
  options.max_tracked = 500;
  SignInThrottle throttle(options, FakeClock());
  const std::string shared = AccountKey("lakeside", "shared");
  std::atomic<int> lockouts{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      const std::string prefix = "t" + std::to_string(t) + "-";
      for (int i = 0; i < 10'000; ++i) {
        const std::string address = "10.0." + std::to_string(t) + "." + std::to_string(i % 7);
        const std::string mine = AccountKey("lakeside", prefix + std::to_string(i % 50));
        switch (i % 4) {
          case 0:
            throttle.Check(shared, address);
            break;
          case 1:
            lockouts += throttle.RecordFailure(shared, address);
            break;
          case 2:  // a new key each time, so the table fills and evicts
            throttle.RecordFailure(AccountKey("lakeside", prefix + "junk" + std::to_string(i)),
                                   address);
            break;
          default:
            if (i % 8 == 3) {
              throttle.RecordFailure(mine, address);
            } else {
              throttle.RecordSuccess(mine, address);
            }
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(lockouts.load(), 1);
  EXPECT_LE(throttle.TrackedKeysForTest(), 500u);
  EXPECT_EQ(throttle.Check(shared, "192.0.2.1"), 1h);
}

TEST(ThrottleKeyTest, AccountKeyJoinsSlugAndUsernameWithANewline) {
  EXPECT_EQ(AccountKey("lakeside", "jsmith"), "lakeside\njsmith");
}

TEST(ThrottleKeyTest, RetryAfterRoundsUpToWholeSeconds) {
  EXPECT_EQ(RetryAfter(0ms), 0s);
  EXPECT_EQ(RetryAfter(1ms), 1s);
  EXPECT_EQ(RetryAfter(1000ms), 1s);
  EXPECT_EQ(RetryAfter(1001ms), 2s);
}

TEST(ThrottleKeyTest, NonsenseOptionsAreRefused) {
  const Clock clock = [] { return std::chrono::system_clock::now(); };
  ThrottleOptions zero_limit;
  zero_limit.account_failures_per_hour = 0;
  EXPECT_THROW(SignInThrottle(zero_limit, clock), std::invalid_argument);
  ThrottleOptions long_delay;
  long_delay.max_delay = 2h;
  EXPECT_THROW(SignInThrottle(long_delay, clock), std::invalid_argument);
  ThrottleOptions tiny;
  tiny.max_tracked = 1;
  EXPECT_THROW(SignInThrottle(tiny, clock), std::invalid_argument);
  EXPECT_THROW(SignInThrottle({}, Clock{}), std::invalid_argument);
}

}  // namespace
}  // namespace cw::identity
