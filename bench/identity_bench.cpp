// carewire-identity-bench: what signing in and checking a session cost.
//
// 1. Argon2id at the product's cost (identity::kPasswordOpsLimit passes over
//    identity::kPasswordMemLimit bytes): single-thread hash and verify times,
//    then verifies per second on each --threads count for --seconds each,
//    with the process's peak resident memory after each run. Every verify
//    holds its own 64 MiB while it runs.
// 2. Sessions::Login end to end on a real SQLite database opened as the
//    server opens it (WAL, synchronous=FULL, group commit): read the account,
//    verify the password, then one durable write with the session row and its
//    audit event. The organization does not require MFA and the password is
//    not a one-time one, so every attempt opens a full session. The throttle
//    is set never to refuse (every attempt succeeds anyway).
// 3. The token check every signed-in request pays: Sessions::Authenticate
//    alone, and api::Router::Dispatch of a GET to a trivial route that is
//    public against the same route for the caller's own account, which runs
//    the session authenticator. Each run makes --calls calls, spread over its
//    threads, after a warm-up that fills SQLite's page caches.
//
// Figures only: nothing is asserted. Runs with more threads than cores show
// queueing, not more work.

#include <sys/resource.h>
#include <sys/statfs.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <latch>
#include <limits>
#include <memory>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "api/router.hpp"
#include "api/routes.hpp"
#include "core/log.hpp"
#include "core/random.hpp"
#include "core/time.hpp"
#include "crypto/master_key.hpp"
#include "identity/organizations.hpp"
#include "identity/password.hpp"
#include "identity/sessions.hpp"
#include "keys/key_store.hpp"
#include "storage/sqlite/sqlite_database.hpp"
#include "write_load.hpp"

namespace cw::bench {
namespace {

constexpr char kOrgSlug[] = "bench";
constexpr char kOwner[] = "owner";
// Single-thread hash and verify timings: each takes a good fraction of a
// second, so a handful gives a stable median.
constexpr int kArgonSamples = 5;
// Uncounted calls per thread before a token-check run, to warm the page
// caches of the reader connections.
constexpr std::int64_t kWarmupCalls = 2000;
constexpr std::uint64_t kMiB = 1u << 20;

struct Options {
  double seconds = 3;
  std::vector<int> threads;
  std::string data_dir;
  std::int64_t calls = 200'000;
};

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

std::uint32_t ToNanos(Clock::duration d) {
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
  return static_cast<std::uint32_t>(
      std::clamp<std::int64_t>(ns, 0, std::numeric_limits<std::uint32_t>::max()));
}

// The process's peak resident set so far (Linux reports kilobytes).
double PeakRssMiB() {
  struct rusage usage {};
  ::getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;
}

double Mean(const std::vector<std::uint32_t>& samples) {
  if (samples.empty()) return 0;
  return std::accumulate(samples.begin(), samples.end(), 0.0) / static_cast<double>(samples.size());
}

// --- Runners ---------------------------------------------------------------

struct TimedRun {
  std::uint64_t done = 0;
  std::uint64_t failed = 0;
  double per_s = 0;
  std::vector<std::uint32_t> latencies;  // us or ns, as the runner says
};

// Slow operations (a sign-in, a verify): `threads` threads start operations
// until `seconds` have passed. The rate is operations over the time from the
// common start until the last one finished, so an operation under way at the
// deadline is neither lost nor counted early. Latencies in microseconds.
TimedRun RunForSeconds(int threads, double seconds, const std::function<bool()>& op) {
  std::vector<TimedRun> per_thread(static_cast<std::size_t>(threads));
  std::vector<Clock::time_point> finished(static_cast<std::size_t>(threads));
  std::latch ready(threads + 1);
  std::atomic<std::int64_t> start_ticks{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      TimedRun& mine = per_thread[static_cast<std::size_t>(t)];
      ready.arrive_and_wait();
      const Clock::time_point start{Clock::duration(start_ticks.load())};
      const auto deadline = start + ToClock(seconds);
      Clock::time_point end = start;
      while (Clock::now() < deadline) {
        const auto begun = Clock::now();
        const bool ok = op();
        end = Clock::now();
        mine.latencies.push_back(ToMicros(end - begun));
        ++(ok ? mine.done : mine.failed);
      }
      finished[static_cast<std::size_t>(t)] = end;
    });
  }
  const auto start = Clock::now();
  start_ticks.store(start.time_since_epoch().count());
  ready.arrive_and_wait();
  for (auto& th : pool) th.join();

