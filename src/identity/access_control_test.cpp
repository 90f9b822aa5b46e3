// Sessions, second factors, throttling, staff, roles and emergency access
// against a real SQLite database, with time moved by hand.
//
// Argon2id costs about a tenth of a second per password operation, so most
// users here are inserted directly with a hash made once per run; the flows
// that start from a one-time password go through the real calls.

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"
#include "core/time.hpp"
#include "identity/break_glass.hpp"
#include "identity/org_settings.hpp"
#include "identity/organizations.hpp"
#include "identity/password.hpp"
#include "identity/permissions.hpp"
#include "identity/sessions.hpp"
#include "identity/totp.hpp"
#include "identity/users.hpp"
#include "keys/key_store.hpp"
#include "storage/sqlite/sqlite_database.hpp"
#include "storage/sqlite/test_support.hpp"

namespace cw::identity {
namespace {

using namespace std::chrono_literals;
using TimePoint = std::chrono::system_clock::time_point;

// 2030-01-01T00:00:00Z: whole seconds (timestamps are stored to the
// microsecond) and the start of a TOTP step.
constexpr TimePoint kStart{std::chrono::seconds(1'893'456'000)};

// The password of every user inserted directly.
constexpr std::string_view kPassword = "quiet otter paints 41 maples";

const std::string& KnownHash() {
  static const std::string hash = HashPassword(kPassword);
  return hash;
}

// The value of a setup step that must succeed; a failure ends the test.
template <class T>
T Must(Result<T> r, const char* what) {
  if (!r) throw std::runtime_error(std::string(what) + ": " + r.error().message());
  return std::move(*r);
}

struct SignedIn {
  std::string token;
  Principal user;  // as Authenticate makes it, with permissions
};

class AccessControlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    storage::SqliteOptions options;
    options.path = dir_.File("access.db");
    db_ = Must(storage::OpenSqlite(options), "open");
    kek_ = crypto::LoadMasterKey("", "1 " + std::string(64, 'a'));
    keys_ = std::make_unique<keys::KeyStore>(*db_, kek_, std::chrono::seconds(60));
    // Generous: only the throttle test meets the throttle.
    sessions_ = std::make_unique<Sessions>(
        *db_, *keys_, SessionOptions{.throttle = {.free_failures = 50}, .clock = Clock()});
  }
  void TearDown() override { db_->Close(); }

  core::Clock Clock() {
    return [this] { return now_; };
  }
  std::string Now() const { return core::FormatRfc3339(now_); }
  std::int64_t Step() const {
    return TotpStep(
        std::chrono::duration_cast<std::chrono::seconds>(now_.time_since_epoch()).count());
  }

  void Exec(const std::string& sql, const std::vector<storage::Value>& params) {
    ASSERT_TRUE(db_->Write([&](storage::Transaction& tx) -> Status {
      auto r = tx.Execute(sql, params);
      if (!r) return r.error();
      return Ok();
    }));
  }

  std::int64_t Count(const std::string& sql, const std::vector<storage::Value>& params = {}) {
    std::int64_t n = -1;
    EXPECT_TRUE(db_->Read([&](storage::Transaction& tx) -> Status {
      auto row = tx.QueryOne(sql, params);
      if (!row) return row.error();
      n = (*row)->Int(0);
      return Ok();
    }));
    return n;
  }

  // Audit events with this action and outcome, about `target` when given.
  std::int64_t Events(const std::string& action, const std::string& outcome = "success",
                      const std::string& target = "") {
    if (target.empty()) {
      return Count("SELECT count(*) FROM audit_events WHERE action = ? AND outcome = ?",
                   {action, outcome});
    }
    return Count(
        "SELECT count(*) FROM audit_events WHERE action = ? AND outcome = ? AND target_id = ?",
        {action, outcome, target});
  }

  // An organization "org_<slug>" whose owner "owner" has kPassword (not a
  // one-time password) and no second factor.
  std::string AddOrg(const std::string& slug, bool mfa_required) {
    NewOrganization org;
    org.org_id = "org_" + slug;
    org.slug = slug;
    org.name = "Clinic " + slug;
    org.owner_id = OwnerId(slug);
    org.owner_username = "owner";
    org.password_hash = KnownHash();
    EXPECT_TRUE(db_->Write([&](storage::Transaction& tx) {
      return InsertOrganization(tx, *kek_, org, "test", Now());
    }));
    Exec("UPDATE users SET password_temporary = 0 WHERE id = ?", {org.owner_id});
    Exec("UPDATE organizations SET mfa_required = ? WHERE id = ?",
         {std::int64_t{mfa_required}, org.org_id});
    return org.org_id;
  }
  static std::string OwnerId(const std::string& slug) { return "usr_" + slug + "_owner"; }

  // A user with kPassword, inserted directly; returns the id.
  std::string AddUser(const std::string& slug, const std::string& username,
                      const std::string& roles_json, const std::string& status = "active",
                      std::optional<TimePoint> created = std::nullopt) {
    const std::string id = "usr_" + slug + "_" + username;
    Exec(
        "INSERT INTO users (id, org_id, username, display_name, roles, password_hash, "
        "password_temporary, status, created_at) VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?)",
        {id, "org_" + slug, username, "User " + username, roles_json, KnownHash(), status,
         core::FormatRfc3339(created.value_or(now_))});
    return id;
  }

  // A password sign-in that must open a full session.
  SignedIn SignInAs(const std::string& slug, const std::string& username,
                    std::string_view password = kPassword) {
    Refusal refusal;
    SignIn signed_in = Must(sessions_->Login(slug, username, password, origin_, &refusal), "login");
    if (signed_in.mfa_challenge || signed_in.user.scope != SessionScope::kFull) {
      throw std::runtime_error("login did not open a full session");
    }
    return {signed_in.token, Must(sessions_->Authenticate(signed_in.token), "authenticate")};
  }

  // Authenticate, then wait for the idle clock's move it may have queued.
  Result<Principal> Use(const std::string& token) {
    auto p = sessions_->Authenticate(token);
    EXPECT_TRUE(db_->Write([](storage::Transaction&) -> Status { return Ok(); }));
    return p;
  }

  struct Enrolled {
    std::string user_id;
    std::string token;  // the enrolment session, full since the confirmation
    std::vector<unsigned char> secret;
    std::vector<std::string> recovery_codes;
    std::int64_t confirmed_step = 0;
  };

  // A nurse of an organization requiring MFA, through enrolment; confirmed
  // with the code of the current step.
  Enrolled Enrol(const std::string& slug, const std::string& username) {
    Enrolled out;
    out.user_id = AddUser(slug, username, R"(["nurse"])");
    Refusal refusal;
    SignIn s = Must(sessions_->Login(slug, username, kPassword, origin_, &refusal), "login");
    if (s.mfa_challenge || s.user.scope != SessionScope::kMfaEnrollment) {
      throw std::runtime_error("login did not open an enrolment session");
    }
    out.token = s.token;
    const Principal p = Must(sessions_->Authenticate(s.token), "authenticate");
    const TotpEnrollment totp =
        Must(sessions_->BeginTotp(p, kPassword, origin_, &refusal), "begin");
    out.secret = Base32Decode(totp.secret_base32).value();
    out.confirmed_step = Step();
    out.recovery_codes =
        Must(sessions_->ConfirmTotp(p, TotpCode(out.secret, Step()), origin_, &refusal), "confirm");
    return out;
  }

  // The MFA challenge token of a correct password.
  std::string Challenge(const std::string& slug, const std::string& username) {
    Refusal refusal;
    SignIn s = Must(sessions_->Login(slug, username, kPassword, origin_, &refusal), "login");
    if (!s.mfa_challenge) throw std::runtime_error("login did not ask for a second factor");
    return s.token;
  }

  Result<SignIn> Complete(const std::string& challenge, const std::string& code) {
    Refusal refusal;
    return sessions_->CompleteMfa(challenge, code, origin_, &refusal);
  }

  storage::testing::TempDir dir_;
  std::unique_ptr<storage::Database> db_;
  std::shared_ptr<const crypto::KeyEncryptionKey> kek_;
  std::unique_ptr<keys::KeyStore> keys_;
  TimePoint now_ = kStart;
  std::unique_ptr<Sessions> sessions_;
  const RequestOrigin origin_{"req-test", "192.0.2.1", "gtest"};
};

// A 6-digit code that is none of the codes for steps step-1 .. step+1.
std::string CodeOutsideWindow(const std::vector<unsigned char>& secret, std::int64_t step) {
  const std::set<std::string> window = {TotpCode(secret, step - 1), TotpCode(secret, step),
                                        TotpCode(secret, step + 1)};
  for (int i = 0;; ++i) {
    std::string code = std::to_string(i);
    code.insert(0, 6 - code.size(), '0');
    if (!window.contains(code)) return code;
  }
}

// --- Session lifetime ---------------------------------------------------------

TEST_F(AccessControlTest, ASessionEndsAfterFifteenMinutesWithoutUse) {
  AddOrg("north", false);
  const SignedIn s = SignInAs("north", "owner");
  EXPECT_TRUE(Use(s.token));
  now_ += 14min;
  EXPECT_TRUE(Use(s.token));  // moves the idle clock
  now_ += 14min;
  EXPECT_TRUE(Use(s.token));  // 28 minutes after sign-in, 14 after the last use
  now_ += 15min;
  auto idle = Use(s.token);
  ASSERT_FALSE(idle);
  EXPECT_EQ(idle.error(), core::Error::kUnauthenticated);
}

TEST_F(AccessControlTest, AChangedIdleTimeoutAppliesToSessionsAlreadyOpen) {
  AddOrg("north", false);
  const SignedIn s = SignInAs("north", "owner");
  OrgSettingsStore settings(*db_, Clock());
  std::string problem;
  ASSERT_TRUE(settings.Update(s.user, {.idle_timeout_minutes = 30}, origin_, &problem));
  now_ += 20min;
  EXPECT_TRUE(Use(s.token));  // past the default 15, within the new 30
  ASSERT_TRUE(settings.Update(s.user, {.idle_timeout_minutes = 5}, origin_, &problem));
  now_ += 4min;
  EXPECT_TRUE(Use(s.token));
  now_ += 5min;
  EXPECT_FALSE(Use(s.token));
  EXPECT_EQ(Events("org.settings_changed"), 2);
  // Out of range: refused, nothing changes.
  EXPECT_FALSE(settings.Update(s.user, {.idle_timeout_minutes = 0}, origin_, &problem));
  EXPECT_NE(problem, "");
  EXPECT_EQ(Must(settings.Get(s.user), "get").settings.idle_timeout_minutes, 5);
}

TEST_F(AccessControlTest, ASessionInConstantUseEndsAfterTheAbsoluteLifetime) {
  AddOrg("north", false);
  const SignedIn s = SignInAs("north", "owner");
  EXPECT_EQ(s.user.expires_at, core::FormatRfc3339(kStart + kDefaultAbsoluteLifetime));
  for (int i = 1; i < 72; ++i) {  // every ten minutes up to 11 h 50
    now_ += 10min;
    ASSERT_TRUE(Use(s.token)) << i * 10 << " minutes";
  }
  now_ += 10min;
  EXPECT_FALSE(Use(s.token));  // 12 h
}

TEST_F(AccessControlTest, TheOrganizationsAbsoluteTimeoutIsHonoured) {
  AddOrg("north", false);
  const SignedIn open = SignInAs("north", "owner");
  OrgSettingsStore settings(*db_, Clock());
  std::string problem;
  ASSERT_TRUE(settings.Update(open.user, {.absolute_timeout_hours = 2}, origin_, &problem));
  // A session opened from now on is stamped with the new lifetime...
  const SignedIn fresh = SignInAs("north", "owner");
  EXPECT_EQ(fresh.user.expires_at, core::FormatRfc3339(now_ + 2h));
  // ...and one opened before is held to it too.
  for (int i = 1; i < 12; ++i) {
    now_ += 10min;
    ASSERT_TRUE(Use(open.token)) << i * 10 << " minutes";
    ASSERT_TRUE(Use(fresh.token)) << i * 10 << " minutes";
  }
  now_ += 10min;
  EXPECT_FALSE(Use(open.token));
  EXPECT_FALSE(Use(fresh.token));
}

// --- Second factors -----------------------------------------------------------

TEST_F(AccessControlTest, RequiredMfaIsEnrolledAfterThePasswordChangeAndUpgradesTheSession) {
  AddOrg("north", false);
  const SignedIn owner = SignInAs("north", "owner");
  Users users(*db_, Clock());
  std::string problem;
  const CreatedUser nora =
      Must(users.Create(owner.user, "Nora", "Nora Nurse", {"nurse"}, origin_, &problem), "create");
  EXPECT_EQ(nora.user.username, "nora");
  EXPECT_TRUE(nora.user.password_change_required);
  EXPECT_EQ(nora.one_time_password.size(), 24u);
  OrgSettingsStore settings(*db_, Clock());
  ASSERT_TRUE(settings.Update(owner.user, {.mfa_required = true}, origin_, &problem));

  // The one-time password: a session that may only set a new password.
  Refusal refusal;
  const SignIn first =
      Must(sessions_->Login("north", "nora", nora.one_time_password, origin_, &refusal), "otp");
  EXPECT_EQ(first.user.scope, SessionScope::kPasswordChange);
  const Principal changing = Must(sessions_->Authenticate(first.token), "authenticate");
  EXPECT_TRUE(changing.permissions.none());
  const std::string password = "lantern brook cedar 1987 ferns";
  ASSERT_TRUE(
      sessions_->ChangePassword(changing, nora.one_time_password, password, origin_, &refusal));

  // Then a session that may only enrol a second factor.
  const SignIn enrol = Must(sessions_->Login("north", "nora", password, origin_, &refusal), "pw");
  EXPECT_FALSE(enrol.mfa_challenge);
  EXPECT_EQ(enrol.user.scope, SessionScope::kMfaEnrollment);
  const Principal enrolling = Must(sessions_->Authenticate(enrol.token), "authenticate");
  EXPECT_EQ(enrolling.scope, SessionScope::kMfaEnrollment);
  EXPECT_TRUE(enrolling.permissions.none());
  EXPECT_FALSE(enrolling.mfa_enabled);

  auto wrong_password = sessions_->BeginTotp(enrolling, "not the password", origin_, &refusal);
  ASSERT_FALSE(wrong_password);
  EXPECT_EQ(wrong_password.error(), core::Error::kUnauthenticated);
  const TotpEnrollment totp =
      Must(sessions_->BeginTotp(enrolling, password, origin_, &refusal), "begin");
  EXPECT_NE(totp.otpauth_uri.find(totp.secret_base32), std::string::npos);
  const std::vector<unsigned char> secret = Base32Decode(totp.secret_base32).value();
  EXPECT_EQ(secret.size(), kTotpSecretBytes);

  auto wrong =
      sessions_->ConfirmTotp(enrolling, CodeOutsideWindow(secret, Step()), origin_, &refusal);
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error(), core::Error::kUnauthenticated);
  EXPECT_EQ(Must(sessions_->Authenticate(enrol.token), "still").scope,
            SessionScope::kMfaEnrollment);

