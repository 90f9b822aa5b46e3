#pragma once

// Helpers for the storage tests only: a temporary directory, a hold on the
// writer thread that makes batches deterministic, and a collector of write
// outcomes.

#include <gtest/gtest.h>

#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>

#include "storage/database.hpp"

namespace cw::storage::testing {

// A fresh directory under the system temporary directory, removed with
// everything in it when the object goes.
class TempDir {
 public:
  TempDir() {
    std::random_device random;
    const auto suffix = std::to_string(random()) + "-" + std::to_string(random());
    path_ = std::filesystem::temp_directory_path() / ("carewire-storage-test-" + suffix);
    std::filesystem::create_directory(path_);
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  std::string File(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

// Records the outcome of each write under a key the test chose.
class Outcomes {
 public:
  WriteDone Recorder(std::int64_t key) {
    return [this, key](Status status) {
      // Notified under the lock: the waiter may destroy this object as soon
      // as it sees the last result.
      std::lock_guard lock(mutex_);
      if (!results_.emplace(key, status).second) ++duplicates_;
      changed_.notify_all();
    };
  }

  void WaitFor(std::size_t count) {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [&] { return results_.size() >= count; });
  }

  bool Has(std::int64_t key) {
    std::lock_guard lock(mutex_);
    return results_.count(key) != 0;
  }

  std::map<std::int64_t, Status> Results() {
    std::lock_guard lock(mutex_);
    return results_;
  }

  // Outcomes told more than once for the same key: always a bug.
  int duplicates() {
    std::lock_guard lock(mutex_);
    return duplicates_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::map<std::int64_t, Status> results_;
  int duplicates_ = 0;
};

// Submits a write that, once running on the writer thread, waits until
// Release(). Writes submitted meanwhile queue up, so they form the next batch
// together: batches are arranged without relying on timing. If the database
// refuses the write at once, nothing is held.
class WriterHold {
 public:
  explicit WriterHold(Database& db, WriteWork inner = nullptr) {
    db.SubmitWrite(
        [this, inner = std::move(inner)](Transaction& txn) -> Status {
          {
            std::unique_lock lock(mutex_);
            started_ = true;
            changed_.notify_all();
            changed_.wait(lock, [this] { return released_; });
          }
          return inner ? inner(txn) : Ok();
        },
        [this](Status status) {
          std::lock_guard lock(mutex_);
          outcome_ = status;
          done_ = true;
          changed_.notify_all();
        });
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [this] { return started_ || done_; });
  }

  ~WriterHold() {
    Release();
    Wait();
  }

  WriterHold(const WriterHold&) = delete;
  WriterHold& operator=(const WriterHold&) = delete;

  void Release() {
    std::lock_guard lock(mutex_);
    released_ = true;
    changed_.notify_all();
  }

  Status Wait() {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [this] { return done_; });
    return outcome_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  bool started_ = false;
  bool released_ = false;
  bool done_ = false;
  Status outcome_;
};

// A work that inserts `id` into `table`.
inline WriteWork InsertId(const std::string& table, std::int64_t id) {
  return [table, id](Transaction& txn) -> Status {
    auto changed = txn.Execute("INSERT INTO " + table + " (id) VALUES (?)", {id});
    if (!changed) return changed.error();
    return Ok();
  };
}

}  // namespace cw::storage::testing
