#include "identity/password_strength.hpp"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <thread>
#include <vector>

namespace cw::identity {
namespace {

// What the caller passes for user "jsmith" (John Smith) of Lakeside Clinic.
const std::vector<std::string> kWords = {"jsmith", "lakeside-clinic", "Lakeside Clinic",
                                         "John Smith"};

TEST(PasswordStrengthTest, CommonPasswordsOfTwelveOrMoreCharactersAreRefused) {
  for (const char* password : {"password1234", "qwertyuiop123", "123456789012", "iloveyou1234",
                               "passwordpassword", "aaaaaaaaaaaa", "Password1234!"}) {
    EXPECT_NE(GuessabilityProblem(password, kWords), "") << password;
    EXPECT_LT(PasswordEntropyBits(password, kWords), kMinimumGuessBits) << password;
  }
}

TEST(PasswordStrengthTest, NamesOfTheUserOrganizationOrProductWithDigitsAreRefused) {
  for (const char* password :
       {"lakesideclinic1", "jsmith2024jsmith", "LakesideClinic2024", "lakeside-clinic-2024",
        "JohnSmith1980!", "carewire2024!", "Carewire12345"}) {
    const std::string problem = GuessabilityProblem(password, kWords);
    EXPECT_NE(problem, "") << password;
    EXPECT_NE(problem.find("username"), std::string::npos) << password << ": " << problem;
  }
  // Without the organization's name as a word this one would pass.
  EXPECT_GE(PasswordEntropyBits("LakesideClinic2024", {}), kMinimumGuessBits);
  EXPECT_EQ(GuessabilityProblem("LakesideClinic2024", {"jsmith"}), "");
}

TEST(PasswordStrengthTest, GoodPassphrasesAreAccepted) {
  for (const char* password :
       {"correct horse battery staple", "Tr0ub4dor&3-mauve-ostrich", "blue sky morning"}) {
    EXPECT_EQ(GuessabilityProblem(password, kWords), "") << password;
  }
  std::mt19937 rng(42);
  std::uniform_int_distribution<int> printable('!', '~');
  for (int i = 0; i < 100; ++i) {
    std::string password;
    for (int j = 0; j < 16; ++j) password += static_cast<char>(printable(rng));
    EXPECT_EQ(GuessabilityProblem(password, kWords), "") << password;
  }
}

TEST(PasswordStrengthTest, NonAsciiPassphrasesAreAccepted) {
  EXPECT_EQ(GuessabilityProblem("grüne Äpfel schmecken süß", kWords), "");
  EXPECT_EQ(GuessabilityProblem("Müller räumt 7 Zimmer auf", {"mmüller", "Praxis Müller"}), "");
}

TEST(PasswordStrengthTest, TwoCommonWordsFallBelowTheBar) {
  EXPECT_NE(GuessabilityProblem("summer holidays", {}), "");
  EXPECT_LT(PasswordEntropyBits("summer holidays", {}), kMinimumGuessBits);
}

TEST(PasswordStrengthTest, TheProblemNeverEchoesThePasswordOrTheWords) {
  for (const char* password :
       {"password1234", "lakesideclinic1", "jsmith2024jsmith", "qwertyuiop123", "Carewire12345"}) {
    const std::string problem = GuessabilityProblem(password, kWords);
    ASSERT_NE(problem, "") << password;
    EXPECT_EQ(problem.find(password), std::string::npos) << problem;
    for (const std::string& word : kWords) {
      EXPECT_EQ(problem.find(word), std::string::npos) << problem;
    }
    EXPECT_EQ(problem.find("Lakeside"), std::string::npos) << problem;
    EXPECT_EQ(problem.find("jsmith"), std::string::npos) << problem;
  }
}

TEST(PasswordStrengthTest, APasswordIsJudgedByWhatComesBeforeItsFirstNul) {
  const std::string weak_then_nul = std::string("password1234") + '\0' + "x7#Qp!m2Lz9@";
  EXPECT_NE(GuessabilityProblem(weak_then_nul, kWords), "");
  EXPECT_NE(GuessabilityProblem(std::string(1, '\0') + "correct horse battery staple", kWords), "");
  EXPECT_EQ(GuessabilityProblem(std::string("correct horse battery staple") + '\0' + "x", kWords),
            "");
}

TEST(PasswordStrengthTest, ConcurrentCallsAgreeWithOneThread) {
  const std::vector<std::string> passwords = {"password1234", "correct horse battery staple",
                                              "lakesideclinic1", "grüne Äpfel schmecken süß"};
  std::vector<double> expected;
  for (const std::string& p : passwords) expected.push_back(PasswordEntropyBits(p, kWords));
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        const std::size_t k = static_cast<std::size_t>(i) % passwords.size();
        if (PasswordEntropyBits(passwords[k], kWords) != expected[k]) ++mismatches[t];
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (int t = 0; t < 4; ++t) EXPECT_EQ(mismatches[t], 0) << t;
}

}  // namespace
}  // namespace cw::identity
