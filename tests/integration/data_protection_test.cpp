// Data protection end to end, against the real carewire binary: the owner's
// one-time password is shown once and stored only hashed, the master key is
// guarded, no PHI canary is ever at rest in plaintext (database, WAL, temp
// files, logs), a sealed value is bound to its row and organization, key
// rotation (data keys and the master key) keeps everything readable, and the
// sealed-probe routes refuse QUALITY.md's bad inputs without storing anything.
//
// This file also defines the helpers of data_protection_support.hpp, which
// audit_cli_test.cpp and crash_test.cpp use too.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/json.hpp>
#include <filesystem>
#include <functional>
#include <regex>
#include <set>
#include <sstream>
#include <thread>
#include <variant>

#include "integration/data_protection_support.hpp"

extern char** environ;  // NOLINT

namespace cw::testing::dp {

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace std::chrono_literals;

// ---------------------------------------------------------------------------
// The helpers declared in data_protection_support.hpp.

namespace {

std::string ReadFd(int fd) {
  std::string out;
  char buf[8192];
  off_t at = 0;
  for (;;) {
    const ssize_t n = pread(fd, buf, sizeof buf, at);
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
    at += n;
  }
  return out;
}

}  // namespace

// Runs carewire with `args` and `env` added to the test's environment; kills
// it after `timeout` (then signal is SIGKILL and err ends with
// "[timed out]"), so a server that starts when it should have refused cannot
// hang a test. Output goes to memory files, not to a file system the tests
// scan.
ProcessResult Cli(const std::vector<std::string>& args,
                  const std::map<std::string, std::string>& env,
                  std::chrono::milliseconds timeout) {
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string entry(*e);
    if (env.count(entry.substr(0, entry.find('='))) == 0) env_strings.push_back(entry);
  }
  for (const auto& [k, v] : env) env_strings.push_back(k + "=" + v);
  std::string bin = CarewireBinary();
  std::vector<std::string> copy = args;
  std::vector<char*> argv{bin.data()};
  for (auto& a : copy) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);

  const int out = memfd_create("carewire-out", MFD_CLOEXEC);
  const int err = memfd_create("carewire-err", MFD_CLOEXEC);
  if (out < 0 || err < 0) throw std::runtime_error("memfd_create");
  const pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("fork");
  if (pid == 0) {
    dup2(out, STDOUT_FILENO);
    dup2(err, STDERR_FILENO);
    const int devnull = open("/dev/null", O_RDONLY);
    dup2(devnull, STDIN_FILENO);
    execve(argv[0], argv.data(), envp.data());
    _exit(127);
  }
  ProcessResult r;
  bool timed_out = false;
  int status = 0;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (waitpid(pid, &status, WNOHANG) == pid) break;
    if (std::chrono::steady_clock::now() > deadline) {
      timed_out = true;
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      break;
    }
    std::this_thread::sleep_for(2ms);
  }
  if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) r.signal = WTERMSIG(status);
  r.out = ReadFd(out);
  r.err = ReadFd(err);
  if (timed_out) r.err += "[timed out]";
  close(out);
  close(err);
  return r;
}

// The settings every test server runs with: sealed probes on, keys cached
// briefly and re-sealed in small, quick batches, temp files under `tmp`.
std::map<std::string, std::string> ServerEnv(const fs::path& tmp,
                                             const std::map<std::string, std::string>& extra) {
  fs::create_directories(tmp);
  std::map<std::string, std::string> env = {
      {"CAREWIRE_DIAGNOSTICS_SEALED_PROBE", "true"},
      {"CAREWIRE_KEYS_CACHE_TTL_MS", "100"},
      {"CAREWIRE_KEYS_REENCRYPT_POLL_MS", "50"},
      {"CAREWIRE_KEYS_REENCRYPT_BATCH", "50"},
      {"TMPDIR", tmp.string()},
      {"SQLITE_TMPDIR", tmp.string()},
  };
  for (const auto& [k, v] : extra) env[k] = v;
  return env;
}

std::unique_ptr<ServerProcess> StartServer(const fs::path& data,
                                           const std::map<std::string, std::string>& env,
                                           const std::vector<std::string>& extra_args) {
  return std::make_unique<ServerProcess>(
      ServerProcess::Options{.extra_args = extra_args, .env = env, .data_dir = data.string()});
}

ProcessResult InitDeployment(const fs::path& data, const std::string& org, const std::string& owner,
                             const std::map<std::string, std::string>& env) {
  return Cli({"init", "--data-dir", data.string(), "--org", org, "--org-name", "Clinic " + org,
              "--owner", owner},
             env, 120s);
}

// Copies a data directory with its files' modes (master.key must stay 0600).
void CopyTree(const fs::path& from, const fs::path& to) {
  fs::copy(from, to, fs::copy_options::recursive);
  fs::permissions(to, fs::status(from).permissions(), fs::perm_options::replace);
  for (const auto& e : fs::recursive_directory_iterator(from)) {
    const fs::path target = to / fs::relative(e.path(), from);
    fs::permissions(target, e.status().permissions(), fs::perm_options::replace);
  }
}

// ---- finding bytes ----------------------------------------------------------

std::vector<std::string> FindIn(const std::string& where, std::string_view haystack,
                                const std::vector<std::string>& needles) {
  std::vector<std::string> found;
  for (const std::string& n : needles) {
    if (n.empty()) continue;
    const auto it = std::search(haystack.begin(), haystack.end(),
                                std::boyer_moore_horspool_searcher(n.begin(), n.end()));
    if (it != haystack.end()) {
      found.push_back(where + " contains \"" + n.substr(0, 48) + "\" at byte " +
                      std::to_string(it - haystack.begin()));
    }
  }
  return found;
}

// Every regular file under `root`, read whole (files that vanish while we
// walk, such as a -wal being checkpointed away, are skipped).
std::vector<std::string> ScanTree(const fs::path& root, const std::vector<std::string>& needles,
                                  std::uintmax_t* bytes_scanned) {
  std::vector<std::string> found;
  std::error_code ec;
  if (!fs::exists(root, ec)) return found;
  for (fs::recursive_directory_iterator it(root, fs::directory_options::skip_permission_denied, ec),
       end;
       it != end; it.increment(ec)) {
    if (ec) break;
    if (!it->is_regular_file(ec)) continue;
    const std::string content = ReadFile(it->path());
    if (bytes_scanned != nullptr) *bytes_scanned += content.size();
    auto f = FindIn(it->path().string(), content, needles);
    found.insert(found.end(), f.begin(), f.end());
  }
  return found;
}