  TimedRun total;
  for (const TimedRun& r : per_thread) {
    total.done += r.done;
    total.failed += r.failed;
    total.latencies.insert(total.latencies.end(), r.latencies.begin(), r.latencies.end());
  }
  const double elapsed = Seconds(*std::max_element(finished.begin(), finished.end()) - start);
  total.per_s = elapsed > 0 ? static_cast<double>(total.done) / elapsed : 0;
  return total;
}

// Fast calls (a token check): `calls` calls spread over `threads` threads,
// each thread first making kWarmupCalls uncounted ones. Latencies in
// nanoseconds; each includes two steady_clock reads (some tens of ns).
TimedRun RunCalls(int threads, std::int64_t calls, const std::function<bool()>& call) {
  std::vector<TimedRun> per_thread(static_cast<std::size_t>(threads));
  std::vector<Clock::time_point> finished(static_cast<std::size_t>(threads));
  std::latch warm(threads + 1);
  std::latch go(1);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    const std::int64_t mine_calls = calls / threads + (t < calls % threads ? 1 : 0);
    pool.emplace_back([&, t, mine_calls] {
      TimedRun& mine = per_thread[static_cast<std::size_t>(t)];
      for (std::int64_t i = 0; i < kWarmupCalls; ++i) (void)call();
      mine.latencies.reserve(static_cast<std::size_t>(mine_calls));
      warm.arrive_and_wait();
      go.wait();
      Clock::time_point end = Clock::now();
      for (std::int64_t i = 0; i < mine_calls; ++i) {
        const auto begun = Clock::now();
        const bool ok = call();
        end = Clock::now();
        mine.latencies.push_back(ToNanos(end - begun));
        ++(ok ? mine.done : mine.failed);
      }
      finished[static_cast<std::size_t>(t)] = end;
    });
  }
  warm.arrive_and_wait();
  const auto start = Clock::now();
  go.count_down();
  for (auto& th : pool) th.join();

  TimedRun total;
  for (const TimedRun& r : per_thread) {
    total.done += r.done;
    total.failed += r.failed;
    total.latencies.insert(total.latencies.end(), r.latencies.begin(), r.latencies.end());
  }
  const double elapsed = Seconds(*std::max_element(finished.begin(), finished.end()) - start);
  total.per_s = elapsed > 0 ? static_cast<double>(total.done + total.failed) / elapsed : 0;
  return total;
}

// --- 1. Argon2id -----------------------------------------------------------

// Returns the p50 verify time of the one-thread run in milliseconds (the
// median of the single verifies when 1 is not among --threads).
double RunArgon2(const Options& options, double rss_before) {
  const double mem_mib = static_cast<double>(identity::kPasswordMemLimit) / kMiB;
  std::printf("1. Argon2id at the product's cost: t=%llu, m=%.0f MiB, p=1 (libsodium)\n",
              identity::kPasswordOpsLimit, mem_mib);
  const std::string password = "bench passphrase " + core::RandomHex(8);
  std::vector<std::uint32_t> hash_us;
  std::string hash;
  for (int i = 0; i < kArgonSamples; ++i) {
    const auto begun = Clock::now();
    hash = identity::HashPassword(password);
    hash_us.push_back(ToMicros(Clock::now() - begun));
  }
  std::vector<std::uint32_t> verify_us;
  bool all_verified = true;
  for (int i = 0; i < kArgonSamples; ++i) {
    const auto begun = Clock::now();
    all_verified = identity::VerifyPassword(hash, password) && all_verified;
    verify_us.push_back(ToMicros(Clock::now() - begun));
  }
  const double hash_ms = Percentile(hash_us, 50) / 1e3;
  const double verify_ms = Percentile(verify_us, 50) / 1e3;
  std::printf("  one thread     hash %.1f ms, verify %.1f ms (medians of %d)%s\n", hash_ms,
              verify_ms, kArgonSamples, all_verified ? "" : "  VERIFY FAILED");
  std::printf("  peak RSS       %.1f MiB before any Argon2id, %.1f MiB after one at a time\n\n",
              rss_before, PeakRssMiB());

  std::printf("  %7s %11s %8s %8s %7s %13s %10s %14s\n", "threads", "verifies/s", "p50 ms",
              "p99 ms", "failed", "peak RSS MiB", "+ MiB", "T x 64 MiB");
  double one_thread_p50 = verify_ms;
  for (const int threads : options.threads) {
    TimedRun run = RunForSeconds(threads, options.seconds,
                                 [&] { return identity::VerifyPassword(hash, password); });
    const double peak = PeakRssMiB();
    const double p50 = Percentile(run.latencies, 50) / 1e3;
    if (threads == 1) one_thread_p50 = p50;
    std::printf("  %7d %11.2f %8.1f %8.1f %7llu %13.1f %10.1f %14.0f\n", threads, run.per_s, p50,
                Percentile(run.latencies, 99) / 1e3, static_cast<unsigned long long>(run.failed),
                peak, peak - rss_before, threads * mem_mib);
  }
  std::printf(
      "  Each verify in progress holds %.0f MiB, so N concurrent sign-ins take N x %.0f MiB.\n"
      "  The server runs sign-ins on one worker per core: at most %u x %.0f MiB = %.0f MiB "
      "here.\n\n",
      mem_mib, mem_mib, std::max(1u, std::thread::hardware_concurrency()), mem_mib,
      std::max(1u, std::thread::hardware_concurrency()) * mem_mib);
  return one_thread_p50;
}

