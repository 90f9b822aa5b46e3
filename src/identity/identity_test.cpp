#include <gtest/gtest.h>

#include <random>
#include <set>

#include "core/error.hpp"
#include "core/time.hpp"
#include "identity/organizations.hpp"
#include "identity/password.hpp"
#include "identity/sessions.hpp"
#include "keys/key_store.hpp"
#include "storage/sqlite/sqlite_database.hpp"
#include "storage/sqlite/test_support.hpp"

namespace cw::identity {
namespace {

// Five groups of four from a-z and 2-9 without the look-alikes i, l, o.
bool HasOneTimePasswordShape(const std::string& otp) {
  if (otp.size() != 24) return false;
  for (std::size_t i = 0; i < otp.size(); ++i) {
    const char c = otp[i];
    if (i % 5 == 4) {
      if (c != '-') return false;
      continue;
    }
    const bool letter = c >= 'a' && c <= 'z' && c != 'i' && c != 'l' && c != 'o';
    if (!letter && !(c >= '2' && c <= '9')) return false;
  }
  return true;
}

TEST(PasswordTest, OneTimePasswordsHaveTheDocumentedShapeAndDoNotRepeat) {
  std::set<std::string> seen;
  for (int i = 0; i < 2000; ++i) {
    const std::string otp = NewOneTimePassword();
    EXPECT_TRUE(HasOneTimePasswordShape(otp)) << otp;
    EXPECT_TRUE(seen.insert(otp).second);
  }
}

TEST(PasswordTest, Argon2idHashCarriesItsParametersAndVerifiesOnlyTheRightPassword) {
  const std::string hash = HashPassword("correct horse battery staple");
  EXPECT_EQ(hash.rfind("$argon2id$v=19$m=65536,t=3,p=1$", 0), 0u) << hash;
  EXPECT_TRUE(VerifyPassword(hash, "correct horse battery staple"));
  EXPECT_FALSE(VerifyPassword(hash, "correct horse battery stapler"));
  EXPECT_FALSE(VerifyPassword(hash, ""));
  EXPECT_NE(HashPassword("same"), HashPassword("same"));  // salted
}

// `length` printable ASCII characters from a fixed seed: long, and not
// guessable, so only the length rule can refuse it.
std::string UnguessableAscii(std::size_t length) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> printable('!', '~');
  std::string out;
  while (out.size() < length) out += static_cast<char>(printable(rng));
  return out;
}

TEST(PasswordTest, PolicyCountsCharactersAndRefusesTheUsername) {
  EXPECT_EQ(PasswordProblem("alice", "correct horse battery"), "");
  EXPECT_NE(PasswordProblem("alice", "short"), "");
  EXPECT_NE(PasswordProblem("alice", "elevenchars"), "");
  EXPECT_NE(PasswordProblem("alice", "Qz7#kW2!pLm"), "");  // eleven, however random
  EXPECT_EQ(PasswordProblem("alice", "Qz7#kW2!pLm9"), "");
  // Twelve characters in more than twelve bytes still count as twelve.
  EXPECT_EQ(PasswordProblem("alice", "éàüöçñøåîêé1"), "");
  EXPECT_NE(PasswordProblem("alice", "éàüöçñøåîê1"), "");
  EXPECT_NE(PasswordProblem("alice", UnguessableAscii(129)), "");
  EXPECT_EQ(PasswordProblem("alice", UnguessableAscii(128)), "");
  // 128 characters in 248 bytes are still 128, and one more is too many.
  std::string accented;
  for (int i = 0; i < 30; ++i) accented += "äçñø";
  EXPECT_EQ(PasswordProblem("alice", accented + "Qz7#kW2!"), "");
  EXPECT_NE(PasswordProblem("alice", accented + "Qz7#kW2!p"), "");
  EXPECT_NE(PasswordProblem("alice", "my name is ALICE ok"), "");
  EXPECT_NE(PasswordProblem("alice", std::string("bad utf8 \xff\xfe pass")), "");
}

class IdentityDbTest : public ::testing::Test {
 protected:
  void SetUp() override {
    storage::SqliteOptions options;
    options.path = dir_.File("identity.db");
    auto db = storage::OpenSqlite(options);
    ASSERT_TRUE(db);
    db_ = std::move(*db);
    kek_ = crypto::LoadMasterKey("", "1 " + std::string(64, 'a'));
    keys_ = std::make_unique<keys::KeyStore>(*db_, kek_, std::chrono::seconds(60));
  }
  void TearDown() override { db_->Close(); }

