// carewire-audit-bench: what the audit log costs on the write path, and how
// fast a long log verifies and exports.
//
// 1. Appends. --threads submitter threads each keep --in-flight writes queued
//    with Database::SubmitWrite for --duration seconds, on a fresh SQLite
//    database opened as the server opens it (WAL, synchronous=FULL, group
//    commit). Each write inserts one write_probes row; in the second run it
//    also appends one audit event in the same transaction, as every audited
//    change will. The difference is the price of the audit log per write.
//    The chain built by the second run is then verified.
// 2. Reading a long log. Builds a log of --events events (appended in
//    transactions of --build-batch events, a signed checkpoint every 1000),
//    then times Verify without and with the checkpoints, ForEach, a chain
//    check in one long read transaction (the alternative ForEach's short
//    paged transactions were measured against), both export formats into a
//    stream that discards its bytes, and single Query pages as the API
//    would ask for them.
//
// A write counts when it was submitted after the warm-up and acknowledged by
// the end of the window.

#include <sys/statfs.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <memory>
#include <mutex>
#include <semaphore>
#include <streambuf>
#include <string>
#include <thread>
#include <vector>

#include "audit/audit_log.hpp"
#include "audit/checkpoint.hpp"
#include "audit/export.hpp"
#include "audit/verify.hpp"
#include "core/log.hpp"
#include "core/time.hpp"
#include "storage/database.hpp"
#include "storage/sqlite/sqlite_database.hpp"
#include "write_load.hpp"

namespace cw::bench {
namespace {

constexpr std::int64_t kCheckpointEvery = 1000;

struct Options {
  std::string dir;
  int threads = 8;
  int in_flight = 8;
  double duration_s = 10;
  double warmup_s = 0.5;
  std::int64_t events = 1'000'000;
  int build_batch = 50'000;
  bool keep = false;
};

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// An event like the server's: ids, a fixed action name, a small details object.
audit::Event BenchEvent(std::int64_t i) {
  audit::Event e;
  e.org_id = "0190a5c2-7f1e-7b3a-9c4d-00000000000" + std::to_string(i % 5);
  e.actor_type = audit::ActorType::kUser;
  e.actor_id = "0190a5c2-7f1e-7b3a-9c4d-" + std::to_string(100000000000 + i % 997);
  e.action = i % 3 == 0 ? "message.send" : "message.read";
  e.target_type = "message";
  e.target_id = "0190a5c2-7f1e-7b3a-9c4d-" + std::to_string(200000000000 + i);
  if (i % 4 == 0)
    e.patient_id = "0190a5c2-7f1e-7b3a-9c4d-" + std::to_string(300000000000 + i % 5003);
  e.source_address = "192.0.2." + std::to_string(i % 250);
  e.request_id = "r-" + std::to_string(i);
  e.details = "{\"conversation\":" + std::to_string(i % 10007) + "}";
  return e;
}

// A stream buffer that counts and discards what is written to it.
class CountingBuffer : public std::streambuf {
 public:
  std::uint64_t bytes() const { return bytes_; }

 protected:
  int_type overflow(int_type c) override {
    if (!traits_type::eq_int_type(c, traits_type::eof())) ++bytes_;
    return traits_type::not_eof(c);
  }
  std::streamsize xsputn(const char*, std::streamsize n) override {
    bytes_ += static_cast<std::uint64_t>(n);
    return n;
  }