// --- Setup -------------------------------------------------------------------

struct Fixture {
  std::unique_ptr<storage::Database> db;
  std::shared_ptr<const crypto::KeyEncryptionKey> kek;
  std::unique_ptr<keys::KeyStore> keys;
  std::unique_ptr<identity::Sessions> sessions;
  std::string password;
};

// One organization without required MFA whose owner has a chosen, permanent
// password, on a database opened as the server opens it.
bool Prepare(const std::string& path, Fixture* f) {
  storage::SqliteOptions sqlite;
  sqlite.path = path;
  auto db = storage::OpenSqlite(sqlite);
  if (!db) {
    std::fprintf(stderr, "cannot open %s: %s\n", path.c_str(), db.error().message().c_str());
    return false;
  }
  f->db = std::move(*db);
  f->kek = crypto::LoadMasterKey("", "1 " + core::RandomHex(32));
  // The server's default key-cache lifetime; sign-in without MFA opens no key.
  f->keys = std::make_unique<keys::KeyStore>(*f->db, f->kek, std::chrono::milliseconds(5000));

  std::string problem;
  auto org = identity::PrepareOrganization(kOrgSlug, "Bench Clinic", kOwner, &problem);
  if (!org) {
    std::fprintf(stderr, "cannot prepare the organization: %s\n", problem.c_str());
    return false;
  }
  f->password = "bench passphrase " + core::RandomHex(8);
  const std::string hash = identity::HashPassword(f->password);  // off the writer
  Status written = f->db->Write([&](storage::Transaction& tx) -> Status {
    if (auto s = identity::InsertOrganization(tx, *f->kek, *org, "bench", core::NowRfc3339()); !s) {
      return s;
    }
    auto r = tx.Execute("UPDATE organizations SET mfa_required = 0 WHERE id = ?", {org->org_id});
    if (!r) return r.error();
    r = tx.Execute("UPDATE users SET password_hash = ?, password_temporary = 0 WHERE id = ?",
                   {hash, org->owner_id});
    if (!r) return r.error();
    return Ok();
  });
  if (!written) {
    std::fprintf(stderr, "cannot create the organization: %s\n", written.error().message().c_str());
    return false;
  }

  identity::SessionOptions session_options;
  // Never throttles: every attempt here succeeds, and successes are not
  // limited anyway; this only rules the throttle out.
  session_options.throttle = {.account_failures_per_hour = 1'000'000,
                              .address_failures_per_hour = 1'000'000,
                              .free_failures = 1'000'000};
  f->sessions = std::make_unique<identity::Sessions>(*f->db, *f->keys, session_options);
  return true;
}

identity::RequestOrigin Origin() {
  return {"bench-" + core::RandomHex(8), "127.0.0.1", "carewire-identity-bench"};
}

