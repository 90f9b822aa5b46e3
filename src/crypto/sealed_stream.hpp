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
// Readers and writers are callbacks, so callers stream from a socket or file
// to a file or blob without holding the value.

#include <functional>
#include <span>

#include "crypto/seal.hpp"

namespace cw::crypto {

constexpr std::size_t kStreamChunkSize = 64 << 10;

// Fills the buffer with up to its size in bytes and returns how many; 0 at
// the end of the input. Reads must fill the buffer except at the end.
using StreamReader = std::function<std::size_t(std::span<std::uint8_t>)>;
using StreamWriter = std::function<void(std::span<const std::uint8_t>)>;

// Seals everything `read` yields into `write`.
void SealStream(const DataKey& key, const SealContext& context, const StreamReader& read,
                const StreamWriter& write);

// Opens a stream sealed by SealStream. Plaintext is written chunk by chunk as
// each authenticates; on an error the caller must discard what was written
// (a tampered or truncated stream is detected at the bad chunk or at the end).
Status OpenStream(const KeyRing& keys, const SealContext& context, const StreamReader& read,
                  const StreamWriter& write);

}  // namespace cw::crypto
