#pragma once

// The second factor: time-based one-time passwords and recovery codes.
//
// A user enrolls by scanning a QR code of an otpauth:// URI into an
// authenticator app; from then on sign-in asks for the app's current 6-digit
// code (RFC 6238: HMAC-SHA1 over 30-second steps since the Unix epoch). A
// code is good for its own step and one step either side, to allow for clock
// drift and slow typing, and only once: the caller stores the step MatchTotp
// returns, in the same transaction that accepts the sign-in, and passes it
// back as `last_used_step` next time. With three codes in a million accepted
// per guess, the sign-in throttle is what keeps guessing hopeless.
//
// Recovery codes stand in for a lost phone. Each is used once; only its
// SHA-256 is stored, as with session tokens.
//
// The TOTP secret is a credential: keep it sealed at rest and out of logs.
// The enrollment URI and its QR code carry it in the clear, so they are shown
// once and never stored or cached.
//
// Every function is safe to call from any thread.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace cw::identity {

// RFC 6238 time-based one-time passwords (RFC 4226 HOTP over 30-second steps).
enum class TotpAlgorithm { kSha1, kSha256, kSha512 };
inline constexpr int kTotpDigits = 6;
inline constexpr std::int64_t kTotpStepSeconds = 30;
inline constexpr std::size_t kTotpSecretBytes = 20;  // 160 bits, RFC 4226's recommendation

// A new random secret of kTotpSecretBytes (core::RandomBytes).
std::vector<unsigned char> NewTotpSecret();

// The time step of a Unix time: floor(unix_seconds / 30), rounding toward
// minus infinity for times before the epoch.
std::int64_t TotpStep(std::int64_t unix_seconds);

// The code for one step, zero-padded to `digits`. Enrolled users only ever
// get kTotpDigits and SHA-1 (what every authenticator app supports); the
// other choices exist for RFC 6238's test vectors. Throws
// std::invalid_argument for an empty secret, a negative step or `digits`
// outside 6..8.
std::string TotpCode(std::span<const unsigned char> secret, std::int64_t step,
                     int digits = kTotpDigits, TotpAlgorithm algorithm = TotpAlgorithm::kSha1);

// Checks a submitted 6-digit SHA-1 code against steps now_step-1 .. now_step+1
// (±1 step of drift), accepting only a step strictly greater than
// `last_used_step` (each code accepted once; pass a negative value when none
// was used). Returns the matched step, or nullopt. Anything that is not
// exactly 6 ASCII digits is nullopt, as is everything for an empty secret or a
// negative now_step. The comparison takes the same time whichever step, if
// any, matches.
std::optional<std::int64_t> MatchTotp(std::span<const unsigned char> secret, std::string_view code,
                                      std::int64_t now_step, std::int64_t last_used_step);

// RFC 4648 base32, upper case, no padding (what authenticator apps expect).
std::string Base32Encode(std::span<const unsigned char> bytes);

// Accepts upper or lower case, ignores spaces and '=' padding; nullopt on any
// other character, on '=' before the last letter, and on a length no encoding
// produces. Unused trailing bits are not checked, so "MZ" decodes like "MY".
std::optional<std::vector<unsigned char>> Base32Decode(std::string_view text);

// otpauth://totp/ISSUER:ACCOUNT?secret=...&issuer=ISSUER&algorithm=SHA1&digits=6&period=30
// with every part percent-encoded (RFC 3986 unreserved characters kept, so a
// base32 secret passes unchanged). The app shows ISSUER and ACCOUNT to the
// user: pass the clinic's name and the username, never PHI. `issuer` must not
// be empty.
std::string OtpAuthUri(std::string_view issuer, std::string_view account,
                       std::string_view secret_base32);

// The QR code of `text` as a self-contained SVG document: black modules on
// white, a 4-module quiet zone, error correction level M, 4 pixels a module by
// default (the viewBox lets CSS scale it). Made with libqrencode. Throws
// std::runtime_error when libqrencode fails: empty text, or more than a QR
// code holds (2,331 bytes at level M).
std::string QrCodeSvg(std::string_view text);

// Recovery codes: kRecoveryCodeCount distinct single-use codes, each 10
// characters from a 31-letter alphabet without look-alikes (no 0/o, 1/l/i),
// formatted "xxxxx-xxxxx": about 50 bits each.
inline constexpr int kRecoveryCodeCount = 10;
std::vector<std::string> NewRecoveryCodes();

// The stored form of a recovery code: lower-case hex SHA-256 of the
// normalized code (ASCII lower case, hyphens and spaces removed), so a code
// typed in capitals or without its hyphen still matches.
std::string RecoveryCodeHash(std::string_view code);

}  // namespace cw::identity