  NewOrganization MakeOrg(const std::string& slug, const std::string& owner) {
    std::string problem;
    auto org = PrepareOrganization(slug, "Clinic " + slug, owner, &problem);
    EXPECT_TRUE(org) << problem;
    EXPECT_TRUE(db_->Write([&](storage::Transaction& tx) {
      return InsertOrganization(tx, *kek_, *org, "test", core::NowRfc3339());
    }));
    return *org;
  }

  std::int64_t Count(const std::string& sql) {
    std::int64_t n = -1;
    EXPECT_TRUE(db_->Read([&](storage::Transaction& tx) -> Status {
      auto row = tx.QueryOne(sql);
      if (!row) return row.error();
      n = (*row)->Int(0);
      return Ok();
    }));
    return n;
  }

  storage::testing::TempDir dir_;
  std::unique_ptr<storage::Database> db_;
  std::shared_ptr<const crypto::KeyEncryptionKey> kek_;
  std::unique_ptr<keys::KeyStore> keys_;
};

TEST_F(IdentityDbTest, OrganizationIsCreatedWithKeysOwnerAndAuditEventsAtOnce) {
  const NewOrganization org = MakeOrg("north", "Alice");
  EXPECT_EQ(org.owner_username, "alice");
  EXPECT_EQ(Count("SELECT count(*) FROM organizations"), 1);
  EXPECT_EQ(Count("SELECT count(*) FROM org_keys"), 2);
  EXPECT_EQ(Count("SELECT count(*) FROM users WHERE password_temporary = 1"), 1);
  EXPECT_EQ(Count("SELECT count(*) FROM audit_events"), 3);
  // The one-time password is stored only as its hash.
  EXPECT_EQ(Count("SELECT count(*) FROM users WHERE instr(password_hash, '" +
                  org.one_time_password + "') > 0"),
            0);

  // A second organization with the same slug changes nothing.
  std::string problem;
  auto again = PrepareOrganization("north", "Other", "bob", &problem);
  ASSERT_TRUE(again);
  auto written = db_->Write([&](storage::Transaction& tx) {
    return InsertOrganization(tx, *kek_, *again, "test", core::NowRfc3339());
  });
  ASSERT_FALSE(written);
  EXPECT_EQ(written.error(), core::Error::kConflict);
  EXPECT_EQ(Count("SELECT count(*) FROM organizations"), 1);
  EXPECT_EQ(Count("SELECT count(*) FROM audit_events"), 3);
}

TEST_F(IdentityDbTest, BadNamesAreRefusedBeforeAnythingIsWritten) {
  std::string problem;
  for (const std::string& slug :
       std::vector<std::string>{"", "a", "Bad", "has space", "-lead", "trail-", "../x", "x;drop",
                                std::string(64, 'a')}) {
    EXPECT_FALSE(PrepareOrganization(slug, "Name", "owner", &problem)) << slug;
  }
  for (std::string name : {std::string(), std::string(201, 'n'), std::string("tab\there"),
                           std::string("bad \xff utf8")}) {
    EXPECT_FALSE(PrepareOrganization("good", name, "owner", &problem));
  }
  for (const std::string& user :
       std::vector<std::string>{"", "has space", "semi;colon", std::string(65, 'u'), "ünï"}) {
    EXPECT_FALSE(PrepareOrganization("good", "Name", user, &problem)) << user;
  }
  EXPECT_TRUE(PrepareOrganization("good-1", "Ünïcode Clinic", "first.last@x", &problem));
}

TEST_F(IdentityDbTest, SignInFailuresAreAlikeAndSessionsEndAsDocumented) {
  const NewOrganization org = MakeOrg("north", "alice");
  MakeOrg("south", "bob");
  // Without required MFA, so the password alone opens a full session
  // (second factors are covered in access_control_test.cpp).
  ASSERT_TRUE(db_->Write([&](storage::Transaction& tx) -> Status {
    auto r = tx.Execute("UPDATE organizations SET mfa_required = 0 WHERE id = ?", {org.org_id});
    if (!r) return r.error();
    return Ok();
  }));
  // Throttling is covered in access_control_test.cpp: here no delays.
  SessionOptions options;
  options.throttle.free_failures = 100;
  Sessions sessions(*db_, *keys_, options);
  const RequestOrigin origin{"req1", "127.0.0.1"};
  Refusal refusal;

  for (auto [o, u, p] : {std::tuple{"north", "alice", "wrong password"},
                         std::tuple{"nowhere", "alice", org.one_time_password.c_str()},
                         std::tuple{"north", "nobody", org.one_time_password.c_str()},
                         std::tuple{"south", "alice", org.one_time_password.c_str()}}) {
    auto s = sessions.Login(o, u, p, origin, &refusal);
    ASSERT_FALSE(s);
    EXPECT_EQ(s.error(), core::Error::kUnauthenticated);
  }
  EXPECT_EQ(Count("SELECT count(*) FROM audit_events WHERE action = 'auth.login_failed' "
                  "AND outcome = 'failure'"),
            4);

  // The one-time password opens a session that may only change it.
  auto first = sessions.Login("north", "ALICE", org.one_time_password, origin, &refusal);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->user.scope, SessionScope::kPasswordChange);
  auto who = sessions.Authenticate(first->token);
  ASSERT_TRUE(who);
  EXPECT_EQ(who->user_id, org.owner_id);
  EXPECT_EQ(Count("SELECT count(*) FROM sessions WHERE instr(hex(token_hash), '" +
                  first->token.substr(4) + "') > 0"),
            0);  // the token is not stored, not even in hex