// Every regular file process `pid` holds open, including deleted ones (an
// unlinked SQLite temp file is still readable through /proc/PID/fd/N).
std::vector<std::string> ScanOpenFiles(pid_t pid, const std::vector<std::string>& needles,
                                       int* files_scanned) {
  std::vector<std::string> found;
  std::error_code ec;
  const fs::path fds = "/proc/" + std::to_string(pid) + "/fd";
  for (fs::directory_iterator it(fds, ec), end; it != end; it.increment(ec)) {
    if (ec) break;
    struct stat st {};
    if (::stat(it->path().c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    const std::string content = ReadFile(it->path());
    if (files_scanned != nullptr) ++*files_scanned;
    std::error_code lec;
    const auto target = fs::read_symlink(it->path(), lec);
    auto f = FindIn("open file " + target.string(), content, needles);
    found.insert(found.end(), f.begin(), f.end());
  }
  return found;
}

// ---- SQLite -----------------------------------------------------------------

SqlValue Blob(const std::string& bytes) {
  return std::vector<std::uint8_t>(bytes.begin(), bytes.end());
}

// Text or blob bytes ("" for NULL, the decimal digits of an integer).
std::string Bytes(const SqlValue& v) {
  if (const auto* s = std::get_if<std::string>(&v)) return *s;
  if (const auto* b = std::get_if<std::vector<std::uint8_t>>(&v)) return {b->begin(), b->end()};
  if (const auto* i = std::get_if<std::int64_t>(&v)) return std::to_string(*i);
  return {};
}

std::int64_t Int(const SqlValue& v) {
  if (const auto* i = std::get_if<std::int64_t>(&v)) return *i;
  throw std::runtime_error("not an integer: " + Bytes(v));
}

namespace {

// A direct connection to a data directory's database, for what an attacker
// with the file (or a test) can do. Read-only unless asked, so that it never
// runs WAL recovery or a checkpoint on the server's behalf.
class Sqlite {
 public:
  explicit Sqlite(const fs::path& database, bool writable = false) {
    const int flags = writable ? SQLITE_OPEN_READWRITE : SQLITE_OPEN_READONLY;
    if (sqlite3_open_v2(database.c_str(), &db_, flags, nullptr) != SQLITE_OK) {
      const std::string message = sqlite3_errmsg(db_);
      sqlite3_close_v2(db_);
      throw std::runtime_error("cannot open " + database.string() + ": " + message);
    }
    sqlite3_busy_timeout(db_, 10'000);
  }
  ~Sqlite() { sqlite3_close_v2(db_); }
  Sqlite(const Sqlite&) = delete;
  Sqlite& operator=(const Sqlite&) = delete;

  std::vector<SqlRow> Query(const std::string& sql, const std::vector<SqlValue>& params = {}) {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) {
      throw std::runtime_error(sql + ": " + sqlite3_errmsg(db_));
    }
    for (std::size_t i = 0; i < params.size(); ++i) {
      const int at = static_cast<int>(i + 1);
      const SqlValue& p = params[i];
      if (const auto* n = std::get_if<std::int64_t>(&p)) {
        sqlite3_bind_int64(st, at, *n);
      } else if (const auto* s = std::get_if<std::string>(&p)) {
        sqlite3_bind_text(st, at, s->data(), static_cast<int>(s->size()), SQLITE_TRANSIENT);
      } else if (const auto* b = std::get_if<std::vector<std::uint8_t>>(&p)) {
        sqlite3_bind_blob(st, at, b->data(), static_cast<int>(b->size()), SQLITE_TRANSIENT);
      } else {
        sqlite3_bind_null(st, at);
      }
    }
    std::vector<SqlRow> rows;
    int rc = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
      SqlRow row;
      for (int c = 0; c < sqlite3_column_count(st); ++c) {
        const auto size = static_cast<std::size_t>(sqlite3_column_bytes(st, c));
        switch (sqlite3_column_type(st, c)) {
          case SQLITE_NULL:
            row.emplace_back(std::monostate{});
            break;
          case SQLITE_INTEGER:
            row.emplace_back(std::int64_t{sqlite3_column_int64(st, c)});
            break;
          case SQLITE_BLOB: {
            const auto* p = static_cast<const std::uint8_t*>(sqlite3_column_blob(st, c));
            row.emplace_back(p == nullptr ? std::vector<std::uint8_t>()
                                          : std::vector<std::uint8_t>(p, p + size));
            break;
          }
          default: {
            const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(st, c));
            row.emplace_back(p == nullptr ? std::string() : std::string(p, size));
          }
        }
      }
      rows.push_back(std::move(row));
    }
    const std::string error = rc == SQLITE_DONE ? "" : sqlite3_errmsg(db_);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) throw std::runtime_error(sql + ": " + error);
    return rows;
  }

  std::int64_t Int(const std::string& sql, const std::vector<SqlValue>& params = {}) {
    auto rows = Query(sql, params);
    if (rows.empty() || rows[0].empty()) throw std::runtime_error("no row: " + sql);
    return dp::Int(rows[0][0]);
  }

  std::string Bytes(const std::string& sql, const std::vector<SqlValue>& params = {}) {
    auto rows = Query(sql, params);
    if (rows.empty() || rows[0].empty()) throw std::runtime_error("no row: " + sql);
    return dp::Bytes(rows[0][0]);
  }

 private:
  sqlite3* db_ = nullptr;
};

}  // namespace

std::vector<SqlRow> SqlQuery(const fs::path& database, const std::string& sql,
                             const std::vector<SqlValue>& params, bool writable) {
  Sqlite db(database, writable);
  return db.Query(sql, params);
}

std::int64_t SqlInt(const fs::path& database, const std::string& sql,
                    const std::vector<SqlValue>& params) {
  Sqlite db(database);
  return db.Int(sql, params);
}

fs::path DatabaseOf(const fs::path& data) { return data / "carewire.db"; }

// ---- HTTP -------------------------------------------------------------------

std::string ProbeBody(const std::string& org, const std::string& value) {
  return json::serialize(json::object{{"org", org}, {"value", value}});
}

// Runs fn(connection, i) for every i in [0, n) on `threads` threads, each with
// a keep-alive connection of its own (re-opened once if the server closed it).
void ParallelFor(std::uint16_t port, int n, int threads,
                 const std::function<void(HttpsConnection&, int)>& fn) {
  std::atomic<int> next{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      std::unique_ptr<HttpsConnection> conn;
      for (int i = next++; i < n; i = next++) {
        bool done = false;
        for (int attempt = 0; attempt < 2 && !done; ++attempt) {
          try {
            if (!conn) conn = std::make_unique<HttpsConnection>(port);
            fn(*conn, i);
            done = true;
          } catch (const std::exception& e) {
            conn.reset();
            if (attempt == 1) ADD_FAILURE() << "request " << i << ": " << e.what();
          }
        }
      }
    });
  }
  for (auto& t : pool) t.join();
}

HttpResponse PostProbe(HttpsConnection& c, const std::string& org, const std::string& value) {
  return c.Send("POST", "/api/v1/diagnostics/sealed-probe", ProbeBody(org, value));
}

// ---- audit ------------------------------------------------------------------

std::vector<json::object> ExportJsonl(const fs::path& data, const std::vector<std::string>& extra,
                                      ProcessResult* result) {
  std::vector<std::string> args = {"audit",       "export",   "--data-dir",
                                   data.string(), "--format", "jsonl"};
  args.insert(args.end(), extra.begin(), extra.end());
  ProcessResult r = Cli(args, {}, 60s);
  std::vector<json::object> events;
  std::istringstream lines(r.out);
  std::string line;
  while (std::getline(lines, line)) {
    if (!line.empty()) events.push_back(json::parse(line).as_object());
  }
  if (result != nullptr) *result = std::move(r);
  return events;
}

int CountAction(const std::vector<json::object>& events, const std::string& action) {
  return static_cast<int>(std::count_if(events.begin(), events.end(), [&](const json::object& e) {
    return Field(e, "action") == action;
  }));
}

// Polls `done` until it holds or `within` passes.
bool WaitFor(const std::function<bool()>& done, std::chrono::milliseconds within,
             std::chrono::milliseconds every) {
  const auto deadline = std::chrono::steady_clock::now() + within;
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(every);
  }
  return done();
}

// ---------------------------------------------------------------------------

namespace {

const std::string kProbePath = "/api/v1/diagnostics/sealed-probe";

const std::regex kOtpLine(
    "owner ([a-z0-9._@-]+) one-time password: ([a-hjkmnp-z2-9]{4}(?:-[a-hjkmnp-z2-9]{4}){4})\n");

std::size_t Occurrences(const std::string& haystack, const std::string& needle) {
  std::size_t n = 0;
  for (auto at = haystack.find(needle); at != std::string::npos;
       at = haystack.find(needle, at + 1)) {
    ++n;
  }
  return n;
}

std::string WithoutDashes(std::string s) {
  s.erase(std::remove(s.begin(), s.end(), '-'), s.end());
  return s;
}

unsigned ModeOf(const fs::path& p) {
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0) return 0xffff;
  return st.st_mode & 0777;
}

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// A test's temporary directory: the data directory and the server's TMPDIR.
struct Dirs {
  TempDir root;
  fs::path data() const { return root.path() / "data"; }
  fs::path tmp() const { return root.path() / "server-tmp"; }
  std::map<std::string, std::string> env(
      const std::map<std::string, std::string>& extra = {}) const {
    return ServerEnv(tmp(), extra);
  }
};

