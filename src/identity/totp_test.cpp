#include "identity/totp.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace cw::identity {
namespace {

std::vector<unsigned char> Bytes(std::string_view text) {
  return std::vector<unsigned char>(text.begin(), text.end());
}

std::string Lower(std::string text) {
  for (char& c : text) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return text;
}

// RFC 6238 Appendix B seeds: the ASCII digits repeated to the hash's size.
const std::vector<unsigned char> kSha1Seed = Bytes("12345678901234567890");
const std::vector<unsigned char> kSha256Seed = Bytes("12345678901234567890123456789012");
const std::vector<unsigned char> kSha512Seed =
    Bytes("1234567890123456789012345678901234567890123456789012345678901234");

struct RfcVector {
  std::int64_t unix_seconds;
  const char* sha1;
  const char* sha256;
  const char* sha512;
};

constexpr RfcVector kRfc6238Vectors[] = {
    {59, "94287082", "46119246", "90693936"},
    {1111111109, "07081804", "68084774", "25091201"},
    {1111111111, "14050471", "67062674", "99943326"},
    {1234567890, "89005924", "91819424", "93441116"},
    {2000000000, "69279037", "90698825", "38618901"},
    {20000000000, "65353130", "77737706", "47863826"},
};

TEST(TotpTest, MatchesRfc6238AppendixB) {
  for (const RfcVector& v : kRfc6238Vectors) {
    const std::int64_t step = TotpStep(v.unix_seconds);
    EXPECT_EQ(TotpCode(kSha1Seed, step, 8, TotpAlgorithm::kSha1), v.sha1) << v.unix_seconds;
    EXPECT_EQ(TotpCode(kSha256Seed, step, 8, TotpAlgorithm::kSha256), v.sha256) << v.unix_seconds;
    EXPECT_EQ(TotpCode(kSha512Seed, step, 8, TotpAlgorithm::kSha512), v.sha512) << v.unix_seconds;
  }
}

TEST(TotpTest, MatchesRfc4226AppendixDWithTheStepAsCounter) {
  const char* const expected[] = {"755224", "287082", "359152", "969429", "338314",
                                  "254676", "287922", "162583", "399871", "520489"};
  for (std::int64_t counter = 0; counter < 10; ++counter) {
    EXPECT_EQ(TotpCode(kSha1Seed, counter), expected[counter]) << counter;
  }
}

TEST(TotpTest, StepsAreThirtySecondsFloored) {
  EXPECT_EQ(TotpStep(0), 0);
  EXPECT_EQ(TotpStep(29), 0);
  EXPECT_EQ(TotpStep(30), 1);
  EXPECT_EQ(TotpStep(59), 1);
  EXPECT_EQ(TotpStep(1111111111), 37037037);
  EXPECT_EQ(TotpStep(-1), -1);
  EXPECT_EQ(TotpStep(-30), -1);
  EXPECT_EQ(TotpStep(-31), -2);
}

TEST(TotpTest, RefusesMisuseAsBugs) {
  EXPECT_THROW(TotpCode({}, 1), std::invalid_argument);
  EXPECT_THROW(TotpCode(kSha1Seed, -1), std::invalid_argument);
  EXPECT_THROW(TotpCode(kSha1Seed, 1, 5), std::invalid_argument);
  EXPECT_THROW(TotpCode(kSha1Seed, 1, 9), std::invalid_argument);
  EXPECT_EQ(TotpCode(kSha1Seed, 1, 7).size(), 7u);
}

TEST(TotpTest, NewSecretsAreRandomAndOfTheRecommendedSize) {
  const std::vector<unsigned char> a = NewTotpSecret();
  const std::vector<unsigned char> b = NewTotpSecret();
  EXPECT_EQ(a.size(), kTotpSecretBytes);
  EXPECT_EQ(b.size(), kTotpSecretBytes);
  EXPECT_NE(a, b);
}

constexpr std::int64_t kNow = 37037037;  // TotpStep(1111111111)

TEST(TotpTest, MatchAcceptsOneStepOfDriftEitherWay) {
  for (std::int64_t drift = -1; drift <= 1; ++drift) {
    EXPECT_EQ(MatchTotp(kSha1Seed, TotpCode(kSha1Seed, kNow + drift), kNow, -1), kNow + drift)
        << drift;
  }
}

TEST(TotpTest, MatchRefusesTwoStepsOfDrift) {
  EXPECT_EQ(MatchTotp(kSha1Seed, TotpCode(kSha1Seed, kNow - 2), kNow, -1), std::nullopt);
  EXPECT_EQ(MatchTotp(kSha1Seed, TotpCode(kSha1Seed, kNow + 2), kNow, -1), std::nullopt);
}

TEST(TotpTest, MatchAcceptsEachCodeOnce) {
  const std::string code = TotpCode(kSha1Seed, kNow);
  const std::optional<std::int64_t> first = MatchTotp(kSha1Seed, code, kNow, -1);
  ASSERT_EQ(first, kNow);
  EXPECT_EQ(MatchTotp(kSha1Seed, code, kNow, *first), std::nullopt);
  // Still refused a step later, while the code is inside the drift window.
  EXPECT_EQ(MatchTotp(kSha1Seed, code, kNow + 1, *first), std::nullopt);
  // The next step's code is new.
  EXPECT_EQ(MatchTotp(kSha1Seed, TotpCode(kSha1Seed, kNow + 1), kNow + 1, *first), kNow + 1);
}

TEST(TotpTest, MatchRefusesStepsAtOrBeforeTheLastUsed) {
  const std::string previous = TotpCode(kSha1Seed, kNow - 1);
  EXPECT_EQ(MatchTotp(kSha1Seed, previous, kNow, kNow - 1), std::nullopt);
  EXPECT_EQ(MatchTotp(kSha1Seed, previous, kNow, kNow), std::nullopt);
  EXPECT_EQ(MatchTotp(kSha1Seed, previous, kNow, kNow - 2), kNow - 1);
  // A code from a later step already used is refused, even if inside the window.
  EXPECT_EQ(MatchTotp(kSha1Seed, TotpCode(kSha1Seed, kNow), kNow, kNow + 1), std::nullopt);
}

TEST(TotpTest, MatchRefusesAnythingButSixAsciiDigits) {
  const std::string code = TotpCode(kSha1Seed, kNow);
  ASSERT_EQ(MatchTotp(kSha1Seed, code, kNow, -1), kNow);
  const std::string refused[] = {
      "",
      code.substr(0, 5),
      code + "0",
      TotpCode(kSha1Seed, kNow, 8),
      " " + code,
      code + " ",
      code + "\n",
      code.substr(0, 3) + " " + code.substr(3),
      code.substr(0, 5) + "a",
      "abcdef",
      "12345-",
      std::string("12345\0", 6),
      "\xef\xbc\x91\xef\xbc\x92\xef\xbc\x93",  // full-width digits
  };
  for (const std::string& text : refused) {
    EXPECT_EQ(MatchTotp(kSha1Seed, text, kNow, -1), std::nullopt) << text;
  }
}

TEST(TotpTest, MatchRefusesEverythingForAnEmptySecretOrANegativeNow) {
  EXPECT_EQ(MatchTotp({}, "123456", kNow, -1), std::nullopt);
  EXPECT_EQ(MatchTotp(kSha1Seed, TotpCode(kSha1Seed, 0), -1, -2), std::nullopt);
  // At step 0 the window starts at 0; there is no step -1.
  EXPECT_EQ(MatchTotp(kSha1Seed, TotpCode(kSha1Seed, 0), 0, -1), 0);
}

TEST(Base32Test, MatchesRfc4648Vectors) {
  const std::pair<const char*, const char*> vectors[] = {
      {"", ""},
      {"f", "MY"},
      {"fo", "MZXQ"},
      {"foo", "MZXW6"},
      {"foob", "MZXW6YQ"},
      {"fooba", "MZXW6YTB"},
      {"foobar", "MZXW6YTBOI"},
  };
  for (const auto& [plain, encoded] : vectors) {
    EXPECT_EQ(Base32Encode(Bytes(plain)), encoded) << plain;
    EXPECT_EQ(Base32Decode(encoded), Bytes(plain)) << encoded;
  }
}

TEST(Base32Test, RoundTripsRandomBytesOfEveryLengthUpTo40) {
  std::mt19937 rng(20240607);
  std::uniform_int_distribution<int> byte(0, 255);
  for (std::size_t length = 0; length <= 40; ++length) {
    std::vector<unsigned char> bytes(length);
    for (unsigned char& b : bytes) b = static_cast<unsigned char>(byte(rng));
    const std::string encoded = Base32Encode(bytes);
    // Upper case, no padding.
    EXPECT_EQ(encoded.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"), std::string::npos)
        << encoded;
    EXPECT_EQ(encoded.size(), (length * 8 + 4) / 5) << encoded;
    EXPECT_EQ(Base32Decode(encoded), bytes) << length;
    EXPECT_EQ(Base32Decode(Lower(encoded)), bytes) << length;
  }
}

TEST(Base32Test, AcceptsLowerCaseSpacesAndPadding) {
  const std::vector<unsigned char> foobar = Bytes("foobar");
  EXPECT_EQ(Base32Decode("mzxw6ytboi"), foobar);
  EXPECT_EQ(Base32Decode("MzXw6YtBoI"), foobar);
  EXPECT_EQ(Base32Decode("mzxw 6ytb oi"), foobar);
  EXPECT_EQ(Base32Decode("MZXW6YTBOI======"), foobar);
  EXPECT_EQ(Base32Decode("MZXW6YTBOI="), foobar);
  EXPECT_EQ(Base32Decode("MY======"), Bytes("f"));
  EXPECT_EQ(Base32Decode(" MY == "), Bytes("f"));
  EXPECT_EQ(Base32Decode("   "), std::vector<unsigned char>{});
}

TEST(Base32Test, RefusesInvalidCharactersAndLengths) {
  // 0, 1, 8 and 9 are not in the alphabet; nor are punctuation, other white
  // space or non-ASCII bytes.
  for (const char* text : {"MY0", "MY1", "MY8", "MY9", "MZXW6YTB!OI", "MZXW-6YTB", "MZXW6YTB\tOI",
                           "MZXW6YTB\nOI", "\xc3\x89MY"}) {
    EXPECT_EQ(Base32Decode(text), std::nullopt) << text;
  }
  // Padding before or between letters.
  EXPECT_EQ(Base32Decode("=MY"), std::nullopt);
  EXPECT_EQ(Base32Decode("MY=A"), std::nullopt);
  // Lengths no encoding produces.
  for (const char* text : {"M", "MZX", "MZXW6Y"}) {
    EXPECT_EQ(Base32Decode(text), std::nullopt) << text;
  }
}

TEST(OtpAuthTest, BuildsTheKeyUriWithEscaping) {
  EXPECT_EQ(OtpAuthUri("Carewire", "alice", "JBSWY3DPEHPK3PXP"),
            "otpauth://totp/Carewire:alice?secret=JBSWY3DPEHPK3PXP&issuer=Carewire"
            "&algorithm=SHA1&digits=6&period=30");
  EXPECT_EQ(OtpAuthUri("Main St: Clinic", "dr.bob@example.org", "MZXW6YTBOI"),
            "otpauth://totp/Main%20St%3A%20Clinic:dr.bob%40example.org?secret=MZXW6YTBOI"
            "&issuer=Main%20St%3A%20Clinic&algorithm=SHA1&digits=6&period=30");
  // Unreserved characters pass; '&', '?', '/' and UTF-8 are escaped.
  EXPECT_EQ(OtpAuthUri("A&B/C?", "x-y_z.~\xc3\xa9", "MY"),
            "otpauth://totp/A%26B%2FC%3F:x-y_z.~%C3%A9?secret=MY&issuer=A%26B%2FC%3F"
            "&algorithm=SHA1&digits=6&period=30");
}

TEST(QrCodeTest, RendersADeterministicSvgDocument) {
  const std::string uri = OtpAuthUri("Carewire", "alice", "JBSWY3DPEHPK3PXP");
  const std::string svg = QrCodeSvg(uri);
  EXPECT_TRUE(svg.starts_with("<svg") || svg.starts_with("<?xml")) << svg.substr(0, 40);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  EXPECT_NE(svg.find("xmlns=\"http://www.w3.org/2000/svg\""), std::string::npos);
  EXPECT_EQ(QrCodeSvg(uri), svg);
  EXPECT_NE(QrCodeSvg(OtpAuthUri("Carewire", "bob", "JBSWY3DPEHPK3PXP")), svg);
}

TEST(QrCodeTest, IncludesTheQuietZone) {
  // "a" fits the smallest symbol, 21 modules wide; with 4 modules of white on
  // each side the document is 29 modules across.
  const std::string svg = QrCodeSvg("a");
  EXPECT_NE(svg.find("viewBox=\"0 0 29 29\""), std::string::npos) << svg;
  // The top-left finder pattern starts just inside the quiet zone.
  EXPECT_NE(svg.find("d=\"M4 4h7v1h-7z"), std::string::npos) << svg;
}

TEST(QrCodeTest, ThrowsWhenLibqrencodeCannotEncode) {
  EXPECT_THROW(QrCodeSvg(""), std::runtime_error);
  EXPECT_THROW(QrCodeSvg(std::string(3000, 'x')), std::runtime_error);
}

// Ten characters from the alphabet without look-alikes, hyphenated after five.
bool HasRecoveryCodeShape(const std::string& code) {
  static constexpr std::string_view kAlphabet = "23456789abcdefghjkmnpqrstuvwxyz";
  if (code.size() != 11 || code[5] != '-') return false;
  for (std::size_t i = 0; i < code.size(); ++i) {
    if (i != 5 && kAlphabet.find(code[i]) == std::string_view::npos) return false;
  }
  return true;
}

TEST(RecoveryCodeTest, IssuesTenDistinctCodesOfTheDocumentedShape) {
  std::set<std::string> seen;
  for (int round = 0; round < 50; ++round) {
    const std::vector<std::string> codes = NewRecoveryCodes();
    EXPECT_EQ(codes.size(), static_cast<std::size_t>(kRecoveryCodeCount));
    for (const std::string& code : codes) {
      EXPECT_TRUE(HasRecoveryCodeShape(code)) << code;
      EXPECT_TRUE(seen.insert(code).second) << code;
    }
  }
}

TEST(RecoveryCodeTest, UsesEveryLetterOfTheAlphabet) {
  std::set<char> letters;
  for (int round = 0; round < 20; ++round) {
    for (const std::string& code : NewRecoveryCodes()) letters.insert(code.begin(), code.end());
  }
  letters.erase('-');
  EXPECT_EQ(letters.size(), 31u);
}

TEST(RecoveryCodeTest, HashIgnoresCaseHyphensAndSpaces) {
  const std::string hash = RecoveryCodeHash("abcde-23456");
  EXPECT_EQ(hash.size(), 64u);
  EXPECT_EQ(hash.find_first_not_of("0123456789abcdef"), std::string::npos) << hash;
  EXPECT_EQ(RecoveryCodeHash("ABCDE-23456"), hash);
  EXPECT_EQ(RecoveryCodeHash("abcde23456"), hash);
  EXPECT_EQ(RecoveryCodeHash("ABCDE 23456"), hash);
  EXPECT_EQ(RecoveryCodeHash(" aBcDe - 23456 "), hash);
  EXPECT_NE(RecoveryCodeHash("abcde-23457"), hash);
  // SHA-256 of the normalized code, so the stored form is reproducible.
  EXPECT_EQ(RecoveryCodeHash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

}  // namespace
}  // namespace cw::identity
