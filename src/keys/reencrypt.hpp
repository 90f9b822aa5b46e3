#pragma once

// Re-encryption after a data-key rotation.
//
// `carewire keys rotate` adds a data-key version and a row in key_rotations.
// The Reencryptor, a background thread in the server, then re-seals the
// organization's older values under the new version, one batch per write
// transaction, and records its progress in the same transaction. Every old
// key version stays in org_keys, so a value opens whether or not its batch
// has run: a crash at any point leaves everything readable, and the job
// resumes from its cursor.
//
// A batch is opened and re-sealed off the writer thread, and written back
// with compare-and-set (`WHERE value = old`), so a value changed meanwhile by
// the application is left alone rather than overwritten with stale data.
//
// After the columns come attachments' contents, each one chunked sealed
// stream across its attachment_chunks rows: a batch re-seals whole streams
// (up to about 8 MiB), compared on the old stream's header. A download that
// spans the moment its attachment is re-sealed is cut short (its rows now
// belong to another stream) and is simply retried.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <span>
#include <string_view>
#include <thread>

#include "core/result.hpp"
#include "keys/key_store.hpp"
#include "storage/database.hpp"

namespace cw::keys {

// A column of sealed values. Every such table has a TEXT primary key `id` and
// an `org_id`, and is listed here so rotation re-seals it.
struct SealedColumn {
  std::string_view table;
  std::string_view column;
};

std::span<const SealedColumn> SealedColumns();

class Reencryptor {
 public:
  struct Options {
    std::chrono::milliseconds poll{2000};
    int batch = 500;
  };

  Reencryptor(storage::Database& db, KeyStore& keys, Options options);
  ~Reencryptor();
  Reencryptor(const Reencryptor&) = delete;
  Reencryptor& operator=(const Reencryptor&) = delete;

  void Start();
  void Stop();

  // Runs one batch of the oldest pending rotation that every process now
  // seals with (it began more than the key cache's lifetime ago). Returns
  // true when it did work, false when nothing is pending.
  Result<bool> Step();

 private:
  void Run();

  storage::Database& db_;
  KeyStore& keys_;
  const Options options_;
  std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace cw::keys