ProcessResult Serve(const fs::path& data, const std::map<std::string, std::string>& env,
                    const std::vector<std::string>& extra = {}) {
  std::vector<std::string> args = {"serve", "--data-dir", data.string(), "--listen", "127.0.0.1:0"};
  args.insert(args.end(), extra.begin(), extra.end());
  return Cli(args, env, 20s);
}

// ---------------------------------------------------------------------------
// 1. init and org create

TEST(DataProtectionTest, InitShowsTheOneTimePasswordOnceAndStoresOnlyItsHash) {
  Dirs d;
  const auto r = InitDeployment(d.data(), "clinic", "alice", {});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.out, m, kOtpLine)) << r.out;
  EXPECT_EQ(m[1].str(), "alice");
  const std::string otp = m[2].str();
  EXPECT_EQ(Occurrences(r.out, otp), 1u) << r.out;
  EXPECT_EQ(r.err.find(otp), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find(WithoutDashes(otp)), std::string::npos) << r.err;

  // Nowhere at rest: not in the database, its WAL or shared memory, the
  // checkpoint file or anything else the command left behind.
  std::uintmax_t scanned = 0;
  for (const auto& f : ScanTree(d.root.path(), {otp, WithoutDashes(otp)}, &scanned)) {
    ADD_FAILURE() << f;
  }
  EXPECT_GT(scanned, 0u);
  EXPECT_FALSE(ScanTree(d.data(), {"SQLite format 3"}, nullptr).empty())
      << "the scan does not read the database";

  EXPECT_EQ(ModeOf(d.data()), 0700u);
  EXPECT_EQ(ModeOf(d.data() / "master.key"), 0600u);
  ASSERT_TRUE(fs::exists(DatabaseOf(d.data())));
  EXPECT_EQ(ModeOf(DatabaseOf(d.data())) & 077, 0u);

  {
    Sqlite db(DatabaseOf(d.data()));
    const auto users =
        db.Query("SELECT username, password_hash, password_temporary, roles FROM users");
    ASSERT_EQ(users.size(), 1u);
    EXPECT_EQ(Bytes(users[0][0]), "alice");
    EXPECT_EQ(Bytes(users[0][1]).rfind("$argon2id$", 0), 0u) << Bytes(users[0][1]);
    EXPECT_EQ(Int(users[0][2]), 1);
    EXPECT_NE(Bytes(users[0][3]).find("owner"), std::string::npos);
    std::vector<std::string> actions;
    for (const auto& row : db.Query("SELECT action FROM audit_events ORDER BY seq")) {
      actions.push_back(Bytes(row[0]));
    }
    EXPECT_EQ(actions, (std::vector<std::string>{"deployment.created", "org.created",
                                                 "keys.created", "user.created"}));
    const std::int64_t last_seq = db.Int("SELECT max(seq) FROM audit_events");

    // The checkpoint file: signed JSON lines, the last covering the log.
    std::istringstream lines(ReadFile(d.data() / "audit-checkpoints.jsonl"));
    std::string line;
    std::int64_t checkpoint_seq = -1;
    int n = 0;
    while (std::getline(lines, line)) {
      ++n;
      const auto cp = json::parse(line).as_object();
      EXPECT_EQ(cp.size(), 4u) << line;
      checkpoint_seq = cp.at("seq").as_int64();
      EXPECT_TRUE(
          std::regex_match(std::string(cp.at("hash").as_string()), std::regex("[0-9a-f]{64}")))
          << line;
      EXPECT_TRUE(std::regex_match(std::string(cp.at("signature").as_string()),
                                   std::regex("[0-9a-f]{128}")))
          << line;
      EXPECT_FALSE(cp.at("time").as_string().empty());
    }
    EXPECT_GE(n, 1);
    EXPECT_EQ(checkpoint_seq, last_seq);
  }

  // A second init on the same directory is refused, whatever the slug, and
  // prints no new password.
  for (const std::string slug : {"clinic", "another"}) {
    const auto again = InitDeployment(d.data(), slug, "mallory", {});
    EXPECT_EQ(again.exit_code, 1) << Describe(again);
    EXPECT_EQ(again.out.find("one-time password"), std::string::npos) << again.out;
    EXPECT_FALSE(again.err.empty());
  }
  Sqlite db(DatabaseOf(d.data()));
  EXPECT_EQ(db.Int("SELECT count(*) FROM organizations"), 1);
  EXPECT_EQ(db.Int("SELECT count(*) FROM users"), 1);
}

TEST(DataProtectionTest, OrgCreateAddsOrganizationsAndRefusesBadOrDuplicateSlugs) {
  Dirs d;
  ASSERT_EQ(InitDeployment(d.data(), "clinic", "alice", {}).exit_code, 0);
  const auto created = Cli({"org", "create", "--data-dir", d.data().string(), "--org", "east-side",
                            "--org-name", "East Side Practice", "--owner", "Bob"},
                           {}, 120s);
  ASSERT_EQ(created.exit_code, 0) << Describe(created);
  std::smatch m;
  ASSERT_TRUE(std::regex_search(created.out, m, kOtpLine)) << created.out;
  EXPECT_EQ(m[1].str(), "bob");  // usernames are case-folded
  const std::string otp = m[2].str();
  EXPECT_EQ(created.err.find(otp), std::string::npos);
  for (const auto& f : ScanTree(d.root.path(), {otp, WithoutDashes(otp)}, nullptr)) {
    ADD_FAILURE() << f;
  }

  for (const std::string slug : {"east-side", "clinic"}) {
    const auto dup = Cli({"org", "create", "--data-dir", d.data().string(), "--org", slug,
                          "--org-name", "Dup", "--owner", "carol"},
                         {}, 120s);
    EXPECT_EQ(dup.exit_code, 1) << slug << "\n" << Describe(dup);
    EXPECT_FALSE(dup.err.empty());
    EXPECT_EQ(dup.out.find("one-time password"), std::string::npos);
  }
  for (const std::string& slug :
       std::vector<std::string>{"Bad Slug", "../x", "", "a", "-ab", "ab-", "UPPER", "x/y",
                                "caf\xc3\xa9", "new\nline", std::string(64, 'a')}) {
    const auto bad = Cli({"org", "create", "--data-dir", d.data().string(), "--org", slug,
                          "--org-name", "Bad", "--owner", "carol"},
                         {}, 60s);
    EXPECT_EQ(bad.exit_code, 1) << "slug [" << slug << "]\n" << Describe(bad);
    EXPECT_NE(Lower(bad.err).find("slug"), std::string::npos) << bad.err;
    EXPECT_EQ(bad.out.find("one-time password"), std::string::npos);
  }
  {
    Sqlite db(DatabaseOf(d.data()));
    EXPECT_EQ(db.Int("SELECT count(*) FROM organizations"), 2);
    EXPECT_EQ(db.Int("SELECT count(*) FROM users"), 2);
    EXPECT_EQ(db.Int("SELECT count(*) FROM org_keys WHERE purpose = 'data'"), 2);
  }
  const auto verify = Cli({"audit", "verify", "--data-dir", d.data().string()}, {}, 60s);
  EXPECT_EQ(verify.exit_code, 0) << Describe(verify);

  // On a directory that was never initialized.
  TempDir empty;
  const fs::path nowhere = empty.path() / "data";
  const auto orphan = Cli({"org", "create", "--data-dir", nowhere.string(), "--org", "lost",
                           "--org-name", "Lost", "--owner", "dave"},
                          {}, 60s);
  EXPECT_EQ(orphan.exit_code, 1) << Describe(orphan);
  EXPECT_FALSE(orphan.err.empty());
  EXPECT_EQ(orphan.out.find("one-time password"), std::string::npos);
  EXPECT_FALSE(fs::exists(DatabaseOf(nowhere)));
  EXPECT_FALSE(fs::exists(nowhere / "master.key"));
}

