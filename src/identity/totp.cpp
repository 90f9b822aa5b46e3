#include "identity/totp.hpp"

#include <liboath/oath.h>
#include <qrencode.h>
#include <sodium.h>

#include <algorithm>
#include <cstdlib>
#include <ctime>
#include <limits>
#include <memory>
#include <stdexcept>
#include <utility>

#include "core/random.hpp"
#include "crypto/seal.hpp"

// HOTP and base32 come from liboath (Debian's liboath-dev), so the RFC 4226
// arithmetic is the one oathtool and the PAM module use rather than our own.
// liboath's only exported HOTP with SHA-256 and SHA-512 is its TOTP entry
// point, which divides a time by a step size itself; we pass the step as the
// time with a step size of 1, which makes its counter exactly our step.
// liboath hashes with its built-in gnulib code and keeps no state after
// oath_init, which runs once below. Constant-time comparison, hashing and
// wiping come from libsodium, as elsewhere in Carewire.

namespace cw::identity {
namespace {

static_assert(sizeof(std::time_t) >= sizeof(std::int64_t), "liboath takes the step as a time_t");

// Codes from one step before and one after the current step are accepted:
// enough for a phone clock a little off and a code typed as it turns over.
constexpr std::int64_t kDriftSteps = 1;

constexpr int kMinDigits = 6;  // liboath supports 6, 7 and 8 digits
constexpr int kMaxDigits = 8;

constexpr std::size_t kRecoveryCodeLetters = 10;
constexpr std::size_t kRecoveryCodeGroup = 5;  // letters before the hyphen
// 31 symbols: no 0/o, 1/l/i. log2(31) * 10 is about 49.5 bits a code.
constexpr char kRecoveryAlphabet[] = "23456789abcdefghjkmnpqrstuvwxyz";
static_assert(sizeof kRecoveryAlphabet - 1 == 31);

// ISO/IEC 18004 asks for four modules of white around the symbol; scanners
// fail more often without it.
constexpr int kQuietZoneModules = 4;
constexpr int kPixelsPerModule = 4;

void EnsureOathInitialized() {
  // A function-local static: initialized once even when threads race here.
  // If oath_init fails the exception propagates and the next call retries.
  [[maybe_unused]] static const bool initialized = [] {
    if (oath_init() != OATH_OK) throw std::runtime_error("liboath failed to initialize");
    return true;
  }();
}

const char* AsChars(std::span<const unsigned char> bytes) {
  return reinterpret_cast<const char*>(bytes.data());
}

// A buffer liboath allocated with malloc. It may hold a secret, so it is
// wiped before it is freed.
struct OathBuffer {
  OathBuffer() = default;
  OathBuffer(const OathBuffer&) = delete;
  OathBuffer& operator=(const OathBuffer&) = delete;
  ~OathBuffer() {
    if (data == nullptr) return;
    sodium_memzero(data, size);
    std::free(data);
  }

