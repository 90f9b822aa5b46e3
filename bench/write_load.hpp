#pragma once

// The load both storage benchmarks put on a Database: `threads` submitter
// threads each keep `in_flight` writes queued with SubmitWrite for a warm-up
// and a measured window, and the acknowledged writes, batches and latencies
// of the window are counted. A write counts when it was submitted after the
// warm-up and acknowledged before the window's end.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <semaphore>
#include <thread>
#include <vector>

#include "storage/database.hpp"

namespace cw::bench {

using Clock = std::chrono::steady_clock;

// Upper bound for --in-flight (a template argument of the semaphore).
inline constexpr std::ptrdiff_t kMaxInFlight = 1024;
// How long to wait for writes still queued when a run ends. The storage layer
// promises every write one callback; past this the database is stuck and the
// figures are worthless, so the program stops rather than hang.
inline constexpr auto kDrainTimeout = std::chrono::seconds(30);

inline Clock::duration ToClock(double seconds) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

inline std::uint32_t ToMicros(Clock::duration d) {
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(d).count();
  return static_cast<std::uint32_t>(
      std::clamp<std::int64_t>(us, 0, std::numeric_limits<std::uint32_t>::max()));
}

// Nearest-rank percentile; sorts `samples`.
inline std::uint32_t Percentile(std::vector<std::uint32_t>& samples, double p) {
  if (samples.empty()) return 0;
  std::sort(samples.begin(), samples.end());
  const auto rank =
      static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(samples.size())));
  return samples[std::clamp<std::size_t>(rank, 1, samples.size()) - 1];
}

struct WriteLoad {
  int threads = 8;
  int in_flight = 1;
  double warmup_s = 0.5;
  double duration_s = 5;
};

struct WriteLoadResult {
  double writes_per_s = 0;   // acknowledged durable writes
  double commits_per_s = 0;  // database transactions, one fsync each
  double mean_batch = 0;
  std::uint32_t p50_us = 0;
  std::uint32_t p99_us = 0;
  std::uint64_t failures = 0;
  std::uint64_t counted = 0;
};

// Runs the load. `make_work` is called on a submitter thread for each write,
// as a request handler would build one. `at_window_start` and
// `at_window_end`, when set, run at the measured window's edges (to sample
// further counters).
inline WriteLoadResult RunWriteLoad(storage::Database& db, const WriteLoad& load,
                                    const std::function<storage::WriteWork()>& make_work,
                                    const std::function<void()>& at_window_start = {},
                                    const std::function<void()>& at_window_end = {}) {
  // One submitter's state; done callbacks run on the writer thread.
  struct Submitter {
    std::counting_semaphore<kMaxInFlight> permits{0};
    std::mutex mutex;
    std::vector<std::uint32_t> latencies_us;  // GUARDED_BY(mutex)
    std::uint64_t failures = 0;               // GUARDED_BY(mutex)
  };
  const auto measure_from = Clock::now() + ToClock(load.warmup_s);
  const auto measure_until = measure_from + ToClock(load.duration_s);

  std::vector<std::unique_ptr<Submitter>> submitters;
  for (int i = 0; i < load.threads; ++i) {
    submitters.push_back(std::make_unique<Submitter>());
    submitters.back()->permits.release(load.in_flight);
  }
  std::vector<std::thread> threads;
  for (auto& s : submitters) {
    threads.emplace_back([&, sub = s.get()] {
      while (Clock::now() < measure_until) {
        // Bounded: a database that stops answering ends the loop at the end
        // of the window, and the drain below gives up after kDrainTimeout.
        if (!sub->permits.try_acquire_until(measure_until)) break;
        const auto submitted = Clock::now();
        if (submitted >= measure_until) {
          sub->permits.release();
          break;
        }
        db.SubmitWrite(make_work(), [sub, submitted, measure_from, measure_until](Status status) {
          const auto acked = Clock::now();
          {
            std::lock_guard lock(sub->mutex);
            if (!status) ++sub->failures;
            if (status && submitted >= measure_from && acked <= measure_until) {
              sub->latencies_us.push_back(ToMicros(acked - submitted));
            }
          }
          sub->permits.release();
        });
      }
      // Wait for this thread's writes still queued, so `sub` outlives them.
      for (int i = 0; i < load.in_flight; ++i) {
        if (!sub->permits.try_acquire_for(kDrainTimeout)) {
          std::fprintf(stderr, "storage did not answer queued writes within %lld s; stopping\n",
                       static_cast<long long>(kDrainTimeout.count()));
          std::_Exit(1);
        }
      }
    });
  }

  std::this_thread::sleep_until(measure_from);
  const storage::DatabaseStats before = db.Stats();
  if (at_window_start) at_window_start();
  std::this_thread::sleep_until(measure_until);
  const storage::DatabaseStats after = db.Stats();
  if (at_window_end) at_window_end();
  for (auto& t : threads) t.join();

  WriteLoadResult result;
  std::vector<std::uint32_t> latencies;
  for (auto& s : submitters) {
    std::lock_guard lock(s->mutex);
    latencies.insert(latencies.end(), s->latencies_us.begin(), s->latencies_us.end());
    result.failures += s->failures;
  }
  const auto writes = static_cast<double>(after.writes - before.writes);
  const auto commits = static_cast<double>(after.commits - before.commits);
  result.counted = latencies.size();
  result.writes_per_s = writes / load.duration_s;
  result.commits_per_s = commits / load.duration_s;
  result.mean_batch = commits > 0 ? writes / commits : 0;
  result.p50_us = Percentile(latencies, 50);
  result.p99_us = Percentile(latencies, 99);
  return result;
}

}  // namespace cw::bench