// ---------------------------------------------------------------------------
// 2. the master key

TEST(DataProtectionTest, ServeRefusesAMasterKeyFileOthersCanRead) {
  Dirs d;
  ASSERT_EQ(InitDeployment(d.data(), "clinic", "alice", {}).exit_code, 0);
  const fs::path key = d.data() / "master.key";
  const std::string key_text = ReadFile(key);
  for (const auto mode : {0640, 0604, 0644, 0660}) {
    SCOPED_TRACE(mode);
    fs::permissions(key, static_cast<fs::perms>(mode), fs::perm_options::replace);
    const auto r = Serve(d.data(), d.env());
    EXPECT_EQ(r.exit_code, 1) << Describe(r);
    EXPECT_NE(Lower(r.err).find("master key"), std::string::npos) << r.err;
    EXPECT_EQ(r.out.find("listening"), std::string::npos);
    EXPECT_EQ(r.err.find(key_text.substr(key_text.find(' ') + 1, 64)), std::string::npos);
  }
  // The same directory serves once the file is private again.
  fs::permissions(key, fs::perms::owner_read | fs::perms::owner_write, fs::perm_options::replace);
  auto server = StartServer(d.data(), d.env(), {});
  EXPECT_EQ(Fetch(server->port(), "GET", "/healthz").status, 200);
  EXPECT_EQ(server->Stop(SIGTERM), 0);
}

TEST(DataProtectionTest, MasterKeyFromTheEnvironment) {
  Dirs d;
  const std::string key_a = RandomHex(32);
  const std::string key_b = RandomHex(32);
  const auto init = InitDeployment(d.data(), "clinic", "alice", {{"CAREWIRE_MASTER_KEY", key_a}});
  ASSERT_EQ(init.exit_code, 0) << Describe(init);
  EXPECT_FALSE(fs::exists(d.data() / "master.key"));

  std::string id;
  {
    auto server = StartServer(d.data(), d.env({{"CAREWIRE_MASTER_KEY", key_a}}), {});
    HttpsConnection c(server->port());
    const auto created = PostProbe(c, "clinic", "env-key probe");
    ASSERT_EQ(created.status, 201) << created.body;
    id = std::string(json::parse(created.body).at("id").as_string());
    const auto read = c.Send("GET", kProbePath + "/" + id);
    EXPECT_EQ(read.status, 200) << read.body;
    EXPECT_EQ(server->Stop(SIGTERM), 0);
    EXPECT_EQ(server->Stderr().find(key_a), std::string::npos);
  }
  EXPECT_FALSE(fs::exists(d.data() / "master.key"));

  // Another key does not open the deployment; the message says so and shows
  // neither key.
  const auto wrong = Serve(d.data(), d.env({{"CAREWIRE_MASTER_KEY", key_b}}));
  EXPECT_EQ(wrong.exit_code, 1) << Describe(wrong);
  EXPECT_NE(wrong.err.find("the master key does not open this deployment's keys"),
            std::string::npos)
      << wrong.err;
  EXPECT_EQ(wrong.err.find(key_a), std::string::npos);
  EXPECT_EQ(wrong.err.find(key_b), std::string::npos);
  EXPECT_EQ(wrong.out.find("listening"), std::string::npos);

  // Nor does no key at all (no file, no variable): no new key is made for an
  // existing database.
  const auto none = Serve(d.data(), d.env());
  EXPECT_EQ(none.exit_code, 1) << Describe(none);
  EXPECT_FALSE(fs::exists(d.data() / "master.key"));

  // The versioned form: version 1 is the old key, version 2 a new one.
  {
    auto server =
        StartServer(d.data(), d.env({{"CAREWIRE_MASTER_KEY", "1 " + key_a + ",2 " + key_b}}), {});
    const auto read = Fetch(server->port(), "GET", kProbePath + "/" + id);
    EXPECT_EQ(read.status, 200) << read.body;
    EXPECT_EQ(server->Stop(SIGTERM), 0);
  }
}

// ---------------------------------------------------------------------------
// 3. no plaintext at rest

struct Canary {
  std::string token;  // 32 hex digits that appear nowhere else
  std::string value;
};