// A full session's token, or "" after printing why not.
std::string SignIn(Fixture& f) {
  identity::Refusal refusal;
  auto signed_in = f.sessions->Login(kOrgSlug, kOwner, f.password, Origin(), &refusal);
  if (!signed_in || signed_in->mfa_challenge ||
      signed_in->user.scope != identity::SessionScope::kFull) {
    std::fprintf(stderr, "sign-in did not open a full session\n");
    return "";
  }
  return signed_in->token;
}

// --- 2. Sign-in --------------------------------------------------------------

void RunLogins(const Options& options, Fixture& f, double verify_ms) {
  std::printf(
      "2. Sessions::Login end to end (SQLite WAL, synchronous=FULL; no MFA; never throttled)\n");
  std::printf("  %7s %11s %8s %8s %7s %13s\n", "threads", "sign-ins/s", "p50 ms", "p99 ms",
              "failed", "peak RSS MiB");
  double one_thread_p50 = 0;
  for (const int threads : options.threads) {
    TimedRun run = RunForSeconds(threads, options.seconds, [&] {
      identity::Refusal refusal;
      auto signed_in = f.sessions->Login(kOrgSlug, kOwner, f.password, Origin(), &refusal);
      return signed_in && !signed_in->mfa_challenge;
    });
    const double p50 = Percentile(run.latencies, 50) / 1e3;
    if (threads == 1) one_thread_p50 = p50;
    std::printf("  %7d %11.2f %8.1f %8.1f %7llu %13.1f\n", threads, run.per_s, p50,
                Percentile(run.latencies, 99) / 1e3, static_cast<unsigned long long>(run.failed),
                PeakRssMiB());
  }
  if (one_thread_p50 > 0) {
    std::printf(
        "  One thread: %.1f ms per sign-in against %.1f ms per Argon2id verify in section 1",
        one_thread_p50, verify_ms);
    if (one_thread_p50 > verify_ms) {
      std::printf(
          ";\n  the difference (%.1f ms) is the account read, the session insert and audit\n"
          "  append, and one fsync.\n",
          one_thread_p50 - verify_ms);
    } else {
      // The two runs are seconds apart; other processes can swing either.
      std::printf(":\n  no larger, so the machine was too noisy to tell the database's part.\n");
    }
  }
  std::printf("\n");
}

// --- 3. Token check ----------------------------------------------------------

struct CallRow {
  const char* what;
  int threads;
  TimedRun run;
};

void PrintCallRow(CallRow& row) {
  std::printf("  %-30s %7d %11.0f %8u %8u %9.0f %7llu\n", row.what, row.threads, row.run.per_s,
              Percentile(row.run.latencies, 50), Percentile(row.run.latencies, 99),
              Mean(row.run.latencies), static_cast<unsigned long long>(row.run.failed));
}

bool RunTokenChecks(const Options& options, Fixture& f) {
  std::printf(
      "3. token check per request (%lld calls per run, after %lld warm-up calls a thread)\n",
      static_cast<long long>(options.calls), static_cast<long long>(kWarmupCalls));
  api::Router router;
  router.SetAuthenticator(api::SessionAuthenticator(*f.sessions));
  const auto ok_handler = [](api::Request&, api::Reply reply) {
    reply(api::Response{.status = 200});
  };
  router.Add(api::Method::kGet, "/bench/public", api::Access::Public(), ok_handler);
  router.Add(api::Method::kGet, "/bench/own", api::Access::OwnAccount(), ok_handler);

  std::printf("  %-30s %7s %11s %8s %8s %9s %7s\n", "what", "threads", "calls/s", "p50 ns",
              "p99 ns", "mean ns", "failed");
  struct Overhead {
    int threads;
    double p50_us;
    double mean_us;
  };
  std::vector<Overhead> overheads;
  for (const int threads : options.threads) {
    // A fresh session for each run: Authenticate moves a session's idle clock
    // with a write at most once a minute (kTouchInterval), never inside a run
    // this short, so every call measured is the read-only check.
    std::string token = SignIn(f);
    if (token.empty()) return false;
    CallRow check{"Sessions::Authenticate", threads, RunCalls(threads, options.calls, [&] {
                    return f.sessions->Authenticate(token).has_value();
                  })};
    PrintCallRow(check);

    token = SignIn(f);
    if (token.empty()) return false;
    const std::string authorization = "Bearer " + token;
    const auto dispatch = [&](const char* path) {
      return [&router, &authorization, path] {
        // Built afresh each call, as the transport builds one per request;
        // both routes carry the header, so only the check differs.
        api::Request req;
        req.path = path;
        req.request_id = "bench";
        req.headers.emplace_back("authorization", authorization);
        int status = 0;
        router.Dispatch(req, [&status](api::Response r) { status = r.status; });
        return status == 200;
      };
    };
    CallRow open{"Router::Dispatch, public", threads,
                 RunCalls(threads, options.calls, dispatch("/bench/public"))};
    PrintCallRow(open);
    CallRow own{"Router::Dispatch, own account", threads,
                RunCalls(threads, options.calls, dispatch("/bench/own"))};
    PrintCallRow(own);
    overheads.push_back({threads,
                         (static_cast<double>(Percentile(own.run.latencies, 50)) -
                          Percentile(open.run.latencies, 50)) /
                             1e3,
                         (Mean(own.run.latencies) - Mean(open.run.latencies)) / 1e3});
    if (check.run.failed + open.run.failed + own.run.failed > 0) {
      std::printf("  (failed calls: the figures of this run are void)\n");
    }
  }
  std::printf("  Authentication overhead per request (own account - public):\n");
  for (const Overhead& o : overheads) {
    std::printf("    %d thread%s: %.2f us at p50, %.2f us mean\n", o.threads,
                o.threads == 1 ? "" : "s", o.p50_us, o.mean_us);
  }
  return true;
}