  const std::int64_t confirmed_step = Step();
  const std::vector<std::string> recovery =
      Must(sessions_->ConfirmTotp(enrolling, TotpCode(secret, confirmed_step), origin_, &refusal),
           "confirm");
  EXPECT_EQ(recovery.size(), 10u);
  EXPECT_EQ(std::set<std::string>(recovery.begin(), recovery.end()).size(), 10u);
  const Principal full = Must(sessions_->Authenticate(enrol.token), "upgraded");
  EXPECT_EQ(full.scope, SessionScope::kFull);
  EXPECT_TRUE(full.mfa_enabled);
  EXPECT_TRUE(full.Can(Permission::kPatientsRead));
  EXPECT_EQ(Events("mfa.enabled", "failure", nora.user.id), 1);
  EXPECT_EQ(Events("mfa.enabled", "success", nora.user.id), 1);

  // From now on the password leads to a challenge, not a session.
  const SignIn next = Must(sessions_->Login("north", "nora", password, origin_, &refusal), "next");
  EXPECT_TRUE(next.mfa_challenge);
  EXPECT_EQ(next.token.rfind("cwm_", 0), 0u);
  EXPECT_FALSE(sessions_->Authenticate(next.token));
  EXPECT_EQ(Events("auth.password_verified", "success", nora.user.id), 1);
  // The code used to confirm is spent; the next step's code is not.
  auto replay = Complete(next.token, TotpCode(secret, confirmed_step));
  ASSERT_FALSE(replay);
  EXPECT_EQ(replay.error(), core::Error::kUnauthenticated);
  const SignIn done = Must(Complete(next.token, TotpCode(secret, confirmed_step + 1)), "mfa");
  EXPECT_FALSE(done.mfa_challenge);
  EXPECT_EQ(Must(sessions_->Authenticate(done.token), "mfa session").scope, SessionScope::kFull);
  EXPECT_EQ(Events("auth.mfa_failed", "failure", nora.user.id), 1);
  // One-time password, password, and the second factor.
  EXPECT_EQ(Events("auth.login", "success", nora.user.id), 3);
}

TEST_F(AccessControlTest, ACodeIsGoodForOneStepEitherSideAndOnlyOnce) {
  AddOrg("north", true);
  const Enrolled nora = Enrol("north", "nora");
  now_ += 10 * 30s;
  const std::int64_t t = Step();
  ASSERT_EQ(t, nora.confirmed_step + 10);
  auto code = [&](std::int64_t step) { return TotpCode(nora.secret, step); };
  auto in_window = [&](const std::string& c) {
    return c == code(t - 1) || c == code(t) || c == code(t + 1);
  };

  const std::string first = Challenge("north", "nora");
  int wrong_codes = 0;
  for (const std::int64_t step : {t - 2, t + 2}) {
    if (in_window(code(step))) continue;  // a one-in-300,000 coincidence of this secret
    auto far = Complete(first, code(step));
    ASSERT_FALSE(far) << step - t;
    EXPECT_EQ(far.error(), core::Error::kUnauthenticated);
    ++wrong_codes;
  }
  const SignIn a = Must(Complete(first, code(t - 1)), "step - 1");
  EXPECT_EQ(Must(sessions_->Authenticate(a.token), "a").scope, SessionScope::kFull);
  EXPECT_FALSE(Complete(first, code(t + 1)));  // a challenge opens one session

  const std::string second = Challenge("north", "nora");
  EXPECT_FALSE(Complete(second, code(t - 1)));  // replay
  ASSERT_TRUE(Complete(second, code(t)));

  const std::string third = Challenge("north", "nora");
  EXPECT_FALSE(Complete(third, code(t)));  // replay
  ASSERT_TRUE(Complete(third, code(t + 1)));

  // Wrong and replayed codes are failures; the spent challenge was not a try.
  EXPECT_EQ(Events("auth.mfa_failed", "failure", nora.user_id), wrong_codes + 2);
  EXPECT_EQ(Count("SELECT count(*) FROM audit_events WHERE action = 'auth.login' "
                  "AND target_id = ? AND details LIKE '%\"via\":\"totp\"%'",
                  {nora.user_id}),
            3);
}

TEST_F(AccessControlTest, ARecoveryCodeWorksOnce) {
  AddOrg("north", true);
  const Enrolled nora = Enrol("north", "nora");
  const std::string first = Challenge("north", "nora");
  const SignIn in = Must(Complete(first, nora.recovery_codes[0]), "recovery");
  EXPECT_EQ(Must(sessions_->Authenticate(in.token), "session").scope, SessionScope::kFull);
  EXPECT_EQ(Events("mfa.recovery_code_used", "success", nora.user_id), 1);

  const std::string second = Challenge("north", "nora");
  auto again = Complete(second, nora.recovery_codes[0]);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error(), core::Error::kUnauthenticated);
  EXPECT_EQ(Events("auth.mfa_failed", "failure", nora.user_id), 1);
  // Another one, typed in capitals, still opens the same challenge.
  std::string upper = nora.recovery_codes[1];
  std::transform(upper.begin(), upper.end(), upper.begin(),
                 [](char c) { return c >= 'a' && c <= 'z' ? static_cast<char>(c - 32) : c; });
  EXPECT_TRUE(Complete(second, upper));
  EXPECT_EQ(Events("mfa.recovery_code_used", "success", nora.user_id), 2);
}