std::vector<Canary> MakeCanaries(int n) {
  std::vector<Canary> out;
  for (int i = 0; i < n; ++i) {
    Canary c;
    c.token = RandomHex(16);
    const std::string head = "CANARY-PHI-" + c.token + "-";
    if (i % 20 == 0) {
      // About 60 KB, the token repeated throughout, so a leaked fragment of
      // any page of it is found too.
      c.value = head;
      while (c.value.size() < 60'000) c.value += c.token + " Jane Doe 555-0100 note; ";
    } else if (i % 10 == 5) {
      c.value = head +
                "Zo\xc3\xab \xc3\x85ngstr\xc3\xb6m \xe5\xb1\xb1\xe7\x94\xb0\xe5\xa4\xaa"
                "\xe9\x83\x8e \xd8\xb3\xd8\xa7\xd8\xb1\xd8\xa9 \xf0\x9f\xa9\xba DOB 1970-01-01";
    } else {
      c.value = head + "Jane Doe 555-0100 DOB 1970-01-01 MRN " + std::to_string(100000 + i);
    }
    out.push_back(std::move(c));
  }
  return out;
}

std::vector<std::string> NeedlesOf(const std::vector<Canary>& canaries) {
  std::vector<std::string> needles = {"CANARY-PHI"};
  for (const auto& c : canaries) {
    needles.push_back(c.token);
    if (c.value.size() < 200) needles.push_back(c.value);
  }
  return needles;
}

std::set<std::string> TempEntries() {
  std::set<std::string> names;
  std::error_code ec;
  for (fs::directory_iterator it(fs::temp_directory_path(), ec), end; it != end; it.increment(ec)) {
    if (ec) break;
    names.insert(it->path().filename().string());
  }
  return names;
}

TEST(DataProtectionTest, NoCanaryPlaintextAtRestInTempFilesOrLogs) {
  const std::set<std::string> temp_before = TempEntries();
  Dirs d;
  ASSERT_EQ(InitDeployment(d.data(), "clinic", "alice", {}).exit_code, 0);
  auto server = StartServer(d.data(), d.env(), {"--log-level", "debug"});
  const auto canaries = MakeCanaries(200);
  const auto needles = NeedlesOf(canaries);

  std::vector<std::string> ids(canaries.size());
  std::vector<std::string> bodies(canaries.size() * 2);
  ParallelFor(server->port(), static_cast<int>(canaries.size()), 4, [&](HttpsConnection& c, int i) {
    const auto created = PostProbe(c, "clinic", canaries[i].value);
    bodies[2 * i] = created.body;
    ASSERT_EQ(created.status, 201) << created.body;
    const auto v = json::parse(created.body).as_object();
    ids[i] = Field(v, "id");
    EXPECT_TRUE(std::regex_match(ids[i], std::regex("spr_[0-9a-f]{32}"))) << created.body;
    EXPECT_EQ(v.at("key_version").as_int64(), 1);
    EXPECT_TRUE(v.at("durable").as_bool());
  });
  ParallelFor(server->port(), static_cast<int>(canaries.size()), 4, [&](HttpsConnection& c, int i) {
    const auto read = c.Send("GET", kProbePath + "/" + ids[i]);
    bodies[2 * i + 1] = read.body;
    ASSERT_EQ(read.status, 200) << read.body;
    const auto v = json::parse(read.body).as_object();
    EXPECT_EQ(Field(v, "id"), ids[i]);
    EXPECT_TRUE(v.at("opens").as_bool());
    EXPECT_EQ(v.at("key_version").as_int64(), 1);
    EXPECT_EQ(v.at("length").as_int64(), static_cast<std::int64_t>(canaries[i].value.size()));
    EXPECT_FALSE(v.contains("value"));
  });
  bodies.push_back(Fetch(server->port(), "GET", "/metrics").body);

  // The values are there, sealed: one row each, longer than the plaintext by
  // at least a nonce and a tag.
  {
    Sqlite db(DatabaseOf(d.data()));
    for (std::size_t i = 0; i < ids.size(); i += 7) {
      const auto len =
          db.Int("SELECT length(value) FROM sealed_probes WHERE id = ?", {std::string(ids[i])});
      EXPECT_GE(len, static_cast<std::int64_t>(canaries[i].value.size()) + 40);
    }
    EXPECT_EQ(db.Int("SELECT count(*) FROM sealed_probes"), 200);
  }

  const std::string key_text = ReadFile(d.data() / "master.key");
  const std::smatch key_match = [&] {
    std::smatch m;
    std::regex_search(key_text, m, std::regex("[0-9a-f]{64}"));
    return m;
  }();
  ASSERT_FALSE(key_match.empty());
  const std::string master_key_hex = key_match.str();
  auto scan_everything = [&](const std::string& when) {
    SCOPED_TRACE(when);
    std::uintmax_t scanned = 0;
    for (const auto& f : ScanTree(d.root.path(), needles, &scanned)) ADD_FAILURE() << f;
    EXPECT_GT(scanned, 600'000u) << "the scan missed the database";
    for (const auto& name : TempEntries()) {
      if (temp_before.count(name) != 0) continue;
      for (const auto& f : ScanTree(fs::temp_directory_path() / name, needles, nullptr)) {
        ADD_FAILURE() << f;
      }
    }
    for (const auto& f : FindIn("server stderr", server->Stderr(), needles)) ADD_FAILURE() << f;
    for (const auto& f : FindIn("server stdout", server->Stdout(), needles)) ADD_FAILURE() << f;
    // Nor is the master key in the logs, even at debug level.
    for (const auto& f : FindIn("server stderr", server->Stderr(), {master_key_hex})) {
      ADD_FAILURE() << f;
    }
  };
  // The scans can find what is there: the probe ids are stored in clear.
  EXPECT_FALSE(ScanTree(d.data(), {ids[0], ids[199]}, nullptr).empty());
  EXPECT_FALSE(ScanOpenFiles(server->pid(), {"SQLite format 3"}, nullptr).empty());
  scan_everything("while serving");
  int open_files = 0;
  for (const auto& f : ScanOpenFiles(server->pid(), needles, &open_files)) ADD_FAILURE() << f;
  EXPECT_GE(open_files, 1) << "the server holds no file open: the scan saw nothing";
  for (std::size_t i = 0; i < bodies.size(); ++i) {
    for (const auto& f : FindIn("response " + std::to_string(i), bodies[i], needles)) {
      ADD_FAILURE() << f;
    }
  }

  EXPECT_EQ(server->Stop(SIGTERM), 0);
  scan_everything("after SIGTERM");

  // The graceful stop signed the tail: the last checkpoint covers the log.
  std::istringstream lines(ReadFile(d.data() / "audit-checkpoints.jsonl"));
  std::string line;
  std::int64_t checkpointed = -1;
  while (std::getline(lines, line)) checkpointed = json::parse(line).at("seq").as_int64();
  EXPECT_EQ(checkpointed, SqlInt(DatabaseOf(d.data()), "SELECT max(seq) FROM audit_events"));
}

// ---------------------------------------------------------------------------
// 4. binding

TEST(DataProtectionTest, SealedValuesMovedToAnotherRowOrOrganizationDoNotOpen) {
  Dirs d;
  ASSERT_EQ(InitDeployment(d.data(), "clinic", "alice", {}).exit_code, 0);
  ASSERT_EQ(Cli({"org", "create", "--data-dir", d.data().string(), "--org", "other", "--org-name",
                 "Other", "--owner", "olga"},
                {}, 120s)
                .exit_code,
            0);
  const std::string secret = "BINDING-SECRET-" + RandomHex(16);
  std::map<std::string, std::string> id;  // name -> probe id
  {
    auto server = StartServer(d.data(), d.env(), {});
    HttpsConnection c(server->port());
    for (const auto& [name, org] :
         std::vector<std::pair<std::string, std::string>>{{"a", "clinic"},
                                                          {"b", "clinic"},
                                                          {"c", "clinic"},
                                                          {"x", "other"},
                                                          {"y", "clinic"},
                                                          {"z", "other"},
                                                          {"flip0", "clinic"},
                                                          {"flip1", "clinic"},
                                                          {"flip_mid", "clinic"},
                                                          {"flip_last", "clinic"},
                                                          {"control", "clinic"}}) {
      const auto r = PostProbe(c, org, secret + "-" + name);
      ASSERT_EQ(r.status, 201) << r.body;
      id[name] = std::string(json::parse(r.body).at("id").as_string());
    }
    EXPECT_EQ(server->Stop(SIGTERM), 0);
  }
  {
    Sqlite db(DatabaseOf(d.data()), /*writable=*/true);
    auto value_of = [&](const std::string& name) {
      return db.Bytes("SELECT value FROM sealed_probes WHERE id = ?", {std::string(id[name])});
    };
    auto set_value = [&](const std::string& name, const std::string& value) {
      db.Query("UPDATE sealed_probes SET value = ? WHERE id = ?",
               {Blob(value), std::string(id[name])});
    };
    // A's value into B's row, same organization.
    set_value("b", value_of("a"));
    // Org X's value into a row of org Y ("clinic").
    set_value("y", value_of("x"));
    // A row (with its own value) moved to the other organization.
    db.Query(
        "UPDATE sealed_probes SET org_id = (SELECT id FROM organizations WHERE slug = "
        "'other') WHERE id = ?",
        {std::string(id["c"])});
    // One bit flipped: in the format byte, the nonce... middle, the tag.
    for (const auto& [name, where] : std::vector<std::pair<std::string, int>>{
             {"flip0", 0}, {"flip1", 7}, {"flip_mid", -2}, {"flip_last", -1}}) {
      std::string v = value_of(name);
      const std::size_t at = where == -2   ? v.size() / 2
                             : where == -1 ? v.size() - 1
                                           : static_cast<std::size_t>(where);
      v[at] = static_cast<char>(v[at] ^ 0x10);
      set_value(name, v);
    }
  }
  auto server = StartServer(d.data(), d.env(), {});
  HttpsConnection c(server->port());
  for (const std::string name : {"b", "y", "c", "flip0", "flip1", "flip_mid", "flip_last"}) {
    SCOPED_TRACE(name);
    const auto r = c.Send("GET", kProbePath + "/" + id[name]);
    EXPECT_NE(r.status, 200) << r.body;
    EXPECT_GE(r.status, 400);
    EXPECT_EQ(r.body.find(secret), std::string::npos) << r.body;
    EXPECT_EQ(r.body.find("\"opens\":true"), std::string::npos) << r.body;
  }
  // The untouched values still open: the failures above are the binding.
  for (const std::string name : {"a", "x", "z", "control"}) {
    const auto r = c.Send("GET", kProbePath + "/" + id[name]);
    EXPECT_EQ(r.status, 200) << name << ": " << r.body;
  }
  EXPECT_EQ(server->Stop(SIGTERM), 0);
  EXPECT_EQ(server->Stderr().find(secret), std::string::npos);
}

// ---------------------------------------------------------------------------
// 5. rotation

TEST(DataProtectionTest, DataKeyAndMasterKeyRotationKeepEverythingOpen) {
  Dirs d;
  ASSERT_EQ(InitDeployment(d.data(), "clinic", "alice", {}).exit_code, 0);
  auto server = StartServer(d.data(), d.env(), {});
  constexpr int kProbes = 300;
  std::vector<std::string> ids(kProbes);
  std::vector<std::size_t> lengths(kProbes);
  ParallelFor(server->port(), kProbes, 4, [&](HttpsConnection& c, int i) {
    const std::string value = "rotation value " + std::to_string(i) + " " + RandomHex(8);
    lengths[i] = value.size();
    const auto r = PostProbe(c, "clinic", value);
    ASSERT_EQ(r.status, 201) << r.body;
    ids[i] = std::string(json::parse(r.body).at("id").as_string());
  });

  const auto rotate =
      Cli({"keys", "rotate", "--data-dir", d.data().string(), "--org", "clinic"}, {}, 60s);
  ASSERT_EQ(rotate.exit_code, 0) << Describe(rotate);
  EXPECT_NE(rotate.out.find("clinic: data key version 2"), std::string::npos) << rotate.out;

  auto rotation_finished = [&] {
    Sqlite db(DatabaseOf(d.data()));
    return db.Int(
               "SELECT count(*) FROM key_rotations WHERE version = 2 AND finished_at IS NOT "
               "NULL") == 1;
  };
  ASSERT_TRUE(WaitFor(rotation_finished, 60s, 50ms)) << server->Stderr();

  // Every probe reports key version 2; probes made now are sealed with it.
  auto check_all = [&](std::uint16_t port, const std::vector<std::string>& which,
                       const std::vector<std::size_t>& lens) {
    ParallelFor(port, static_cast<int>(which.size()), 4, [&](HttpsConnection& c, int i) {
      const auto r = c.Send("GET", kProbePath + "/" + which[i]);
      ASSERT_EQ(r.status, 200) << which[i] << ": " << r.body;
      const auto v = json::parse(r.body).as_object();
      EXPECT_EQ(v.at("key_version").as_int64(), 2) << which[i];
      EXPECT_EQ(v.at("length").as_int64(), static_cast<std::int64_t>(lens[i]));
    });
  };
  check_all(server->port(), ids, lengths);
  {
    HttpsConnection c(server->port());
    const auto r = PostProbe(c, "clinic", "after rotation");
    ASSERT_EQ(r.status, 201) << r.body;
    EXPECT_EQ(json::parse(r.body).at("key_version").as_int64(), 2);
    ids.push_back(std::string(json::parse(r.body).at("id").as_string()));
    lengths.push_back(std::string("after rotation").size());
  }
  {
    Sqlite db(DatabaseOf(d.data()));
    EXPECT_EQ(db.Int("SELECT resealed FROM key_rotations WHERE version = 2"), kProbes);
  }

  auto verify = Cli({"audit", "verify", "--data-dir", d.data().string()}, {}, 60s);
  EXPECT_EQ(verify.exit_code, 0) << Describe(verify);
  EXPECT_EQ(verify.out.rfind("audit ok: ", 0), 0u) << verify.out;
  auto events = ExportJsonl(d.data(), {}, nullptr);
  EXPECT_EQ(CountAction(events, "keys.rotated"), 1);
  EXPECT_GE(CountAction(events, "keys.values_resealed"), 1);
  EXPECT_EQ(CountAction(events, "keys.rotation_finished"), 1);
  std::int64_t resealed_in_log = 0;
  for (const auto& e : events) {
    if (Field(e, "action") != "keys.values_resealed") continue;
    resealed_in_log += json::parse(Field(e, "details")).at("rows").as_int64();
  }
  EXPECT_EQ(resealed_in_log, kProbes);

  // The master key, while the server runs.
  const fs::path key_file = d.data() / "master.key";
  const std::string key_before = ReadFile(key_file);
  const auto master = Cli({"keys", "rotate", "--master", "--data-dir", d.data().string()}, {}, 60s);
  ASSERT_EQ(master.exit_code, 0) << Describe(master);
  const auto rotated_at = std::chrono::steady_clock::now();
  std::smatch m;
  ASSERT_TRUE(std::regex_search(master.out, m, std::regex("master key version (\\d+): ")))
      << master.out;
  const std::string version = m[1].str();
  EXPECT_NE(version, "1");
  const std::string key_after = ReadFile(key_file);
  EXPECT_NE(key_after, key_before);
  EXPECT_TRUE(std::regex_match(key_after, std::regex(version + " [0-9a-f]{64}\n?")))
      << "the key file should hold the new version alone";
  EXPECT_EQ(ModeOf(key_file), 0600u);
  {
    Sqlite db(DatabaseOf(d.data()));
    EXPECT_EQ(db.Int("SELECT count(*) FROM org_keys WHERE kek_version != ?",
                     {std::int64_t(std::stoll(version))}),
              0);
  }
  // The running server keeps opening old values and sealing new ones, also
  // once its key cache (100 ms) has expired and it must unwrap again.
  int passes = 0;
  do {
    check_all(server->port(), ids, lengths);
    HttpsConnection c(server->port());
    const auto r = PostProbe(c, "clinic", "after master rotation");
    ASSERT_EQ(r.status, 201) << r.body;
    ids.push_back(std::string(json::parse(r.body).at("id").as_string()));
    lengths.push_back(std::string("after master rotation").size());
    ++passes;
  } while (std::chrono::steady_clock::now() - rotated_at < 500ms || passes < 2);
  EXPECT_EQ(server->Stop(SIGTERM), 0) << server->Stderr();

  server = StartServer(d.data(), d.env(), {});
  check_all(server->port(), ids, lengths);
  {
    HttpsConnection c(server->port());
    EXPECT_EQ(PostProbe(c, "clinic", "after restart").status, 201);
  }
  EXPECT_EQ(server->Stop(SIGTERM), 0);
  EXPECT_EQ(ReadFile(key_file), key_after);

  verify = Cli({"audit", "verify", "--data-dir", d.data().string()}, {}, 60s);
  EXPECT_EQ(verify.exit_code, 0) << Describe(verify);
  events = ExportJsonl(d.data(), {}, nullptr);
  EXPECT_EQ(CountAction(events, "keys.master_rotated"), 1);
}

// ---------------------------------------------------------------------------
// 6. QUALITY.md's bad inputs against the sealed-probe routes
//
// 13 (internal URLs) does not apply: these routes fetch nothing. 14 (tokens)
// does not apply yet: there is no sign-in, the diagnostics routes are public
// and off by default; the tenant-isolation suite covers it once tokens exist.
// For the same reason, "an id from another organization" (12) cannot be
// refused yet: a GET names no organization. Slow clients and framing (15)
// are covered route-independently in limits_test.cpp; one framing case is
// repeated here. There are no idempotency keys on these routes.

class SealedProbeInputs : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(InitDeployment(d_.data(), "clinic", "alice", {}).exit_code, 0);
    ASSERT_EQ(Cli({"org", "create", "--data-dir", d_.data().string(), "--org", "other",
                   "--org-name", "Other", "--owner", "olga"},
                  {}, 120s)
                  .exit_code,
              0);
    server_ = StartServer(d_.data(), d_.env(), {"--log-level", "debug"});
  }
  void TearDown() override {
    if (server_) {
      EXPECT_EQ(server_->Stop(SIGTERM), 0);
    }
  }

  struct Counts {
    std::int64_t probes = 0;
    std::int64_t events = 0;
    friend bool operator==(const Counts&, const Counts&) = default;
  };
  Counts Now() {
    Sqlite db(DatabaseOf(d_.data()));
    return {db.Int("SELECT count(*) FROM sealed_probes"),
            db.Int("SELECT coalesce(max(seq), 0) FROM audit_events")};
  }

  // A refused request: a 4xx JSON error envelope, nothing stored or audited.
  void ExpectRefused(const std::string& what, const std::function<HttpResponse()>& send,
                     int status = 0) {
    SCOPED_TRACE(what);
    const Counts before = Now();
    HttpResponse r;
    try {
      r = send();
    } catch (const std::exception& e) {
      ADD_FAILURE() << "no response: " << e.what();
      return;
    }
    if (status != 0) {
      EXPECT_EQ(r.status, status) << r.body;
    } else {
      EXPECT_GE(r.status, 400) << r.body;
      EXPECT_LT(r.status, 500) << r.body;
    }
    EXPECT_EQ(r.Header("content-type"), "application/json; charset=utf-8");
    try {
      const auto v = json::parse(r.body);
      EXPECT_FALSE(v.at("error").at("code").as_string().empty()) << r.body;
      EXPECT_FALSE(v.at("error").at("message").as_string().empty()) << r.body;
      EXPECT_EQ(v.at("error").at("request_id").as_string(), r.Header("x-request-id"));
    } catch (const std::exception& e) {
      ADD_FAILURE() << "not a JSON error envelope: " << e.what() << "\n" << r.body.substr(0, 300);
    }
    EXPECT_EQ(Now(), before) << "something was stored or audited";
    bodies_.push_back(r.body);
  }

  HttpResponse PostRaw(const std::string& body, const std::string& type = "application/json") {
    if (type.empty()) {
      // The client library would add a JSON content type; write the request.
      HttpsConnection c(server_->port());
      c.WriteRaw("POST " + kProbePath + " HTTP/1.1\r\nHost: x\r\nContent-Length: " +
                 std::to_string(body.size()) + "\r\n\r\n" + body);
      return c.ReadResponse();
    }
    return Fetch(server_->port(), "POST", kProbePath, body, {{"content-type", type}});
  }
  HttpResponse Get(const std::string& target) { return Fetch(server_->port(), "GET", target); }

  // A legal but hostile value: stored sealed, and opens with its length.
  void ExpectRoundTrip(const std::string& what, const std::string& value) {
    SCOPED_TRACE(what);
    const Counts before = Now();
    const auto created = PostRaw(ProbeBody("clinic", value));
    ASSERT_EQ(created.status, 201) << created.body;
    const std::string id(json::parse(created.body).at("id").as_string());
    const auto read = Get(kProbePath + "/" + id);
    ASSERT_EQ(read.status, 200) << read.body;
    const auto v = json::parse(read.body).as_object();
    EXPECT_TRUE(v.at("opens").as_bool());
    EXPECT_EQ(v.at("length").as_int64(), static_cast<std::int64_t>(value.size()));
    const Counts after = Now();
    EXPECT_EQ(after.probes, before.probes + 1);
    EXPECT_EQ(after.events, before.events + 2);  // created, opened
    bodies_.push_back(created.body);
    bodies_.push_back(read.body);
  }

  Dirs d_;
  std::unique_ptr<ServerProcess> server_;
  std::vector<std::string> bodies_;
};