 private:
  std::uint64_t bytes_ = 0;
};

std::unique_ptr<storage::Database> Open(const std::string& path) {
  storage::SqliteOptions options;
  options.path = path;
  auto db = storage::OpenSqlite(options);
  if (!db) {
    std::fprintf(stderr, "cannot open %s: %s\n", path.c_str(), db.error().message().c_str());
    return nullptr;
  }
  return std::move(*db);
}

void RemoveFiles(const std::string& path) {
  std::error_code ignored;
  for (const char* suffix : {"", "-wal", "-shm", "-journal"}) {
    std::filesystem::remove(path + suffix, ignored);
  }
}

struct AppendResult {
  bool ok = false;
  double writes_per_s = 0;
  double mean_batch = 0;
  std::uint32_t p50_us = 0;
  std::uint32_t p99_us = 0;
  std::uint64_t failures = 0;
  bool verified = false;
  std::int64_t chain_events = 0;
};

AppendResult RunAppends(const Options& options, const std::string& path, bool with_audit) {
  AppendResult result;
  auto db = Open(path);
  if (!db) return result;

  std::atomic<std::int64_t> next_event{0};
  const WriteLoadResult load = RunWriteLoad(
      *db, {options.threads, options.in_flight, options.warmup_s, options.duration_s}, [&] {
        // Built on the submitting thread, as a request handler would.
        auto event = std::make_shared<audit::Event>(BenchEvent(next_event.fetch_add(1)));
        return [event, with_audit](storage::Transaction& txn) -> Status {
          const std::string now = core::NowRfc3339();
          auto r = txn.Execute("INSERT INTO write_probes (created_at) VALUES (?)", {now});
          if (!r) return r.error();
          if (!with_audit) return Ok();
          return audit::Record(txn, *event, now);
        };
      });
  result.ok = true;
  result.failures = load.failures;
  result.writes_per_s = load.writes_per_s;
  result.mean_batch = load.mean_batch;
  result.p50_us = load.p50_us;
  result.p99_us = load.p99_us;

  if (with_audit) {
    audit::VerifyOptions verify;
    verify.require_checkpoints = false;
    auto report = audit::Verify(*db, verify);
    result.verified = report && report->ok;
    result.chain_events = report ? report->events : 0;
  }
  db->Close();
  return result;
}

// Builds the long log; returns its checkpoints (one per kCheckpointEvery).
bool BuildLog(const Options& options, storage::Database& db, const audit::SigningKey& key,
              std::chrono::system_clock::time_point base,
              std::vector<audit::Checkpoint>* checkpoints) {
  const auto start = Clock::now();
  for (std::int64_t first = 0; first < options.events; first += options.build_batch) {
    const std::int64_t last = std::min(options.events, first + options.build_batch);
    Status status = db.Write([&](storage::Transaction& txn) -> Status {
      for (std::int64_t i = first; i < last; ++i) {
        // Ten events a second: times spread like a busy clinic's.
        const std::string time = core::FormatRfc3339(base + std::chrono::milliseconds(100 * i));
        auto seq = audit::Append(txn, BenchEvent(i), time);
        if (!seq) return seq.error();
        if (*seq % kCheckpointEvery != 0) continue;
        auto newest = audit::Last(txn);
        if (!newest) return newest.error();
        checkpoints->push_back(audit::Sign(key, *seq, (*newest)->hash, core::NowRfc3339()));
      }
      return Ok();
    });
    if (!status) {
      std::fprintf(stderr, "building the log failed: %s\n", status.error().message().c_str());
      return false;
    }
  }
  const double seconds = Seconds(Clock::now() - start);
  std::printf("  built          %lld events in %.2f s: %.0f appends/s in %d-event transactions\n",
              static_cast<long long>(options.events), seconds,
              static_cast<double>(options.events) / seconds, options.build_batch);
  return true;
}

void PrintRate(const char* what, std::int64_t events, Clock::duration elapsed,
               const char* note = "") {
  const double seconds = Seconds(elapsed);
  std::printf("  %-34s %9.0f events/s  (%lld in %.2f s)%s\n", what,
              static_cast<double>(events) / seconds, static_cast<long long>(events), seconds, note);
}

bool RunReads(const Options& options, const std::string& path) {
  auto db = Open(path);
  if (!db) return false;
  std::uint8_t seed[audit::SigningKey::kSeedSize] = {1};
  auto key = audit::SigningKey::FromSeed(seed);
  std::vector<audit::Checkpoint> checkpoints;
  const auto log_start = std::chrono::system_clock::now() - std::chrono::hours(24 * 30);
  if (!BuildLog(options, *db, *key, log_start, &checkpoints)) return false;
  bool ok = true;

  // Paging against one read transaction for the whole log, reading rows only
  // (no conversion, no hashing), so the difference is the cost of the pages.
  // First, so the rest run on the same warm page cache.
  constexpr std::string_view kSelect =
      "SELECT seq, occurred_at, org_id, actor_type, actor_id, action, target_type, target_id, "
      "patient_id, outcome, source_address, request_id, details, hash FROM audit_events ";
  std::int64_t rows = 0;
  auto start = Clock::now();
  Status single = db->Read([&](storage::Transaction& txn) -> Status {
    return txn.Query(std::string(kSelect) + "ORDER BY seq", {},
                     [&rows](const storage::Row&) -> Status {
                       ++rows;
                       return Ok();
                     });
  });
  PrintRate("rows, one read transaction", rows, Clock::now() - start);
  ok = ok && single;

  for (std::int64_t page_rows : {1000, 10000}) {
    rows = 0;
    std::int64_t cursor = 0;
    start = Clock::now();
    for (;;) {
      std::int64_t in_page = 0;
      Status paged = db->Read([&](storage::Transaction& txn) -> Status {
        return txn.Query(std::string(kSelect) + "WHERE seq > ? ORDER BY seq LIMIT ?",
                         {cursor, page_rows}, [&](const storage::Row& row) -> Status {
                           cursor = row.Int(0);
                           ++in_page;
                           return Ok();
                         });
      });
      ok = ok && paged;
      rows += in_page;
      if (!paged || in_page < page_rows) break;
    }
    const std::string what = "rows, read transactions of " + std::to_string(page_rows);
    PrintRate(what.c_str(), rows, Clock::now() - start);
  }

  auto verify = [&](const char* what, std::vector<audit::Checkpoint> with) {
    audit::VerifyOptions verify_options;
    verify_options.checkpoints = std::move(with);
    verify_options.public_key = key->public_key();
    verify_options.require_checkpoints = !verify_options.checkpoints.empty();
    const auto began = Clock::now();
    auto report = audit::Verify(*db, verify_options);
    const auto elapsed = Clock::now() - began;
    if (!report || !report->ok) {
      std::printf("  %-34s FAILED\n", what);
      ok = false;
      return;
    }
    PrintRate(what, report->events, elapsed);
  };
  verify("verify, chain only", {});
  const std::size_t signed_count = checkpoints.size();
  verify("verify, chain + checkpoints", checkpoints);
  std::printf("  %-34s %9zu checkpoints checked as well\n", "", signed_count);

  std::int64_t seen = 0;
  start = Clock::now();
  Status each = audit::ForEach(*db, audit::Filter{}, [&seen](const audit::StoredEvent&) -> Status {
    ++seen;
    return Ok();
  });
  PrintRate("ForEach (paged, 1000 per read)", seen, Clock::now() - start);
  ok = ok && each;

  for (auto format : {audit::ExportFormat::kJsonLines, audit::ExportFormat::kCsv}) {
    CountingBuffer buffer;
    std::ostream out(&buffer);
    start = Clock::now();
    Status exported = audit::Export(*db, format, "", "", out);
    const auto elapsed = Clock::now() - start;
    char note[64];
    std::snprintf(note, sizeof note, ", %.0f MB", static_cast<double>(buffer.bytes()) / 1e6);
    PrintRate(format == audit::ExportFormat::kCsv ? "export CSV" : "export JSON lines",
              options.events, elapsed, note);
    ok = ok && exported;
  }

  // Single API pages, newest first, 100 events, as GET /api/v1/audit asks.
  struct Page {
    const char* what;
    audit::Filter filter;
  };
  audit::Filter org;
  org.org_id = BenchEvent(3).org_id;
  audit::Filter patient;
  patient.patient_id = BenchEvent(options.events - 4).patient_id;
  // An hour in the middle of the log.
  audit::Filter hour;
  hour.from = core::FormatRfc3339(log_start + std::chrono::milliseconds(100 * options.events / 2));
  hour.to = core::FormatRfc3339(log_start + std::chrono::milliseconds(100 * options.events / 2) +
                                std::chrono::hours(1));
  hour.org_id = org.org_id;
  const Page pages[] = {{"page: no filter", {}},
                        {"page: one organization", org},
                        {"page: one org, an hour mid-log", hour},
                        {"page: one patient", patient}};
  for (Page page : pages) {
    page.filter.newest_first = true;
    page.filter.limit = 100;
    constexpr int kRepeats = 20;
    std::size_t got = 0;
    start = Clock::now();
    for (int i = 0; i < kRepeats; ++i) {
      Status read = db->Read([&](storage::Transaction& txn) -> Status {
        auto events = audit::Query(txn, page.filter);
        if (!events) return events.error();
        got = events->size();
        return Ok();
      });
      ok = ok && read;
    }
    std::printf("  %-34s %9.2f ms per page of %zu\n", page.what,
                Seconds(Clock::now() - start) * 1e3 / kRepeats, got);
  }
  db->Close();
  return ok;
}

int Main(int argc, char** argv) {
  Options options;
  CLI::App app{"What the audit log costs per write, and how fast a long log verifies."};
  app.add_option("--dir", options.dir,
                 "Directory on the disk to measure (a temporary directory is made inside it); "
                 "default: the system temporary directory");
  app.add_option("--threads", options.threads, "Submitter threads")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  app.add_option("--in-flight", options.in_flight, "Writes each submitter keeps queued")
      ->check(CLI::Range(1, static_cast<int>(kMaxInFlight)))
      ->capture_default_str();
  app.add_option("--duration", options.duration_s, "Measured seconds per append run")
      ->check(CLI::Range(0.1, 600.0))
      ->capture_default_str();
  app.add_option("--warmup", options.warmup_s, "Uncounted seconds before measuring, per run")
      ->check(CLI::Range(0.0, 60.0))
      ->capture_default_str();
  app.add_option("--events", options.events, "Events in the log built for verify and export")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{100'000'000}))
      ->capture_default_str();
  app.add_option("--build-batch", options.build_batch, "Appends per transaction when building")
      ->check(CLI::Range(1, 1'000'000))
      ->capture_default_str();
  app.add_flag("--keep", options.keep, "Keep the temporary directory");
  CLI11_PARSE(app, argc, argv);

