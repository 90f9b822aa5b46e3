#pragma once

// How guessable a new password is (NIST SP 800-63B 5.1.1.2: refuse values
// known to be commonly used, expected or compromised, without composition
// rules).
//
// The estimate is zxcvbn's (Debian's libzxcvbn, zxcvbn-c): it finds common
// passwords, words, names, keyboard walks, sequences, repeats, dates and
// l33t spellings and prices each part as an attacker who tries those first
// would. The caller's words (the username, the organization's slug and name,
// the user's display name) and the product's name ("carewire") count as the
// cheapest words of all.
//
// These checks come after PasswordProblem (sessions.hpp), which enforces the
// length and the username rule with its own, more specific, reasons.
//
// Thread-safe with no set-up: Debian's build embeds its dictionaries as
// constant data and keeps no other state. Takes well under 10 ms for 128
// code points.

#include <string>
#include <string_view>
#include <vector>

namespace cw::identity {

// New passwords estimated below 10^10 guesses (log2 10^10 = 33.2) are
// refused; see password_strength.cpp for the reasoning.
inline constexpr double kMinimumGuessBits = 33.2;

// Estimates how guessable `password` is, with `user_words` as extra
// dictionary words. Returns an empty string when acceptable, else a fixed
// human reason that never echoes the password or the words.
//
// zxcvbn-c reads a C string, so a password is judged by what comes before
// its first NUL byte (one that starts with NUL is refused). Input is UTF-8 of
// at most 128 code points; its length and encoding are checked elsewhere.
std::string GuessabilityProblem(std::string_view password,
                                const std::vector<std::string>& user_words);

// zxcvbn's estimate of log2(guesses), for tests and figures.
double PasswordEntropyBits(std::string_view password, const std::vector<std::string>& user_words);

}  // namespace cw::identity