TEST_F(SealedProbeInputs, BadInputsAreRefusedAndLegalHostileValuesRoundTripSealed) {
  const std::string ok_value = "x";
  // 1. missing or empty body, null where an object is expected.
  ExpectRefused(
      "empty body", [&] { return PostRaw(""); }, 400);
  for (const char* body : {"null", "[]", "\"x\"", "1", "{}", R"({"org":"clinic"})",
                           R"({"value":"x"})", R"({"org":null,"value":"x"})",
                           R"({"org":"clinic","value":null})", R"({"org":"","value":"x"})"}) {
    ExpectRefused(
        body, [&] { return PostRaw(body); }, 400);
  }
  // 2. wrong JSON types, and unknown fields.
  for (const char* body :
       {R"({"org":1,"value":"x"})", R"({"org":"clinic","value":1})",
        R"({"org":"clinic","value":true})", R"({"org":"clinic","value":["x"]})",
        R"({"org":"clinic","value":{"v":"x"}})", R"({"org":["clinic"],"value":"x"})",
        R"({"org":"clinic","value":"x","extra":1})",
        R"({"org":"clinic","value":"x","id":"spr_1"})"}) {
    ExpectRefused(
        body, [&] { return PostRaw(body); }, 400);
  }
  // 3. oversized bodies and values; deep nesting.
  ExpectRefused(
      "10 MB body", [&] { return PostRaw(ProbeBody("clinic", std::string(10 << 20, 'x'))); }, 413);
  ExpectRefused(
      "value of 65537 bytes", [&] { return PostRaw(ProbeBody("clinic", std::string(65537, 'v'))); },
      400);
  ExpectRefused(
      "value of 32769 two-byte characters (65538 bytes)",
      [&] {
        std::string v;
        for (int i = 0; i < 32769; ++i) v += "\xc3\xa9";
        return PostRaw(ProbeBody("clinic", v));
      },
      400);
  {
    const std::string deep = std::string(10'000, '[') + std::string(10'000, ']');
    ExpectRefused(
        "nested arrays", [&] { return PostRaw(R"({"org":"clinic","value":)" + deep + "}"); }, 400);
    std::string objects;
    for (int i = 0; i < 10'000; ++i) objects += "{\"a\":";
    objects += "1" + std::string(10'000, '}');
    ExpectRefused(
        "nested objects", [&] { return PostRaw(objects); }, 400);
  }
  // 4. numeric edges where strings are expected.
  for (const char* n : {"0", "-1", "2147483648", "9007199254740993", "9223372036854775808", "NaN",
                        "1e999", "1e2", "1.5", "-0"}) {
    ExpectRefused(
        std::string("value ") + n,
        [&] { return PostRaw(std::string(R"({"org":"clinic","value":)") + n + "}"); }, 400);
    ExpectRefused(
        std::string("org ") + n,
        [&] { return PostRaw(std::string(R"({"value":"x","org":)") + n + "}"); }, 400);
  }
  // 5. duplicate keys (the routes take no query parameters to repeat).
  for (const char* body : {R"({"org":"clinic","org":"clinic","value":"x"})",
                           R"({"org":"clinic","value":"a","value":"b"})",
                           R"({"org":"clinic","org":"other","value":"x"})"}) {
    ExpectRefused(
        body, [&] { return PostRaw(body); }, 400);
  }
  // 6. invalid UTF-8, lone surrogates, raw NUL and control bytes.
  static constexpr char kNul[] = "{\"org\":\"clinic\",\"value\":\"a\0b\"}";
  int bad_bytes = 0;
  for (const std::string& body : std::vector<std::string>{
           std::string("{\"org\":\"clinic\",\"value\":\"\xc3\x28\"}"),
           std::string("{\"org\":\"clinic\",\"value\":\"\xed\xa0\x80\"}"),  // encoded surrogate
           std::string("{\"org\":\"clinic\",\"value\":\"\xf8\x88\x80\x80\x80\"}"),
           std::string("{\"org\":\"clinic\",\"value\":\"\xc0\xaf\"}"),  // overlong '/'
           std::string("{\"\xff\":\"clinic\",\"value\":\"x\"}"),
           std::string(R"({"org":"clinic","value":"\udead"})"),
           std::string(R"({"org":"clinic","value":"\ud800x"})"), std::string(kNul, sizeof kNul - 1),
           std::string("{\"org\":\"clinic\",\"value\":\"a\nb\"}"),
           std::string("{\"org\":\"cli\xc3\x28nic\",\"value\":\"x\"}")}) {
    ExpectRefused(
        "bad bytes #" + std::to_string(bad_bytes++), [&] { return PostRaw(body); }, 400);
  }

  // 11. path traversal in the id and the organization.
  for (const std::string& target : std::vector<std::string>{
           kProbePath + "/../../etc/passwd", kProbePath + "/..%2f..%2fetc%2fpasswd",
           kProbePath + "/%2Fetc%2Fpasswd", kProbePath + "/spr_../../x",
           kProbePath + "/" + "spr_" + std::string(32, '.'), kProbePath + "/.", kProbePath + "/..",
           kProbePath + "//etc/passwd"}) {
    ExpectRefused(
        "GET " + target, [&] { return Get(target); }, 404);
  }
  for (const std::string org :
       {"../clinic", "/etc/passwd", "clinic/../other", "..%2fclinic", "clinic\\..\\other", "."}) {
    ExpectRefused(
        "org " + org, [&] { return PostRaw(ProbeBody(org, ok_value)); }, 404);
  }

  // 12. ids of another type, malformed or made up; an org by id, not slug.
  std::string real_id, org_id, user_id;
  {
    const auto created = PostRaw(ProbeBody("other", "a probe of the other organization"));
    ASSERT_EQ(created.status, 201);
    real_id = std::string(json::parse(created.body).at("id").as_string());
    Sqlite db(DatabaseOf(d_.data()));
    org_id = db.Bytes("SELECT id FROM organizations WHERE slug = 'clinic'");
    user_id = db.Bytes("SELECT id FROM users LIMIT 1");
  }
  std::string upper = real_id;
  for (char& ch : upper) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  std::string upper_hex = "spr_" + upper.substr(4);
  for (const std::string& id : std::vector<std::string>{
           "spr_" + RandomHex(16), org_id, user_id, upper, upper_hex, real_id + "0",
           real_id.substr(0, real_id.size() - 1), real_id.substr(4), "spr_", "1", "0", "-1",
           "spr_" + RandomHex(16) + "%00", real_id + "%20", "%20" + real_id}) {
    ExpectRefused(
        "GET id " + id, [&] { return Get(kProbePath + "/" + id); }, 404);
  }
  ExpectRefused(
      "org by id", [&] { return PostRaw(ProbeBody(org_id, ok_value)); }, 404);
  ExpectRefused(
      "unknown org", [&] { return PostRaw(ProbeBody("nobody-" + RandomHex(4), ok_value)); }, 404);
  ExpectRefused(
      "org in capitals", [&] { return PostRaw(ProbeBody("CLINIC", ok_value)); }, 404);

  // 15. protocol abuse: content types, methods, ambiguous framing.
  for (const std::string type :
       {"text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
        "application/json; charset=latin1", "application/jsonx", ""}) {
    ExpectRefused(
        "content type [" + type + "]", [&] { return PostRaw(ProbeBody("clinic", ok_value), type); },
        415);
  }
  for (const char* method : {"PUT", "DELETE", "PATCH"}) {
    ExpectRefused(
        std::string(method) + " collection",
        [&] { return Fetch(server_->port(), method, kProbePath, ProbeBody("clinic", ok_value)); },
        405);
    ExpectRefused(
        std::string(method) + " item",
        [&] {
          return Fetch(server_->port(), method, kProbePath + "/" + real_id,
                       ProbeBody("clinic", ok_value));
        },
        405);
  }
  ExpectRefused(
      "GET collection", [&] { return Get(kProbePath); }, 405);
  ExpectRefused(
      "POST item",
      [&] {
        return Fetch(server_->port(), "POST", kProbePath + "/" + real_id,
                     ProbeBody("clinic", ok_value));
      },
      405);
  ExpectRefused(
      "Content-Length with Transfer-Encoding",
      [&] {
        HttpsConnection c(server_->port());
        const std::string body = ProbeBody("clinic", ok_value);
        char size[16];
        std::snprintf(size, sizeof size, "%zx", body.size());
        c.WriteRaw(
            "POST " + kProbePath + " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
            "Content-Length: " + std::to_string(body.size()) +
            "\r\nTransfer-Encoding: chunked\r\n\r\n" + size + "\r\n" + body + "\r\n0\r\n\r\n");
        return c.ReadResponse();
      },
      400);

  // Concurrent duplicates are distinct probes, each stored with one event.
  {
    const Counts before = Now();
    std::vector<std::string> ids(8);
    ParallelFor(server_->port(), 8, 8, [&](HttpsConnection& c, int i) {
      const auto r = PostProbe(c, "clinic", "the same value sent eight times at once");
      ASSERT_EQ(r.status, 201) << r.body;
      ids[i] = std::string(json::parse(r.body).at("id").as_string());
    });
    EXPECT_EQ(std::set<std::string>(ids.begin(), ids.end()).size(), 8u);
    const Counts after = Now();
    EXPECT_EQ(after.probes, before.probes + 8);
    EXPECT_EQ(after.events, before.events + 8);
  }

  // 7-10 (and an escaped NUL, a lone LF, the exact size limit) are legal
  // values: stored sealed, they open with their exact length.
  const std::string tag = "HOSTILE-" + RandomHex(16) + " ";
  std::vector<std::string> hostile = {
      tag +
          "\xe2\x80\xae"
          "evil\xe2\x80\xac txt",                 // RLO ... PDF
      tag + "zero\xe2\x80\x8bwidth\xef\xbb\xbf",  // ZWSP, BOM
      tag + "\xc3\xa9",                           // NFC e-acute
      tag + "e\xcc\x81",                          // NFD e + combining acute
      tag + "line\r\nbreak\rCR\nLF",
      tag + "MSH|^~\\&|SEND|FAC|||PID|1||123^^^X~Y&Z",
      tag + std::string("\x0b") + "MSH|\x1c\r",
      tag + "<script>alert(1)</script>",
      tag + "<svg onload=alert(1)>",
      tag + "javascript:alert(document.cookie)",
      tag + "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
      tag + "' \" ;-- DROP TABLE sealed_probes; --",
      tag + "${jndi:ldap://x} {{7*7}} %n%s%x %(x)s",
      tag + std::string("a\0b", 3),
      std::string(65536 - tag.size(), 'q').insert(0, tag),
  };
  for (std::size_t i = 0; i < hostile.size(); ++i) {
    ExpectRoundTrip("hostile value " + std::to_string(i), hostile[i]);
  }
  // The same strings as an organization are simply unknown organizations.
  for (std::size_t i = 0; i < 13; ++i) {
    ExpectRefused("hostile org " + std::to_string(i),
                  [&] { return PostRaw(ProbeBody(hostile[i].substr(tag.size()), ok_value)); });
  }

  // None of it is at rest or in the logs in plaintext. The tag is in every
  // hostile value; the 18-byte heads of the shorter values are checked too.
  std::vector<std::string> needles = {tag.substr(0, tag.size() - 1)};
  for (std::size_t i = 0; i + 1 < hostile.size(); ++i) needles.push_back(hostile[i]);
  needles.push_back(std::string(64, 'q'));
  for (const auto& f : FindIn("server stderr", server_->Stderr(), needles)) ADD_FAILURE() << f;
  for (const auto& b : bodies_) {
    for (const auto& f : FindIn("a response", b, needles)) ADD_FAILURE() << f;
  }
  EXPECT_EQ(server_->Stop(SIGTERM), 0);
  for (const auto& f : ScanTree(d_.root.path(), needles, nullptr)) ADD_FAILURE() << f;
  for (const auto& f : FindIn("server stderr", server_->Stderr(), needles)) ADD_FAILURE() << f;
  server_.reset();
  const auto verify = Cli({"audit", "verify", "--data-dir", d_.data().string()}, {}, 60s);
  EXPECT_EQ(verify.exit_code, 0) << Describe(verify);
  Sqlite db(DatabaseOf(d_.data()));
  EXPECT_EQ(db.Int("SELECT count(*) FROM sealed_probes"),
            db.Int("SELECT count(*) FROM audit_events WHERE action = "
                   "'diagnostics.sealed_probe_created'"));
}

}  // namespace
}  // namespace cw::testing::dp
