// kill -9 at random moments: while clients write sealed values (each with its
// audit event in the same transaction) and while the background job re-seals
// values after a key rotation. After every restart, nothing acknowledged is
// lost or duplicated, every value opens, the rotation resumes where it
// stopped and finishes, and the audit log verifies.

#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <boost/json.hpp>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>
#include <variant>

#include "integration/data_protection_support.hpp"

namespace cw::testing::dp {

namespace fs = std::filesystem;
namespace json = boost::json;

namespace {

using namespace std::chrono_literals;

const std::string kProbePath = "/api/v1/diagnostics/sealed-probe";

fs::path Db(const fs::path& data) { return data / "carewire.db"; }

// Every id opens: 200, opens:true, and (when given) the key version.
void ExpectAllOpen(std::uint16_t port, const std::vector<std::string>& ids,
                   std::int64_t key_version = 0) {
  ParallelFor(port, static_cast<int>(ids.size()), 4, [&](HttpsConnection& c, int i) {
    const auto r = c.Send("GET", kProbePath + "/" + ids[i]);
    ASSERT_EQ(r.status, 200) << ids[i] << ": " << r.body;
    const auto v = json::parse(r.body).as_object();
    EXPECT_TRUE(v.at("opens").as_bool());
    if (key_version != 0) {
      EXPECT_EQ(v.at("key_version").as_int64(), key_version) << ids[i];
    }
  });
}

unsigned Seed() {
  const unsigned seed = std::random_device{}();
  ::testing::Test::RecordProperty("seed", static_cast<int>(seed & 0x7fffffff));
  return seed;
}

TEST(CrashTest, KillNineDuringAuditedWritesLosesAndDuplicatesNothing) {
  TempDir root;
  const fs::path data = root.path() / "data";
  const auto env = ServerEnv(root.path() / "tmp");
  ASSERT_EQ(InitDeployment(data, "clinic", "alice").exit_code, 0);
  const unsigned seed = Seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);

  std::vector<std::string> acknowledged;
  std::vector<std::string> last_cycle;
  constexpr int kCycles = 5;
  for (int cycle = 0; cycle < kCycles; ++cycle) {
    SCOPED_TRACE("cycle " + std::to_string(cycle));
    auto server = StartServer(data, env);
    // What the previous cycle acknowledged survived its kill -9.
    ExpectAllOpen(server->port(), last_cycle);

    std::mutex mu;
    std::vector<std::string> acked;
    std::vector<std::string> unexpected;
    std::atomic<bool> stop{false};
    std::vector<std::thread> clients;
    for (int t = 0; t < 4; ++t) {
      clients.emplace_back([&, t] {
        try {
          HttpsConnection c(server->port());
          for (int i = 0; !stop; ++i) {
            const auto r = PostProbe(c, "clinic",
                                     "crash cycle " + std::to_string(cycle) + " client " +
                                         std::to_string(t) + " value " + std::to_string(i));
            std::lock_guard lock(mu);
            if (r.status == 201) {
              acked.emplace_back(json::parse(r.body).at("id").as_string());
            } else {
              unexpected.push_back(std::to_string(r.status) + " " + r.body);
            }
          }
        } catch (const std::exception&) {
          // The server died under the request: nothing was acknowledged.
        }
      });
    }
    // Under load (the first acknowledgement is in), then a random moment.
    EXPECT_TRUE(WaitFor(
        [&] {
          std::lock_guard lock(mu);
          return !acked.empty() || !unexpected.empty();
        },
        10s, 1ms));
    std::this_thread::sleep_for(std::chrono::milliseconds(100 + rng() % 501));
    server->Stop(SIGKILL);
    stop = true;
    for (auto& c : clients) c.join();
    EXPECT_TRUE(unexpected.empty()) << (unexpected.empty() ? "" : unexpected.front());
    EXPECT_FALSE(acked.empty());
    acknowledged.insert(acknowledged.end(), acked.begin(), acked.end());
    last_cycle = std::move(acked);
  }
  {
    auto server = StartServer(data, env);
    ExpectAllOpen(server->port(), last_cycle);
    EXPECT_EQ(server->Stop(SIGTERM), 0);
  }