  // The storage layer logs opening and closing at info; the figures go to
  // standard output and need no company.
  log::SetLevel(log::Level::kWarn);

  if (options.dir.empty()) options.dir = std::filesystem::temp_directory_path().string();
  std::string pattern = options.dir + "/carewire-audit-bench-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) {
    std::fprintf(stderr, "cannot create a directory in %s\n", options.dir.c_str());
    return 2;
  }
  const std::string dir = pattern;
  struct statfs fs {};
  const bool tmpfs = ::statfs(dir.c_str(), &fs) == 0 && fs.f_type == 0x01021994;

  std::printf("carewire-audit-bench\n");
  std::printf("  directory      %s%s\n", dir.c_str(), tmpfs ? " (tmpfs: fsync is free)" : "");
  std::printf("  submitters     %d threads x %d write(s) in flight\n", options.threads,
              options.in_flight);
  std::printf("  timing         warm-up %.1f s, measured %.1f s per run\n\n", options.warmup_s,
              options.duration_s);

  bool ok = true;
  std::printf("1. durable writes, each one insert, group-committed\n");
  std::printf("  %-26s %14s %10s %9s %9s %7s\n", "write", "acked writes/s", "mean batch", "p50 us",
              "p99 us", "failed");
  AppendResult results[2];
  for (int i = 0; i < 2; ++i) {
    const bool with_audit = i == 1;
    const std::string path = dir + (with_audit ? "/audited.db" : "/plain.db");
    results[i] = RunAppends(options, path, with_audit);
    if (!options.keep) RemoveFiles(path);
    const AppendResult& r = results[i];
    const char* name = with_audit ? "insert + audit append" : "insert only";
    if (!r.ok) {
      std::printf("  %-26s (failed)\n", name);
      ok = false;
      continue;
    }
    std::printf("  %-26s %14.0f %10.1f %9u %9u %7llu\n", name, r.writes_per_s, r.mean_batch,
                r.p50_us, r.p99_us, static_cast<unsigned long long>(r.failures));
    ok = ok && r.failures == 0;
  }
  if (results[0].ok && results[1].ok && results[0].writes_per_s > 0) {
    std::printf("  audited / plain: %.2fx; chain of %lld events %s\n",
                results[1].writes_per_s / results[0].writes_per_s,
                static_cast<long long>(results[1].chain_events),
                results[1].verified ? "verifies" : "DOES NOT VERIFY");
    ok = ok && results[1].verified;
  }

  std::printf("\n2. a log of %lld events\n", static_cast<long long>(options.events));
  const std::string path = dir + "/long.db";
  ok = RunReads(options, path) && ok;
  if (!options.keep) {
    RemoveFiles(path);
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace cw::bench

int main(int argc, char** argv) { return cw::bench::Main(argc, argv); }