TEST_F(AccessControlTest, AChallengeAllowsFewTriesAndFewMinutes) {
  AddOrg("north", true);
  const Enrolled nora = Enrol("north", "nora");
  now_ += 2min;  // past the confirmation's step
  const std::string wrong = CodeOutsideWindow(nora.secret, Step());

  const std::string tried = Challenge("north", "nora");
  for (int i = 0; i < kMfaChallengeAttempts; ++i) EXPECT_FALSE(Complete(tried, wrong)) << i;
  auto spent = Complete(tried, TotpCode(nora.secret, Step()));
  ASSERT_FALSE(spent);
  EXPECT_EQ(spent.error(), core::Error::kUnauthenticated);
  EXPECT_EQ(Events("auth.mfa_failed", "failure", nora.user_id), kMfaChallengeAttempts);

  const std::string late = Challenge("north", "nora");
  const std::string in_time = Challenge("north", "nora");
  now_ += kMfaChallengeLifetime - 1s;
  EXPECT_TRUE(Complete(in_time, TotpCode(nora.secret, Step())));
  now_ += 2s;
  EXPECT_FALSE(Complete(late, TotpCode(nora.secret, Step() + 1)));
}

TEST_F(AccessControlTest, WithoutRequiredMfaThePasswordOpensAFullSession) {
  AddOrg("north", false);
  AddUser("north", "nora", R"(["nurse"])");
  Refusal refusal;
  const SignIn s = Must(sessions_->Login("north", "nora", kPassword, origin_, &refusal), "login");
  EXPECT_FALSE(s.mfa_challenge);
  EXPECT_EQ(s.user.scope, SessionScope::kFull);
  const Principal p = Must(sessions_->Authenticate(s.token), "authenticate");
  EXPECT_TRUE(p.Can(Permission::kPatientsWrite));
  EXPECT_FALSE(p.mfa_enabled);
}

