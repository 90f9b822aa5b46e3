#include "crypto/seal.hpp"

#include <gtest/gtest.h>

#include <string>
#include <unordered_set>

namespace cw::crypto {
namespace {

const SealContext kHere{"org-1", "messages", "body", "row-1"};

std::string Text(const Bytes& b) { return std::string(b.begin(), b.end()); }

class SealTest : public ::testing::Test {
 protected:
  void SetUp() override {
    key_ = DataKey::Generate(1);
    ring_.Add(key_);
  }
  std::shared_ptr<const DataKey> key_;
  KeyRing ring_;
};

TEST_F(SealTest, RoundTripsAndHidesThePlaintext) {
  const std::string canary = "PHI-CANARY Jane Doe DOB 1970-01-01";
  const Bytes sealed = Seal(*key_, kHere, canary);
  EXPECT_EQ(sealed.size(), 1 + 4 + 24 + canary.size() + 16);
  EXPECT_EQ(Text(sealed).find("Jane"), std::string::npos);
  auto opened = Open(ring_, kHere, sealed);
  ASSERT_TRUE(opened);
  EXPECT_EQ(Text(*opened), canary);
  EXPECT_EQ(*SealedKeyVersion(sealed), 1u);
}

TEST_F(SealTest, EmptyValueRoundTrips) {
  auto opened = Open(ring_, kHere, Seal(*key_, kHere, std::string_view()));
  ASSERT_TRUE(opened);
  EXPECT_TRUE(opened->empty());
}

TEST_F(SealTest, ValueMovedElsewhereFailsToOpen) {
  const Bytes sealed = Seal(*key_, kHere, std::string_view("secret"));
  for (const SealContext& other : {SealContext{"org-2", "messages", "body", "row-1"},
                                   SealContext{"org-1", "patients", "body", "row-1"},
                                   SealContext{"org-1", "messages", "title", "row-1"},
                                   SealContext{"org-1", "messages", "body", "row-2"},
                                   // Field boundaries count: "row-1" split differently.
                                   SealContext{"org-1", "messages", "bodyr", "ow-1"}}) {
    auto opened = Open(ring_, other, sealed);
    ASSERT_FALSE(opened);
    EXPECT_EQ(opened.error(), Error::kAuthentication);
  }
}

TEST_F(SealTest, EveryFlippedBitIsDetected) {
  const Bytes sealed = Seal(*key_, kHere, std::string_view("a value worth protecting"));
  for (std::size_t i = 0; i < sealed.size() * 8; ++i) {
    Bytes tampered = sealed;
    tampered[i / 8] ^= static_cast<std::uint8_t>(1u << (i % 8));
    EXPECT_FALSE(Open(ring_, kHere, tampered)) << "bit " << i;
  }
}

TEST_F(SealTest, TruncatedAndUnknownFormatsAreMalformed) {
  const Bytes sealed = Seal(*key_, kHere, std::string_view("x"));
  for (std::size_t n = 0; n < 1 + 4 + 24 + 16; ++n) {
    auto opened = Open(ring_, kHere, std::span(sealed.data(), n));
    ASSERT_FALSE(opened);
    EXPECT_EQ(opened.error(), Error::kMalformed) << n;
  }
  Bytes future = sealed;
  future[0] = 2;
  EXPECT_EQ(Open(ring_, kHere, future).error(), Error::kMalformed);
}

TEST_F(SealTest, OldVersionsStillOpenAndNewWritesUseTheNewest) {
  const Bytes old_value = Seal(*ring_.Current(), kHere, std::string_view("old"));
  ring_.Add(DataKey::Generate(2));
  EXPECT_EQ(ring_.Current()->version(), 2u);
  const Bytes new_value = Seal(*ring_.Current(), kHere, std::string_view("new"));
  EXPECT_EQ(*SealedKeyVersion(new_value), 2u);
  EXPECT_EQ(Text(*Open(ring_, kHere, old_value)), "old");
  EXPECT_EQ(Text(*Open(ring_, kHere, new_value)), "new");

  KeyRing only_v2;
  only_v2.Add(DataKey::FromBytes(2, ring_.Find(2)->bytes()));
  EXPECT_EQ(Open(only_v2, kHere, old_value).error(), Error::kUnknownKeyVersion);
  EXPECT_EQ(Text(*Open(only_v2, kHere, new_value)), "new");
}

TEST_F(SealTest, WrongKeyWithTheSameVersionFails) {
  KeyRing other;
  other.Add(DataKey::Generate(1));
  EXPECT_EQ(Open(other, kHere, Seal(*key_, kHere, std::string_view("x"))).error(),
            Error::kAuthentication);
}

TEST_F(SealTest, AMillionSealsRepeatNoNonce) {
  std::unordered_set<std::string> nonces;
  nonces.reserve(1'000'000);
  const std::uint8_t empty = 0;
  for (int i = 0; i < 1'000'000; ++i) {
    const Bytes sealed = Seal(*key_, kHere, std::span(&empty, 0));
    nonces.emplace(reinterpret_cast<const char*>(sealed.data() + 5), 24);
  }
  EXPECT_EQ(nonces.size(), 1'000'000u);
}

TEST(BlindIndexTest, EqualForEqualInputAndSeparatedByKeyAndDomain) {
  std::array<std::uint8_t, 32> k1{}, k2{};
  k2[0] = 1;
  const auto a = BlindIndex(k1, "phone", "+15551234567");
  EXPECT_EQ(a, BlindIndex(k1, "phone", "+15551234567"));
  EXPECT_NE(a, BlindIndex(k1, "phone", "+15551234568"));
  EXPECT_NE(a, BlindIndex(k2, "phone", "+15551234567"));
  EXPECT_NE(a, BlindIndex(k1, "mrn", "+15551234567"));
  EXPECT_NE(BlindIndex(k1, "ab", "c"), BlindIndex(k1, "a", "bc"));
}

}  // namespace
}  // namespace cw::crypto
