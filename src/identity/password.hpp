#pragma once

// Password hashing: Argon2id through libsodium. The encoded hash carries its
// own parameters, so they can be raised later while old hashes still verify
// (and are re-hashed at the next sign-in).

#include <string>
#include <string_view>

namespace cw::identity {

// The cost every new hash is made with: 3 passes over 64 MiB, above OWASP's
// Argon2id floor (m=19 MiB, t=2, p=1).
inline constexpr unsigned long long kPasswordOpsLimit = 3;
inline constexpr std::size_t kPasswordMemLimit = 64u << 20;

// The encoded Argon2id hash of `password`. Throws std::runtime_error only when
// the machine cannot provide the memory.
std::string HashPassword(std::string_view password);

bool VerifyPassword(const std::string& encoded_hash, std::string_view password);

// True when `encoded_hash` was made with weaker parameters than today's (or
// another algorithm): the next successful sign-in stores a fresh hash.
bool PasswordNeedsRehash(const std::string& encoded_hash);

// A one-time password for a new account: 20 characters from an alphabet
// without look-alikes (about 100 bits), in groups of four for reading aloud.
std::string NewOneTimePassword();

}  // namespace cw::identity