// --- Throttling -----------------------------------------------------------------

TEST_F(AccessControlTest, RepeatedFailuresLockAnAccountAliveOrNotAlike) {
  AddOrg("north", false);
  Sessions throttled(
      *db_, *keys_,
      SessionOptions{
          .throttle = {.account_failures_per_hour = 5, .free_failures = 2, .first_delay = 1ms},
          .clock = Clock()});
  // What each attempt answered: the error (0 for success) and Retry-After.
  struct Answer {
    int error;
    std::int64_t retry_after;
    bool operator==(const Answer&) const = default;
  };
  auto attempt = [&](std::string_view username, std::string_view password,
                     const RequestOrigin& origin) {
    Refusal refusal;
    auto r = throttled.Login("north", username, password, origin, &refusal);
    return Answer{r ? 0 : r.error().value(), refusal.retry_after.count()};
  };
  auto run = [&](std::string_view username, const RequestOrigin& origin) {
    std::vector<Answer> answers;
    const std::int64_t lockouts = Events("auth.locked_out", "failure");
    for (int i = 0; i < 3; ++i) answers.push_back(attempt(username, "wrong password", origin));
    // Two free failures, then a wait: 1 ms, told as a whole second.
    answers.push_back(attempt(username, "wrong password", origin));
    now_ += 1s;
    answers.push_back(attempt(username, "wrong password", origin));
    now_ += 1s;
    answers.push_back(attempt(username, "wrong password", origin));  // the fifth: locked
    EXPECT_EQ(Events("auth.locked_out", "failure"), lockouts + 1);
    now_ += 1s;
    answers.push_back(attempt(username, "wrong password", origin));
    // Even the right password, and a lockout is recorded once.
    answers.push_back(attempt(username, kPassword, origin));
    EXPECT_EQ(Events("auth.locked_out", "failure"), lockouts + 1);
    now_ += 1h;
    answers.push_back(attempt(username, kPassword, origin));
    return answers;
  };

  const int unauthenticated = static_cast<int>(core::Error::kUnauthenticated);
  const int exhausted = static_cast<int>(core::Error::kResourceExhausted);
  const std::vector<Answer> real = run("owner", {"r1", "198.51.100.1"});
  ASSERT_EQ(real.size(), 9u);
  for (int i : {0, 1, 2, 4, 5}) EXPECT_EQ(real[i], (Answer{unauthenticated, 0})) << i;
  EXPECT_EQ(real[3], (Answer{exhausted, 1}));
  for (int i : {6, 7}) {
    EXPECT_EQ(real[i].error, exhausted) << i;
    EXPECT_GE(real[i].retry_after, 1) << i;
    EXPECT_GT(real[i].retry_after, 3500) << i;  // until the first failure is an hour old
  }
  EXPECT_EQ(real[8], (Answer{0, 0}));  // an hour later the right password works
  EXPECT_EQ(Events("auth.locked_out", "failure", OwnerId("north")), 1);

  // A made-up username meets the same answers, failure for failure; only
  // the last differs, as any wrong sign-in does.
  std::vector<Answer> made_up = run("nobody", {"r2", "198.51.100.2"});
  EXPECT_EQ(made_up.back(), (Answer{unauthenticated, 0}));
  made_up.back() = real.back();
  EXPECT_EQ(made_up, real);
  EXPECT_EQ(Events("auth.locked_out", "failure"), 2);
}

// Fails today: Sessions::ChangePassword checks the current password without
// consulting or feeding the throttle (Reauthenticate and BeginTotp do both),
// so a session lets its holder guess the password at full speed.
TEST_F(AccessControlTest, WrongCurrentPasswordsAtPasswordChangeAreThrottledLikeSignIns) {
  AddOrg("north", false);
  Sessions throttled(
      *db_, *keys_,
      SessionOptions{
          .throttle = {.account_failures_per_hour = 5, .free_failures = 2, .first_delay = 1ms},
          .clock = Clock()});
  Refusal refusal;
  const SignIn s = Must(throttled.Login("north", "owner", kPassword, origin_, &refusal), "login");
  const Principal p = Must(throttled.Authenticate(s.token), "authenticate");
  std::vector<int> errors;
  for (int i = 0; i < 6; ++i) {
    now_ += 1s;
    auto r = throttled.ChangePassword(p, "guess number " + std::to_string(i),
                                      "lantern brook cedar 1987 ferns", origin_, &refusal);
    ASSERT_FALSE(r);
    errors.push_back(r.error().value());
  }
  EXPECT_EQ(errors.back(), static_cast<int>(core::Error::kResourceExhausted))
      << ::testing::PrintToString(errors);
  EXPECT_GE(refusal.retry_after, 1s);
}

// --- Re-authentication, sign-out, revocation ----------------------------------

