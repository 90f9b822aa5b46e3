#pragma once

// Chunked sealing for attachments and other large values, so memory stays
// flat whatever the size: libsodium's secretstream (XChaCha20-Poly1305),
// 64 KiB plaintext chunks, the last one tagged FINAL so a truncated stream is
// refused. The first chunk carries the SealContext as associated data, binding
// the stream to its place as Seal does.
//
// Stored format:
//   byte 0      format version (2: chunked)
//   bytes 1-4   data-key version, big-endian
//   bytes 5-28  secretstream header
//   then one record per chunk: ciphertext of up to 64 KiB plus 17 bytes
//
// Two ways to use it. StreamSealer and StreamOpener are pushed bytes as they
// arrive (from a socket, from storage rows) and hold at most one chunk.
// SealStream and OpenStream pull from a reader callback until it ends.

#include <sodium.h>

#include <functional>
#include <span>
#include <string>
#include <vector>

#include "crypto/seal.hpp"

namespace cw::crypto {

constexpr std::size_t kStreamChunkSize = 64 << 10;

// Fills the buffer with up to its size in bytes and returns how many; 0 at
// the end of the input. Reads must fill the buffer except at the end.
using StreamReader = std::function<std::size_t(std::span<std::uint8_t>)>;
using StreamWriter = std::function<void(std::span<const std::uint8_t>)>;

// The data-key version a sealed stream starts with; 0 when `sealed` is too
// short or not a sealed stream.
std::uint32_t StreamKeyVersion(std::span<const std::uint8_t> sealed);

// Seals plaintext given in pieces of any size. A chunk is sealed once the
// next byte arrives (or at Finish), so the last chunk can be tagged FINAL.
class StreamSealer {
 public:
  StreamSealer(const DataKey& key, const SealContext& context);
  ~StreamSealer();
  StreamSealer(const StreamSealer&) = delete;
  StreamSealer& operator=(const StreamSealer&) = delete;

  // Seals what `plain` completes, writing the sealed bytes to `out` (the
  // stream header with the first call).
  void Write(std::span<const std::uint8_t> plain, const StreamWriter& out);
  // Seals the last chunk. REQUIRES: called once, after every Write.
  void Finish(const StreamWriter& out);

 private:
  void EmitHeader(const StreamWriter& out);
  void Push(bool last, const StreamWriter& out);

  crypto_secretstream_xchacha20poly1305_state state_;
  std::uint8_t header_[1 + 4 + crypto_secretstream_xchacha20poly1305_HEADERBYTES];
  Bytes ad_;
  bool header_sent_ = false;
  bool first_ = true;
  std::vector<std::uint8_t> pending_;
  std::vector<std::uint8_t> record_;
};

// Opens a sealed stream given in pieces of any size, writing plaintext chunk
// by chunk as each authenticates. On an error the caller must discard what
// was written (a tampered or truncated stream is detected at the bad chunk or
// at Finish).
class StreamOpener {
 public:
  StreamOpener(const KeyRing& keys, const SealContext& context);
  ~StreamOpener();
  StreamOpener(const StreamOpener&) = delete;
  StreamOpener& operator=(const StreamOpener&) = delete;

  Status Write(std::span<const std::uint8_t> sealed, const StreamWriter& out);
  // Ok only when the stream ended with its FINAL chunk and nothing after it.
  Status Finish(const StreamWriter& out);

 private:
  Status Start();
  Status Pull(const StreamWriter& out);

  const KeyRing& keys_;
  // The context's parts, kept until the header has arrived.
  std::string org_id_, table_, column_, row_id_;
  crypto_secretstream_xchacha20poly1305_state state_;
  std::vector<std::uint8_t> header_;
  Bytes ad_;
  bool started_ = false;
  bool first_ = true;
  bool final_ = false;
  Status failed_ = Ok();
  std::vector<std::uint8_t> record_;
  std::vector<std::uint8_t> plain_;
};

// Seals everything `read` yields into `write`.
void SealStream(const DataKey& key, const SealContext& context, const StreamReader& read,
                const StreamWriter& write);

// Opens a stream sealed by SealStream or StreamSealer (see StreamOpener).
Status OpenStream(const KeyRing& keys, const SealContext& context, const StreamReader& read,
                  const StreamWriter& write);

}  // namespace cw::crypto
