#pragma once

// A SQLite VFS that wraps the default one and fails the Nth write or fsync,
// the way Beast's fail_count fails the Nth operation: tests reach every
// storage error path with real files and a real SQLite.
//
// Thread-safe. Install() registers it (once per process) under kName.

#include <atomic>
#include <cstdint>

namespace cw::storage {

class FaultVfs {
 public:
  static constexpr const char* kName = "carewire-fault";

  // Registers the VFS (idempotent) and returns the process-wide instance.
  static FaultVfs& Install();

  // The Nth xWrite (1-based, counted from now) and every later one fails with
  // SQLITE_IOERR_WRITE. 0 disables.
  void FailWriteAt(std::int64_t n);
  // The Nth xSync (1-based, counted from now) and every later one fails with
  // SQLITE_IOERR_FSYNC. 0 disables.
  void FailSyncAt(std::int64_t n);
  // Stops injecting faults and zeroes the counters.
  void Reset();

  std::int64_t writes() const { return writes_.load(); }
  std::int64_t syncs() const { return syncs_.load(); }

  // Called by the VFS shim; true when this operation must fail.
  bool ShouldFailWrite();
  bool ShouldFailSync();

 private:
  FaultVfs() = default;
  std::atomic<std::int64_t> writes_{0};
  std::atomic<std::int64_t> syncs_{0};
  std::atomic<std::int64_t> fail_write_at_{0};
  std::atomic<std::int64_t> fail_sync_at_{0};
};

}  // namespace cw::storage