TEST_F(AccessControlTest, ReauthenticationChecksThePasswordAndMarksTheSession) {
  AddOrg("north", false);
  const SignedIn s = SignInAs("north", "owner");
  EXPECT_EQ(s.user.reauthenticated_at, kStart);
  now_ += 10min;
  Refusal refusal;
  auto wrong = sessions_->Reauthenticate(s.user, "not the password", "", origin_, &refusal);
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error(), core::Error::kUnauthenticated);
  EXPECT_EQ(Must(sessions_->Authenticate(s.token), "a").reauthenticated_at, kStart);
  ASSERT_TRUE(sessions_->Reauthenticate(s.user, kPassword, "", origin_, &refusal));
  EXPECT_EQ(Must(sessions_->Authenticate(s.token), "b").reauthenticated_at, now_);
  EXPECT_EQ(Events("auth.reauth_failed", "failure"), 1);
  EXPECT_EQ(Events("auth.reauthenticated"), 1);
}

TEST_F(AccessControlTest, ReauthenticationWithMfaNeedsACodeToo) {
  AddOrg("north", true);
  const Enrolled nora = Enrol("north", "nora");
  const Principal p = Must(sessions_->Authenticate(nora.token), "authenticate");
  ASSERT_TRUE(p.mfa_enabled);
  const TimePoint enrolled_at = p.reauthenticated_at;
  now_ += 2min;
  Refusal refusal;
  EXPECT_FALSE(sessions_->Reauthenticate(p, kPassword, "", origin_, &refusal));
  EXPECT_FALSE(sessions_->Reauthenticate(p, kPassword, CodeOutsideWindow(nora.secret, Step()),
                                         origin_, &refusal));
  EXPECT_FALSE(sessions_->Reauthenticate(p, "not the password", TotpCode(nora.secret, Step()),
                                         origin_, &refusal));
  EXPECT_EQ(Must(sessions_->Authenticate(nora.token), "a").reauthenticated_at, enrolled_at);
  ASSERT_TRUE(
      sessions_->Reauthenticate(p, kPassword, TotpCode(nora.secret, Step()), origin_, &refusal));
  EXPECT_EQ(Must(sessions_->Authenticate(nora.token), "b").reauthenticated_at, now_);
}

TEST_F(AccessControlTest, SignOutEverywhereEndsEverySessionOfTheUserOnly) {
  AddOrg("north", false);
  AddUser("north", "nora", R"(["nurse"])");
  const SignedIn a = SignInAs("north", "owner");
  const SignedIn b = SignInAs("north", "owner");
  const SignedIn other = SignInAs("north", "nora");
  const std::string since = Now();
  now_ += 1s;
  ASSERT_TRUE(sessions_->LogoutEverywhere(a.user, origin_));
  EXPECT_FALSE(sessions_->Authenticate(a.token));
  EXPECT_FALSE(sessions_->Authenticate(b.token));
  EXPECT_TRUE(sessions_->Authenticate(other.token));
  EXPECT_EQ(Events("auth.logout_everywhere", "success", OwnerId("north")), 1);

  const std::vector<std::string> revoked = Must(sessions_->RevokedSince(since), "since");
  EXPECT_EQ(std::set<std::string>(revoked.begin(), revoked.end()),
            (std::set<std::string>{a.user.session_id, b.user.session_id}));
  EXPECT_TRUE(Must(sessions_->RevokedSince(core::FormatRfc3339(now_ + 1s)), "later").empty());
}

TEST_F(AccessControlTest, ASessionIsRevokedByItsUserOrBySomeoneWhoManagesSessions) {
  AddOrg("north", false);
  AddOrg("south", false);
  AddUser("north", "nora", R"(["nurse"])");
  AddUser("north", "nick", R"(["nurse"])");
  AddUser("north", "adam", R"(["admin"])");
  const SignedIn nora1 = SignInAs("north", "nora");
  const SignedIn nora2 = SignInAs("north", "nora");
  const SignedIn nick = SignInAs("north", "nick");
  const SignedIn adam = SignInAs("north", "adam");
  const SignedIn south = SignInAs("south", "owner");

  ASSERT_TRUE(sessions_->RevokeSession(nora1.user, nora2.user.session_id, origin_));
  EXPECT_FALSE(sessions_->Authenticate(nora2.token));
  EXPECT_TRUE(sessions_->Authenticate(nora1.token));

  auto not_hers = sessions_->RevokeSession(nora1.user, nick.user.session_id, origin_);
  ASSERT_FALSE(not_hers);
  EXPECT_EQ(not_hers.error(), core::Error::kNotFound);
  EXPECT_TRUE(sessions_->Authenticate(nick.token));

  ASSERT_TRUE(adam.user.Can(Permission::kSessionsManage));
  ASSERT_TRUE(sessions_->RevokeSession(adam.user, nick.user.session_id, origin_));
  EXPECT_FALSE(sessions_->Authenticate(nick.token));

  // Another organization's owner holds every permission, and still finds nothing.
  auto elsewhere = sessions_->RevokeSession(south.user, nora1.user.session_id, origin_);
  ASSERT_FALSE(elsewhere);
  EXPECT_EQ(elsewhere.error(), core::Error::kNotFound);
  EXPECT_TRUE(sessions_->Authenticate(nora1.token));
  auto unknown = sessions_->RevokeSession(adam.user, "ses_000000000000000000000000", origin_);
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error(), core::Error::kNotFound);
  EXPECT_EQ(Events("session.revoked"), 2);
}

// --- Staff ----------------------------------------------------------------------

// Fails today: the admin role lacks patients.read, patients.write and
// break_glass, and Users::Create refuses roles beyond the actor's own, so an
// admin can create no clinical (or billing) user at all.
TEST_F(AccessControlTest, AnAdminCreatesANurseWithAOneTimePassword) {
  AddOrg("north", false);
  AddUser("north", "adam", R"(["admin"])");
  const SignedIn adam = SignInAs("north", "adam");
  Users users(*db_, Clock());
  std::string problem;
  auto created = users.Create(adam.user, "nora", "Nora Nurse", {"nurse"}, origin_, &problem);
  ASSERT_TRUE(created) << created.error().message() << " " << problem;
  EXPECT_FALSE(created->one_time_password.empty());
  Refusal refusal;
  const SignIn first =
      Must(sessions_->Login("north", "nora", created->one_time_password, origin_, &refusal), "otp");
  EXPECT_EQ(first.user.scope, SessionScope::kPasswordChange);
}

