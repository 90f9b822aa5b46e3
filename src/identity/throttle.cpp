#include "identity/throttle.hpp"

#include <sodium.h>

#include <algorithm>
#include <cstring>
#include <iterator>
#include <stdexcept>
#include <tuple>
#include <utility>
#include <vector>

#include "crypto/seal.hpp"

namespace cw::identity {
namespace {

using std::chrono::milliseconds;

constexpr std::chrono::hours kWindow{1};

// The wait before the next attempt after `count` failures, of which the
// first `free` cost nothing: first, 2 * first, 4 * first, ... up to `max`.
milliseconds Delay(std::size_t count, std::size_t free, milliseconds first, milliseconds max) {
  if (count <= free || first <= milliseconds::zero()) return milliseconds::zero();
  milliseconds delay = first;
  // Doubling stops at the cap, so a thousand failures cannot overflow it.
  for (std::size_t i = free + 1; i < count && delay < max; ++i) delay *= 2;
  return std::min(delay, max);
}

// Drops the failures that are an hour old at `now` (the oldest come first).
void DropExpired(std::vector<std::chrono::system_clock::time_point>& times,
                 std::chrono::system_clock::time_point now) {
  const auto live =
      std::find_if(times.begin(), times.end(), [now](auto t) { return t + kWindow > now; });
  times.erase(times.begin(), live);
}

}  // namespace

SignInThrottle::SignInThrottle(ThrottleOptions options, Clock clock)
    : options_(options), clock_(std::move(clock)) {
  if (options_.account_failures_per_hour < 1 || options_.address_failures_per_hour < 1 ||
      options_.free_failures < 0 || options_.address_free_failures < 0) {
    throw std::invalid_argument("throttle: failure limits must be at least 1, free failures 0");
  }
  // A failure is forgotten after an hour, so a longer delay could never be served.
  if (options_.first_delay < milliseconds::zero() || options_.max_delay < milliseconds::zero() ||
      options_.max_delay > kWindow) {
    throw std::invalid_argument("throttle: delays must be between 0 and one hour");
  }
  // One failure may add two keys (its account and its address).
  if (options_.max_tracked < 2) throw std::invalid_argument("throttle: max_tracked below 2");
  if (!clock_) throw std::invalid_argument("throttle: no clock");
  crypto::EnsureInitialized();
}

std::size_t SignInThrottle::DigestHash::operator()(const Digest& d) const {
  // Already uniform: SHA-256 of text an attacker chooses cannot be steered
  // into one bucket.
  std::size_t h;
  std::memcpy(&h, d.data(), sizeof h);
  return h;
}

namespace {

std::array<unsigned char, 32> TaggedDigest(std::string_view tag, std::string_view text) {
  std::array<unsigned char, 32> out;
  crypto_hash_sha256_state state;
  crypto_hash_sha256_init(&state);
  // The tag keeps an account and an address with the same text apart.
  crypto_hash_sha256_update(&state, reinterpret_cast<const unsigned char*>(tag.data()), tag.size());
  crypto_hash_sha256_update(&state, reinterpret_cast<const unsigned char*>(text.data()),
                            text.size());
  crypto_hash_sha256_final(&state, out.data());
  return out;
}

}  // namespace

SignInThrottle::Digest SignInThrottle::AccountDigest(std::string_view account_key) {
  return TaggedDigest("account\n", account_key);
}

SignInThrottle::Digest SignInThrottle::AddressDigest(std::string_view address) {
  return TaggedDigest("address\n", address);
}

milliseconds SignInThrottle::Wait(const Failures& failures, int limit, int free, Time now) const {
  const std::vector<Time>& times = failures.times;
  if (times.empty()) return milliseconds::zero();
  Time::duration wait = Time::duration::zero();
  if (times.size() >= static_cast<std::size_t>(limit)) {
    // Locked until the oldest failure leaves the window. The bound holds
    // even if the system clock is stepped back.
    wait = std::min<Time::duration>(times.front() + kWindow - now, kWindow);
  }
  const milliseconds delay = Delay(times.size(), static_cast<std::size_t>(free),
                                   options_.first_delay, options_.max_delay);
  if (delay > milliseconds::zero()) {
    wait = std::max(wait, std::min<Time::duration>(times.back() + delay - now, delay));
  }
  if (wait <= Time::duration::zero()) return milliseconds::zero();
  // Rounded up, so a refusal never reads as zero.
  return std::chrono::ceil<milliseconds>(wait);
}

bool SignInThrottle::Append(Failures& failures, int limit, Time now) {
  const std::size_t cap = static_cast<std::size_t>(limit);
  const bool below = failures.times.size() < cap;
  // Only the newest `limit` failures matter: the oldest of them says when a
  // lockout ends.
  if (failures.times.size() >= cap) {
    const auto keep = static_cast<std::ptrdiff_t>(cap - 1);
    failures.times.erase(failures.times.begin(), failures.times.end() - keep);
  }
  failures.times.push_back(now);
  return below && failures.times.size() == cap;
}

SignInThrottle::Failures* SignInThrottle::Current(const Digest& key, Time now) {
  const auto it = table_.find(key);
  if (it == table_.end()) return nullptr;
  std::vector<Time>& times = it->second.times;
  DropExpired(times, now);
  if (times.empty()) {
    table_.erase(it);
    return nullptr;
  }
  return &it->second;
}

void SignInThrottle::MakeRoom(std::size_t needed, const Digest& keep_a, const Digest& keep_b,
                              Time now) {
  const std::size_t max = options_.max_tracked;
  if (table_.size() + needed <= max) return;

  // First the keys whose failures are all an hour old: they no longer count.
  for (auto it = table_.begin(); it != table_.end();) {
    std::vector<Time>& times = it->second.times;
    DropExpired(times, now);
    it = times.empty() ? table_.erase(it) : std::next(it);
  }
  if (table_.size() + needed <= max) return;

  // Then the keys with the fewest failures, least recently failed first: an
  // account under attack has many and stays. A sixteenth of the table goes at
  // once, so a flood of new keys costs one pass per max/16 keys, not one each.
  const std::size_t slack = max / 16;
  const std::size_t target = max - needed > slack ? max - needed - slack : max - needed;
  struct Candidate {
    std::size_t count;
    Time newest;
    Table::iterator it;
  };
  std::vector<Candidate> candidates;
  candidates.reserve(table_.size());
  for (auto it = table_.begin(); it != table_.end(); ++it) {
    if (it->first == keep_a || it->first == keep_b) continue;
    candidates.push_back({it->second.times.size(), it->second.times.back(), it});
  }
  const std::size_t evict = std::min(table_.size() - target, candidates.size());
  const auto fewer = [](const Candidate& x, const Candidate& y) {
    return std::tie(x.count, x.newest) < std::tie(y.count, y.newest);
  };
  std::nth_element(candidates.begin(), candidates.begin() + static_cast<std::ptrdiff_t>(evict),
                   candidates.end(), fewer);
  for (std::size_t i = 0; i < evict; ++i) table_.erase(candidates[i].it);
}

milliseconds SignInThrottle::Check(std::string_view account_key, std::string_view address) {
  const Digest account = AccountDigest(account_key);
  const Digest source = AddressDigest(address);
  std::lock_guard lock(mutex_);
  // Read under the lock, so failures are appended in time order.
  const Time now = clock_();
  milliseconds wait = milliseconds::zero();
  if (const Failures* f = Current(account, now)) {
    wait = std::max(wait, Wait(*f, options_.account_failures_per_hour, options_.free_failures, now));
  }
  if (const Failures* f = Current(source, now)) {
    wait = std::max(wait, Wait(*f, options_.address_failures_per_hour,
                               options_.address_free_failures, now));
  }
  return wait;
}

bool SignInThrottle::RecordFailure(std::string_view account_key, std::string_view address) {
  const Digest account = AccountDigest(account_key);
  const Digest source = AddressDigest(address);
  std::lock_guard lock(mutex_);
  const Time now = clock_();
  Failures* account_failures = Current(account, now);
  Failures* source_failures = Current(source, now);
  const std::size_t needed = (account_failures == nullptr) + (source_failures == nullptr);
  if (needed > 0) {
    // Erasing other keys leaves these pointers valid.
    MakeRoom(needed, account, source, now);
    if (account_failures == nullptr) account_failures = &table_[account];
    if (source_failures == nullptr) source_failures = &table_[source];
  }
  Append(*source_failures, options_.address_failures_per_hour, now);
  return Append(*account_failures, options_.account_failures_per_hour, now);
}

void SignInThrottle::RecordSuccess(std::string_view account_key, std::string_view /*address*/) {
  const Digest account = AccountDigest(account_key);
  std::lock_guard lock(mutex_);
  table_.erase(account);
}

std::size_t SignInThrottle::TrackedKeysForTest() const {
  std::lock_guard lock(mutex_);
  return table_.size();
}

std::string AccountKey(std::string_view org_slug, std::string_view normalized_username) {
  std::string key;
  key.reserve(org_slug.size() + 1 + normalized_username.size());
  key.append(org_slug);
  key += '\n';
  key.append(normalized_username);
  return key;
}

std::chrono::seconds RetryAfter(std::chrono::milliseconds wait) {
  if (wait <= milliseconds::zero()) return std::chrono::seconds::zero();
  return std::chrono::ceil<std::chrono::seconds>(wait);
}

}  // namespace cw::identity