  auto refused =
      sessions.ChangePassword(*who, org.one_time_password, "alice wonderland x", origin, &refusal);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error(), core::Error::kInvalidArgument);
  EXPECT_NE(refusal.problem, "");
  auto wrong = sessions.ChangePassword(*who, "not it", "a perfectly fine one", origin, &refusal);
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error(), core::Error::kUnauthenticated);
  ASSERT_TRUE(sessions.ChangePassword(*who, org.one_time_password, "a perfectly fine one", origin,
                                      &refusal));
  EXPECT_FALSE(sessions.Authenticate(first->token));  // every session ended
  EXPECT_FALSE(sessions.Login("north", "alice", org.one_time_password, origin, &refusal));

  auto full = sessions.Login("north", "alice", "a perfectly fine one", origin, &refusal);
  ASSERT_TRUE(full);
  EXPECT_EQ(full->user.scope, SessionScope::kFull);
  ASSERT_TRUE(sessions.Authenticate(full->token));

  // Idle for longer than the idle timeout: over.
  ASSERT_TRUE(db_->Write([&](storage::Transaction& tx) -> Status {
    auto r = tx.Execute("UPDATE sessions SET last_used_at = ? WHERE id = ?",
                        std::vector<storage::Value>{
                            core::FormatRfc3339(std::chrono::system_clock::now() -
                                                kDefaultIdleTimeout - std::chrono::seconds(1)),
                            full->user.session_id});
    if (!r) return r.error();
    return Ok();
  }));
  EXPECT_FALSE(sessions.Authenticate(full->token));

  // Past its absolute lifetime: over, however recently used.
  auto later = sessions.Login("north", "alice", "a perfectly fine one", origin, &refusal);
  ASSERT_TRUE(later);
  ASSERT_TRUE(db_->Write([&](storage::Transaction& tx) -> Status {
    auto r = tx.Execute("UPDATE sessions SET expires_at = ? WHERE id = ?",
                        std::vector<storage::Value>{core::NowRfc3339(), later->user.session_id});
    if (!r) return r.error();
    return Ok();
  }));
  EXPECT_FALSE(sessions.Authenticate(later->token));

  // Logout ends the session.
  auto last = sessions.Login("north", "alice", "a perfectly fine one", origin, &refusal);
  ASSERT_TRUE(last);
  ASSERT_TRUE(sessions.Logout(last->user, origin));
  EXPECT_FALSE(sessions.Authenticate(last->token));
  for (const std::string& bad :
       std::vector<std::string>{"", "cwt_", "cwt_" + std::string(64, 'z'), std::string(68, 'a')}) {
    EXPECT_FALSE(sessions.Authenticate(bad));
  }
}

}  // namespace
}  // namespace cw::identity