TEST_F(AccessControlTest, NoOneGrantsMoreThanTheyHoldOrChangesThemselves) {
  AddOrg("north", false);
  AddOrg("south", false);
  AddUser("north", "adam", R"(["admin"])");
  const SignedIn adam = SignInAs("north", "adam");
  const SignedIn owner = SignInAs("north", "owner");
  Users users(*db_, Clock());
  std::string problem;

  auto boss = users.Create(adam.user, "boss", "Boss", {"owner"}, origin_, &problem);
  ASSERT_FALSE(boss);
  EXPECT_EQ(boss.error(), core::Error::kPermissionDenied);
  auto demote = users.Update(adam.user, OwnerId("north"),
                             {.roles = std::vector<std::string>{"admin"}}, origin_, &problem);
  ASSERT_FALSE(demote);
  EXPECT_EQ(demote.error(), core::Error::kPermissionDenied);
  auto own_roles = users.Update(adam.user, adam.user.user_id,
                                {.roles = std::vector<std::string>{"billing"}}, origin_, &problem);
  ASSERT_FALSE(own_roles);
  EXPECT_EQ(own_roles.error(), core::Error::kPermissionDenied);
  auto own_status = users.Update(owner.user, owner.user.user_id,
                                 {.status = std::string("deactivated")}, origin_, &problem);
  ASSERT_FALSE(own_status);
  EXPECT_EQ(own_status.error(), core::Error::kPermissionDenied);
  EXPECT_EQ(Events("user.created", "denied"), 1);
  EXPECT_EQ(Events("user.updated", "denied"), 3);
  EXPECT_EQ(Must(users.Get(owner.user, OwnerId("north")), "owner").roles,
            std::vector<std::string>{"owner"});

  problem.clear();
  auto unknown = users.Create(owner.user, "zed", "Zed", {"wizard"}, origin_, &problem);
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error(), core::Error::kInvalidArgument);
  EXPECT_NE(problem, "");
  problem.clear();
  auto taken = users.Create(owner.user, "Adam", "Another Adam", {"billing"}, origin_, &problem);
  ASSERT_FALSE(taken);
  EXPECT_EQ(taken.error(), core::Error::kConflict);

  // Another organization's user is not found, not forbidden.
  auto get = users.Get(owner.user, OwnerId("south"));
  ASSERT_FALSE(get);
  EXPECT_EQ(get.error(), core::Error::kNotFound);
  auto update = users.Update(owner.user, OwnerId("south"), {.status = std::string("deactivated")},
                             origin_, &problem);
  ASSERT_FALSE(update);
  EXPECT_EQ(update.error(), core::Error::kNotFound);
  EXPECT_EQ(Count("SELECT count(*) FROM users WHERE status = 'active'"), 3);
}

TEST_F(AccessControlTest, DeactivationEndsEverySessionOfTheUser) {
  AddOrg("north", false);
  const std::string nora_id = AddUser("north", "nora", R"(["nurse"])");
  const SignedIn owner = SignInAs("north", "owner");
  const SignedIn a = SignInAs("north", "nora");
  const SignedIn b = SignInAs("north", "nora");
  Users users(*db_, Clock());
  std::string problem;
  const UserRecord after = Must(
      users.Update(owner.user, nora_id, {.status = std::string("deactivated")}, origin_, &problem),
      "deactivate");
  EXPECT_EQ(after.status, "deactivated");
  EXPECT_EQ(after.deactivation_reason, "admin");
  EXPECT_FALSE(sessions_->Authenticate(a.token));
  EXPECT_FALSE(sessions_->Authenticate(b.token));
  EXPECT_TRUE(sessions_->Authenticate(owner.token));
  Refusal refusal;
  auto again = sessions_->Login("north", "nora", kPassword, origin_, &refusal);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error(), core::Error::kUnauthenticated);
  EXPECT_EQ(Events("user.deactivated", "success", nora_id), 1);
}

TEST_F(AccessControlTest, DormantAccountsAreDeactivatedAndReactivationRestartsTheClock) {
  AddOrg("north", false);
  const TimePoint long_ago = kStart - std::chrono::days(200);
  const std::string stale = AddUser("north", "stale", R"(["nurse"])", "active", long_ago);
  const std::string recent = AddUser("north", "recent", R"(["nurse"])", "active", long_ago);
  const std::string never =
      AddUser("north", "never", R"(["nurse"])", "active", kStart - std::chrono::days(91));
  Exec("UPDATE users SET last_sign_in_at = ? WHERE id = ?",
       {core::FormatRfc3339(kStart - std::chrono::days(91)), stale});
  Exec("UPDATE users SET last_sign_in_at = ? WHERE id = ?",
       {core::FormatRfc3339(kStart - std::chrono::days(89)), recent});
  Users users(*db_, Clock());

  EXPECT_EQ(Must(users.DeactivateDormant(), "dormant"), 2);
  const SignedIn owner = SignInAs("north", "owner");
  EXPECT_EQ(Must(users.Get(owner.user, stale), "stale").status, "deactivated");
  EXPECT_EQ(Must(users.Get(owner.user, stale), "stale").deactivation_reason, "dormant");
  EXPECT_EQ(Must(users.Get(owner.user, never), "never").status, "deactivated");
  EXPECT_EQ(Must(users.Get(owner.user, recent), "recent").status, "active");
  EXPECT_EQ(Count("SELECT count(*) FROM audit_events WHERE action = 'user.deactivated' "
                  "AND actor_id = 'dormant-accounts-job'"),
            2);

  std::string problem;
  ASSERT_TRUE(
      users.Update(owner.user, stale, {.status = std::string("active")}, origin_, &problem));
  EXPECT_EQ(Must(users.DeactivateDormant(), "again"), 0);
  EXPECT_EQ(Must(users.Get(owner.user, stale), "stale").status, "active");
  EXPECT_EQ(Events("user.reactivated", "success", stale), 1);
}

// --- Custom roles ---------------------------------------------------------------

TEST_F(AccessControlTest, CustomRolesGrantTheirPermissionsWithinTheDefinersOwn) {
  AddOrg("north", false);
  AddUser("north", "adam", R"(["admin"])");
  const std::string tess_id = AddUser("north", "tess", R"(["billing"])");
  const SignedIn owner = SignInAs("north", "owner");
  const SignedIn adam = SignInAs("north", "adam");
  OrgSettingsStore roles(*db_, Clock());
  Users users(*db_, Clock());
  std::string problem;

  // An administrative permission the admin lacks (clinical ones they may give).
  auto beyond = roles.PutRole(adam.user, "triage", "", {"audit.export"}, origin_, &problem);
  ASSERT_FALSE(beyond);
  EXPECT_EQ(beyond.error(), core::Error::kPermissionDenied);
  EXPECT_EQ(Events("role.defined", "denied"), 1);
  ASSERT_TRUE(roles.PutRole(owner.user, "triage", "Triage desk",
                            {"patients.read", "templates.approve"}, origin_, &problem));
  ASSERT_TRUE(users.Update(owner.user, tess_id, {.roles = std::vector<std::string>{"triage"}},
                           origin_, &problem));

  const SignedIn tess = SignInAs("north", "tess");
  PermissionSet expected;
  Grant(expected, Permission::kPatientsRead);
  Grant(expected, Permission::kTemplatesApprove);
  EXPECT_EQ(tess.user.permissions, expected);
  // A changed role applies from the next request.
  ASSERT_TRUE(roles.PutRole(owner.user, "triage", "Triage desk",
                            {"patients.read", "templates.approve", "messages.send"}, origin_,
                            &problem));
  EXPECT_TRUE(Must(sessions_->Authenticate(tess.token), "tess").Can(Permission::kMessagesSend));

  auto held = roles.DeleteRole(owner.user, "triage", origin_);
  ASSERT_FALSE(held);
  EXPECT_EQ(held.error(), core::Error::kConflict);
  ASSERT_TRUE(users.Update(owner.user, tess_id, {.roles = std::vector<std::string>{"billing"}},
                           origin_, &problem));
  ASSERT_TRUE(roles.DeleteRole(owner.user, "triage", origin_));
  EXPECT_EQ(Must(roles.ListRoles(owner.user), "roles").size(), BuiltInRoles().size());
}