  // Exactly one creation event per acknowledged probe, and no row without
  // its event or event without its row.
  ProcessResult exported;
  const auto events = ExportJsonl(data, {}, &exported);
  ASSERT_EQ(exported.exit_code, 0) << Describe(exported);
  std::map<std::string, int> created;
  for (const auto& e : events) {
    if (Field(e, "action") == "diagnostics.sealed_probe_created") ++created[Field(e, "target_id")];
  }
  for (const auto& id : acknowledged) EXPECT_EQ(created[id], 1) << id;
  std::set<std::string> rows;
  for (const auto& row : SqlQuery(Db(data), "SELECT id FROM sealed_probes")) {
    rows.insert(Bytes(row[0]));
  }
  EXPECT_EQ(rows.size(), created.size());
  for (const auto& [id, n] : created) {
    EXPECT_EQ(n, 1) << id;
    EXPECT_EQ(rows.count(id), 1u) << "an event without its row: " << id;
  }
  EXPECT_GE(rows.size(), acknowledged.size());
  const auto v = Cli({"audit", "verify", "--data-dir", data.string()});
  EXPECT_EQ(v.exit_code, 0) << Describe(v);
}

TEST(CrashTest, KillNineDuringReencryptionResumesAndFinishes) {
  TempDir root;
  const fs::path data = root.path() / "data";
  const auto env = ServerEnv(root.path() / "tmp", {{"CAREWIRE_KEYS_REENCRYPT_BATCH", "20"}});
  ASSERT_EQ(InitDeployment(data, "clinic", "alice").exit_code, 0);
  const unsigned seed = Seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);

  constexpr int kProbes = 2000;
  auto server = StartServer(data, env);
  std::vector<std::string> ids(kProbes);
  ParallelFor(server->port(), kProbes, 4, [&](HttpsConnection& c, int i) {
    const auto r = PostProbe(c, "clinic", "re-encryption value " + std::to_string(i));
    ASSERT_EQ(r.status, 201) << r.body;
    ids[i] = std::string(json::parse(r.body).at("id").as_string());
  });
  const auto rotate = Cli({"keys", "rotate", "--data-dir", data.string(), "--org", "clinic"});
  ASSERT_EQ(rotate.exit_code, 0) << Describe(rotate);

  struct Progress {
    std::int64_t resealed = 0;
    bool finished = false;
  };
  auto progress = [&] {
    const auto rows = SqlQuery(
        Db(data), "SELECT resealed, finished_at IS NOT NULL FROM key_rotations WHERE version = 2");
    if (rows.empty()) throw std::runtime_error("no rotation to version 2");
    return Progress{Int(rows[0][0]), Int(rows[0][1]) != 0};
  };

  // Kill at a random point of the remaining work, while it is unfinished.
  int killed_midway = 0;
  for (int cycle = 0; cycle < 5; ++cycle) {
    if (!server) server = StartServer(data, env);
    const Progress start = progress();
    if (start.finished) break;
    const std::int64_t left = kProbes - start.resealed;
    const std::int64_t target =
        start.resealed + 1 +
        static_cast<std::int64_t>(rng() %
                                  static_cast<unsigned>(std::max<std::int64_t>(1, left / 4)));
    EXPECT_TRUE(WaitFor(
        [&] {
          const Progress p = progress();
          return p.finished || p.resealed >= target;
        },
        30s, 1ms))
        << server->Stderr();
    if (progress().finished) break;
    server->Stop(SIGKILL);
    server.reset();
    const Progress after = progress();
    if (!after.finished) ++killed_midway;
    EXPECT_LE(after.resealed, kProbes);
  }
  EXPECT_GE(killed_midway, 3) << "the kills did not land while the job was running";

  if (!server) server = StartServer(data, env);
  ASSERT_TRUE(WaitFor([&] { return progress().finished; }, 60s, 20ms)) << server->Stderr();
  ExpectAllOpen(server->port(), ids, 2);
  EXPECT_EQ(server->Stop(SIGTERM), 0);

  // Every value re-sealed exactly once: a batch, its cursor and its audit
  // event commit together, so a kill neither skips nor repeats one.
  EXPECT_EQ(progress().resealed, kProbes);
  const auto events = ExportJsonl(data);
  std::int64_t resealed_in_log = 0;
  for (const auto& e : events) {
    if (Field(e, "action") != "keys.values_resealed") continue;
    resealed_in_log += json::parse(Field(e, "details")).at("rows").as_int64();
  }
  EXPECT_EQ(resealed_in_log, kProbes);
  EXPECT_EQ(CountAction(events, "keys.rotation_finished"), 1);
  const auto v = Cli({"audit", "verify", "--data-dir", data.string()});
  EXPECT_EQ(v.exit_code, 0) << Describe(v);
}

}  // namespace
}  // namespace cw::testing::dp
