#include "crypto/sealed_stream.hpp"

#include <sodium.h>

#include <vector>

namespace cw::crypto {
namespace {

constexpr std::uint8_t kChunkedFormat = 2;
constexpr std::size_t kHeaderSize = 1 + 4 + crypto_secretstream_xchacha20poly1305_HEADERBYTES;
constexpr std::size_t kRecordOverhead = crypto_secretstream_xchacha20poly1305_ABYTES;

// Reads until `buffer` is full or the input ends.
std::size_t ReadFull(const StreamReader& read, std::span<std::uint8_t> buffer) {
  std::size_t got = 0;
  while (got < buffer.size()) {
    const std::size_t n = read(buffer.subspan(got));
    if (n == 0) break;
    got += n;
  }
  return got;
}

}  // namespace

void SealStream(const DataKey& key, const SealContext& context, const StreamReader& read,
                const StreamWriter& write) {
  EnsureInitialized();
  std::uint8_t header[kHeaderSize];
  WriteHeader(kChunkedFormat, key.version(), header);
  crypto_secretstream_xchacha20poly1305_state state;
  crypto_secretstream_xchacha20poly1305_init_push(&state, header + 5, key.bytes().data());
  write({header, kHeaderSize});
  const Bytes ad = BindingData({header, kHeaderSize}, context);

  // One chunk of look-ahead tells whether the current chunk is the last.
  std::vector<std::uint8_t> current(kStreamChunkSize), next(kStreamChunkSize);
  std::vector<std::uint8_t> record(kStreamChunkSize + kRecordOverhead);
  std::size_t current_len = ReadFull(read, current);
  bool first = true;
  for (;;) {
    const std::size_t next_len = current_len == kStreamChunkSize ? ReadFull(read, next) : 0;
    const bool last = next_len == 0;
    unsigned long long written = 0;
    crypto_secretstream_xchacha20poly1305_push(
        &state, record.data(), &written, current.data(), current_len, first ? ad.data() : nullptr,
        first ? ad.size() : 0, last ? crypto_secretstream_xchacha20poly1305_TAG_FINAL : 0);
    write({record.data(), static_cast<std::size_t>(written)});
    if (last) break;
    first = false;
    std::swap(current, next);
    current_len = next_len;
  }
  sodium_memzero(&state, sizeof state);
}

Status OpenStream(const KeyRing& keys, const SealContext& context, const StreamReader& read,
                  const StreamWriter& write) {
  EnsureInitialized();
  std::uint8_t header[kHeaderSize];
  if (ReadFull(read, {header, kHeaderSize}) != kHeaderSize || header[0] != kChunkedFormat) {
    return Error::kMalformed;
  }
  const std::uint32_t version = ReadHeaderKeyVersion(header);
  const DataKey* key = keys.Find(version);
  if (key == nullptr) return Error::kUnknownKeyVersion;
  crypto_secretstream_xchacha20poly1305_state state;
  if (crypto_secretstream_xchacha20poly1305_init_pull(&state, header + 5, key->bytes().data()) !=
      0) {
    return Error::kMalformed;
  }
  const Bytes ad = BindingData({header, kHeaderSize}, context);
  std::vector<std::uint8_t> record(kStreamChunkSize + kRecordOverhead);
  std::vector<std::uint8_t> plain(kStreamChunkSize);
  bool first = true;
  for (;;) {
    const std::size_t n = ReadFull(read, record);
    // Every chunk but the last is full; a short or empty read here means the
    // stream ended before its FINAL chunk.
    if (n < kRecordOverhead) return Error::kAuthentication;
    unsigned long long plain_len = 0;
    unsigned char tag = 0;
    if (crypto_secretstream_xchacha20poly1305_pull(&state, plain.data(), &plain_len, &tag,
                                                   record.data(), n, first ? ad.data() : nullptr,
                                                   first ? ad.size() : 0) != 0) {
      return Error::kAuthentication;
    }
    first = false;
    write({plain.data(), static_cast<std::size_t>(plain_len)});
    if (tag == crypto_secretstream_xchacha20poly1305_TAG_FINAL) {
      // Bytes after the FINAL chunk mean the stream was tampered with.
      std::uint8_t extra;
      if (ReadFull(read, {&extra, 1}) != 0) return Error::kAuthentication;
      return Ok();
    }
    if (n != record.size()) return Error::kAuthentication;
  }
}

}  // namespace cw::crypto