// --- Emergency access -----------------------------------------------------------

TEST_F(AccessControlTest, BreakGlassAlertsPrivacyOfficersAndEndsByItself) {
  AddOrg("north", false);
  AddUser("north", "pat", R"(["privacy_officer"])");
  AddUser("north", "pia", R"(["privacy_officer", "billing"])");
  const std::string gone = AddUser("north", "paul", R"(["privacy_officer"])", "deactivated");
  const std::string nora_id = AddUser("north", "nora", R"(["nurse"])");
  const SignedIn owner = SignInAs("north", "owner");
  OrgSettingsStore settings(*db_, Clock());
  std::string problem;
  ASSERT_TRUE(settings.Update(owner.user, {.break_glass_minutes = 20}, origin_, &problem));
  const SignedIn nora = SignInAs("north", "nora");
  BreakGlass glass(*db_, *keys_, Clock());

  auto terse = glass.Start(nora.user, "urgent", origin_, &problem);
  ASSERT_FALSE(terse);
  EXPECT_EQ(terse.error(), core::Error::kInvalidArgument);
  EXPECT_NE(problem, "");

  const std::string reason = "Unconscious patient in bay 3; records held by another team";
  const BreakGlassGrant grant = Must(glass.Start(nora.user, reason, origin_, &problem), "start");
  EXPECT_EQ(grant.expires_at, core::FormatRfc3339(now_ + 20min));
  auto twice = glass.Start(nora.user, reason, origin_, &problem);
  ASSERT_FALSE(twice);
  EXPECT_EQ(twice.error(), core::Error::kConflict);

  // One alert for each active holder of alerts.read: the two active privacy
  // officers and the owner.
  EXPECT_EQ(Count("SELECT count(*) FROM alerts WHERE target_id = ?", {grant.id}), 3);
  EXPECT_EQ(Count("SELECT count(*) FROM alerts WHERE recipient_id = ?", {gone}), 0);
  const SignedIn pat = SignInAs("north", "pat");
  const std::vector<Alert> alerts = Must(glass.Alerts(pat.user, true, 10), "alerts");
  ASSERT_EQ(alerts.size(), 1u);
  EXPECT_EQ(alerts[0].kind, "break_glass.started");
  EXPECT_EQ(alerts[0].user_id, nora_id);
  EXPECT_EQ(alerts[0].target_id, grant.id);
  EXPECT_EQ(Events("break_glass.started", "success", grant.id), 1);

  Principal p = Must(Use(nora.token), "during");
  EXPECT_EQ(p.break_glass_id, grant.id);
  EXPECT_EQ(p.break_glass_until, grant.expires_at);
  now_ += 10min;
  EXPECT_EQ(Must(Use(nora.token), "later").break_glass_until, grant.expires_at);
  now_ += 10min;
  p = Must(Use(nora.token), "after");
  EXPECT_EQ(p.break_glass_id, "");
  EXPECT_EQ(p.break_glass_until, "");

  EXPECT_EQ(Must(glass.ExpireGrants(), "expire"), 1);
  EXPECT_EQ(Must(glass.ExpireGrants(), "expire again"), 0);
  EXPECT_EQ(Events("break_glass.expired", "success", grant.id), 1);

  // The reason is stored sealed, and opened for the review.
  std::string stored;
  ASSERT_TRUE(db_->Read([&](storage::Transaction& tx) -> Status {
    auto row = tx.QueryOne("SELECT reason FROM break_glass WHERE id = ?", {grant.id});
    if (!row) return row.error();
    const storage::Blob& b = (*row)->Bytes(0);
    stored.assign(b.begin(), b.end());
    return Ok();
  }));
  EXPECT_FALSE(stored.empty());
  EXPECT_EQ(stored.find(reason), std::string::npos);
  EXPECT_EQ(stored.find("bay 3"), std::string::npos);
  const std::vector<BreakGlassGrant> listed = Must(glass.List(pat.user, 10, origin_), "list");
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].reason, reason);
  EXPECT_EQ(listed[0].user_id, nora_id);
  EXPECT_EQ(listed[0].ended_at, grant.expires_at);
  EXPECT_EQ(Events("break_glass.listed"), 1);
}

// --- The permission table -------------------------------------------------------

TEST(PermissionTableTest, EveryPermissionHasOneNameThatRoundTrips) {
  ASSERT_EQ(AllPermissions().size(), kPermissionCount);
  std::set<std::string_view> names;
  for (const Permission p : AllPermissions()) {
    const std::string_view name = PermissionName(p);
    EXPECT_FALSE(name.empty());
    EXPECT_TRUE(names.insert(name).second) << name;
    EXPECT_EQ(PermissionFromName(name), p) << name;
  }
  EXPECT_FALSE(PermissionFromName("everything"));
  EXPECT_FALSE(PermissionFromName(""));
  PermissionSet some;
  Grant(some, Permission::kAuditRead);
  Grant(some, Permission::kBreakGlass);
  EXPECT_EQ(ParsePermissionList(FormatPermissionList(some)), some);
  EXPECT_EQ(ParsePermissionList("audit.read no.such break_glass"), some);
}

TEST(PermissionTableTest, BuiltInRolesGrantWhatTheirJobsNeed) {
  auto role = [](std::string_view name) {
    const BuiltInRole* r = FindBuiltInRole(name);
    if (r == nullptr) throw std::runtime_error("no role " + std::string(name));
    return r->permissions;
  };
  EXPECT_TRUE(role("owner").all());
  const PermissionSet admin = role("admin");
  EXPECT_FALSE(Has(admin, Permission::kAuditExport));
  EXPECT_FALSE(Has(admin, Permission::kBreakGlass));
  EXPECT_TRUE(Has(admin, Permission::kUsersManage));
  const PermissionSet privacy = role("privacy_officer");
  for (const Permission p :
       {Permission::kAuditRead, Permission::kAuditExport, Permission::kAlertsRead}) {
    EXPECT_TRUE(Has(privacy, p)) << PermissionName(p);
  }
  EXPECT_TRUE(Has(role("nurse"), Permission::kBreakGlass));
  EXPECT_TRUE(Has(role("physician"), Permission::kBreakGlass));
  EXPECT_FALSE(Has(role("front_desk"), Permission::kBreakGlass));
  EXPECT_TRUE(Has(role("billing"), Permission::kPatientsRead));
  EXPECT_FALSE(Has(role("billing"), Permission::kPatientsWrite));
  EXPECT_EQ(FindBuiltInRole("wizard"), nullptr);
  EXPECT_FALSE(IsValidCustomRoleName("nurse"));
  EXPECT_TRUE(IsValidCustomRoleName("triage"));
}

