#include "crypto/sealed_stream.hpp"

#include <gtest/gtest.h>

#include <algorithm>

namespace cw::crypto {
namespace {

const SealContext kHere{"org-1", "attachments", "content", "att-1"};

// A reader over a byte vector that hands out at most `step` bytes a call.
StreamReader ReaderOver(const Bytes& bytes, std::size_t step = 7777) {
  auto pos = std::make_shared<std::size_t>(0);
  return [&bytes, pos, step](std::span<std::uint8_t> out) {
    const std::size_t n = std::min({out.size(), step, bytes.size() - *pos});
    std::copy_n(bytes.begin() + static_cast<std::ptrdiff_t>(*pos), n, out.begin());
    *pos += n;
    return n;
  };
}

StreamWriter WriterInto(Bytes& bytes) {
  return [&bytes](std::span<const std::uint8_t> in) {
    bytes.insert(bytes.end(), in.begin(), in.end());
  };
}

Bytes Pattern(std::size_t n) {
  Bytes b(n);
  for (std::size_t i = 0; i < n; ++i) b[i] = static_cast<std::uint8_t>(i * 31 + 7);
  return b;
}

class SealedStreamTest : public ::testing::Test {
 protected:
  void SetUp() override { ring_.Add(DataKey::Generate(5)); }
  Bytes SealAll(const Bytes& plain) {
    Bytes sealed;
    SealStream(*ring_.Current(), kHere, ReaderOver(plain), WriterInto(sealed));
    return sealed;
  }
  Status OpenAll(const Bytes& sealed, Bytes* plain, const SealContext& where = kHere) {
    return OpenStream(ring_, where, ReaderOver(sealed), WriterInto(*plain));
  }
  KeyRing ring_;
};

TEST_F(SealedStreamTest, RoundTripsAtChunkBoundaries) {
  for (std::size_t n : {std::size_t{0}, std::size_t{1}, kStreamChunkSize - 1, kStreamChunkSize,
                        kStreamChunkSize + 1, 3 * kStreamChunkSize, std::size_t{(1u << 20) + 3}}) {
    const Bytes plain = Pattern(n);
    const Bytes sealed = SealAll(plain);
    // The look-ahead means an exact multiple of the chunk size needs no
    // empty trailing chunk; an empty value is one empty FINAL chunk.
    const std::size_t chunks =
        std::max<std::size_t>(1, (n + kStreamChunkSize - 1) / kStreamChunkSize);
    EXPECT_EQ(sealed.size(), 29 + n + 17 * chunks) << n;
    Bytes opened;
    ASSERT_TRUE(OpenAll(sealed, &opened)) << n;
    EXPECT_EQ(opened, plain) << n;
  }
}

// Pushed in pieces of awkward sizes, sealing and opening give the same
// stream as the pull functions read it, whatever the piece boundaries.
TEST_F(SealedStreamTest, PushedPiecesOfAnySizeRoundTrip) {
  for (std::size_t n : {std::size_t{0}, std::size_t{5}, kStreamChunkSize, 2 * kStreamChunkSize + 9,
                        std::size_t{(1u << 20) + 3}}) {
    for (std::size_t step : {std::size_t{1000}, kStreamChunkSize, std::size_t{3 << 20}}) {
      const Bytes plain = Pattern(n);
      Bytes sealed;
      StreamSealer sealer(*ring_.Current(), kHere);
      for (std::size_t at = 0; at < n; at += step) {
        sealer.Write({plain.data() + at, std::min(step, n - at)}, WriterInto(sealed));
      }
      sealer.Finish(WriterInto(sealed));
      EXPECT_EQ(StreamKeyVersion(sealed), 5u);
      Bytes pulled;
      ASSERT_TRUE(OpenAll(sealed, &pulled)) << n << " " << step;
      EXPECT_EQ(pulled, plain);

      Bytes pushed;
      StreamOpener opener(ring_, kHere);
      for (std::size_t at = 0; at < sealed.size(); at += step / 3 + 1) {
        ASSERT_TRUE(opener.Write({sealed.data() + at, std::min(step / 3 + 1, sealed.size() - at)},
                                 WriterInto(pushed)));
      }
      ASSERT_TRUE(opener.Finish(WriterInto(pushed)));
      EXPECT_EQ(pushed, plain) << n << " " << step;
    }
  }
  // Cut one byte short, the pushed opener refuses it at Finish.
  const Bytes sealed = SealAll(Pattern(kStreamChunkSize + 10));
  Bytes ignored;
  StreamOpener opener(ring_, kHere);
  ASSERT_TRUE(opener.Write({sealed.data(), sealed.size() - 1}, WriterInto(ignored)));
  EXPECT_FALSE(opener.Finish(WriterInto(ignored)));
  EXPECT_EQ(StreamKeyVersion({sealed.data(), 10}), 0u);
}

TEST_F(SealedStreamTest, TruncationAndAppendedBytesAreDetected) {
  const Bytes sealed = SealAll(Pattern(3 * kStreamChunkSize + 100));
  const std::size_t record = kStreamChunkSize + 17;
  for (std::size_t cut :
       {sealed.size() - 1, 29 + 3 * record, 29 + record, std::size_t{29}, std::size_t{10}}) {
    Bytes opened;
    EXPECT_FALSE(
        OpenAll(Bytes(sealed.begin(), sealed.begin() + static_cast<std::ptrdiff_t>(cut)), &opened))
        << cut;
  }
  Bytes longer = sealed;
  longer.push_back(0);
  Bytes opened;
  EXPECT_FALSE(OpenAll(longer, &opened));
}

TEST_F(SealedStreamTest, ReorderedChunksAndFlippedBitsAreDetected) {
  const Bytes sealed = SealAll(Pattern(3 * kStreamChunkSize));
  const std::size_t record = kStreamChunkSize + 17;
  Bytes swapped = sealed;
  std::swap_ranges(swapped.begin() + 29, swapped.begin() + 29 + static_cast<std::ptrdiff_t>(record),
                   swapped.begin() + 29 + static_cast<std::ptrdiff_t>(record));
  Bytes opened;
  EXPECT_FALSE(OpenAll(swapped, &opened));
  for (std::size_t at : {std::size_t{0}, std::size_t{3}, std::size_t{10}, std::size_t{40},
                         29 + record + 5, sealed.size() - 1}) {
    Bytes tampered = sealed;
    tampered[at] ^= 0x01;
    Bytes out;
    EXPECT_FALSE(OpenAll(tampered, &out)) << at;
  }
}

TEST_F(SealedStreamTest, StreamMovedElsewhereFailsToOpen) {
  const Bytes sealed = SealAll(Pattern(1000));
  Bytes opened;
  EXPECT_EQ(OpenAll(sealed, &opened, {"org-2", "attachments", "content", "att-1"}).error(),
            Error::kAuthentication);
  EXPECT_EQ(OpenAll(sealed, &opened, {"org-1", "attachments", "content", "att-2"}).error(),
            Error::kAuthentication);
  KeyRing empty;
  EXPECT_EQ(OpenStream(empty, kHere, ReaderOver(sealed), WriterInto(opened)).error(),
            Error::kUnknownKeyVersion);
}

}  // namespace
}  // namespace cw::crypto
