// carewire-storage-bench: durable writes per second through the storage seam.
//
// Opens a fresh SQLite database (WAL, synchronous=FULL, as the server does)
// and has --threads submitter threads each keep --in-flight writes queued
// with Database::SubmitWrite for --duration seconds. Each write inserts one
// row of --row-bytes bytes. The run is made twice on fresh files: with group
// commit (max_batch 1024) and with one commit, so one fsync, per write
// (max_batch 1). Before them, the disk's own rate of 4 KiB write + fdatasync
// puts the figures in scale: without group commit no database can durably
// commit faster than that.
//
// A write counts when it was submitted at or after the end of the warm-up and
// acknowledged by the end of the measured window; its latency is from
// SubmitWrite to its done callback, which runs after the batch's fsync.

#include <fcntl.h>
#include <sys/statfs.h>
#include <unistd.h>

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
#include <string>
#include <thread>
#include <vector>

#include "core/log.hpp"
#include "core/metrics.hpp"
#include "storage/database.hpp"
#include "storage/sqlite/sqlite_database.hpp"
#include "write_load.hpp"

namespace cw::bench {
namespace {

// Bound on the raw fsync loop besides its duration.
constexpr std::uint64_t kMaxFsyncs = 10'000'000;
// The raw fsync loop rewrites 4 KiB blocks in place within this much of a
// preallocated file, so the file size (metadata) does not change per sync.
constexpr std::size_t kBlock = 4096;
constexpr std::size_t kFsyncFileBlocks = 256;

struct Options {
  std::string dir;
  int threads = 64;
  int in_flight = 1;
  int row_bytes = 200;
  double duration_s = 5;
  double warmup_s = 0.5;
  double fsync_s = 2;
  bool keep = false;
};

const char* FileSystemName(const std::string& dir, bool* is_tmpfs) {
  struct statfs fs {};
  *is_tmpfs = false;
  if (::statfs(dir.c_str(), &fs) != 0) return "unknown";
  switch (static_cast<unsigned long>(fs.f_type)) {
    case 0x01021994UL:
      *is_tmpfs = true;
      return "tmpfs";
    case 0xEF53UL:
      return "ext2/3/4";
    case 0x58465342UL:
      return "xfs";
    case 0x9123683EUL:
      return "btrfs";
    case 0x794C7630UL:
      return "overlayfs";
    case 0x2FC12FC1UL:
      return "zfs";
    default:
      return "other";
  }
}

struct FsyncResult {
  std::uint64_t syncs = 0;
  double per_s = 0;
  std::uint32_t p50_us = 0;
  std::uint32_t p99_us = 0;
  bool ok = false;
};

// The disk's rate of small durable writes, one at a time.
FsyncResult MeasureFsync(const std::string& dir, double seconds) {
  FsyncResult result;
  const std::string path = dir + "/fsync_probe";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return result;
  std::vector<char> block(kBlock, 'x');
  bool ok = true;
  for (std::size_t i = 0; i < kFsyncFileBlocks && ok; ++i) {
    ok = ::pwrite(fd, block.data(), kBlock, static_cast<off_t>(i * kBlock)) ==
         static_cast<ssize_t>(kBlock);
  }
  ok = ok && ::fsync(fd) == 0;

  std::vector<std::uint32_t> latencies;
  const auto start = Clock::now();
  const auto until = start + ToClock(seconds);
  auto now = start;
  while (ok && now < until && result.syncs < kMaxFsyncs) {
    block[result.syncs % kBlock] = static_cast<char>(result.syncs);
    const auto offset = static_cast<off_t>((result.syncs % kFsyncFileBlocks) * kBlock);
    ok = ::pwrite(fd, block.data(), kBlock, offset) == static_cast<ssize_t>(kBlock) &&
         ::fdatasync(fd) == 0;
    const auto done = Clock::now();
    latencies.push_back(ToMicros(done - now));
    now = done;
    ++result.syncs;
  }
  ::close(fd);
  ::unlink(path.c_str());
  if (!ok) return result;
  result.ok = true;
  result.per_s =
      static_cast<double>(result.syncs) / std::chrono::duration<double>(now - start).count();
  result.p50_us = Percentile(latencies, 50);
  result.p99_us = Percentile(latencies, 99);
  return result;
}

struct RunResult {
  bool ok = false;
  double writes_per_s = 0;   // acknowledged durable writes
  double commits_per_s = 0;  // database transactions, one fsync each
  double mean_batch = 0;
  double mean_commit_ms = 0;  // BEGIN to COMMIT returned, per batch
  std::uint32_t p50_us = 0;
  std::uint32_t p99_us = 0;
  std::uint64_t failures = 0;
  std::uint64_t counted = 0;
};

struct CommitTime {
  std::uint64_t count = 0;
  double sum = 0;
};

CommitTime TakeCommitTime(metrics::Registry& registry) {
  // Returns the storage layer's own series: a registry hands back the
  // existing histogram for a name it already holds.
  auto snapshot = registry
                      .GetHistogram("carewire_storage_commit_seconds",
                                    "Seconds from BEGIN to COMMIT returning, per batch of writes.",
                                    metrics::LatencyBuckets())
                      .Take();
  return {snapshot.count, snapshot.sum};
}

RunResult RunCommits(const Options& options, const std::string& path, int max_batch) {
  RunResult result;
  metrics::Registry registry;
  storage::SqliteOptions db_options;
  db_options.path = path;
  db_options.readers = 1;  // the benchmark only writes
  db_options.max_batch = max_batch;
  db_options.metrics = &registry;
  auto opened = storage::OpenSqlite(db_options);
  if (!opened) {
    std::fprintf(stderr, "cannot open %s: %s\n", path.c_str(), opened.error().message().c_str());
    return result;
  }
  storage::Database& db = **opened;
  Status created = db.Write([](storage::Transaction& txn) -> Status {
    auto r = txn.Execute(
        "CREATE TABLE IF NOT EXISTS bench_rows(id INTEGER PRIMARY KEY, body BLOB NOT NULL)");
    if (!r) return r.error();
    return Ok();
  });
  if (!created) {
    std::fprintf(stderr, "cannot create table: %s\n", created.error().message().c_str());
    return result;
  }

  // Not random: SQLite does not compress, so the content does not matter.
  auto row = std::make_shared<const storage::Blob>(static_cast<std::size_t>(options.row_bytes),
                                                   std::uint8_t{0xA5});
  CommitTime commit_before;
  CommitTime commit_after;
  const WriteLoadResult load = RunWriteLoad(
      db, {options.threads, options.in_flight, options.warmup_s, options.duration_s},
      [&row] {
        return [row](storage::Transaction& txn) -> Status {
          auto r = txn.Execute("INSERT INTO bench_rows(body) VALUES (?)", {*row});
          if (!r) return r.error();
          return Ok();
        };
      },
      [&] { commit_before = TakeCommitTime(registry); },
      [&] { commit_after = TakeCommitTime(registry); });
  db.Close();

  result.ok = true;
  result.counted = load.counted;
  result.failures = load.failures;
  result.writes_per_s = load.writes_per_s;
  result.commits_per_s = load.commits_per_s;
  result.mean_batch = load.mean_batch;
  result.p50_us = load.p50_us;
  result.p99_us = load.p99_us;
  const auto timed = commit_after.count - commit_before.count;
  result.mean_commit_ms =
      timed > 0 ? (commit_after.sum - commit_before.sum) / static_cast<double>(timed) * 1e3 : 0;
  return result;
}

void RemoveFiles(const std::string& path) {
  std::error_code ignored;
  for (const char* suffix : {"", "-wal", "-shm", "-journal"}) {
    std::filesystem::remove(path + suffix, ignored);
  }
}

int Main(int argc, char** argv) {
  Options options;
  CLI::App app{"Durable writes per second through Carewire's storage layer (SQLite)."};
  app.add_option("--dir", options.dir,
                 "Directory on the disk to measure (a temporary directory is made inside it); "
                 "default: the system temporary directory");
  app.add_option("--threads", options.threads, "Submitter threads")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  app.add_option("--in-flight", options.in_flight, "Writes each submitter keeps queued")
      ->check(CLI::Range(1, static_cast<int>(kMaxInFlight)))
      ->capture_default_str();
  app.add_option("--row-bytes", options.row_bytes, "Bytes in each inserted row's body")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  app.add_option("--duration", options.duration_s, "Measured seconds per mode")
      ->check(CLI::Range(0.1, 600.0))
      ->capture_default_str();
  app.add_option("--warmup", options.warmup_s, "Uncounted seconds before measuring, per mode")
      ->check(CLI::Range(0.0, 60.0))
      ->capture_default_str();
  app.add_option("--fsync-seconds", options.fsync_s, "Seconds of the raw fdatasync measurement")
      ->check(CLI::Range(0.1, 60.0))
      ->capture_default_str();
  app.add_flag("--keep", options.keep, "Keep the temporary directory");
  CLI11_PARSE(app, argc, argv);

  // The storage layer logs opening and closing at info; the figures go to
  // standard output and need no company.
  log::SetLevel(log::Level::kWarn);

  if (options.dir.empty()) options.dir = std::filesystem::temp_directory_path().string();
  std::string pattern = options.dir + "/carewire-storage-bench-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) {
    std::fprintf(stderr, "cannot create a directory in %s\n", options.dir.c_str());
    return 2;
  }
  const std::string dir = pattern;
  bool is_tmpfs = false;
  const char* fs_name = FileSystemName(dir, &is_tmpfs);