// --- Found in review ------------------------------------------------------------

// A right password must not wipe the failed codes before it: otherwise a
// stolen password allows endless code guessing, five per challenge.
TEST_F(AccessControlTest, ARightPasswordDoesNotResetFailedSecondFactorCodes) {
  AddOrg("north", true);
  const Enrolled nina = Enrol("north", "nina");
  now_ += 30s;
  Sessions throttled(*db_, *keys_,
                     SessionOptions{.throttle = {.account_failures_per_hour = 8,
                                                 .free_failures = 1'000},
                                    .clock = Clock()});
  const std::string wrong = CodeOutsideWindow(nina.secret, Step());
  int refused_at = -1;
  for (int round = 0; round < 4 && refused_at < 0; ++round) {
    Refusal refusal;
    auto challenge = throttled.Login("north", "nina", kPassword, origin_, &refusal);
    if (!challenge) {
      EXPECT_EQ(challenge.error(), core::Error::kResourceExhausted);
      refused_at = round;
      break;
    }
    ASSERT_TRUE(challenge->mfa_challenge);
    for (int i = 0; i < kMfaChallengeAttempts; ++i) {
      (void)throttled.CompleteMfa(challenge->token, wrong, origin_, &refusal);
    }
  }
  // Eight failed codes lock the account however many right passwords came
  // between them: by the third round at the latest.
  EXPECT_GE(refused_at, 1);
  EXPECT_LE(refused_at, 2);
}

TEST_F(AccessControlTest, RedefiningARoleFollowsTheRulesOfChangingItsHolders) {
  AddOrg("north", false);
  // An IT role with administrative permissions, held by its definer-to-be.
  const SignedIn owner = SignInAs("north", "owner");
  OrgSettingsStore roles(*db_, Clock());
  std::string problem;
  Must(roles.PutRole(owner.user, "it_admin", "IT", {"users.manage", "roles.manage"}, origin_,
                     &problem),
       "define it_admin");
  AddUser("north", "ivan", R"(["it_admin"])");
  const SignedIn ivan = SignInAs("north", "ivan");
  // Ivan may not widen his own role, not even with clinical permissions.
  auto own = roles.PutRole(ivan.user, "it_admin", "IT",
                           {"users.manage", "roles.manage", "patients.read"}, origin_, &problem);
  ASSERT_FALSE(own);
  EXPECT_EQ(own.error(), core::Error::kPermissionDenied);
  // Nor rewrite a role held by someone with administrative power he lacks.
  Must(roles.PutRole(owner.user, "compliance", "", {"audit.read", "audit.export"}, origin_,
                     &problem),
       "define compliance");
  AddUser("north", "cora", R"(["compliance"])");
  auto theirs = roles.PutRole(ivan.user, "compliance", "", {"audit.read"}, origin_, &problem);
  ASSERT_FALSE(theirs);
  EXPECT_EQ(theirs.error(), core::Error::kPermissionDenied);
  EXPECT_EQ(Events("role.defined", "denied"), 2);
  // The owner may; the change is audited with the permissions before.
  ASSERT_TRUE(roles.PutRole(owner.user, "compliance", "", {"audit.read"}, origin_, &problem));
  EXPECT_EQ(Count("SELECT count(*) FROM audit_events WHERE action = 'role.defined' "
                  "AND details LIKE '%\"before\"%audit.export%'"),
            1);
}

// A pending enrolment is confirmed only by the session that started it, and
// only for a few minutes.
TEST_F(AccessControlTest, APendingEnrolmentBelongsToItsSessionAndExpires) {
  AddOrg("north", true);
  AddUser("north", "nell", R"(["nurse"])");
  Refusal refusal;
  auto open = [&] {
    SignIn s = Must(sessions_->Login("north", "nell", kPassword, origin_, &refusal), "login");
    return Must(sessions_->Authenticate(s.token), "authenticate");
  };
  const Principal first = open();
  const Principal second = open();
  const TotpEnrollment totp =
      Must(sessions_->BeginTotp(first, kPassword, origin_, &refusal), "begin");
  const std::vector<unsigned char> secret = Base32Decode(totp.secret_base32).value();
  // Another session of the same user cannot confirm it.
  auto elsewhere = sessions_->ConfirmTotp(second, TotpCode(secret, Step()), origin_, &refusal);
  ASSERT_FALSE(elsewhere);
  EXPECT_EQ(elsewhere.error(), core::Error::kNotFound);
  // Nor can the session that started it, once it is too old (the session
  // itself is kept alive by the idle clock being moved here).
  now_ += kTotpEnrollmentLifetime + 1s;
  Exec("UPDATE sessions SET last_used_at = ? WHERE id = ?", {Now(), first.session_id});
  auto late = sessions_->ConfirmTotp(first, TotpCode(secret, Step()), origin_, &refusal);
  ASSERT_FALSE(late);
  EXPECT_EQ(late.error(), core::Error::kNotFound);
  // A new enrolment in that session, confirmed in time, works.
  const TotpEnrollment again =
      Must(sessions_->BeginTotp(first, kPassword, origin_, &refusal), "begin again");
  const std::vector<unsigned char> fresh = Base32Decode(again.secret_base32).value();
  EXPECT_EQ(Must(sessions_->ConfirmTotp(first, TotpCode(fresh, Step()), origin_, &refusal),
                 "confirm")
                .size(),
            10u);
}

TEST_F(AccessControlTest, TheDormantAccountsJobSparesOwners) {
  AddOrg("north", false);
  AddUser("north", "olga", R"(["nurse"])");
  AddUser("north", "otto", R"(["owner"])");
  now_ += std::chrono::days(200);
  Users users(*db_, Clock());
  EXPECT_EQ(Must(users.DeactivateDormant(), "sweep"), 1);  // olga only
  EXPECT_EQ(Count("SELECT count(*) FROM users WHERE status = 'active' AND org_id = 'org_north'"),
            2);
}

TEST_F(AccessControlTest, SessionsThatWentIdleAreAmongTheEndedOnes) {
  AddOrg("north", false);
  AddUser("north", "nils", R"(["nurse"])");
  const SignedIn a = SignInAs("north", "nils");
  const SignedIn b = SignInAs("north", "nils");
  now_ += 10min;
  ASSERT_TRUE(Use(b.token));  // b is used, a is not
  now_ += 6min;
  auto ended = Must(sessions_->EndedAmong({a.user.session_id, b.user.session_id, "ses_none"}),
                    "ended");
  EXPECT_EQ(ended, (std::vector<std::string>{a.user.session_id, "ses_none"}));
}

}  // namespace
}  // namespace cw::identity
