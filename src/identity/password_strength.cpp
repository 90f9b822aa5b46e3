#include "identity/password_strength.hpp"

#include <zxcvbn.h>

#include <memory>
#include <set>
#include <utility>

// Debian's libzxcvbn is built with its dictionaries compiled in, so
// ZxcvbnInit does nothing. A build that reads them from a file would need
// ZxcvbnInit once before the first match, and a file to ship.
#ifdef USE_DICT_FILE
#error "password_strength.cpp expects zxcvbn-c with embedded dictionaries"
#endif

namespace cw::identity {
namespace {

constexpr std::string_view kProductName = "carewire";

// A word shorter than this matches inside almost any password and says
// little about it.
constexpr std::size_t kShortestWord = 3;

bool IsWordByte(char c) {
  const auto u = static_cast<unsigned char>(c);
  return (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') || (u >= '0' && u <= '9') || u >= 0x80;
}

// Each word as given, its runs of letters and digits ("Lakeside", "Clinic")
// and those runs joined ("LakesideClinic"), as people write a name into a
// password. Non-ASCII bytes count as letters, so "Müller" stays whole. Words
// longer than the password cannot occur in it and are left out.
std::set<std::string> Dictionary(std::string_view password,
                                 const std::vector<std::string>& user_words) {
  std::set<std::string> out;
  const auto add = [&](std::string word) {
    if (word.size() >= kShortestWord && word.size() <= password.size()) out.insert(std::move(word));
  };
  const auto expand = [&](std::string_view word) {
    add(std::string(word));
    std::string joined;
    std::string run;
    for (const char c : word) {
      if (IsWordByte(c)) {
        run += c;
        continue;
      }
      joined += run;
      add(std::move(run));
      run.clear();
    }
    joined += run;
    add(std::move(run));
    add(std::move(joined));
  };
  for (const std::string& word : user_words) expand(word);
  expand(kProductName);
  return out;
}

struct Estimate {
  double bits = 0;
  bool uses_user_words = false;
};

Estimate Measure(std::string_view password, const std::vector<std::string>& user_words) {
  // A copy ends in NUL; an embedded NUL ends the string zxcvbn-c sees.
  const std::string text(password);
  const std::set<std::string> dictionary = Dictionary(text.c_str(), user_words);
  std::vector<const char*> words;
  words.reserve(dictionary.size() + 1);
  for (const std::string& word : dictionary) words.push_back(word.c_str());
  words.push_back(nullptr);

  ZxcMatch_t* info = nullptr;
  Estimate estimate;
  estimate.bits = ZxcvbnMatch(text.c_str(), words.data(), &info);
  const std::unique_ptr<ZxcMatch_t, decltype(&ZxcvbnFreeInfo)> owned(info, &ZxcvbnFreeInfo);
  for (const ZxcMatch_t* match = info; match != nullptr; match = match->Next) {
    const int type = static_cast<int>(match->Type) & ~static_cast<int>(MULTIPLE_MATCH);
    if (type == USER_MATCH || type == USER_LEET_MATCH) estimate.uses_user_words = true;
  }
  return estimate;
}

}  // namespace

// Why 10^10 guesses (kMinimumGuessBits):
// - It is zxcvbn's own top band, "strong protection from an offline
//   slow-hash attack". Online guessing is held far lower by the sign-in
//   throttle (100 failures an hour per account, throttle.hpp); the bar is for
//   a stolen database.
// - Each guess against our hashes costs 64 MiB and 3 passes of Argon2id
//   (password.hpp; about 0.14 s on one core of the development machine), so
//   10^10 guesses is some 40 core-years per password, each salted apart.
// - It refuses what NIST asks us to refuse without refusing ordinary
//   passphrases: two common words ("summer holidays", about 25 bits) fall
//   below it, three ("blue sky morning", about 44) pass, and so did each of
//   2,000 random 12-character strings from the one-time password alphabet
//   (the lowest rated about 36 bits).
std::string GuessabilityProblem(std::string_view password,
                                const std::vector<std::string>& user_words) {
  const Estimate estimate = Measure(password, user_words);
  if (estimate.bits >= kMinimumGuessBits) return "";
  if (estimate.uses_user_words) {
    return "the new password is too easy to guess: it is built on a name, the username, "
           "the organization or this service";
  }
  return "the new password is too easy to guess: avoid common passwords, words with a few "
         "digits added, repeats and keyboard patterns";
}

double PasswordEntropyBits(std::string_view password, const std::vector<std::string>& user_words) {
  return Measure(password, user_words).bits;
}

}  // namespace cw::identity