  std::printf("carewire-storage-bench\n");
  std::printf("  directory      %s (%s)\n", dir.c_str(), fs_name);
  if (is_tmpfs) {
    std::printf(
        "  WARNING        tmpfs never reaches a disk: fsync costs nothing here; use --dir\n");
  }
  std::printf("  submitters     %d threads x %d write(s) in flight, %d-byte rows\n",
              options.threads, options.in_flight, options.row_bytes);
  std::printf("  timing         warm-up %.1f s, measured %.1f s per mode\n\n", options.warmup_s,
              options.duration_s);

  const FsyncResult fsync = MeasureFsync(dir, options.fsync_s);
  if (!fsync.ok) {
    std::fprintf(stderr, "the raw fsync measurement failed in %s\n", dir.c_str());
    return 1;
  }
  std::printf("disk: 4 KiB pwrite + fdatasync, one at a time, %.1f s\n", options.fsync_s);
  std::printf("  fdatasyncs/s   %.0f   (p50 %u us, p99 %u us)\n\n", fsync.per_s, fsync.p50_us,
              fsync.p99_us);

  struct Mode {
    const char* name;
    const char* file;
    int max_batch;
  };
  const Mode modes[] = {{"group commit", "group.db", 1024},
                        {"one fsync per commit", "per_commit.db", 1}};
  RunResult results[2];
  std::printf("%-22s %9s %14s %12s %10s %10s %9s %9s %7s\n", "mode", "max_batch", "acked writes/s",
              "db commits/s", "mean batch", "commit ms", "p50 us", "p99 us", "failed");
  bool ok = true;
  for (std::size_t i = 0; i < 2; ++i) {
    const std::string path = dir + "/" + modes[i].file;
    results[i] = RunCommits(options, path, modes[i].max_batch);
    if (!options.keep) RemoveFiles(path);
    const RunResult& r = results[i];
    if (!r.ok) {
      ok = false;
      std::printf("%-22s %9d %14s\n", modes[i].name, modes[i].max_batch, "(failed)");
      continue;
    }
    std::printf("%-22s %9d %14.0f %12.0f %10.1f %10.3f %9u %9u %7llu\n", modes[i].name,
                modes[i].max_batch, r.writes_per_s, r.commits_per_s, r.mean_batch, r.mean_commit_ms,
                r.p50_us, r.p99_us, static_cast<unsigned long long>(r.failures));
    ok = ok && r.failures == 0;
  }
  if (results[0].ok && results[1].ok && results[1].writes_per_s > 0) {
    std::printf("\ngroup commit / one fsync per commit: %.1fx acked writes/s\n",
                results[0].writes_per_s / results[1].writes_per_s);
    std::printf("group commit acked writes per raw fdatasync: %.1f\n",
                results[0].writes_per_s / fsync.per_s);
  }

  if (!options.keep) {
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace cw::bench

int main(int argc, char** argv) { return cw::bench::Main(argc, argv); }
