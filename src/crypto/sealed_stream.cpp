#include "crypto/sealed_stream.hpp"

#include <algorithm>

namespace cw::crypto {
namespace {

constexpr std::uint8_t kChunkedFormat = 2;
constexpr std::size_t kHeaderSize = 1 + 4 + crypto_secretstream_xchacha20poly1305_HEADERBYTES;
constexpr std::size_t kRecordOverhead = crypto_secretstream_xchacha20poly1305_ABYTES;
constexpr std::size_t kRecordSize = kStreamChunkSize + kRecordOverhead;

// Bytes a pull loop asks its reader for at a time.
constexpr std::size_t kPullBytes = kStreamChunkSize;

}  // namespace

std::uint32_t StreamKeyVersion(std::span<const std::uint8_t> sealed) {
  if (sealed.size() < kHeaderSize || sealed[0] != kChunkedFormat) return 0;
  return ReadHeaderKeyVersion(sealed.data());
}

StreamSealer::StreamSealer(const DataKey& key, const SealContext& context) {
  EnsureInitialized();
  WriteHeader(kChunkedFormat, key.version(), header_);
  crypto_secretstream_xchacha20poly1305_init_push(&state_, header_ + 5, key.bytes().data());
  ad_ = BindingData({header_, kHeaderSize}, context);
  pending_.reserve(kStreamChunkSize);
  record_.resize(kRecordSize);
}

StreamSealer::~StreamSealer() {
  sodium_memzero(&state_, sizeof state_);
  sodium_memzero(pending_.data(), pending_.size());
}

void StreamSealer::EmitHeader(const StreamWriter& out) {
  if (header_sent_) return;
  header_sent_ = true;
  out({header_, kHeaderSize});
}

void StreamSealer::Push(bool last, const StreamWriter& out) {
  unsigned long long written = 0;
  crypto_secretstream_xchacha20poly1305_push(
      &state_, record_.data(), &written, pending_.data(), pending_.size(),
      first_ ? ad_.data() : nullptr, first_ ? ad_.size() : 0,
      last ? crypto_secretstream_xchacha20poly1305_TAG_FINAL : 0);
  first_ = false;
  sodium_memzero(pending_.data(), pending_.size());
  pending_.clear();
  out({record_.data(), static_cast<std::size_t>(written)});
}

void StreamSealer::Write(std::span<const std::uint8_t> plain, const StreamWriter& out) {
  EmitHeader(out);
  while (!plain.empty()) {
    // A full chunk is sealed only once more bytes follow it: until then it
    // may be the last.
    if (pending_.size() == kStreamChunkSize) Push(false, out);
    const std::size_t n = std::min(kStreamChunkSize - pending_.size(), plain.size());
    pending_.insert(pending_.end(), plain.begin(), plain.begin() + n);
    plain = plain.subspan(n);
  }
}

void StreamSealer::Finish(const StreamWriter& out) {
  EmitHeader(out);
  Push(true, out);
}

StreamOpener::StreamOpener(const KeyRing& keys, const SealContext& context)
    : keys_(keys),
      org_id_(context.org_id),
      table_(context.table),
      column_(context.column),
      row_id_(context.row_id) {
  EnsureInitialized();
  header_.reserve(kHeaderSize);
  record_.reserve(kRecordSize);
}

StreamOpener::~StreamOpener() {
  sodium_memzero(&state_, sizeof state_);
  sodium_memzero(plain_.data(), plain_.size());
}

Status StreamOpener::Start() {
  if (header_[0] != kChunkedFormat) return Error::kMalformed;
  const DataKey* key = keys_.Find(ReadHeaderKeyVersion(header_.data()));
  if (key == nullptr) return Error::kUnknownKeyVersion;
  if (crypto_secretstream_xchacha20poly1305_init_pull(&state_, header_.data() + 5,
                                                      key->bytes().data()) != 0) {
    return Error::kMalformed;
  }
  ad_ = BindingData(header_, {org_id_, table_, column_, row_id_});
  started_ = true;
  plain_.resize(kStreamChunkSize);
  return Ok();
}

Status StreamOpener::Pull(const StreamWriter& out) {
  unsigned long long plain_len = 0;
  unsigned char tag = 0;
  if (crypto_secretstream_xchacha20poly1305_pull(&state_, plain_.data(), &plain_len, &tag,
                                                 record_.data(), record_.size(),
                                                 first_ ? ad_.data() : nullptr,
                                                 first_ ? ad_.size() : 0) != 0) {
    return Error::kAuthentication;
  }
  first_ = false;
  record_.clear();
  final_ = tag == crypto_secretstream_xchacha20poly1305_TAG_FINAL;
  out({plain_.data(), static_cast<std::size_t>(plain_len)});
  return Ok();
}

Status StreamOpener::Write(std::span<const std::uint8_t> sealed, const StreamWriter& out) {
  if (!failed_) return failed_;
  auto fail = [&](Status s) {
    failed_ = s;
    return s;
  };
  while (!sealed.empty()) {
    if (!started_) {
      const std::size_t n = std::min(kHeaderSize - header_.size(), sealed.size());
      header_.insert(header_.end(), sealed.begin(), sealed.begin() + n);
      sealed = sealed.subspan(n);
      if (header_.size() == kHeaderSize) {
        if (auto s = Start(); !s) return fail(s);
      }
      continue;
    }
    // Bytes after the FINAL chunk mean the stream was tampered with.
    if (final_) return fail(Error::kAuthentication);
    const std::size_t n = std::min(kRecordSize - record_.size(), sealed.size());
    record_.insert(record_.end(), sealed.begin(), sealed.begin() + n);
    sealed = sealed.subspan(n);
    // Every record but the last is full, so a full one can be opened now.
    if (record_.size() == kRecordSize) {
      if (auto s = Pull(out); !s) return fail(s);
    }
  }
  return Ok();
}

Status StreamOpener::Finish(const StreamWriter& out) {
  if (!failed_) return failed_;
  if (!started_) return Error::kMalformed;
  if (!final_) {
    // The last, short record; one that is missing or not FINAL means the
    // stream was cut short.
    if (record_.size() < kRecordOverhead) return Error::kAuthentication;
    if (auto s = Pull(out); !s) return s;
    if (!final_) return Error::kAuthentication;
  }
  return Ok();
}

void SealStream(const DataKey& key, const SealContext& context, const StreamReader& read,
                const StreamWriter& write) {
  StreamSealer sealer(key, context);
  std::vector<std::uint8_t> buffer(kPullBytes);
  for (;;) {
    const std::size_t n = read(buffer);
    if (n == 0) break;
    sealer.Write({buffer.data(), n}, write);
  }
  sealer.Finish(write);
  sodium_memzero(buffer.data(), buffer.size());
}

Status OpenStream(const KeyRing& keys, const SealContext& context, const StreamReader& read,
                  const StreamWriter& write) {
  StreamOpener opener(keys, context);
  std::vector<std::uint8_t> buffer(kPullBytes);
  for (;;) {
    const std::size_t n = read(buffer);
    if (n == 0) break;
    if (auto s = opener.Write({buffer.data(), n}, write); !s) return s;
  }
  return opener.Finish(write);
}

}  // namespace cw::crypto
