#pragma once

// Sign-in throttling (OWASP ASVS 2.2.1, NIST SP 800-63B 5.2.2).
//
// Failed sign-ins are counted per account and per source address over a
// sliding hour. After a few free failures each further one doubles the wait
// before the next attempt; at the hourly limit the account (or address) is
// locked until its oldest failure in the window is an hour old.
//
// The account key is the *claimed* (organization, username) pair, whether or
// not such an account exists, so throttling answers alike for real and made-up
// accounts and tells nothing about which exist. It does not involve the
// address at all: a client that claims a new address for every attempt still
// meets the account's limit.
//
// Memory is bounded: at most `max_tracked` keys (accounts and addresses
// together) are remembered, each as the SHA-256 of its text (usernames may be
// a kilobyte of junk) with the times of its failures within the hour, at most
// the hourly limit of them. When the table is full, keys with no failure
// within the hour go first, then those with the fewest failures, so a flood
// of made-up usernames cannot push out an account under attack.
//
// In memory only: a restart forgets every count. Thread-safe: one mutex
// guards the table, held for a hash lookup or, when the table is full, one
// pass over it.

#include <array>
#include <chrono>
#include <cstddef>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace cw::identity {

struct ThrottleOptions {
  // Then locked until the oldest failure in the window is an hour old.
  int account_failures_per_hour = 100;
  // Across all accounts, from one source address.
  int address_failures_per_hour = 1000;
  // An account's failures that cost nothing; each failure after them
  // delays the next attempt.
  int free_failures = 5;
  // The same for a source address, across accounts. Higher: a clinic's
  // staff may share one address (NAT), and one person's typos must not
  // hold up everyone else's sign-in.
  int address_free_failures = 100;
  // The wait after the first failure beyond the free ones; doubles with
  // each further failure.
  std::chrono::milliseconds first_delay{1000};
  std::chrono::milliseconds max_delay{std::chrono::minutes(15)};
  // Accounts + addresses remembered at once; at least 2.
  std::size_t max_tracked = 100'000;
};

using Clock = std::function<std::chrono::system_clock::time_point()>;

class SignInThrottle {
 public:
  // Throws std::invalid_argument for options that make no sense (a limit
  // below 1, a negative count or delay, max_tracked below 2).
  SignInThrottle(ThrottleOptions options, Clock clock);

  SignInThrottle(const SignInThrottle&) = delete;
  SignInThrottle& operator=(const SignInThrottle&) = delete;

  // Called before any password work. Zero when the attempt may proceed;
  // otherwise how long the client must wait, never zero (see RetryAfter).
  // Remembers nothing new: only failures add keys.
  std::chrono::milliseconds Check(std::string_view account_key, std::string_view address);

  // After a failed sign-in. Returns true when this failure brought the
  // account to its hourly limit (a lockout, which the caller audits): once
  // per lockout, not for failures recorded while it lasts.
  bool RecordFailure(std::string_view account_key, std::string_view address);

  // After a successful sign-in: the account's failures are forgotten (NIST
  // counts consecutive failures); the address's are kept.
  void RecordSuccess(std::string_view account_key, std::string_view address);

  std::size_t TrackedKeysForTest() const;

 private:
  using Digest = std::array<unsigned char, 32>;
  using Time = std::chrono::system_clock::time_point;

  struct DigestHash {
    std::size_t operator()(const Digest& d) const;
  };

  // Times of the failures within the last hour, oldest first, at most the
  // key's hourly limit of them. A vector rather than a deque: most keys hold
  // one or two failures, and libstdc++'s deque takes some 600 bytes for one
  // (73 MiB against 12 MiB for 100,000 keys); dropping from the front moves
  // at most the hourly limit of timestamps.
  struct Failures {
    std::vector<Time> times;
  };
  using Table = std::unordered_map<Digest, Failures, DigestHash>;

  static Digest AccountDigest(std::string_view account_key);
  static Digest AddressDigest(std::string_view address);

  // How long the key with these failures must wait at `now`; zero for none.
  std::chrono::milliseconds Wait(const Failures& failures, int limit, int free, Time now) const;

  // Appends a failure at `now`, dropping the oldest beyond `limit`. Returns
  // true when the count reached `limit` with this failure.
  static bool Append(Failures& failures, int limit, Time now);

  // REQUIRES: mutex_ is held.
  // Removes the key's failures that are an hour old; erases the key when none
  // is left. Returns the key's entry, or nullptr when it is not (or no longer)
  // tracked.
  Failures* Current(const Digest& key, Time now);

  // REQUIRES: mutex_ is held.
  // Frees room for `needed` new keys without evicting `keep_a` or `keep_b`.
  void MakeRoom(std::size_t needed, const Digest& keep_a, const Digest& keep_b, Time now);

  const ThrottleOptions options_;
  const Clock clock_;
  mutable std::mutex mutex_;
  Table table_;  // GUARDED_BY(mutex_)
};

// "org-slug\n" + username as it will be stored (the caller normalizes).
// Real slugs and usernames hold no newline, so a claimed pair can share its
// key only with other pairs that name no real account.
std::string AccountKey(std::string_view org_slug, std::string_view normalized_username);

// A wait from Check as whole seconds for a Retry-After header: rounded up,
// so a refusal never says 0.
std::chrono::seconds RetryAfter(std::chrono::milliseconds wait);

}  // namespace cw::identity