int Main(int argc, char** argv) {
  Options options;
  CLI::App app{"What Argon2id sign-ins and session token checks cost."};
  app.add_option("--seconds", options.seconds, "Seconds per verify and sign-in run")
      ->check(CLI::Range(0.1, 600.0))
      ->capture_default_str();
  app.add_option("--threads", options.threads,
                 "Thread counts to run (e.g. 1,2,4); default: 1, 2 and the core count")
      ->delimiter(',')
      ->check(CLI::Range(1, 256));
  app.add_option("--data-dir", options.data_dir,
                 "Directory on the disk to measure (a temporary directory is made inside it and "
                 "removed afterwards); default: the system temporary directory");
  app.add_option("--calls", options.calls, "Calls per token-check run")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{100'000'000}))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  // The storage layer logs opening and closing at info; the figures go to
  // standard output and need no company.
  log::SetLevel(log::Level::kWarn);

  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  if (options.threads.empty()) options.threads = {1, 2, static_cast<int>(cores)};
  // Ascending, so each row's peak RSS is what its own concurrency added.
  std::sort(options.threads.begin(), options.threads.end());
  options.threads.erase(std::unique(options.threads.begin(), options.threads.end()),
                        options.threads.end());

  if (options.data_dir.empty()) options.data_dir = std::filesystem::temp_directory_path().string();
  std::string pattern = options.data_dir + "/carewire-identity-bench-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) {
    std::fprintf(stderr, "cannot create a directory in %s\n", options.data_dir.c_str());
    return 2;
  }
  const std::string dir = pattern;
  struct statfs fs {};
  const bool tmpfs = ::statfs(dir.c_str(), &fs) == 0 && fs.f_type == 0x01021994;

  const double rss_before = PeakRssMiB();
  std::printf("carewire-identity-bench\n");
  std::printf("  cores          %u (std::thread::hardware_concurrency)\n", cores);
  std::printf("  directory      %s%s\n", dir.c_str(), tmpfs ? " (tmpfs: fsync is free)" : "");
  std::string list;
  for (const int t : options.threads) list += (list.empty() ? "" : ", ") + std::to_string(t);
  std::printf("  threads        %s; %.1f s per verify and sign-in run\n\n", list.c_str(),
              options.seconds);

  const double verify_ms = RunArgon2(options, rss_before);

  bool ok = false;
  {
    Fixture f;
    if (Prepare(dir + "/identity.db", &f)) {
      RunLogins(options, f, verify_ms);
      ok = RunTokenChecks(options, f);
    }
    f.sessions.reset();
    if (f.db) f.db->Close();
  }
  std::error_code ignored;
  std::filesystem::remove_all(dir, ignored);
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace cw::bench

int main(int argc, char** argv) { return cw::bench::Main(argc, argv); }
