#include "identity/password.hpp"

#include <sodium.h>

#include <stdexcept>

#include "core/random.hpp"
#include "crypto/seal.hpp"

namespace cw::identity {

std::string HashPassword(std::string_view password) {
  crypto::EnsureInitialized();
  char out[crypto_pwhash_STRBYTES];
  if (crypto_pwhash_str_alg(out, password.data(), password.size(), kPasswordOpsLimit,
                            kPasswordMemLimit, crypto_pwhash_ALG_ARGON2ID13) != 0) {
    throw std::runtime_error("not enough memory to hash a password");
  }
  return out;
}

bool VerifyPassword(const std::string& encoded_hash, std::string_view password) {
  crypto::EnsureInitialized();
  return crypto_pwhash_str_verify(encoded_hash.c_str(), password.data(), password.size()) == 0;
}

bool PasswordNeedsRehash(const std::string& encoded_hash) {
  return crypto_pwhash_str_needs_rehash(encoded_hash.c_str(), kPasswordOpsLimit,
                                        kPasswordMemLimit) != 0;
}

std::string NewOneTimePassword() {
  // 32 symbols: no 0/O, 1/l/I; each takes 5 bits of a random byte.
  static constexpr char kAlphabet[] = "abcdefghjkmnpqrstuvwxyz23456789";
  static_assert(sizeof kAlphabet - 1 == 31);
  std::string out;
  unsigned char random[40];
  std::size_t used = 0;
  core::RandomBytes(random);
  while (out.size() < 24) {
    if (used == sizeof random) {
      core::RandomBytes(random);
      used = 0;
    }
    const unsigned char r = random[used++] & 0x1f;
    if (r >= sizeof kAlphabet - 1) continue;  // rejection keeps it uniform
    if (out.size() % 5 == 4) out += '-';
    out += kAlphabet[r];
  }
  sodium_memzero(random, sizeof random);
  return out;
}

}  // namespace cw::identity