  char* data = nullptr;
  std::size_t size = 0;
};

int OathFlags(TotpAlgorithm algorithm) {
  switch (algorithm) {
    case TotpAlgorithm::kSha1:
      return 0;
    case TotpAlgorithm::kSha256:
      return OATH_TOTP_HMAC_SHA256;
    case TotpAlgorithm::kSha512:
      return OATH_TOTP_HMAC_SHA512;
  }
  throw std::invalid_argument("unknown TOTP algorithm");
}

bool IsTotpCodeShape(std::string_view code) {
  return code.size() == static_cast<std::size_t>(kTotpDigits) &&
         std::all_of(code.begin(), code.end(), [](char c) { return c >= '0' && c <= '9'; });
}

bool IsBase32Letter(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '2' && c <= '7');
}

char AsciiUpper(char c) { return c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c; }

char AsciiLower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

bool IsUnreserved(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

void AppendPercentEncoded(std::string& out, std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (const char c : text) {
    if (IsUnreserved(c)) {
      out += c;
      continue;
    }
    const auto byte = static_cast<unsigned char>(c);
    out += '%';
    out += kHex[byte >> 4];
    out += kHex[byte & 15];
  }
}

std::string NewRecoveryCode() {
  std::string code;
  unsigned char random[32];
  std::size_t used = sizeof random;
  while (code.size() < kRecoveryCodeLetters + 1) {
    if (used == sizeof random) {
      core::RandomBytes(random);
      used = 0;
    }
    const unsigned char r = random[used++] & 0x1f;
    if (r >= sizeof kRecoveryAlphabet - 1) continue;  // rejection keeps the draw uniform
    if (code.size() == kRecoveryCodeGroup) code += '-';
    code += kRecoveryAlphabet[r];
  }
  sodium_memzero(random, sizeof random);
  return code;
}

}  // namespace

std::vector<unsigned char> NewTotpSecret() {
  std::vector<unsigned char> secret(kTotpSecretBytes);
  core::RandomBytes(secret);
  return secret;
}

std::int64_t TotpStep(std::int64_t unix_seconds) {
  std::int64_t step = unix_seconds / kTotpStepSeconds;
  if (unix_seconds % kTotpStepSeconds < 0) --step;  // C++ division truncates toward zero
  return step;
}

std::string TotpCode(std::span<const unsigned char> secret, std::int64_t step, int digits,
                     TotpAlgorithm algorithm) {
  if (secret.empty()) throw std::invalid_argument("TOTP secret is empty");
  if (step < 0) throw std::invalid_argument("TOTP step is negative");
  if (digits < kMinDigits || digits > kMaxDigits) {
    throw std::invalid_argument("TOTP codes have 6 to 8 digits");
  }
  EnsureOathInitialized();
  char out[kMaxDigits + 1];
  const int rc = oath_totp_generate2(AsChars(secret), secret.size(), static_cast<std::time_t>(step),
                                     /*time_step_size=*/1, /*start_offset=*/0,
                                     static_cast<unsigned>(digits), OathFlags(algorithm), out);
  if (rc != OATH_OK) throw std::runtime_error("liboath failed to compute a TOTP code");
  return std::string(out, static_cast<std::size_t>(digits));
}

std::optional<std::int64_t> MatchTotp(std::span<const unsigned char> secret, std::string_view code,
                                      std::int64_t now_step, std::int64_t last_used_step) {
  if (secret.empty() || !IsTotpCodeShape(code)) return std::nullopt;
  if (now_step < 0 || now_step > std::numeric_limits<std::int64_t>::max() - kDriftSteps) {
    return std::nullopt;
  }
  crypto::EnsureInitialized();
  // Every candidate is computed and compared, with no early exit, so the time
  // taken does not tell which step matched. Should two steps share a code
  // (about one chance in a million), the later one is returned, so storing it
  // retires both.
  std::optional<std::int64_t> matched;
  for (std::int64_t step = now_step - kDriftSteps; step <= now_step + kDriftSteps; ++step) {
    if (step < 0 || step <= last_used_step) continue;
    const std::string expected = TotpCode(secret, step);
    if (sodium_memcmp(expected.data(), code.data(), expected.size()) == 0) matched = step;
  }
  return matched;
}

std::string Base32Encode(std::span<const unsigned char> bytes) {
  if (bytes.empty()) return {};
  EnsureOathInitialized();
  OathBuffer encoded;
  if (oath_base32_encode(AsChars(bytes), bytes.size(), &encoded.data, &encoded.size) != OATH_OK) {
    throw std::runtime_error("liboath failed to encode base32");
  }
  std::string text(encoded.data, encoded.size);
  text.erase(text.find_last_not_of('=') + 1);
  return text;
}

std::optional<std::vector<unsigned char>> Base32Decode(std::string_view text) {
  // Checked, stripped of padding and upper-cased here rather than by liboath:
  // liboath refuses partial padding, and its toupper() follows the process
  // locale. It still refuses lengths no encoding produces.
  bool in_padding = false;
  for (const char c : text) {
    if (c == ' ') continue;
    if (c == '=') {
      in_padding = true;
    } else if (in_padding || !IsBase32Letter(c)) {
      return std::nullopt;
    }
  }
  std::string letters;
  letters.reserve(text.size());
  for (const char c : text) {
    if (c != ' ' && c != '=') letters += AsciiUpper(c);
  }
  EnsureOathInitialized();
  OathBuffer decoded;
  const int rc = oath_base32_decode(letters.data(), letters.size(), &decoded.data, &decoded.size);
  sodium_memzero(letters.data(), letters.size());
  if (rc != OATH_OK) return std::nullopt;
  const auto* begin = reinterpret_cast<const unsigned char*>(decoded.data);
  return std::vector<unsigned char>(begin, begin + decoded.size);
}

std::string OtpAuthUri(std::string_view issuer, std::string_view account,
                       std::string_view secret_base32) {
  std::string uri = "otpauth://totp/";
  AppendPercentEncoded(uri, issuer);
  uri += ':';
  AppendPercentEncoded(uri, account);
  uri += "?secret=";
  AppendPercentEncoded(uri, secret_base32);
  uri += "&issuer=";
  AppendPercentEncoded(uri, issuer);
  uri += "&algorithm=SHA1&digits=";
  uri += std::to_string(kTotpDigits);
  uri += "&period=";
  uri += std::to_string(kTotpStepSeconds);
  return uri;
}

std::string QrCodeSvg(std::string_view text) {
  if (text.size() > static_cast<std::size_t>(std::numeric_limits<int>::max())) {
    throw std::runtime_error("text too long for a QR code");
  }
  // Version 0: libqrencode picks the smallest symbol that holds the text.
  // Encoding the bytes as given (8-bit mode) keeps a NUL or non-ASCII intact.
  const std::unique_ptr<QRcode, decltype(&QRcode_free)> qr(
      QRcode_encodeData(static_cast<int>(text.size()),
                        reinterpret_cast<const unsigned char*>(text.data()), 0, QR_ECLEVEL_M),
      &QRcode_free);
  if (qr == nullptr) throw std::runtime_error("libqrencode failed to encode a QR code");

  const int width = qr->width;
  const int modules = width + 2 * kQuietZoneModules;
  const std::string side = std::to_string(modules);
  const std::string pixels = std::to_string(modules * kPixelsPerModule);
  std::string svg = "<svg xmlns=\"http://www.w3.org/2000/svg\"";
  svg += " width=\"" + pixels + "\" height=\"" + pixels + "\"";
  svg += " viewBox=\"0 0 " + side + ' ' + side + "\" shape-rendering=\"crispEdges\">";
  svg += "<rect width=\"" + side + "\" height=\"" + side + "\" fill=\"#ffffff\"/>";
  svg += "<path fill=\"#000000\" d=\"";
  // One rectangle per horizontal run of dark modules; bit 0 of each module
  // byte is 1 for dark.
  for (int y = 0; y < width; ++y) {
    const unsigned char* row = qr->data + static_cast<std::ptrdiff_t>(y) * width;
    int x = 0;
    while (x < width) {
      if ((row[x] & 1) == 0) {
        ++x;
        continue;
      }
      const int start = x;
      while (x < width && (row[x] & 1) != 0) ++x;
      const std::string run = std::to_string(x - start);
      svg += 'M' + std::to_string(start + kQuietZoneModules) + ' ' +
             std::to_string(y + kQuietZoneModules) + 'h' + run + "v1h-" + run + 'z';
    }
  }
  svg += "\"/></svg>\n";
  return svg;
}

std::vector<std::string> NewRecoveryCodes() {
  std::vector<std::string> codes;
  while (codes.size() < static_cast<std::size_t>(kRecoveryCodeCount)) {
    std::string code = NewRecoveryCode();
    // A repeat is about a 2^-44 event, but a list with one makes a code count twice.
    if (std::find(codes.begin(), codes.end(), code) == codes.end()) {
      codes.push_back(std::move(code));
    }
  }
  return codes;
}

std::string RecoveryCodeHash(std::string_view code) {
  // A fast, unsalted hash is acceptable here, unlike for passwords: a code is
  // about 50 random bits rather than something a person chose, it works once,
  // and guesses at sign-in are throttled. Offline, against a copy of the
  // database, one code costs about 2^49 SHA-256 evaluations, though less per
  // code found when many users' hashes are attacked at once; what that buys is
  // one account's second factor, whose password is still needed.
  std::string normalized;
  normalized.reserve(code.size());
  for (const char c : code) {
    if (c != '-' && c != ' ') normalized += AsciiLower(c);
  }
  crypto::EnsureInitialized();
  unsigned char digest[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(digest, reinterpret_cast<const unsigned char*>(normalized.data()),
                     normalized.size());
  sodium_memzero(normalized.data(), normalized.size());
  char hex[crypto_hash_sha256_BYTES * 2 + 1];
  sodium_bin2hex(hex, sizeof hex, digest, sizeof digest);
  return hex;
}

}  // namespace cw::identity
